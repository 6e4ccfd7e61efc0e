import pytest

from bench.metrics import accuracy, chosen, compute, exact_match, macro_f1, per_example, rouge_scores
from bench.tasks import Example

TARGETS = [0, 0, 0, 1, 1, 2]
PREDICTIONS = [0, 0, 1, 1, 2, 2]


def scores_for(predictions, classes=3):
    """Score lists whose highest entry is the prediction."""
    return [[1.0 if c == p else 0.0 for c in range(classes)] for p in predictions]


def examples_for(targets, categories=None):
    return [Example(f"x{i}", t, category=categories[i] if categories else None) for i, t in enumerate(targets)]


def test_chosen_takes_the_highest_score_and_the_first_on_ties():
    assert chosen([[0.1, 0.7, 0.2], [-3.0, -1.0], [0.5, 0.5]]) == [1, 1, 0]


def test_accuracy_by_hand():
    assert accuracy(examples_for(TARGETS), scores_for(PREDICTIONS)) == pytest.approx(4 / 6)


def test_macro_f1_by_hand():
    # class 0: tp 2 fp 0 fn 1 -> 4/5; class 1: tp 1 fp 1 fn 1 -> 2/4; class 2: tp 1 fp 1 fn 0 -> 2/3
    assert macro_f1(examples_for(TARGETS), scores_for(PREDICTIONS)) == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)


def test_macro_f1_counts_a_class_only_predicted():
    # class 1 never occurs but is predicted once: F1 0 for it, as scikit-learn's macro average does
    assert macro_f1(examples_for([0, 0]), scores_for([0, 1], 2)) == pytest.approx((2 / 3 + 0) / 2)


def test_exact_match_ignores_surrounding_whitespace_only():
    examples = [Example("a", target="42"), Example("b", target="7 R 1"), Example("c", target="x")]
    assert exact_match(examples, [" 42\n", "7 R1", "x"]) == pytest.approx(2 / 3)


def test_compute_reports_each_category_apart():
    examples = examples_for([0, 1, 1, 0], categories=["add", "add", "mul", "mul"])
    scores = compute(["accuracy"], examples, scores_for([0, 0, 1, 1], 2))
    assert scores == {"accuracy": 0.5, "accuracy/add": 0.5, "accuracy/mul": 0.5}
    assert compute(["accuracy", "macro_f1"], examples_for([1, 1]), scores_for([1, 1], 2)) == {
        "accuracy": 1.0,
        "macro_f1": 1.0,
    }
    with pytest.raises(ValueError, match="equal"):
        accuracy(examples_for([1]), scores_for([1, 2]))


def test_rouge_by_hand():
    # "the cat on the mat" against "the cat sat on the mat": unigrams 5 of 5 predicted, 5 of 6 in the target
    # (F = 10/11); bigrams 3 of 4 and 3 of 5 (the cat, on the, the mat: F = 2/3); the longest common
    # subsequence is the whole prediction (F = 10/11). Stemming: "cats sitting" matches "cat sits" entirely.
    examples = [Example("a", target="the cat sat on the mat"), Example("b", target="The cat sits.")]
    outputs = ["the cat on the mat", "the cats sitting"]
    assert rouge_scores("rouge1", examples, outputs) == pytest.approx([10 / 11, 1.0])
    assert rouge_scores("rouge2", examples, outputs) == pytest.approx([2 / 3, 1.0])
    assert compute(["rougeL"], examples, outputs) == {"rougeL": pytest.approx((10 / 11 + 1.0) / 2)}


def test_rouge_of_an_arithmetic_rationale_counts_its_numbers_not_its_operators():
    # 9 numbers each side, 7 shared: 0.778; the empty generation scores 0
    target = "63 * 17 = 63 * 10 + 63 * 7 = 630 + 441 = 1071"
    examples = [Example("q", target=target), Example("q", target=target)]
    assert rouge_scores("rouge1", examples, ["63 * 17 = 63 * 10 + 63 * 7 = 630 + 451 = 1081", ""]) == pytest.approx(
        [7 / 9, 0.0]
    )


def test_per_example_results_keep_rouge_scores_beside_the_hits():
    examples = [Example("a", target="the cat sat on the mat"), Example("b", target="x")]
    results = per_example("generate", ["exact_match", "rouge1"], examples, ["the cat on the mat", "x"])
    assert results["hits"] == {"exact_match": [0, 1], "rouge1": [0.9091, 1.0]}
