"""Bootstrap intervals and paired differences on fixed inputs with known answers."""

import math

import pytest

from analysis import uncertainty
from bench import metrics
from bench.tasks import Example


def _classified(gold, predicted, fingerprint="a"):
    return {"fingerprint": fingerprint, "gold": list(gold), "predicted": list(predicted)}


def test_all_correct_gives_the_point_interval_one():
    run = _classified([0, 1, 2] * 50, [0, 1, 2] * 50)
    assert uncertainty.interval("accuracy", [run], ["r"]) == (1.0, 1.0)
    assert uncertainty.interval("macro_f1", [run], ["r"]) == (1.0, 1.0)


def test_half_correct_interval_has_the_binomial_width():
    n = 400
    run = {"fingerprint": "a", "hits": {"answer_exact_match": [1, 0] * (n // 2)}}
    low, high = uncertainty.interval("answer_exact_match", [run], ["r"])
    # normal approximation: 0.5 ± 1.96 * sqrt(0.25 / n) = 0.5 ± 0.049
    expected = 2 * 1.96 * math.sqrt(0.25 / n)
    assert low < 0.5 < high
    assert abs((high - low) - expected) < 0.15 * expected
    assert abs((low + high) / 2 - 0.5) < 0.01


def test_point_estimates_equal_the_projects_metrics():
    gold = [0, 0, 1, 1, 2, 2, 2, 1]
    predicted = [0, 1, 1, 1, 2, 0, 2, 2]
    examples = [Example(text=str(i), label=g) for i, g in enumerate(gold)]
    outputs = [[1.0 if j == p else 0.0 for j in range(3)] for p in predicted]
    run = _classified(gold, predicted)
    assert uncertainty.point("accuracy", [run]) == pytest.approx(metrics.accuracy(examples, outputs))
    assert uncertainty.point("macro_f1", [run]) == pytest.approx(metrics.macro_f1(examples, outputs))
    binary = _classified([1, 0, 1, 1, 0], [1, 1, 0, 1, 0])
    assert uncertainty.point("f1a", [binary]) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))


def test_seeds_average_inside_every_resample():
    right, wrong = _classified([1] * 100, [1] * 100), _classified([1] * 100, [0] * 100)
    assert uncertainty.point("accuracy", [right, wrong]) == 0.5
    assert uncertainty.interval("accuracy", [right, wrong], ["a", "b"]) == (0.5, 0.5)


def test_paired_difference_and_its_significance():
    gold = [0, 1] * 200
    better = _classified(gold, gold)  # all right
    worse = _classified(gold, [0] * 400)  # half right
    difference, low, high = uncertainty.paired_difference("accuracy", [worse], [better], ["w"], ["b"])
    assert difference == pytest.approx(-0.5)
    assert low < -0.4 and high < -0.4 and uncertainty.significant(low, high)
    same = uncertainty.paired_difference("accuracy", [better], [better], ["b"], ["b"])
    assert same == (0.0, 0.0, 0.0) and not uncertainty.significant(*same[1:])


def test_pairing_refuses_different_test_sets():
    a, b = _classified([0, 1], [0, 1], "test-a"), _classified([0, 1], [0, 1], "test-b")
    with pytest.raises(uncertainty.Unpairable, match="run-a, run-b were scored on different test sets"):
        uncertainty.paired_difference("accuracy", [a], [b], ["run-a"], ["run-b"])


def test_grouped_metrics_are_not_bootstrapped():
    run = _classified([0, 1], [0, 1])
    assert uncertainty.supports("accuracy", run) and uncertainty.supports("macro_f1", run)
    assert not uncertainty.supports("multirc_em", run) and not uncertainty.supports("record_f1", run)
    assert not uncertainty.supports("accuracy", None)  # a record from before per-example results
