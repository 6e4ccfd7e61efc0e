"""The learning-rate search's choice, made on validation only.

Runs that differ in nothing but seed and learning rate form one search (`search` column, from
bench.record.search_id). In each, the learning rate with the best mean validation score of the
task's primary metric is selected; test scores are never read. Only the seeds that every
learning rate ran count towards that mean, so that the extra seeds run for the selected rate
afterwards cannot change the choice. A choice at the lowest or highest rate tried is flagged:
the grid should be widened there.
"""

from __future__ import annotations

import pandas as pd


def select(frame: pd.DataFrame) -> pd.DataFrame:
    """The finished (`ok`) runs of the selected learning rate of each search, with the columns
    `lr_grid` (the rates tried, ascending, those that diverged or failed included), `lr_edge` (the
    choice is the lowest or highest of two or more) and `selection_score` (the mean validation
    score it was chosen by)."""
    chosen = []
    for _, tried in frame.groupby("search", sort=False):
        grid = sorted(tried.lr.unique())
        runs = tried[tried.status == "ok"]
        if runs.empty:
            continue
        common = set.intersection(*(set(r.seed) for _, r in runs.groupby("lr")))
        by_lr = runs[runs.seed.isin(common)].groupby("lr").val_score.mean()
        # the first of equal scores: the smaller rate
        best = by_lr.idxmax() if by_lr.notna().any() else grid[0]
        chosen.append(
            runs[runs.lr == best].assign(
                lr_grid=[tuple(grid)] * int((runs.lr == best).sum()),
                lr_edge=len(grid) > 1 and best in (grid[0], grid[-1]),
                selection_score=by_lr.get(best),
            )
        )
    if not chosen:
        return frame.iloc[:0].assign(lr_grid=None, lr_edge=False, selection_score=None)
    return pd.concat(chosen).sort_index()
