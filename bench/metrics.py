"""Metrics computed in the project (the `evaluate` library fetches metric scripts from a hub)."""

from __future__ import annotations

from typing import Sequence


def accuracy(predictions: Sequence, targets: Sequence) -> float:
    _same_length(predictions, targets)
    return sum(p == t for p, t in zip(predictions, targets)) / len(targets)


def macro_f1(predictions: Sequence, targets: Sequence) -> float:
    """Unweighted mean of per-class F1 over the classes present in targets or predictions
    (scikit-learn's f1_score(average="macro") convention)."""
    _same_length(predictions, targets)
    scores = []
    for c in sorted(set(targets) | set(predictions)):
        tp = sum(p == c and t == c for p, t in zip(predictions, targets))
        fp = sum(p == c and t != c for p, t in zip(predictions, targets))
        fn = sum(p != c and t == c for p, t in zip(predictions, targets))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


def _same_length(predictions, targets) -> None:
    if len(predictions) != len(targets) or not targets:
        raise ValueError(f"need equal, non-zero numbers of predictions and targets, got {len(predictions)} and {len(targets)}")


METRICS = {"accuracy": accuracy, "macro_f1": macro_f1}


def compute(names: Sequence[str], predictions: Sequence, targets: Sequence) -> dict[str, float]:
    return {name: METRICS[name](predictions, targets) for name in names}
