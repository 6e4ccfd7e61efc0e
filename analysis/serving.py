"""Serving tables from the records of `python -m bench mode=serve` (results/<sweep>/serve/*.json).

Per model, as the LoRA paper's Table 1: each way of serving it (bench/serve.py) by batch size and
sequence length, median latency per batch and that relative to the base model, with the bytes a
task stores against a full model copy; and one table of the memory of serving many tasks.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from analysis.tables import Table
from bench import record
from bench.methods import METHODS

# each variant's label and the method whose adapter its task stores: the methods' own `serving` (bench/methods)
LABELS = {"base": "base model", **{v: s.label for m in METHODS.values() for v, s in m.serving.items()}}
STORED = {v: name for name, m in METHODS.items() for v in m.serving}
MIXED_OVER_SWAPPED = "LoRA mixed batch / swapped sub-batches"


def load(results: Path) -> dict[str, list[dict]]:
    """sweep -> its serve records that ended ok; a file that is not one is skipped with a warning."""
    found: dict[str, list[dict]] = {}
    for path in sorted(Path(results).glob("*/serve/*.json")):
        try:
            data = json.loads(record.read_bytes(path))
            rec = record.parse(data)  # ValidationError is a ValueError
            shapes = rec.serve["shapes"] if rec.status == "ok" else None
        except (OSError, ValueError, KeyError, TypeError) as e:
            warnings.warn(f"{path}: not a serve record, skipped ({type(e).__name__}: {e})", stacklevel=2)
            continue
        if shapes is not None:
            found.setdefault(path.parent.parent.name, []).append(rec.dump())
    return found


def latency_table(rec: dict, name: str) -> Table:
    s = rec["serve"]
    full = s["stored_bytes"]["full_copy"]
    rows: dict[str, dict] = {}
    for shape in s["shapes"]:
        column = f"batch {shape['batch_size']}, {shape['length']} tokens"
        for variant, v in shape["variants"].items():
            rows.setdefault(variant, {})[column] = f"{v['median_ms']:.1f} ms ({v['relative_to_base']:.2f}x)"
        if {"lora_mixed", "lora_swapped"} <= set(shape["variants"]):  # one forward for all tasks against one per task
            mixed, swapped = (shape["variants"][v]["median_ms"] for v in ("lora_mixed", "lora_swapped"))
            rows.setdefault(MIXED_OVER_SWAPPED, {})[column] = f"{mixed / swapped:.2f}x"
    for variant, why in s["not_applicable"].items():
        rows.setdefault(variant, {})["note"] = f"not applicable: {why}"
    for variant, row in rows.items():
        if variant == MIXED_OVER_SWAPPED:
            continue
        stored = s["stored_bytes"].get(
            STORED.get(variant), full if variant.endswith("merged") or variant == "base" else None
        )
        row["stored per task"] = "-" if stored is None else f"{stored / 2**10:,.0f} KiB"
        row["of a full copy"] = "-" if stored is None else f"{stored / full:.3%}"
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna("-")
    frame.index = [LABELS.get(v, v) for v in frame.index]
    frame.index.name = "served as"
    c = rec["config"]
    title = (
        f"serving {c['model']['name']} on {rec['environment']['device']}: median latency per batch over "
        f"{c['serve']['repeats']} interleaved rounds (relative to the base model); bytes stored per task"
    )
    return Table(name, title, frame)


def memory_table(recs: list[dict]) -> Table | None:
    rows = {}
    for rec in recs:
        m, mixed = rec["serve"]["memory"], rec["serve"]["mixed_max_abs_difference"]
        if not m:
            continue
        rows[rec["config"]["model"]["name"]] = {
            "tasks": m["tasks"],
            "merged copies MiB": f"{m['merged_copies_bytes'] / 2**20:,.1f}",
            "base + LoRA adapters MiB": f"{m['base_and_adapters_bytes'] / 2**20:,.1f}",
            "ratio": f"{m['ratio']:.2f}x",
            **{f"{LABELS[v]}: largest difference from rows alone": f"{d:.1e}" for v, d in mixed.items()},
        }
    if not rows:
        return None
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna("-")
    frame.index.name = "model"
    return Table(
        "serving_memory",
        "serving many tasks: tensor memory of one merged copy per task against one base model "
        "with an adapter per task; mixed-task batches checked row by row",
        frame,
    )


def tables(recs: list[dict]) -> list[Table]:
    models = [r["config"]["model"]["name"] for r in recs]
    found = [
        latency_table(r, f"serving_{m}" if models.count(m) == 1 else f"serving_{r['run_id']}")
        for r, m in zip(recs, models)
    ]
    memory = memory_table(recs)
    return found + ([memory] if memory else [])
