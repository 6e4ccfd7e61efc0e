"""The user's own data: JSONL files of {"prompt": ..., "completion": ...} records, the format
fine-tuning services use, with their separator convention: a fixed separator (by default
"\\n\\n###\\n\\n") ends every prompt and appears nowhere else, so a model learns where the
prompt stops and its completion starts.

    python -m bench.data check FILE [--separator S]
    python -m bench.data augment FILE --out OUT [--methods synonym,delete,swap,typo] [--copies N] [--seed S]
    python -m bench.data clean FILE --out OUT [--offensive drop|flag] [--threshold P] [--find email,phone,...]
    python -m bench.data sample FILE --size N --out REVIEW.csv [--seed S]
    python -m bench.data review REVIEW.csv

`check` reports every problem with its line number and exits 1 when there are errors; it
never changes the file. Errors (the jsonl task refuses to load such a file):
  - a line that is not valid UTF-8 or JSON, or not a JSON object
  - "prompt" or "completion" missing, not a string, or empty (the separator alone is empty)
  - a prompt that does not end with the separator; the separator anywhere else
  - an exact duplicate: the same prompt as an earlier line (it would count twice, and could
    sit in both train and test)
Warnings (worth a look, often legitimate):
  - a near duplicate: word-set Jaccard similarity >= 0.8 with an earlier prompt (lower-cased
    words, punctuation dropped; so also the same text up to case, punctuation and spacing)
  - a length outlier: a prompt or completion whose character length lies outside Tukey's
    far-out fences (Q1 - 3 IQR, Q3 + 3 IQR) on log2 of the length, with the IQR floored at 1,
    so that no length within a factor of 8 of the quartiles is flagged; computed over files of
    at least 8 records
  - a blank line (skipped)

`augment` writes every line of a file without errors unchanged, each followed by up to N
seeded copies (EDA, Wei & Zou 2019): each copy applies one method, drawn from --methods, to
a share --rate of the words of the prompt text; the separator and the completion stay as they
are. Synonyms come from the small built-in table SYNONYMS (WordNet is not available offline).
A copy that would repeat an existing prompt is drawn again, and skipped after 10 tries.
Augment only the training file: copies of one prompt are near duplicates of each other, and
would leak into a test split carved out of the same file.

`clean` writes the file without its offensive records (or with them, --offensive flag) and with
personal data replaced by tags, and a report beside it (OUT.report.json: which lines, never the
text found); bench/cleaning.py says how each is found. `sample` writes a stratified, seeded
sample to read (a CSV with an empty verdict column; strata: the completions where they are
labels, else quartiles of prompt length); `review` reads it back once verdicts are filled in
(ok or bad) and reports the error rate with its interval and the rows that failed
(bench/review.py). None of them changes its input.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench import cleaning

SEPARATOR = "\n\n###\n\n"
MAX_LABELS = 20  # completions that are labels: at most this many distinct ones, each at least twice
NEAR_DUPLICATE_JACCARD = 0.8
OUTLIER_MIN_RECORDS = 8
JSON_TYPES = {
    int: "a number",
    float: "a number",
    bool: "a boolean",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


class DataError(ValueError):
    """A data file that cannot be used as it is."""


@dataclass(frozen=True)
class Record:
    line: int  # 1-based line number in the file
    prompt: str
    completion: str
    separator: str

    @property
    def body(self) -> str:
        """The prompt without its final separator."""
        return self.prompt.removesuffix(self.separator)


@dataclass(frozen=True)
class Problem:
    line: int
    level: str  # error | warning
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.level}: {self.message}"


def labels_like(counts: Counter) -> bool:
    """Whether completions with these counts are labels to classify by (not free text to generate)."""
    return len(counts) <= MAX_LABELS and min(counts.values()) >= 2


def strata(records: list[Record]) -> list[str]:
    """Each record's stratum for a review sample: its completion where the completions are labels, else the
    quartile of its prompt's length."""
    counts = Counter(r.completion.strip() for r in records)
    if labels_like(counts):
        return [r.completion.strip() for r in records]
    cuts = statistics.quantiles([len(r.body) for r in records], n=4) if len(records) > 1 else []
    return [f"prompt length Q{1 + sum(len(r.body) > c for c in cuts)}" for r in records]


def unescape(separator: str) -> str:
    r"""Command lines and overrides spell a newline as \n and a tab as \t."""
    return separator.replace("\\n", "\n").replace("\\t", "\t")


def check_lines(
    lines: list[bytes], separator: str = SEPARATOR, warnings: bool = True
) -> tuple[list[Record], list[Problem]]:
    """Records (every line with a non-empty string prompt and completion, whatever else is wrong
    with it) and every problem, in line order; `warnings=False` skips the slower file-wide ones."""
    records, problems = [], []
    for n, raw in enumerate(lines, 1):
        found = []
        record = _parse(n, raw, separator, found)
        problems += [Problem(n, level, message) for level, message in found]
        if record:
            records.append(record)
    problems += duplicates(records) + (near_duplicates(records) + length_outliers(records) if warnings else [])
    if not records:  # nothing to train or test on: the task would refuse it
        problems.append(
            Problem(
                len(lines),
                "error",
                "no record in the file: it needs one JSON object with a prompt and a completion per line",
            )
        )
    return records, sorted(problems, key=lambda p: p.line)


def _object(pairs: list[tuple[str, object]], duplicated: list[str]) -> dict:
    """A JSON object as json.loads makes it (the last of a repeated key wins), noting the repeated keys."""
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            duplicated.append(key)
        seen[key] = value
    return seen


def _parse(n: int, raw: bytes, separator: str, found: list) -> Record | None:
    """The line's record, or None; its problems go to `found` as (level, message)."""
    try:
        line = raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as e:
        found.append(("error", f"not valid UTF-8 (byte {e.start + 1})"))
        return None
    if not line.strip():
        found.append(("warning", "blank line (skipped)"))
        return None
    duplicated: list[str] = []
    try:
        obj = json.loads(line, object_pairs_hook=lambda pairs: _object(pairs, duplicated))
    except json.JSONDecodeError as e:
        # a file of old Mac line endings (CR alone) reads as one line of several objects
        hint = "; the lines end in CR alone: convert them to LF (or CRLF)" if "\r" in line else ""
        found.append(("error", f"not valid JSON: {e.msg} (column {e.colno}){hint}"))
        return None
    for key in duplicated:
        found.append(("warning", f'"{key}" given twice: the last value is kept'))
    if not isinstance(obj, dict):
        found.append(("error", f"not a JSON object but {JSON_TYPES[type(obj)]}"))
        return None
    for key in ("prompt", "completion"):
        if key not in obj:
            found.append(("error", f'no "{key}"'))
        elif not isinstance(obj[key], str):
            found.append(("error", f'"{key}" is {JSON_TYPES[type(obj[key])]}, not a string'))
        elif not obj[key].replace(separator, "").strip():
            found.append(("error", f'empty "{key}"'))
    if any(level == "error" for level, _ in found):
        return None
    record = Record(n, obj["prompt"], obj["completion"], separator)
    if not record.prompt.endswith(separator):
        found.append(("error", f"the prompt does not end with the separator {separator!r}"))
    if separator in record.body:
        found.append(("error", f"the separator {separator!r} inside the prompt text (it may only end the prompt)"))
    if separator in record.completion:
        found.append(("error", f"the separator {separator!r} inside the completion"))
    return record


def words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", text.lower()))


def duplicates(records: list[Record]) -> list[Problem]:
    """Exact duplicate prompts, each reported on the later line with the first line it repeats."""
    problems, first = [], {}
    for r in records:
        if r.prompt in first:
            differs = " with a different completion" if first[r.prompt].completion != r.completion else ""
            problems.append(
                Problem(r.line, "error", f"duplicate of line {first[r.prompt].line}: the same prompt{differs}")
            )
        first.setdefault(r.prompt, r)
    return problems


def near_duplicates(records: list[Record]) -> list[Problem]:
    """Prompts with word Jaccard >= t to an earlier one (exact duplicates aside), reported with the
    earliest. A prefix filter (Bayardo et al. 2007) keeps this fast: two word sets with Jaccard >= t
    share a word among the first |s| - ceil(t |s|) + 1 words of each, rarest first, so only pairs
    that do are compared."""
    t, problems, first = NEAR_DUPLICATE_JACCARD, [], {}
    for r in records:
        first.setdefault(r.prompt, r)
    records = list(first.values())
    sets = [words(r.body) for r in records]
    frequency = Counter(w for s in sets for w in s)
    index = defaultdict(list)  # word -> the records with it in their prefix
    for j, (r, s) in enumerate(zip(records, sets)):
        prefix = sorted(s, key=lambda w: (frequency[w], w))[: len(s) - math.ceil(t * len(s)) + 1]
        for i in sorted({i for w in prefix for i in index[w]}):
            if min(len(sets[i]), len(s)) < t * max(len(sets[i]), len(s)):
                continue  # sizes too far apart: the Jaccard similarity is at most their ratio
            similarity = len(sets[i] & s) / len(sets[i] | s)
            if similarity >= t:
                differs = ", with a different completion" if records[i].completion != r.completion else ""
                problems.append(
                    Problem(
                        r.line,
                        "warning",
                        f"near duplicate of line {records[i].line} (word Jaccard {similarity:.2f}{differs})",
                    )
                )
                break
        for w in prefix:
            index[w].append(j)
    return problems


def length_outliers(records: list[Record]) -> list[Problem]:
    if len(records) < OUTLIER_MIN_RECORDS:
        return []
    problems = []
    for field in ("prompt", "completion"):
        lengths = [max(len(r.body if field == "prompt" else r.completion.strip()), 1) for r in records]
        q1, _, q3 = statistics.quantiles([math.log2(n) for n in lengths], n=4, method="inclusive")
        spread = 3 * max(q3 - q1, 1.0)
        low, high = 2 ** (q1 - spread), 2 ** (q3 + spread)
        for r, n in zip(records, lengths):
            if not low * (1 - 1e-9) <= n <= high * (1 + 1e-9):  # 2 ** log2(n) is not always n exactly
                problems.append(
                    Problem(
                        r.line,
                        "warning",
                        f"{field} length {n} characters is an outlier "
                        f"(quartiles {2**q1:.0f} and {2**q3:.0f}, fences {low:.0f} and {high:.0f})",
                    )
                )
    return problems


def check_file(path, separator: str = SEPARATOR, warnings: bool = True) -> tuple[list[Record], list[Problem]]:
    lines = Path(path).read_bytes().split(b"\n")
    if lines and lines[-1] == b"":  # the newline that ends the last line
        lines.pop()
    return check_lines(lines, separator, warnings)


def read(path, separator: str = SEPARATOR) -> list[Record]:
    """The records of a file without errors; DataError naming the first errors otherwise."""
    records, problems = check_file(path, separator, warnings=False)
    errors = [p for p in problems if p.level == "error"]
    if errors:
        shown = "; ".join(map(str, errors[:3])) + ("; ..." if len(errors) > 3 else "")
        raise DataError(
            f"{path}: {len(errors)} error(s) ({shown}); see them all with: python -m bench.data check {path}"
            + (f" --separator '{json.dumps(separator)[1:-1]}'" if separator != SEPARATOR else "")
        )
    if not records:
        raise DataError(f"{path}: no records")
    return records


# --- augmentation -----------------------------------------------------------------------------

# groups of interchangeable words (a word maps to the others of its group), kept to words with
# one common sense: "close", "rich", "hard" or "fine" would swap in the wrong sense too often
SYNONYMS = {
    w: [o for o in group.split() if o != w]
    for group in """
    big large huge | small little tiny | fast quick rapid | slow sluggish unhurried | happy glad cheerful
    sad unhappy gloomy | good decent | great excellent wonderful | bad poor awful | begin start commence
    finish conclude | buy purchase | help assist | show display reveal | use utilize employ
    make create produce | obtain acquire | need require | want desire | think believe reckon
    tell inform | ask inquire | reply respond | notice observe | discover locate
    provide offer | keep retain | try attempt | often frequently | maybe perhaps possibly | very really extremely
    quickly rapidly swiftly | easy simple effortless | difficult challenging | smart clever intelligent
    new novel | movie film | car automobile vehicle | house home residence | child kid | problem issue trouble
    idea notion concept | road street | angry furious | afraid scared frightened
    funny amusing humorous | beautiful pretty lovely | wealthy affluent | strange weird
    important significant crucial | friend buddy pal | loud noisy | stop halt cease | choose select
    enough sufficient | nearby neighbouring | mistake error | question query | job occupation | talk speak
    """.replace("\n", " ").split("|")
    for w in group.split()
}
METHODS = ("synonym", "delete", "swap", "typo")


def _tokens(body: str) -> tuple[str, list[list[str]]]:
    """Leading whitespace and [word, whitespace after it] pairs, so that line breaks survive."""
    lead = body[: len(body) - len(body.lstrip())]
    return lead, [list(p) for p in re.findall(r"(\S+)(\s*)", body)]


def _join(lead: str, pairs: list[list[str]]) -> str:
    return lead + "".join(w + s for w, s in pairs)


def _core(word: str):
    """(leading punctuation, word, trailing punctuation) when the table has synonyms for the word."""
    m = re.fullmatch(r"(\W*)(\w+)(\W*)", word)
    return m.groups() if m and m.group(2).lower() in SYNONYMS else None


def _synonym(word: str, rng: random.Random) -> str:
    """The word with a synonym for its core, keeping its case and punctuation."""
    before, core, after = _core(word)
    new = rng.choice(SYNONYMS[core.lower()])
    new = new.upper() if core.isupper() and len(core) > 1 else new.capitalize() if core[0].isupper() else new
    return before + new + after


def _typo(word: str, rng: random.Random) -> str:
    letters = [i for i, c in enumerate(word) if c.isalpha()]
    if len(letters) < 2:
        return word
    i = rng.choice(letters[:-1])
    kind = rng.choice(("swap", "drop", "double"))
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i + 1 :] if kind == "drop" else word[:i] + word[i] + word[i:]


def augment_text(body: str, method: str, rng: random.Random, rate: float = 0.1) -> str:
    """One augmented copy of a prompt text: `method` applied to max(1, rate * words) words."""
    lead, pairs = _tokens(body)
    k = max(1, round(rate * len(pairs)))
    if method == "synonym":
        candidates = [i for i, (w, _) in enumerate(pairs) if _core(w)]
        for i in rng.sample(candidates, min(k, len(candidates))):
            pairs[i][0] = _synonym(pairs[i][0], rng)
    elif method == "delete" and len(pairs) > 1:
        for i in sorted(rng.sample(range(len(pairs)), min(k, len(pairs) - 1)), reverse=True):
            if i == len(pairs) - 1:  # the last word: the one before it takes over the ending
                pairs[i - 1][1] = pairs[i][1]
            del pairs[i]
    elif method == "swap" and len(pairs) > 1:
        for _ in range(k):
            i, j = rng.sample(range(len(pairs)), 2)
            pairs[i][0], pairs[j][0] = pairs[j][0], pairs[i][0]
    elif method == "typo":
        for i in rng.sample(range(len(pairs)), min(k, len(pairs))):
            pairs[i][0] = _typo(pairs[i][0], rng)
    return _join(lead, pairs)


def augment(
    records: list[Record], methods=METHODS, copies: int = 1, seed: int = 0, rate: float = 0.1
) -> list[tuple[Record, list[str]]]:
    """Each record with the prompts of its augmented copies; each record's copies are seeded by
    (seed, line), so they do not change when other lines do."""
    taken = {r.prompt for r in records}
    out = []
    for r in records:
        rng, prompts = random.Random(f"{seed}:{r.line}"), []
        for _ in range(copies):
            for _ in range(10):
                prompt = augment_text(r.body, rng.choice(methods), rng, rate) + r.separator
                if prompt not in taken and r.separator not in prompt[: -len(r.separator)]:
                    taken.add(prompt)
                    prompts.append(prompt)
                    break
        out.append((r, prompts))
    return out


# --- command line -----------------------------------------------------------------------------


def write_atomic(out: Path, write) -> None:
    """`write(f)` into a temporary file beside `out`, then a rename: a failed or killed write leaves no half file."""
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            write(f)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _augmented(f, lines, records, args, methods) -> int:
    written = 0
    for r, prompts in augment(records, methods, args.copies, args.seed, args.rate):
        f.write(lines[r.line - 1].decode("utf-8").rstrip("\r") + "\n")  # the original line, unchanged
        f.writelines(
            json.dumps({"prompt": prompt, "completion": r.completion}, ensure_ascii=False) + "\n" for prompt in prompts
        )
        written += len(prompts)
    return written


def _cleaned(f, lines, kept) -> None:
    for r, body, completion in kept:
        line = json.loads(lines[r.line - 1])  # the line's other keys stay as they were
        f.write(json.dumps({**line, "prompt": body + r.separator, "completion": completion}, ensure_ascii=False))
        f.write("\n")


def _review(path: str) -> int:
    from bench import review

    try:
        found = review.read(Path(path))
    except (review.ReviewError, OSError, UnicodeDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"{path}: {found.reviewed} rows reviewed ({found.unreviewed} not yet), {len(found.bad)} bad: error rate "
        f"{100 * found.rate:.1f}% (95% Clopper-Pearson interval {100 * found.low:.1f}% to {100 * found.high:.1f}%), "
        f"about {found.rate * found.population:.0f} of the file's {found.population} records "
        f"({found.low * found.population:.0f} to {found.high * found.population:.0f})"
    )
    for row in found.bad:
        print(f"  line {row['line']} ({row['stratum']}): bad" + (f": {row['note']}" if row["note"] else ""))
    return 0


def _arguments(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench.data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("check", "report every problem of a JSONL file with its line number"),
        ("augment", "write the file's lines, each followed by seeded augmented copies"),
        ("clean", "write the file without offensive records and with personal data redacted, and a report"),
        ("sample", "write a stratified random sample of the file to review by hand"),
    ):
        p = commands.add_parser(name, help=text, description=text)
        p.add_argument("file")
        p.add_argument(
            "--separator",
            default="\\n\\n###\\n\\n",
            help="ends every prompt; \\n and \\t understood (default %(default)s)",
        )
        if name != "check":
            p.add_argument("--out", required=True, help="the file to write (not the input file)")
    text = "the error rate of a reviewed sample (its verdict column filled in with ok or bad)"
    commands.add_parser("review", help=text, description=text).add_argument("file")
    augment_cmd = commands.choices["augment"]
    augment_cmd.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from " + ", ".join(METHODS))
    augment_cmd.add_argument("--copies", type=int, default=1, help="augmented copies per line (default 1)")
    augment_cmd.add_argument("--seed", type=int, default=0)
    augment_cmd.add_argument(
        "--rate", type=float, default=0.1, help="share of a prompt's words each copy changes (default 0.1)"
    )
    clean_cmd = commands.choices["clean"]
    clean_cmd.add_argument("--offensive", choices=("drop", "flag"), default="drop", help="(default drop)")
    clean_cmd.add_argument(
        "--threshold", type=float, default=cleaning.THRESHOLD, help="offensive from this probability (%(default)s)"
    )
    clean_cmd.add_argument("--find", default=",".join(cleaning.KINDS), help="personal data to redact (all)")
    clean_cmd.add_argument("--region", default="US", help="phone numbers without + are read as this country's")
    sample_cmd = commands.choices["sample"]
    sample_cmd.add_argument("--size", type=int, required=True, help="rows to review")
    sample_cmd.add_argument("--seed", type=int, default=0)
    return parser, parser.parse_args(argv)


def main(argv=None) -> int:
    parser, args = _arguments(argv)
    if not Path(args.file).is_file():
        parser.error(f"{args.file}: no such file")
    if args.command == "review":
        return _review(args.file)
    separator = unescape(args.separator)
    if not separator:
        parser.error("--separator must not be empty")
    records, problems = check_file(args.file, separator)
    errors = sum(p.level == "error" for p in problems)
    if args.command == "check" or errors:
        for p in problems:
            print(f"{args.file}:{p.line}: {p.level}: {p.message}")
        print(f"{args.file}: {len(records)} records, {errors} error(s), {len(problems) - errors} warning(s)")
        if args.command != "check":
            print(f"{args.command} needs a file without errors", file=sys.stderr)
        return 1 if errors else 0

    out = Path(args.out)
    if out.exists() and os.path.samefile(out, args.file):  # the file's identity: a hard link is the same file
        parser.error(f"--out {args.out} is the input file (or a link to it): {args.command} never rewrites its input")
    lines = Path(args.file).read_bytes().split(b"\n")
    try:
        if args.command == "augment":
            methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
            if not methods or set(methods) - set(METHODS):
                parser.error(f"--methods {args.methods!r}: expected a comma-separated list from " + ", ".join(METHODS))
            if args.copies < 0 or not 0 < args.rate <= 1:
                parser.error("--copies must be >= 0 and --rate in (0, 1]")
            written = []
            write_atomic(out, lambda f: written.append(_augmented(f, lines, records, args, methods)))
            print(
                f"{args.out}: {len(records)} lines and {written[0]} augmented copies "
                f"({len(records) * args.copies - written[0]} skipped)"
            )
        elif args.command == "clean":
            return _clean(parser, args, out, lines, records)
        else:
            from bench import review

            if args.size < 1:
                parser.error(f"--size {args.size}: expected 1 or more rows to review")
            rows = review.sample(records, strata(records), args.size, args.seed)
            write_atomic(out, lambda f: review.write(rows, f))
            print(
                f"{args.out}: {len(rows)} of {len(records)} records in {len({r['stratum'] for r in rows})} strata; "
                f"write ok or bad in its verdict column, then: python -m bench.data review {args.out}"
            )
    except OSError as e:
        print(f"error: could not write --out {args.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


def _clean(parser, args, out: Path, lines, records) -> int:
    kinds = tuple(k.strip() for k in args.find.split(",") if k.strip())
    if set(kinds) - set(cleaning.KINDS):
        parser.error(f"--find {args.find!r}: expected a comma-separated list from " + ", ".join(cleaning.KINDS))
    if not 0 < args.threshold <= 1:
        parser.error(f"--threshold {args.threshold}: expected a probability in (0, 1]")
    if args.region not in cleaning.regions():
        parser.error(f"--region {args.region!r}: expected a country code phonenumbers knows, such as US, GB or DE")
    kept, report = cleaning.clean(records, kinds, args.region, args.threshold, args.offensive == "drop")
    report_path = out.with_name(out.name + ".report.json")
    write_atomic(out, lambda f: _cleaned(f, lines, kept))
    write_atomic(report_path, lambda f: f.write(json.dumps({"input": args.file, **report}, indent=2) + "\n"))
    offensive, counts = report["offensive"]["records"], report["personal_data"]["counts"]
    print(
        f"{args.out}: {len(kept)} of {len(records)} records; {len(offensive)} offensive "
        f"({report['offensive']['action']}); redacted: "
        + (", ".join(f"{n} {k}" for k, n in counts.items() if n) or "nothing")
        + f"; report: {report_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
