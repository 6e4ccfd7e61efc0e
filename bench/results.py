"""The results store as one tidy DataFrame, a row per run record (results/<sweep>/<run_id>.json).

Records are parsed through their declaration (bench/record.py): a file that does not match it is named
and skipped. The learning-rate search reads its runs here; analysis builds every table and figure on it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from bench.methods import METHODS
from bench.record import mismatch, parse, read_bytes, search_id, setting_id

# each method's own keys (its schema beyond name, lr and lr_grid): a column each, so a new method's
# keys (an adapter's kind and size, a peft type's arguments) reach the tables without naming it here
METHOD_KEYS = {name: m.keys for name, m in METHODS.items()}

# column -> path into the record; a missing path gives NA (failed runs have no metrics)
COLUMNS = {
    "run_id": ("run_id",),
    "status": ("status",),
    "error": ("error", "message"),
    "model": ("config", "model", "name"),
    "model_params": ("config", "model", "params"),
    "task": ("config", "task", "name"),
    "method": ("config", "method", "name"),
    "lr": ("config", "method", "lr"),
    **{key: ("config", "method", key) for keys in METHOD_KEYS.values() for key in keys},
    "train_size": ("data", "train", "size"),
    "seed": ("config", "seed"),
    "steps": ("time", "steps"),
    "best_step": ("time", "best_step"),  # early stopping: the step whose weights were scored
    "epochs": ("time", "epochs"),
    "examples_seen": ("time", "examples_seen"),
    "tokens_seen": ("time", "tokens_seen"),
    "weights": ("config", "model", "weights"),  # pretrained, or random (a speed check: its scores mean nothing)
    "quantize": ("config", "model", "quantize"),  # the base as stored (model.quantize): none in records before it
    "optimizer": ("config", "train", "optimizer"),
    "optimizer_args": ("config", "train", "optimizer_args"),
    "precision": ("config", "train", "precision"),
    "batch_size": ("config", "train", "batch_size"),
    "grad_accum": ("config", "train", "grad_accum"),
    "majority_label": ("data", "majority_label"),
    "accuracy": ("metrics", "accuracy"),
    "macro_f1": ("metrics", "macro_f1"),
    "test_size": ("metrics", "size"),
    "trainable": ("params", "trainable"),
    "trainable_pct": ("params", "trainable_pct"),
    "method_params": ("params", "method"),
    "head_params": ("params", "head"),
    "total_params": ("params", "total"),
    "peak_memory_bytes": ("memory", "peak_bytes"),
    "estimate_bytes": ("estimate", "bytes"),  # bench/fit.py: the memory estimated before loading
    "memory_measure": ("memory", "measure"),
    "state_at_peak_bytes": ("memory", "breakdown_at_peak", "optimizer_state"),  # the profiler's, on CPU
    "process_peak_rss_bytes": ("memory", "process_peak_rss_bytes"),
    "train_seconds": ("time", "train_seconds"),
    "median_step_seconds": ("time", "median_step_seconds"),
    "shared_machine": ("time", "shared_machine"),  # its timings are not clean: other work used the CPUs
    "tokens_per_second": ("time", "tokens_per_second"),
    "flops_per_token": ("utilisation", "flops_per_token"),  # bench/utilisation.py: model FLOPs
    "utilisation": ("utilisation", "fraction"),  # of the device's peak (MFU)
    "stored_bytes": ("size", "bytes"),
    "forgetting": ("forgetting", "score"),
    "latency_ms": ("latency", "median_ms"),
    "device": ("environment", "device"),
    "git_commit": ("environment", "git_commit"),
}


# beside COLUMNS: the sweep (the record's folder), which runs are repeats of one setting (all but the seed),
# which form one learning-rate
# search (all but seed and lr), the primary metric and its test and validation scores, every validation
# evaluation, every headline test metric, the per-example test results that intervals are computed from, and the
# parts of the memory estimate (bench/fit.py), of which bench.fit.peaks makes a training step's and an evaluation's
EXTRA = [
    "sweep",
    "setting",
    "search",
    "metric",
    "score",
    "val_score",
    "scores",
    "validation",
    "per_example",
    "estimate_parts",
]


def _get(record: dict, path: tuple):
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    if isinstance(record, dict):  # a method's free-form arguments (method=peft's args)
        return ",".join(f"{k}={v}" for k, v in sorted(record.items())) or None
    return ",".join(map(str, record)) if isinstance(record, list) else record


def headline_metrics(record: dict) -> dict:
    """The task's metrics on test, in the task's order (records list them after split, size and loss),
    without the per-category ones."""
    return {
        k: v for k, v in (record.get("metrics") or {}).items() if k not in ("split", "size", "loss") and "/" not in k
    }


def primary_metric(record: dict) -> str | None:
    """The task's first metric (accuracy for classification, answer exact match for arithmetic, ...):
    what tables and figures show."""
    return next(iter(headline_metrics(record)), None)


def selection_score(record: dict) -> float | None:
    """The final validation's primary metric: the score of the weights that were tested, what a search selects
    by (bench/selection.py) and what Hydra's Optuna sweeper maximizes (bench/__main__.py)."""
    metric, validation = primary_metric(record), record.get("validation") or []
    return validation[-1].get(metric) if validation and metric else None


def records_of(runs: pd.DataFrame, results: Path) -> list[dict]:
    """The whole records behind rows of `load`'s table (which keeps a selection of their fields)."""
    return [json.loads(read_bytes(results / r.sweep / f"{r.run_id}.json")) for r in runs.itertuples()]


def kept_folders(runs: pd.DataFrame, results: Path) -> list[dict]:
    """The records of the finished runs among `runs` whose folder is kept beside them, with that folder."""
    out = []
    for record in records_of(runs[runs.status == "ok"], results):
        folder = (record.get("size") or {}).get("folder")
        if folder and Path(folder).is_dir():
            out.append({"record": record, "folder": Path(folder)})
    return out


def load(results: Path) -> pd.DataFrame:
    """Every record under `results`, sorted by sweep and run id so output is reproducible. A file
    that is not a readable record is skipped with a warning naming it and why. The sweep is the
    folder a record lives in (never a name inside it, which could point anywhere)."""
    rows = []
    for path in sorted(Path(results).glob("*/*.json")):
        try:
            data = json.loads(read_bytes(path))
        except (OSError, ValueError) as e:
            warnings.warn(f"{path}: not a run record, skipped ({type(e).__name__}: {e})", stacklevel=2)
            continue
        try:
            record = parse(data).dump()
        except ValidationError as e:
            warnings.warn(f"{path}: not a run record, skipped ({mismatch(e, data)})", stacklevel=2)
            continue
        setting = setting_id(record["config"])
        metric = primary_metric(record)
        validation = record.get("validation") or []
        rows.append(
            {
                **{column: _get(record, keys) for column, keys in COLUMNS.items()},
                "sweep": path.parent.name,
                "setting": setting,
                "search": search_id(record["config"]),
                "metric": metric,
                "score": record["metrics"][metric] if metric else None,
                "val_score": selection_score(record),
                "scores": headline_metrics(record),
                "validation": validation,
                "per_example": record.get("per_example"),
                "estimate_parts": (record.get("estimate") or {}).get("parts"),
            }
        )
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *EXTRA])
    return frame.sort_values(["sweep", "run_id"], kind="stable").reset_index(drop=True)
