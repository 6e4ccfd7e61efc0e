import pytest

from bench.metrics import accuracy, compute, macro_f1

TARGETS = [0, 0, 0, 1, 1, 2]
PREDICTIONS = [0, 0, 1, 1, 2, 2]


def test_accuracy_by_hand():
    assert accuracy(PREDICTIONS, TARGETS) == pytest.approx(4 / 6)


def test_macro_f1_by_hand():
    # class 0: tp 2 fp 0 fn 1 -> 4/5; class 1: tp 1 fp 1 fn 1 -> 2/4; class 2: tp 1 fp 1 fn 0 -> 2/3
    assert macro_f1(PREDICTIONS, TARGETS) == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)


def test_macro_f1_counts_a_class_only_predicted():
    # class 1 never occurs but is predicted once: F1 0 for it, as scikit-learn's macro average does
    assert macro_f1([0, 1], [0, 0]) == pytest.approx((2 / 3 + 0) / 2)


def test_compute_names_and_bad_lengths():
    assert compute(["accuracy", "macro_f1"], [1, 1], [1, 1]) == {"accuracy": 1.0, "macro_f1": 1.0}
    with pytest.raises(ValueError, match="equal"):
        accuracy([1], [1, 2])
