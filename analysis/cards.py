"""The model cards of a sweep's kept folders (bench/card.py), rewritten with what only the sweep knows: each
setting's test score over its seeds (mean ± std) with the 95% bootstrap interval over test examples."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import tables
from bench import card, record


def update(results: Path, sweep: str, runs: pd.DataFrame) -> int:
    """Rewrite the card of every kept run whose setting ran on two or more seeds; how many were rewritten."""
    rewritten = 0
    for _, group in runs[runs.status == "ok"].groupby("setting"):
        if len(group) < 2:
            continue
        metric = group.metric.iloc[0]
        cells = tables.score_cells(tables.entry("", group), metric)
        over = (
            f"{metric} {cells[f'{metric} %']} % over {len(group)} seeds; 95% interval "
            f"{cells[f'{metric} 95% CI']} over the test examples"
        )
        for run_id in group.run_id:
            folder = results / sweep / run_id
            rec = record.read(results / sweep / f"{run_id}.json")
            if rec is not None and (folder / "README.md").is_file():
                card.write(folder, rec, over)
                rewritten += 1
    return rewritten
