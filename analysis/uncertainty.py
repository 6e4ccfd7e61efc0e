"""Intervals that tell a real difference from noise: the bootstrap over test examples.

Each record keeps its per-example test results (`per_example`, bench/metrics.py): the gold and
the chosen choice of every test example, or every exact-match hit. A metric is recomputed from
them on resampled test sets. The repeats (seeds) of one setting share every resample, so an
interval is that of their mean; two settings are compared on the same resamples (a paired
bootstrap), which is only meaningful, and only allowed, on the same test examples.

The resamples come from a fixed seed, so the same records give the same intervals.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


class Unpairable(ValueError):
    """Runs whose test sets differ cannot be compared example by example."""


def _f1(tp, fp, fn):
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0), denominator > 0


def _macro_f1(gold: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per row: the mean F1 over the classes present in gold or predictions (bench.metrics.macro_f1)."""
    total, present = np.zeros(gold.shape[0]), np.zeros(gold.shape[0])
    for c in np.union1d(np.unique(gold), np.unique(predicted)):
        g, p = gold == c, predicted == c
        f1, seen = _f1((g & p).sum(-1), (~g & p).sum(-1), (g & ~p).sum(-1))
        total, present = total + f1, present + seen
    return total / present


def _f1a(gold: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    g, p = gold == 1, predicted == 1
    return _f1((g & p).sum(-1), (~g & p).sum(-1), (g & ~p).sum(-1))[0]


# metric -> per-row score of (gold, predicted) arrays of shape (resamples, examples)
CLASSIFY = {
    "accuracy": lambda gold, predicted: (gold == predicted).mean(-1),
    "macro_f1": _macro_f1,
    "f1a": _f1a,
}


def supports(metric: str, results: dict | None) -> bool:
    """Whether `metric` can be recomputed from these per-example results (grouped metrics such as
    MultiRC's exact match or ReCoRD's F1 need the groups, which records do not keep)."""
    if not isinstance(results, dict):
        return False
    return metric in CLASSIFY and "gold" in results or metric in results.get("hits", {})


def _scores(metric: str, runs: list[dict], index: np.ndarray) -> np.ndarray:
    """The metric on each resample (rows of `index`), averaged over the runs."""
    total = np.zeros(index.shape[0])
    for results in runs:
        if metric in CLASSIFY:
            gold, predicted = np.asarray(results["gold"]), np.asarray(results["predicted"])
            total += CLASSIFY[metric](gold[index], predicted[index])
        else:
            total += np.asarray(results["hits"][metric], dtype=float)[index].mean(-1)
    return total / len(runs)


def _same_test_set(runs: list[dict], names: list[str] | None = None) -> int:
    prints = {r["fingerprint"] for r in runs}
    if len(prints) > 1:
        raise Unpairable(
            f"runs {', '.join(names or [])} were scored on different test sets (fingerprints "
            f"{', '.join(sorted(prints))}); they cannot be compared example by example"
        )
    return len(runs[0]["gold"] if "gold" in runs[0] else next(iter(runs[0]["hits"].values())))


def _resamples(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, n, size=(RESAMPLES, n))


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return float(low), float(high)


def point(metric: str, runs: list[dict]) -> float:
    """The metric on the whole test set, averaged over the runs."""
    n = _same_test_set(runs)
    return float(_scores(metric, runs, np.arange(n)[None, :])[0])


def interval(metric: str, runs: list[dict], names: list[str]) -> tuple[float, float]:
    """95% percentile bootstrap interval of the runs' mean metric, resampling test examples."""
    n = _same_test_set(runs, names)
    return _percentiles(_scores(metric, runs, _resamples(n)))


def paired_difference(
    metric: str, a: list[dict], b: list[dict], names_a: list[str], names_b: list[str]
) -> tuple[float, float, float]:
    """Mean of a minus mean of b, with its 95% paired bootstrap interval (the same resampled
    examples for both). Raises Unpairable when the test sets differ."""
    n = _same_test_set(a + b, names_a + names_b)
    index = _resamples(n)
    difference = _scores(metric, a, index) - _scores(metric, b, index)
    whole = np.arange(n)[None, :]
    return (float(_scores(metric, a, whole)[0] - _scores(metric, b, whole)[0]), *_percentiles(difference))


def significant(low: float, high: float) -> bool:
    """An interval of a difference that excludes zero."""
    return low > 0 or high < 0
