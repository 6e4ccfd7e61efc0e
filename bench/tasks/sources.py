"""Corpora that come from a hub when online and from a local folder offline (SuperGLUE, SST-2, IMDB).

One key names the folder, `task.data_dir`, in the corpus's official file layout; when it is null the
loader reads `task.hub_id` through the `datasets` package (an optional dependency). `check_source`
runs at validation time, before any model loads, and fails with a ConfigError naming `task.data_dir`
when neither source can work. `held_out` makes the splits of a corpus whose labelled test split is
its own file (SuperGLUE's val.jsonl, GLUE's dev.tsv, IMDB's test/).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from omegaconf import MISSING

from bench.errors import ConfigError
from bench.tasks import Example, TaskSchema, subsample


@dataclass
class DataDirSchema(TaskSchema):
    data_dir: str | None = None  # a folder in the corpus's official layout; null: read hub_id
    hub_id: str = MISSING  # the hub dataset read when data_dir is null
    test_size: int | None = None  # null: the whole official test split


def _offline() -> bool:
    return any(
        os.environ.get(k, "").lower() in ("1", "true", "yes", "on") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _hub_cached(hub_id: str) -> bool:
    from huggingface_hub import constants

    return (Path(constants.HF_HUB_CACHE) / f"datasets--{hub_id.replace('/', '--')}").is_dir()


def check_source(cfg, layout: list[str], fields: dict[str, tuple[str, ...]] | None = None) -> None:
    """Raise a ConfigError naming task.data_dir unless the folder holds `layout` (paths relative to it)
    and each file in `fields` starts with a record that has those fields (a TSV's header, a JSONL's
    first object), or, with the folder unset, the hub can be read."""
    want = f"a folder holding {', '.join(layout)}"
    if cfg.data_dir:
        folder = Path(cfg.data_dir).expanduser()
        missing = [p for p in layout if not (folder / p).exists()]
        if missing:
            raise ConfigError("task.data_dir", cfg.data_dir, f"{want} (missing: {', '.join(missing)})")
        for name, expected in (fields or {}).items():
            found = _first_fields(folder / name)
            if not set(expected) <= set(found):
                raise ConfigError(
                    "task.data_dir",
                    cfg.data_dir,
                    f"{want} in the official format: {folder / name} starts "
                    f"with fields {', '.join(found) or 'none'}; expected {', '.join(expected)}",
                )
    elif find_spec("datasets") is None:
        raise ConfigError(
            "task.data_dir", None, f"{want}; the hub copy ({cfg.hub_id}) needs the `datasets` package, not installed"
        )
    elif _offline() and not _hub_cached(cfg.hub_id):
        raise ConfigError(
            "task.data_dir", None, f"{want}; the hub is offline (HF_HUB_OFFLINE) and {cfg.hub_id} is not in its cache"
        )


def _first_fields(path: Path) -> list[str]:
    """The column names of a TSV's header, or the keys of a JSONL file's first object."""
    with open(path, encoding="utf-8", errors="replace") as f:
        first = next((line for line in f if line.strip()), "")
    if path.suffix == ".tsv":
        return first.rstrip("\r\n").split("\t")
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        return []
    return list(row) if isinstance(row, dict) else []


def hub_rows(hub_id: str, config: str | None, split: str) -> list[dict]:
    import datasets

    return list(datasets.load_dataset(hub_id, config, split=split))


def held_out(train: list[Example], test: list[Example], cfg) -> tuple[list[Example], list[Example], list[Example]]:
    """Train, validation and test for a corpus with its own labelled test split, fixed by task.split_seed.

    A unit is one example, or every example sharing a `group` (a COPA, MultiRC or ReCoRD question):
    units never straddle two splits and the sizes count units. Validation is carved from `train`;
    `test` is cut to task.test_size units when that is set. Ungrouped training examples that repeat an
    earlier one or a test example (same text and text_pair) are dropped first. train_size subsamples
    training units: stratified by label when ungrouped, a seeded sample of groups otherwise.
    """
    grouped = any(e.group is not None for e in train)
    if not grouped:
        seen, unique = {(e.text, e.text_pair) for e in test}, []
        for e in train:
            if (e.text, e.text_pair) not in seen:
                seen.add((e.text, e.text_pair))
                unique.append(e)
        train = unique
    units, test_units = _units(train), _units(test)
    if cfg.val_size >= len(units):
        raise ConfigError("task.val_size", cfg.val_size, f"fewer than the {len(units)} training units")
    random.Random(cfg.split_seed).shuffle(units)
    validation, rest = units[: cfg.val_size], units[cfg.val_size :]
    if cfg.test_size is not None and cfg.test_size < len(test_units):
        test_units = random.Random(cfg.split_seed).sample(test_units, cfg.test_size)
    if cfg.train_size is not None and cfg.train_size < len(rest):
        if grouped:
            rest = random.Random(cfg.split_seed).sample(rest, cfg.train_size)
        else:
            rest = [[e] for e in subsample([u[0] for u in rest], cfg.train_size, cfg.split_seed)]
    return _flat(rest), _flat(validation), _flat(test_units)


def _units(examples: list[Example]) -> list[list[Example]]:
    groups: dict = {}
    for i, e in enumerate(examples):
        groups.setdefault(e.group if e.group is not None else i, []).append(e)
    return list(groups.values())


def _flat(units: list[list[Example]]) -> list[Example]:
    return [e for u in units for e in u]
