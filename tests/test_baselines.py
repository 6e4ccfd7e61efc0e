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


def test_the_most_similar_example_moves_and_the_other_shots_stay(make_config):
    from bench.methods.icl import most_similar

    plain = icl_task(make_config, "method.shots=0")[1]
    nearest = most_similar(plain.train)
    placed = {at: icl_task(make_config, "method.shots=3", f"method.similar_at={at}")[0] for at in (0, 2)}
    for first, last, query in zip(placed[0].test, placed[2].test, plain.test):
        similar = nearest(query)
        demos_first, demos_last = first.prompt.split("\n\n")[1:-1], last.prompt.split("\n\n")[1:-1]
        assert demos_first[0].startswith(similar.prompt) and demos_last[2].startswith(similar.prompt)
        assert demos_first[1:] == demos_last[:2]  # the same two others, in the same order
    # TF-IDF: a text shares its rarest words with its nearest neighbour
    assert nearest(plain.train[5]) is plain.train[5]


def test_a_position_beyond_the_shots_names_the_key(make_config):
    from bench.errors import ConfigError
    from bench.validate import validate

    with pytest.raises(ConfigError, match=r"method\.similar_at.*0 to shots - 1 = 3"):
        validate(make_config("model=smollm2-135m", "method=icl", "method.shots=4", "method.similar_at=4"))


def test_a_run_records_what_answering_a_query_costs(make_config, tiny_models, tmp_path, capsys):
    """Few-shot prompting reads its demonstrations with every query: more shots, more tokens and FLOPs."""
    from analysis import inference_cost

    costs = {}
    for shots in (0, 2):
        rec = launch(
            make_config(
                "model=smollm2-135m",
                "model.source=hub",
                f"model.hub_id={tiny_models['llama']}",
                "method=icl",
                f"method.shots={shots}",
                "task.max_length=512",
            )
        )
        assert rec.status == "ok", rec.error
        costs[shots] = rec.inference
    zero, two = costs[0], costs[2]
    assert zero.queries == two.queries == 32
    # ranking reads the prompt once per label word (three), plus the label word's few tokens
    assert 0 < zero.read_tokens - 3 * zero.prompt_tokens < 3 * 10
    assert two.prompt_tokens > 2 * zero.prompt_tokens and two.flops > 2 * zero.flops
    assert zero.seconds > 0
    capsys.readouterr()
    assert inference_cost.main(["--results", str(tmp_path / "results"), "--sweep", "default"]) == 0
    out = capsys.readouterr().out
    assert "| 0-shot prompting |" in out and "| 2-shot prompting |" in out
    ratio = two.flops / zero.flops
    assert f"| {zero.flops / 1e9:.2f} | 1.0 |" in out and f"| {two.flops / 1e9:.2f} | {ratio:.1f} |" in out
    assert (tmp_path / "results" / "report" / "default" / "inference_cost.png").is_file()
