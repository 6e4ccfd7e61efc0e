"""Soft-prompt transfer (SPoT, Vu et al. 2022): target accuracy by how the prompt started, from one sweep.

    python -m analysis.transfer [--results results] --sweep NAME

The sweep's prompt-tuning runs on one task, grouped by method.init (a transferred prompt by the task its source
run trained on). Per group: test accuracy, the mean ± std over seeds with its 95% bootstrap interval over test
examples; the gain over random initialisation, paired on the same test examples, with its interval (n.s. where
it holds zero); and, for a transfer, SPoT's task similarity: the cosine between the source prompt's mean virtual
token and that of the target task's prompts trained from random initialisation, over the seeds unlike the
source run's (peft's random start is the seed's: one seed's two prompts share it). The random row gives the same
cosine between the target's own prompts of different seeds, the scale to read a task similarity against.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis import uncertainty
from analysis.tables import Table
from bench import results as store

METRIC = "accuracy"
WEIGHTS = "adapter_model.safetensors"


def prompt(folder: str | Path) -> torch.Tensor:
    from safetensors.torch import load_file

    path = Path(folder)
    if path.suffix == ".json":  # a record names its kept folder
        path = Path(json.loads(path.read_text())["size"]["folder"])
    return load_file(path / WEIGHTS)["prompt_embeddings"].double()


def similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """SPoT's task similarity of two prompts: the cosine of their mean virtual tokens."""
    return float(torch.nn.functional.cosine_similarity(a.mean(0), b.mean(0), dim=0))


def _source(init_from: str) -> dict:
    """The config of the run whose prompt was transferred, from its record (beside its kept folder)."""
    path = Path(init_from)
    return json.loads((path if path.suffix == ".json" else path.with_suffix(".json")).read_text())["config"]


def source_task(init_from: str) -> str:
    return _source(init_from)["task"]["name"]


def source_seed(init_from: str) -> int:
    return _source(init_from)["seed"]


def _similarity(source: torch.Tensor, seed: int, targets: dict[int, torch.Tensor]) -> str:
    others = [similarity(source, p) for s, p in targets.items() if s != seed]
    return f"{np.mean(others):.3f}" if others else "- (the target's random runs share the source's seed)"


def group(record: dict) -> str:
    m = record["config"]["method"]
    if m["init"] == "transfer":
        return f"transfer from {source_task(m['init_from'])}"
    return m["init"] + (f" ({m['init_text']})" if m["init"] == "text" else "")


def table(records: list[dict]) -> Table:
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(group(r), []).append(r)
    if "random" not in groups:
        raise ValueError("the sweep has no prompt-tuning run from random initialisation to measure transfer against")
    random_prompts = {r["config"]["seed"]: prompt(r["size"]["folder"]) for r in groups["random"]}
    baseline = [r["per_example"] for r in groups["random"]]
    rows = {}
    for name, runs in groups.items():
        names, results = [r["run_id"] for r in runs], [r["per_example"] for r in runs]
        values = np.array([r["metrics"][METRIC] for r in runs])
        spread = f" ± {100 * values.std(ddof=1):.1f}" if len(runs) > 1 else ""
        low, high = uncertainty.interval(METRIC, results, names)
        row = {
            "seeds": len(runs),
            f"{METRIC} %": f"{100 * values.mean():.1f}{spread}",
            "95% CI": f"[{100 * low:.1f}, {100 * high:.1f}]",
            "gain over random (points)": "-",
            "task similarity (cosine)": "-",
        }
        if name != "random":
            difference, low, high = uncertainty.paired_difference(
                METRIC, results, baseline, names, [r["run_id"] for r in groups["random"]]
            )
            mark = "" if uncertainty.significant(low, high) else " n.s."
            row["gain over random (points)"] = f"{100 * difference:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]{mark}"
        if name.startswith("transfer"):
            init_from = runs[0]["config"]["method"]["init_from"]
            row["task similarity (cosine)"] = _similarity(prompt(init_from), source_seed(init_from), random_prompts)
        elif name == "random":
            pairs = [similarity(a, b) for i, a in random_prompts.items() for j, b in random_prompts.items() if i < j]
            row["task similarity (cosine)"] = f"{np.mean(pairs):.3f} (itself)" if pairs else "-"
        rows[name] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "init"
    task = records[0]["config"]["task"]["name"]
    return Table("transfer", f"prompt tuning on {task} by initialisation: transfer against random", frame)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"), help="folder of <sweep>/<run_id>.json records")
    parser.add_argument("--sweep", required=True, help="a sweep of prompt-tuning runs on one task")
    args = parser.parse_args(argv)
    runs = store.load(args.results)
    runs = runs[(runs.sweep == args.sweep) & (runs.method == "prompt_tuning") & (runs.status == "ok")]
    records = store.records_of(runs, args.results)
    tasks = {r["config"]["task"]["name"] for r in records}
    if len(tasks) != 1:
        parser.error(f"--sweep {args.sweep}: expected prompt-tuning runs on one task, found {sorted(tasks) or 'none'}")
    try:
        shown = table(records)
    except ValueError as e:
        parser.error(f"--sweep {args.sweep}: {e}")
    shown.shown(args.results, args.sweep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
