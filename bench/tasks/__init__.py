"""The task registry. A task is one module in this package plus one YAML in conf/task.

A task's loader turns its config into a TaskData: labelled examples split into train,
validation and test, the label words, and the metrics the literature reports for it.
"""

from __future__ import annotations

import importlib
import pkgutil
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    text_pair: Optional[str] = None


@dataclass
class TaskData:
    labels: list[str]  # label words, indexed by Example.label
    metrics: tuple[str, ...]
    train: list[Example]
    validation: list[Example]
    test: list[Example]

    def describe(self) -> dict:
        def counts(split):
            c = defaultdict(int)
            for e in split:
                c[self.labels[e.label]] += 1
            return dict(sorted(c.items()))

        return {
            name: {"size": len(split), "labels": counts(split)}
            for name, split in (("train", self.train), ("validation", self.validation), ("test", self.test))
        }


TASKS: dict[str, Callable] = {}


def register(name: str):
    def add(loader):
        TASKS[name] = loader
        return loader

    return add


def split(examples: list[Example], cfg) -> tuple[list[Example], list[Example], list[Example]]:
    """Fixed held-out splits by `task.split_seed`; the run seed never moves an example between them."""
    if cfg.test_size + cfg.val_size >= len(examples):
        from bench.config import ConfigError

        raise ConfigError("task.test_size", cfg.test_size, f"test_size + val_size below the {len(examples)} examples")
    order = list(examples)
    random.Random(cfg.split_seed).shuffle(order)
    test, val, train = order[: cfg.test_size], order[cfg.test_size : cfg.test_size + cfg.val_size], order[cfg.test_size + cfg.val_size :]
    return subsample(train, cfg.train_size, cfg.split_seed), val, test


def subsample(examples: list[Example], n: Optional[int], seed: int) -> list[Example]:
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


def load(cfg) -> TaskData:
    return TASKS[cfg.name](cfg)


for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
