"""Run records (results/<sweep>/<run_id>.json) to one tidy DataFrame, a row per run."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from bench.record import setting_id

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
    "batch_size": ("config", "train", "batch_size"),
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


def _get(record: dict, path: tuple):
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return ",".join(record) if isinstance(record, list) else record


def primary_metric(record: dict) -> str | None:
    """The task's first metric (accuracy for classification, answer exact match for arithmetic, ...):
    what tables and figures show. Records list the task's metrics in its order after split, size, loss."""
    names = [k for k in record.get("metrics") or {} if k not in ("split", "size", "loss") and "/" not in k]
    return names[0] if names else None


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
        rows.append({**{column: _get(record, keys) for column, keys in COLUMNS.items()}, "setting": setting,
                     "metric": metric, "score": record["metrics"][metric] if metric else None})
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "setting", "metric", "score"])
    return frame.sort_values(["sweep", "run_id"], kind="stable").reset_index(drop=True)
