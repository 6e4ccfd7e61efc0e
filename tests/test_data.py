import json
import os
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bench.data import (
    SEPARATOR,
    SYNONYMS,
    DataError,
    Record,
    augment,
    augment_text,
    check_file,
    check_lines,
    duplicates,
    length_outliers,
    main,
    near_duplicates,
    read,
)
from bench.errors import ConfigError
from bench.tasks import load
from bench.validate import validate

FIXTURES = Path(__file__).parent / "fixtures" / "jsonl"
CLEAN, DEFECTS, CAPITALS, CLEAN_TEST = (
    str(FIXTURES / f) for f in ("clean.jsonl", "defects.jsonl", "capitals.jsonl", "clean_test.jsonl")
)

# every defect of defects.jsonl: (line, level, the start of the message)
DEFECTS_REPORT = [
    (3, "error", "not valid JSON"),
    (5, "error", 'no "completion"'),
    (6, "error", 'empty "prompt"'),  # the separator alone
    (7, "error", 'empty "completion"'),  # whitespace only
    (8, "error", "the prompt does not end with the separator"),
    (9, "error", "the separator '\\n\\n###\\n\\n' inside the prompt text"),
    (10, "error", "the separator '\\n\\n###\\n\\n' inside the completion"),
    (12, "error", "duplicate of line 11: the same prompt"),
    (13, "warning", "near duplicate of line 4 (word Jaccard 0.88)"),  # 7 shared words of 8
    (14, "warning", "prompt length 2 characters is an outlier"),
    (15, "warning", "prompt length 613 characters is an outlier"),
    (16, "warning", "blank line"),
    (17, "error", "not a JSON object but an array"),
    (18, "error", '"completion" is a number, not a string'),
    (23, "error", "duplicate of line 1: the same prompt with a different completion"),
]


def record(line, body, completion=" yes"):
    return Record(line, body + SEPARATOR, completion, SEPARATOR)


def test_check_reports_each_defect_with_its_line_number():
    records, problems = check_file(DEFECTS)
    assert len(problems) == len(DEFECTS_REPORT)
    for p, (line, level, start) in zip(problems, DEFECTS_REPORT):
        assert (p.line, p.level) == (line, level) and p.message.startswith(start), p
    # valid lines stay records, and so do lines whose only fault is where the separator sits
    assert [r.line for r in records] == [1, 2, 4, 8, 9, 10, 11, 12, 13, 14, 15, 19, 20, 21, 22, 23]


@pytest.mark.parametrize("path", [CLEAN, CAPITALS, CLEAN_TEST])
def test_clean_files_have_no_problems(path):
    assert check_file(path)[1] == []


def test_undecodable_lines_and_other_separators():
    records, problems = check_lines(
        [b'{"prompt": "caf\xe9 ->", "completion": " ok"}', b'{"prompt": "tea ->", "completion": " ok"}'], " ->"
    )
    assert [(p.line, p.level, p.message) for p in problems] == [(1, "error", "not valid UTF-8 (byte 16)")]
    assert records[0].body == "tea"


def test_near_duplicates_by_word_jaccard():
    records = [
        record(1, "the quick brown fox jumps"),
        record(2, "The quick brown fox jumps, again!"),  # 5/6 = 0.83
        record(3, "the quick brown cat sleeps"),  # 3/7 with line 1
        record(4, "THE QUICK BROWN FOX JUMPS"),
        record(5, "the quick brown fox jumps", " no"),
    ]
    assert [(p.line, p.message) for p in near_duplicates(records)] == [
        (2, "near duplicate of line 1 (word Jaccard 0.83)"),
        (4, "near duplicate of line 1 (word Jaccard 1.00)"),
    ]
    assert [(p.line, p.level, p.message) for p in duplicates(records)] == [
        (5, "error", "duplicate of line 1: the same prompt with a different completion")
    ]


def test_length_outlier_fences():
    # all 40 characters but one: IQR 0, floored at 1 (log2), so the fences are 40 / 8 = 5 and 40 * 8 = 320
    def flagged(n):
        records = [record(i, "x" * 40) for i in range(1, 9)] + [record(9, "y" * n)]
        return [p.line for p in length_outliers(records)]

    assert flagged(320) == [] and flagged(321) == [9]
    assert flagged(5) == [] and flagged(4) == [9]
    assert length_outliers([record(i, "x" * (1 + 100 * i)) for i in range(7)]) == []  # too few records to judge


def test_check_command_prints_every_problem_and_fails_on_errors(capsys):
    assert main(["check", DEFECTS]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [tuple(re.match(r".*defects\.jsonl:(\d+): (\w+): ", line).groups()) for line in out[:-1]] == [
        (str(line), level) for line, level, _ in DEFECTS_REPORT
    ]
    assert out[-1].endswith("16 records, 11 error(s), 4 warning(s)")
    assert main(["check", CLEAN]) == 0
    assert capsys.readouterr().out.strip().endswith("30 records, 0 error(s), 0 warning(s)")
    # another separator, spelt with escapes on the command line: every clean prompt lacks it at the end
    assert main(["check", CLEAN, "--separator", "\\n->"]) == 1


def test_augment_text_methods():
    body = "The movie was very good\nand our car is fast."  # ten distinct words, five in the synonym table
    words = body.split()
    rng = random.Random(0)
    swapped = augment_text(body, "swap", rng, rate=0.1)  # one swap
    assert Counter(swapped.split()) == Counter(words) and swapped != body and "\n" in swapped
    deleted = augment_text(body, "delete", rng, rate=0.3)  # three words
    assert len(deleted.split()) == 7 and Counter(deleted.split()) <= Counter(words)
    synonym = augment_text(body, "synonym", rng, rate=0.3)
    changed = [(a.strip("."), b.strip(".")) for a, b in zip(words, synonym.split()) if a != b]
    assert len(changed) == 3 and all(
        b.lower() in SYNONYMS[a.lower()] and b[0].isupper() == a[0].isupper() for a, b in changed
    )
    typo = augment_text(body, "typo", rng, rate=0.1)
    ((a, b),) = [(a, b) for a, b in zip(words, typo.split()) if a != b]
    edits = (
        {a[:i] + a[i + 1] + a[i] + a[i + 2 :] for i in range(len(a) - 1)}
        | {a[:i] + a[i + 1 :] for i in range(len(a))}
        | {a[:i] + a[i] + a[i:] for i in range(len(a))}
    )
    assert b in edits


def test_augment_is_seeded_and_keeps_separator_and_completion():
    records = check_file(CLEAN)[0]
    copies = augment(records, copies=2, seed=3)
    assert copies == augment(records, copies=2, seed=3) and copies != augment(records, copies=2, seed=4)
    for r, prompts in copies:
        for p in prompts:
            assert p.endswith(SEPARATOR) and p.count(SEPARATOR) == 1 and p != r.prompt


def test_augment_command_writes_every_line_then_its_copies(tmp_path, capsys):
    out = tmp_path / "augmented.jsonl"
    assert main(["augment", CLEAN, "--out", str(out), "--copies", "2", "--seed", "1", "--methods", "swap,typo"]) == 0
    original = Path(CLEAN).read_text().splitlines()
    written = out.read_text().splitlines()
    assert len(written) == 3 * len(original) and written[::3] == original  # nothing dropped, nothing changed
    for i in range(0, len(written), 3):
        completion = json.loads(written[i])["completion"]
        assert [json.loads(line)["completion"] for line in written[i + 1 : i + 3]] == [completion, completion]
    records, problems = check_file(out)
    assert len(records) == 90 and not [p for p in problems if p.level == "error"]
    # a file with errors is not augmented
    assert main(["augment", DEFECTS, "--out", str(tmp_path / "no.jsonl")]) == 1
    assert not (tmp_path / "no.jsonl").exists()


# --- the jsonl task ---------------------------------------------------------------------------


def jsonl(make_config, path, *overrides, model="model=smollm2-135m"):
    return make_config("task=jsonl", f"task.path={path}", model, *overrides)


def test_labels_are_detected_and_both_forms_load(make_config):
    cfg = jsonl(
        make_config, CLEAN, "task.val_size=3", "task.test_size=6", "task.train_size=null", model="model=minilm-l6"
    )
    assert validate(cfg) is None
    data = load(cfg.task, "encoder")
    assert data.kind == "classify" and data.labels == ["negative", "neutral", "positive"]
    assert data.metrics == ("accuracy", "macro_f1")
    assert (len(data.train), len(data.validation), len(data.test)) == (21, 3, 6)
    assert all(SEPARATOR not in e.text and e.text == e.text.strip() for e in data.train)
    t2t = load(cfg.task, "text_to_text")
    e = t2t.test[0]
    assert e.prompt.endswith(SEPARATOR) and e.prompt.removesuffix(SEPARATOR).strip() == e.text
    assert t2t.completion(e) in data.labels
    # the held-out splits are fixed by split_seed, whatever the training-set size
    small = load(OmegaConf.merge(cfg.task, {"train_size": 9}), "encoder")
    assert small.test == data.test and small.validation == data.validation
    assert Counter(e.label for e in small.train) == {0: 3, 1: 3, 2: 3}  # 8, 6, 7 left: stratified, rounded
    assert load(OmegaConf.merge(cfg.task, {"split_seed": 1}), "encoder").test != data.test


def test_separate_test_file_is_used_whole(make_config):
    cfg = jsonl(make_config, CLEAN, f"task.test_path={CLEAN_TEST}", "task.val_size=5").task
    data = load(cfg, "text_to_text")
    assert [e.text for e in data.test] == [r.body for r in check_file(CLEAN_TEST)[0]]
    assert [data.labels[e.label] for e in data.test] == ["positive", "negative", "neutral", "positive"]
    assert (len(data.train), len(data.validation)) == (25, 5)


def test_free_text_completions_make_a_generation_task(make_config):
    cfg = jsonl(make_config, CAPITALS, "task.val_size=2", "task.test_size=2").task
    data = load(cfg, "text_to_text")
    assert data.kind == "generate" and data.labels == []
    assert data.metrics == ("exact_match", "rouge1", "rouge2", "rougeL")
    assert {e.target for e in data.train + data.validation + data.test} >= {"Paris", "Tokyo"}
    with pytest.raises(ConfigError) as error:
        load(cfg, "encoder")
    assert error.value.key == "task.kind"
    # kind=classify turns each distinct completion into a label
    assert len(load(OmegaConf.merge(cfg, {"kind": "classify"}), "text_to_text").labels) == 12


def test_escaped_separator_override(make_config):
    cfg = jsonl(make_config, CLEAN, "task.separator='\\n\\n###\\n\\n'", "task.val_size=3", "task.test_size=6").task
    assert load(cfg, "text_to_text").labels == ["negative", "neutral", "positive"]


def test_defective_files_do_not_load(make_config, tmp_path):
    with pytest.raises(
        DataError, match=r"11 error\(s\) \(line 3: error: not valid JSON.*python -m bench.data check .*defects.jsonl"
    ):
        load(jsonl(make_config, DEFECTS).task, "text_to_text")
    # the same prompt in the training and the test file
    with pytest.raises(DataError, match="clean.jsonl: line 1: the same prompt as line 1 of .*clean.jsonl"):
        load(jsonl(make_config, CLEAN, f"task.test_path={CLEAN}").task, "text_to_text")
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"prompt": "The chef is new." + SEPARATOR, "completion": " mixed"}) + "\n")
    with pytest.raises(DataError, match="line 1: completion 'mixed' is none of the labels"):
        load(jsonl(make_config, CLEAN, f"task.test_path={unknown}").task, "text_to_text")


@pytest.mark.parametrize(
    "override,key",
    [
        ("task.path=null", "task.path"),
        ("task.path=no/such/file.jsonl", "task.path"),
        ("task.test_path=no/such/file.jsonl", "task.test_path"),
        ("task.kind=regression", "task.kind"),
        ("task.separator=''", "task.separator"),
        ("task.max_new_tokens=0", "task.max_new_tokens"),
    ],
)
def test_bad_values_name_their_key(make_config, override, key):
    with pytest.raises(ConfigError) as error:
        validate(jsonl(make_config, CLEAN, override))
    assert error.value.key == key


def test_a_file_with_errors_is_refused_before_anything_loads(make_config, tmp_path):
    with pytest.raises(ConfigError) as error:
        validate(jsonl(make_config, DEFECTS))
    assert error.value.key == "task.path" and "11 error(s) (line 3: error: not valid JSON" in str(error.value)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError) as error:
        validate(jsonl(make_config, CLEAN, f"task.test_path={empty}"))
    assert error.value.key == "task.test_path" and "no record in the file" in str(error.value)


def test_held_out_sizes_beyond_the_file_are_a_config_error(make_config):
    with pytest.raises(ConfigError) as error:
        load(jsonl(make_config, CLEAN, "task.val_size=10", "task.test_size=20").task, "encoder")
    assert error.value.key == "task.test_size"


def test_an_empty_file_fails_the_check(tmp_path, capsys):
    for content in ("", "\n\n"):
        empty = tmp_path / "empty.jsonl"
        empty.write_text(content)
        assert main(["check", str(empty)]) == 1
        assert "error: no record in the file" in capsys.readouterr().out


@pytest.mark.slow  # full runs of the default model
def test_a_changed_data_file_is_a_new_run_and_a_fixed_one_runs_again(make_config, tmp_path):
    from bench.compose import to_container
    from bench.launch import launch
    from bench.record import run_id

    data = tmp_path / "mine.jsonl"
    data.write_text(Path(CLEAN).read_text().splitlines()[0] + "\n")  # one record: too few to split
    cfg = jsonl(
        make_config, data, "task.val_size=3", "task.test_size=6", "task.train_size=null", model="model=minilm-l6"
    )
    with pytest.raises(ConfigError, match="mine.jsonl has 1 distinct completions"):  # found as the data is read
        launch(cfg)
    assert not list((tmp_path / "results").rglob("*.json"))  # a configuration error leaves no record
    broken = to_container(cfg)
    assert broken["task"]["content_sha256"]["path"]
    data.write_text(Path(CLEAN).read_text())  # the user fixes the file: the same command runs
    fixed = jsonl(
        make_config, data, "task.val_size=3", "task.test_size=6", "task.train_size=null", model="model=minilm-l6"
    )
    assert run_id(to_container(fixed)) != run_id(broken)
    assert launch(fixed).status == "ok"


@pytest.mark.parametrize("line, kind", [(b'"just a string"', "a string"), (b"7", "a number"), (b"null", "null")])
def test_a_line_that_is_not_an_object_is_named_by_its_line(tmp_path, line, kind):
    good = b'{"prompt": "tea\\n\\n###\\n\\n", "completion": " ok"}'
    _, problems = check_lines([good, line], SEPARATOR)
    assert [(p.line, p.level, p.message) for p in problems] == [(2, "error", f"not a JSON object but {kind}")]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(good + b"\n" + line + b"\n")
    with pytest.raises(DataError, match=f"bad.jsonl: 1 error\\(s\\) \\(line 2: error: not a JSON object but {kind}\\)"):
        read(path)


def test_augment_never_rewrites_its_input_even_through_a_hard_link(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_bytes(Path(CLEAN).read_bytes())
    link = tmp_path / "link.jsonl"
    os.link(source, link)
    with pytest.raises(SystemExit):
        main(["augment", str(source), "--out", str(link)])
    assert "is the input file (or a link to it)" in capsys.readouterr().err
    assert source.read_bytes() == Path(CLEAN).read_bytes()


@pytest.mark.parametrize("where", ["missing/out.jsonl", "."])
def test_augment_into_a_folder_it_cannot_write_is_one_line_and_leaves_nothing(tmp_path, capsys, where):
    out = tmp_path / where
    assert main(["augment", CLEAN, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: could not write --out {out}") and "Traceback" not in err
    assert not list(tmp_path.rglob(".*.tmp"))


def test_a_file_of_one_label_is_refused_before_loading_with_its_counts(make_config, tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": f"t{i}\n\n###\n\n", "completion": " positive"}) + "\n" for i in range(40))
    )
    with pytest.raises(ConfigError, match=r"two labels or more to classify; its completions are \{'positive': 40\}"):
        validate(jsonl(make_config, path, model="model=minilm-l6"))


def test_a_repeated_key_is_a_warning_and_cr_alone_gets_a_hint():
    line = b'{"prompt": "tea\\n\\n###\\n\\n", "completion": " ok", "completion": " no"}'
    records, problems = check_lines([line], SEPARATOR)
    assert [(p.level, p.message) for p in problems] == [("warning", '"completion" given twice: the last value is kept')]
    assert records[0].completion == " no"  # as json.loads keeps it
    cr = b'{"prompt": "a\\n\\n###\\n\\n", "completion": " x"}\r{"prompt": "b\\n\\n###\\n\\n", "completion": " y"}'
    _, problems = check_lines([cr], SEPARATOR)
    assert problems[0].level == "error" and "the lines end in CR alone: convert them to LF" in problems[0].message


def test_a_held_out_size_too_large_is_named_by_its_own_key(make_config):
    with pytest.raises(ConfigError, match=r"^task.val_size=100000 is not valid: expected test_size \+ val_size below"):
        load(make_config("task.val_size=100000").task)
