"""Run records (results/<sweep>/<run_id>.json) to one tidy DataFrame, a row per run."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from bench.record import search_id, setting_id

# column -> path into the record; a missing path gives NA (failed runs have no metrics)
COLUMNS = {
    "run_id": ("run_id",),
    "status": ("status",),
    "error": ("error", "message"),
    "sweep": ("config", "sweep_name"),
    "model": ("config", "model", "name"),
    "model_params": ("config", "model", "params"),
    "task": ("config", "task", "name"),
    "method": ("config", "method", "name"),
    "lr": ("config", "method", "lr"),
    "r": ("config", "method", "r"),
    "alpha": ("config", "method", "alpha"),
    "targets": ("config", "method", "targets"),
    "num_virtual_tokens": ("config", "method", "num_virtual_tokens"),
    "prompt_init": ("config", "method", "init"),
    "shots": ("config", "method", "shots"),
    "train_size": ("data", "train", "size"),
    "seed": ("config", "seed"),
    "steps": ("time", "steps"),
    "best_step": ("time", "best_step"),  # early stopping: the step whose weights were scored
    "epochs": ("time", "epochs"),
    "examples_seen": ("time", "examples_seen"),
    "tokens_seen": ("time", "tokens_seen"),
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
    "memory_measure": ("memory", "measure"),
    "train_seconds": ("time", "train_seconds"),
    "median_step_seconds": ("time", "median_step_seconds"),
    "tokens_per_second": ("time", "tokens_per_second"),
    "stored_bytes": ("size", "bytes"),
    "latency_ms": ("latency", "median_ms"),
    "device": ("environment", "device"),
    "git_commit": ("environment", "git_commit"),
}


# beside COLUMNS: which runs are repeats of one setting (all but the seed), which form one learning-rate
# search (all but seed and lr), the primary metric and its test and validation scores, every validation
# evaluation, every headline test metric, and the per-example test results that intervals are computed from
EXTRA = ["setting", "search", "metric", "score", "val_score", "scores", "validation", "per_example"]


def _get(record: dict, path: tuple):
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return ",".join(record) if isinstance(record, list) else record


def headline_metrics(record: dict) -> dict:
    """The task's metrics on test, in the task's order (records list them after split, size and loss),
    without the per-category ones."""
    return {k: v for k, v in (record.get("metrics") or {}).items() if k not in ("split", "size", "loss") and "/" not in k}


def primary_metric(record: dict) -> str | None:
    """The task's first metric (accuracy for classification, answer exact match for arithmetic, ...):
    what tables and figures show."""
    return next(iter(headline_metrics(record)), None)


def load(results: Path) -> pd.DataFrame:
    """Every record under `results`, sorted by sweep and run id so output is reproducible."""
    rows = []
    for path in sorted(Path(results).glob("*/*.json")):
        try:
            record = json.loads(path.read_text())
            setting = setting_id(record["config"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            warnings.warn(f"{path}: not a run record, skipped ({type(e).__name__}: {e})", stacklevel=2)
            continue
        metric = primary_metric(record)
        validation = record.get("validation") or []
        rows.append({**{column: _get(record, keys) for column, keys in COLUMNS.items()}, "setting": setting,
                     "search": search_id(record["config"]), "metric": metric,
                     "score": record["metrics"][metric] if metric else None,
                     # the validation score of the weights that were tested: what a search selects by
                     "val_score": validation[-1].get(metric) if validation and metric else None,
                     "scores": headline_metrics(record), "validation": validation,
                     "per_example": record.get("per_example")})
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *EXTRA])
    return frame.sort_values(["sweep", "run_id"], kind="stable").reset_index(drop=True)
