"""The user's own data: JSONL files of {"prompt": ..., "completion": ...} records whose prompts
end with a fixed separator (bench/data.py describes the format and its checks; a file with
errors does not load, and `python -m bench.data check FILE` lists them).

task.path is the training file. The held-out splits come from task.validation_path and
task.test_path, used whole, or, where one is not given, are carved out of the training file
by task.split_seed (task.val_size and task.test_size records). task.train_size subsamples what
is left, stratified by label for classification.

kind: classify when the completions are labels, generate when they are free text; auto picks
classify when the training file has at most 20 distinct completions and each occurs at least
twice. Labels are the distinct completions, whitespace-stripped, sorted.

Forms: encoders (classify only) read the prompt text without its separator. Text-to-text
models read the prompt with its separator, as the file has it and as a fine-tuning service
would train on it: the separator is the cue that the completion starts. The completion is the
label word or target, whitespace-stripped (the decoder batching puts a space between prompt
and completion unless the prompt ends in whitespace, as the default separator does).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.data import SEPARATOR, DataError, labels_like, read, unescape
from bench.errors import ConfigError
from bench.tasks import Example, TaskData, TaskSchema, register, subsample

KINDS = ("auto", "classify", "generate")


@dataclass
class JsonlSchema(TaskSchema):
    path: str | None = None  # the training file
    validation_path: str | None = None  # None: carved out of the training file
    test_path: str | None = None  # None: carved out of the training file
    separator: str = SEPARATOR  # ends every prompt; \n and \t in an override are understood
    kind: str = "auto"  # auto | classify | generate


def check(cfg) -> None:
    if not cfg.path:
        raise ConfigError("task.path", cfg.path, "a JSONL file of {prompt, completion} records (task.path=FILE)")
    for key in ("path", "validation_path", "test_path"):
        if cfg[key] and not Path(cfg[key]).expanduser().is_file():
            raise ConfigError(f"task.{key}", cfg[key], "an existing JSONL file")
    if cfg.kind not in KINDS:
        raise ConfigError("task.kind", cfg.kind, "one of " + ", ".join(KINDS))
    if not unescape(cfg.separator):
        raise ConfigError("task.separator", cfg.separator, "a non-empty string, such as '\\n\\n###\\n\\n'")
    if cfg.max_new_tokens < 1:
        raise ConfigError("task.max_new_tokens", cfg.max_new_tokens, "a number of tokens >= 1")
    for key in ("path", "validation_path", "test_path"):  # the records, before any model loads
        if cfg[key]:
            try:
                records = read(Path(cfg[key]).expanduser(), unescape(cfg.separator))
            except DataError as e:
                raise ConfigError(
                    f"task.{key}", cfg[key], f"a JSONL file of {{prompt, completion}} records without errors: {e}"
                ) from None
            if key == "path":
                counts = Counter(r.completion.strip() for r in records)
                if _kind(cfg, counts) == "classify" and len(counts) < 2:  # one class would score perfectly
                    raise ConfigError(
                        "task.path",
                        cfg.path,
                        f"a training file of two labels or more to classify; its completions "
                        f"are {dict(counts)} (task.kind=generate to learn to produce the text instead)",
                    )


def _kind(cfg, counts: Counter) -> str:
    """classify or generate: task.kind, or under auto, classify where few distinct completions repeat."""
    if cfg.kind != "auto":
        return cfg.kind
    return "classify" if labels_like(counts) else "generate"


def content(cfg) -> dict:
    """The sha256 of each file the task reads (a file not there yet has none)."""
    files = {key: Path(cfg[key]).expanduser() for key in ("path", "validation_path", "test_path") if cfg.get(key)}
    return {key: hashlib.sha256(f.read_bytes()).hexdigest()[:16] for key, f in files.items() if f.is_file()}


@register("jsonl", schema=JsonlSchema, check=check, content=content)
def load(cfg, form) -> TaskData:
    separator = unescape(cfg.separator)  # validation (check) has checked the values and the files
    files = {"train": cfg.path, "validation": cfg.validation_path, "test": cfg.test_path}
    records = {s: read(Path(p).expanduser(), separator) if p else None for s, p in files.items()}
    _no_shared_prompts(records, files)

    counts = Counter(r.completion.strip() for r in records["train"])
    kind = _kind(cfg, counts)
    if kind == "generate" and form == "encoder":
        raise ConfigError(
            "task.kind",
            cfg.kind,
            f"classify, for an encoder model: {cfg.path} has {len(counts)} "
            "distinct completions, so it is a generation task, which needs a text-to-text model",
        )
    labels = sorted(counts) if kind == "classify" else []

    def example(r, split: str) -> Example:
        completion = r.completion.strip()
        if kind == "generate":
            return Example(text=r.body.strip(), prompt=r.prompt, target=completion)
        if completion not in counts:
            raise DataError(
                f"{files[split]}: line {r.line}: completion {completion!r} is none of the labels of "
                f"the training file {cfg.path}: {labels}"
            )
        return Example(text=r.body.strip(), label=labels.index(completion), prompt=r.prompt)

    splits = {s: [example(r, s) for r in rs] if rs else None for s, rs in records.items()}
    order = splits.pop("train")
    random.Random(cfg.split_seed).shuffle(order)
    for s, size in (("test", cfg.test_size), ("validation", cfg.val_size)):  # the order `split` carves in
        if splits[s] is None:
            splits[s], order = order[:size], order[size:]
    if not order:
        raise ConfigError(
            "task.test_size",
            cfg.test_size,
            f"test_size + val_size below the {len(records['train'])} records of {cfg.path}",
        )
    return TaskData(
        labels=labels,
        metrics=("accuracy", "macro_f1") if kind == "classify" else ("exact_match", "rouge1", "rouge2", "rougeL"),
        train=subsample(order, cfg.train_size, cfg.split_seed),
        kind=kind,
        **splits,
    )


def _no_shared_prompts(records: dict, files: dict) -> None:
    """A prompt in two files would be trained on and tested on."""
    seen = {}
    for split, rs in records.items():
        for r in rs or ():
            if r.prompt in seen and seen[r.prompt][0] != split:
                first, line = seen[r.prompt]
                raise DataError(
                    f"{files[split]}: line {r.line}: the same prompt as line {line} of {files[first]}; "
                    "a prompt may sit in one file only"
                )
            seen.setdefault(r.prompt, (split, r.line))
