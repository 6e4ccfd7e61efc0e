"""What answering one query costs against what it scores: few-shot prompting at k shots beside tuned methods
(T-Few, Liu et al. 2022), and the most similar demonstration's position ("lost in the middle", Liu et al. 2023).

    python -m analysis.inference_cost [--results results] --sweep NAME

Per setting of the sweep's finished runs (their `inference` sections, bench/runner.py): the primary test metric
with its 95% bootstrap interval, prompt tokens and tokens read per query, analytic forward FLOPs per query and
their ratio to the cheapest setting's, measured milliseconds per query in evaluation batches and the batch-1
latency of one query; a table, and a figure of the metric against FLOPs per query.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from analysis import uncertainty
from analysis.figures import _save, plt
from analysis.tables import Table, method_label
from bench import results as store


def rows(runs: pd.DataFrame, results: Path) -> pd.DataFrame:
    """One row per setting (runs of one label averaged), with its records' cost and score."""
    out = []
    for label, group in runs.groupby(runs.apply(method_label, axis=1), sort=False):
        records = store.records_of(group, results)
        if any(not rec.get("inference") for rec in records):
            continue  # written before runs recorded it
        metric = group.metric.iloc[0]
        per_example = [rec["per_example"] for rec in records]
        low, high = uncertainty.interval(metric, per_example, list(group.run_id))

        def mean(section, key, recs=records):
            values = [(rec.get(section) or {}).get(key) for rec in recs]
            return sum(values) / len(values) if None not in values else None

        out.append(
            {
                "setting": label,
                "runs": len(records),
                "metric": metric,
                "score": group.score.mean(),
                "low": low,
                "high": high,
                "prompt_tokens": mean("inference", "prompt_tokens"),
                "read_tokens": mean("inference", "read_tokens"),
                "flops": mean("inference", "flops"),
                "ms": 1000 * mean("inference", "seconds"),
                "batch1_ms": mean("latency", "median_ms"),
                "shared": any((rec.get("time") or {}).get("shared_machine") for rec in records),
            }
        )
    return pd.DataFrame(out).sort_values(["flops", "setting"], ignore_index=True) if out else pd.DataFrame()


def table(costs: pd.DataFrame) -> Table:
    cheapest = costs.flops.min()
    frame = pd.DataFrame(
        {
            f"{costs.metric.iloc[0]} % [95% CI]": [
                f"{100 * r.score:.1f} [{100 * r.low:.1f}, {100 * r.high:.1f}]" for r in costs.itertuples()
            ],
            "runs": costs.runs.values,
            "prompt tokens / query": [f"{v:.0f}" for v in costs.prompt_tokens],
            "tokens read / query": [f"{v:.0f}" for v in costs.read_tokens],
            "forward GFLOPs / query": [f"{v / 1e9:.2f}" for v in costs.flops],
            "× cheapest": [f"{v / cheapest:.1f}" for v in costs.flops],
            "ms / query (batched)": [f"{v:.1f}" for v in costs.ms],
            "batch-1 ms": ["-" if v is None or v != v else f"{v:.0f}" for v in costs.batch1_ms],
            "shared machine": ["yes" if v else "no" for v in costs.shared],
        },
        index=pd.Index(costs.setting.values, name="setting"),
    )
    return Table("inference_cost", "what answering one test query costs, beside what it scores", frame)


def figure(costs: pd.DataFrame, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    for r in costs.itertuples():
        ax.errorbar(
            r.flops,
            100 * r.score,
            yerr=[[100 * (r.score - r.low)], [100 * (r.high - r.score)]],
            fmt="o",
            capsize=3,
            label=r.setting,
        )
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # settings of one cost overlap
    ax.set_xscale("log")
    ax.set_xlabel("forward FLOPs per test query (analytic)")
    ax.set_ylabel(f"test {costs.metric.iloc[0]} (%)")
    ax.set_title("score against the cost of answering")
    return _save(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"), help="folder of <sweep>/<run_id>.json records")
    parser.add_argument("--sweep", required=True)
    args = parser.parse_args(argv)
    runs = store.load(args.results)
    runs = runs[(runs.sweep == args.sweep) & (runs.status == "ok")]
    costs = rows(runs, args.results) if len(runs) else pd.DataFrame()
    if costs.empty:
        parser.error(f"--sweep {args.sweep}: no finished run under {args.results} recorded its inference cost")
    table(costs).shown(args.results, args.sweep)
    print(figure(costs, args.results / "report" / args.sweep / "inference_cost.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
