"""The task registry. A task is one module in this package plus one YAML in conf/task.

A task's loader turns its config into a TaskData: examples split into train, validation and
test, the label words, and the metrics the literature reports for it. Loaders are told the
model's form: `encoder` (a classification head reads `text` and `text_pair`) or `text_to_text`
(decoders and T5 read `prompt` and produce a label word or `target`). Multiple-choice and span
tasks shape their examples differently for the two forms; each task module documents both.

Every `python -m bench` imports all these modules (bench/compose.py registers their schemas and
checks their configs before a run is skipped or started), so a loader imports what reads its data
(pandas, datasets) when it loads, not at module level.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import pkgutil
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass

from omegaconf import MISSING

from bench.errors import ConfigError

FORMS = ("encoder", "text_to_text")
KINDS = ("classify", "generate")


@dataclass(frozen=True)
class Example:
    text: str  # encoder input (first segment); also what deduplication and the splits look at
    label: int = -1  # index into the example's choices (classify tasks); -1 for generate tasks
    text_pair: str | None = None  # encoder input, second segment (pair tasks)
    prompt: str | None = None  # text-to-text input; None: `text` itself
    choices: tuple[str, ...] | None = None  # this example's label words (COPA, ReCoRD); None: TaskData.labels
    target: str | None = None  # generate tasks: the completion to produce
    group: str | None = None  # examples scored together (a MultiRC question, a ReCoRD query)
    answers: tuple[str, ...] = ()  # every gold answer where there are several (ReCoRD)
    category: str | None = None  # metrics are also reported per category (an arithmetic operation)


def continuation(prompt: str, completion: str) -> str:
    """The completion as it follows the prompt in one text: after a space, unless the prompt ends in whitespace."""
    return completion if prompt[-1:].isspace() else " " + completion


@dataclass
class TaskData:
    labels: list[str]  # label words shared by every example, indexed by Example.label; [] for generate tasks
    metrics: tuple[str, ...]  # names in bench.metrics.METRICS
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    kind: str = "classify"  # classify: pick one of the choices; generate: produce `target` (text-to-text only)
    instruction: str = ""  # what few-shot prompting (method=icl) puts before its examples
    stop: str | None = None  # generate tasks: text that ends a completion besides end-of-sequence
    # the test split as the task gave it, where a method rewrote its prompts (few-shot prompting):
    # runs are paired example by example on it, so prompting pairs with the methods that train
    given_test: list[Example] | None = None

    def choices(self, example: Example) -> tuple[str, ...]:
        return example.choices if example.choices is not None else tuple(self.labels)

    def completion(self, example: Example) -> str:
        """What a text-to-text model should produce for the example."""
        return example.target if self.kind == "generate" else self.choices(example)[example.label]

    def describe(self) -> dict:
        def counts(split):
            c = defaultdict(int)
            for e in split:
                c[self.labels[e.label] if self.labels else e.category or "all"] += 1
            return dict(sorted(c.items()))

        return {
            name: {"size": len(split), "labels": counts(split)}
            for name, split in (("train", self.train), ("validation", self.validation), ("test", self.test))
        }


@dataclass
class TaskSchema:
    """Keys every task has; a task module subclasses this for its own keys (see `register`)."""

    name: str = MISSING
    version: str = MISSING  # bumped whenever data, split or prompt change; recorded per run
    max_length: int = 128  # input tokens (prompt tokens for text-to-text)
    max_new_tokens: int = 16  # text-to-text completion tokens: training truncates to it, generation stops at it
    train_size: int | None = None  # None: every training example left after the held-out splits
    val_size: int = 1000
    test_size: int = 2000
    split_seed: int = 0  # the split is fixed by this seed, independent of the run seed


@dataclass(frozen=True)
class Task:
    name: str
    load: Callable  # (cfg, form) -> TaskData
    schema: type = TaskSchema
    # the forms the task supports; generate tasks have no encoder form
    forms: tuple[str, ...] = FORMS
    # (cfg) -> None; raises ConfigError for a bad task value before anything loads
    check: Callable | None = None
    # (cfg) -> {key: digest} of the user's files the task reads: part of the run id, so that a changed
    # file is a new experiment (bench.compose.to_container)
    content: Callable | None = None
    # () -> what the task's code makes of placeholder inputs (prompts, label words, instruction): its
    # digest is part of the run id, so that an edited template is a new experiment even if `version` is not bumped
    template: Callable | None = None

    def template_sha256(self) -> str | None:
        if self.template is None:
            return None
        return hashlib.sha256(json.dumps(self.template(), sort_keys=True, default=asdict).encode()).hexdigest()[:16]


TASKS: dict[str, Task] = {}


def register(
    name: str,
    schema: type = TaskSchema,
    forms: tuple[str, ...] = FORMS,
    check: Callable | None = None,
    content: Callable | None = None,
    template: Callable | None = None,
):
    """Register a loader `(cfg, form) -> TaskData`; conf/task/<name>.yaml lists `<name>_schema` first
    in its defaults when the task has its own schema."""

    def add(loader):
        if name in TASKS:
            first = TASKS[name].load
            raise ValueError(
                f"task name {name!r} is taken: {first.__module__}.{first.__qualname__} "
                f"and {loader.__module__}.{loader.__qualname__} both register it"
            )
        TASKS[name] = Task(name, loader, schema, forms, check, content, template)
        return loader

    return add


def split(examples: list[Example], cfg) -> tuple[list[Example], list[Example], list[Example]]:
    """Fixed held-out splits by `task.split_seed`; the run seed never moves an example between them."""
    if cfg.test_size + cfg.val_size >= len(examples):
        key = "val_size" if cfg.val_size >= cfg.test_size else "test_size"  # the larger of the two is the one to cut
        raise ConfigError(f"task.{key}", cfg[key], f"test_size + val_size below the {len(examples)} examples")
    order = list(examples)
    random.Random(cfg.split_seed).shuffle(order)
    test, val, train = (
        order[: cfg.test_size],
        order[cfg.test_size : cfg.test_size + cfg.val_size],
        order[cfg.test_size + cfg.val_size :],
    )
    return subsample(train, cfg.train_size, cfg.split_seed), val, test


def corpus(examples: list[Example], labels: list[str], instruction: str, cfg) -> TaskData:
    """A labelled corpus of single texts (the tweets, the movie reviews), split by `split`, scored by accuracy
    and macro-F1."""
    train, validation, test = split(examples, cfg)
    return TaskData(
        labels=labels,
        metrics=("accuracy", "macro_f1"),
        train=train,
        validation=validation,
        test=test,
        instruction=instruction,
    )


def subsample(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    """n examples, stratified by label (each label keeps its share, rounded), in a seeded order."""
    if n is None or n >= len(examples):
        return examples
    by_label = defaultdict(list)
    for e in examples:
        by_label[e.label].append(e)
    rng = random.Random(seed)
    quota = {y: len(xs) * n / len(examples) for y, xs in by_label.items()}
    take = {y: int(q) for y, q in quota.items()}
    # hand the examples lost to rounding down to the largest remainders
    for y in sorted(quota, key=lambda y: quota[y] - take[y], reverse=True)[: n - sum(take.values())]:
        take[y] += 1
    chosen = [e for y, xs in sorted(by_label.items()) for e in rng.sample(xs, take[y])]
    rng.shuffle(chosen)
    return chosen


def load(cfg, form: str = "encoder") -> TaskData:
    return TASKS[cfg.name].load(cfg, form)


for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
