"""The two baselines: few-shot prompting (method=icl) and frozen features (method=probe)."""

from collections import Counter

import pytest

from bench.launch import launch
from bench.methods import METHODS
from bench.tasks import load


def icl_task(make_config, *overrides):
    cfg = make_config("model=smollm2-135m", "method=icl", *overrides)
    return METHODS["icl"].prepare(load(cfg.task, "text_to_text"), cfg.method, cfg.seed), load(cfg.task, "text_to_text")


def test_icl_prompt_is_instruction_then_k_solved_training_examples_then_the_question(make_config):
    task, plain = icl_task(make_config, "method.shots=3")
    train_prompts = {e.prompt: task.completion(e) for e in plain.train}
    for e, original in zip(task.test, plain.test):
        parts = e.prompt.split("\n\n")
        assert parts[0] == plain.instruction and parts[-1] == original.prompt and len(parts) == 5
        for demo in parts[1:-1]:  # each demonstration: a training prompt, a space, its answer
            prompt, answer = demo.rsplit(" ", 1)
            assert train_prompts[prompt] == answer
    assert task.train == plain.train and [e.label for e in task.test] == [e.label for e in plain.test]
    assert task.stop == "\n\n"  # the model's answer ends where it would start the next example


def test_prompting_pairs_with_trained_methods_on_the_same_test_examples(make_config):
    from bench.metrics import fingerprint, per_example

    task, plain = icl_task(make_config, "method.shots=2")
    assert task.given_test == plain.test and fingerprint(task.test) != fingerprint(plain.test)  # its prompts differ
    outputs = [[0.0, 1.0, 0.0]] * len(task.test)
    prompted = per_example(task.kind, task.metrics, task.test, outputs, task.given_test)
    assert prompted["fingerprint"] == per_example(plain.kind, plain.metrics, plain.test, outputs)["fingerprint"]


def test_icl_draws_are_seeded(make_config):
    same, _ = icl_task(make_config, "method.shots=2")
    again, _ = icl_task(make_config, "method.shots=2")
    other, _ = icl_task(make_config, "method.shots=2", "seed=1")
    assert [e.prompt for e in same.test] == [e.prompt for e in again.test]
    assert [e.prompt for e in same.test] != [e.prompt for e in other.test]
    zero, plain = icl_task(make_config, "method.shots=0", "method.instruction=")
    assert [e.prompt for e in zero.test] == [e.prompt for e in plain.test]  # zero-shot, no instruction: unchanged


@pytest.mark.slow
def test_probe_on_real_features_beats_the_majority_class(make_config):
    # frozen all-MiniLM-L6-v2 mean-pooled features and a logistic regression, 600 training tweets
    rec = launch(make_config("method=probe", "task.train_size=600", "task.test_size=300"))
    assert rec.status == "ok", rec.error
    data = load(make_config("task.test_size=300").task)
    majority = max(Counter(e.label for e in data.test).values()) / len(data.test)
    assert rec.params.trainable == 0
    assert rec.metrics.accuracy > majority + 0.05
    assert rec.size.files == {"classifier.pkl": rec.size.bytes}


@pytest.mark.parametrize(
    "override, key",
    [
        ("method.classifier=svm", "method.classifier"),
        ("method.pooling=max", "method.pooling"),
        ("method.C=0", "method.C"),
        ("method.trees=0", "method.trees"),
    ],
)
def test_probe_bad_values_name_their_key(make_config, override, key):
    from bench.errors import ConfigError
    from bench.validate import validate

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(make_config("method=probe", override))


def test_icl_on_an_encoder_is_not_applicable(make_config):
    rec = launch(make_config("method=icl"))
    assert rec.status == "not_applicable" and "encoder" in rec.error.message
