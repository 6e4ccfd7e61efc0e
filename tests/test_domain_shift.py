"""A second sentiment domain (movie_reviews), kept runs scored on another task (python -m bench.evaluate,
python -m analysis.domain_shift), and soft-prompt transfer (method.init=transfer, python -m analysis.transfer)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from analysis import domain_shift, transfer
from bench import evaluate
from bench.errors import ConfigError
from bench.launch import launch
from bench.tasks import Example, TaskData, load
from bench.validate import validate
from tests.conftest import tiny_bert
from tests.test_kept import TRAINED

# the split a FAST run made (tests/conftest.py), for scoring on the same test examples again
SPLIT = ["task.val_size=32", "task.test_size=32", "task.train_size=64"]


def test_movie_reviews_are_the_rotten_tomatoes_snippets_without_plots(make_config):
    from bench.tasks import movie_reviews

    every = movie_reviews._examples()
    assert len(every) == 12_752 and len({e.text for e in every}) == len(every)  # 7,368 fresh, 5,384 rotten
    assert sum(e.label == 1 for e in every) == 7_368
    assert not any(e.text.startswith("A senior at an elite college (Katie Holmes)") for e in every)  # a plot summary
    data = load(make_config("task=movie_reviews", fast=False).task, "text_to_text")
    assert data.labels == ["negative", "positive"] and len(data.test) == 2000
    assert data.test[0].prompt.startswith("Review: ") and data.test[0].prompt.endswith("\nSentiment:")


def test_scored_on_another_label_set_the_model_answers_among_the_shared_labels():
    target = TaskData(
        labels=["negative", "positive"],
        metrics=("accuracy",),
        train=[],
        validation=[],
        test=[Example("bad", 0), Example("good", 1), Example("fine", 1)],
    )
    examples, shared = evaluate.relabelled(["negative", "neutral", "positive"], target)
    assert [e.label for e in examples] == [0, 2, 2] and shared == [0, 2]
    # a three-way model that would answer neutral answers its better one of negative and positive
    assert evaluate.among([[0.1, 0.9, 0.3]], shared) == [[0.1, float("-inf"), 0.3]]
    # the other way, a two-way model scored on tweets: the neutral ones are left out
    tweets = TaskData(["negative", "neutral", "positive"], ("accuracy",), [], [], [Example("meh", 1), Example("ok", 2)])
    examples, shared = evaluate.relabelled(["negative", "positive"], tweets)
    assert [e.label for e in examples] == [1] and shared == [0, 1]
    with pytest.raises(ConfigError, match="label words among"):
        evaluate.relabelled(["entailment", "not_entailment"], target)


@pytest.mark.slow  # three tiny runs, each scored again
def test_kept_runs_scored_on_their_own_task_and_another(tmp_path, make_config, tiny_models, capsys):
    results = tmp_path / "results"
    for method in ("method=prompt_tuning", "method=lora"):
        for seed in ("seed=0", "seed=1") if method == "method=prompt_tuning" else ("seed=0",):
            rec = launch(make_config(*tiny_bert(tiny_models), *TRAINED, method, seed, "sweep_name=shift"))
            assert rec.status == "ok", rec.error
    # scored on its own task and split, a run gives exactly its record's test accuracy
    evaluate.main(["--results", str(results), "--sweep", "shift", "--task", "tweets", *SPLIT])
    for path in (results / "shift" / "evaluated").glob("*-on-tweets.json"):
        e = json.loads(path.read_text())
        assert e["metrics"]["accuracy"] == e["in_domain"]["accuracy"] and e["left_out"] == 0
        assert e["labels"]["shared"] == ["negative", "neutral", "positive"]
        assert Path(e["record"]).is_file() and e["folder"].endswith(e["run_id"])
        path.unlink()
    evaluate.main(["--results", str(results), "--sweep", "shift", "--task", "movie_reviews", *SPLIT])
    found = domain_shift.evaluated(results, "shift")
    assert len(found) == 3 and all(e["evaluated_on"] == "movie_reviews" for e in found)
    assert all(e["labels"]["shared"] == ["negative", "positive"] and e["metrics"]["size"] == 32 for e in found)
    capsys.readouterr()
    assert domain_shift.main(["--results", str(results), "--sweep", "shift"]) == 0
    out = capsys.readouterr().out
    assert "| prompt_tuning: tweets → movie_reviews | 2 |" in out and "| lora: tweets → movie_reviews | 1 |" in out


def test_evaluate_refuses_a_sweep_that_kept_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        evaluate.main(["--results", str(tmp_path), "--sweep", "empty", "--task", "movie_reviews"])


def _kept_prompt(folder: Path, tokens: int, width: int) -> Path:
    folder.mkdir(parents=True)
    save_file({"prompt_embeddings": torch.ones(tokens, width)}, str(folder / "adapter_model.safetensors"))
    return folder


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["method.init=transfer"], r"method\.init_from.*kept prompt folder"),
        (["method.init_from=somewhere"], r"method\.init='random'.*transfer"),
        (["method.init=transfer", "method.init_from=/nonexistent"], r"method\.init_from.*adapter_model"),
    ],
)
def test_a_transfer_without_a_kept_prompt_names_the_key(make_config, overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate(make_config("method=prompt_tuning", *overrides))


def test_a_transferred_prompt_of_another_shape_is_refused_before_loading(make_config, tmp_path):
    # all-MiniLM-L6-v2 is 384 wide; the default prompt is 20 tokens
    folder = _kept_prompt(tmp_path / "source", 10, 384)
    with pytest.raises(ConfigError, match="a prompt of 20 tokens by 384.*it holds 10 by 384"):
        validate(make_config("method=prompt_tuning", "method.init=transfer", f"method.init_from={folder}"))


@pytest.mark.slow  # three tiny runs
def test_a_transferred_prompt_starts_where_its_source_ended(tmp_path, make_config, tiny_models, capsys):
    results = tmp_path / "results"
    common = [*tiny_bert(tiny_models), *TRAINED, "method=prompt_tuning", "method.num_virtual_tokens=4"]
    source = launch(make_config(*common, "task=movie_reviews", "sweep_name=source"))
    assert source.status == "ok", source.error
    # a record names its kept folder as well as the folder does; at a learning rate of nearly 0 the prompt
    # barely moves from where it started
    record = results / "source" / f"{source.run_id}.json"
    runs = [
        launch(make_config(*common, "method.lr=1e-9", *init, "sweep_name=target"))
        for init in (["seed=0"], ["seed=1"], ["method.init=transfer", f"method.init_from={record}"])
    ]
    assert all(r.status == "ok" for r in runs), [r.error for r in runs]
    started, ended = (
        load_file(Path(f) / "adapter_model.safetensors")["prompt_embeddings"]
        for f in (source.size.folder, runs[2].size.folder)
    )
    assert torch.allclose(started, ended, atol=1e-5) and not torch.allclose(
        started, load_file(Path(runs[0].size.folder) / "adapter_model.safetensors")["prompt_embeddings"]
    )
    capsys.readouterr()
    assert transfer.main(["--results", str(results), "--sweep", "target"]) == 0
    out = capsys.readouterr().out
    assert "| transfer from movie_reviews | 1 |" in out and "| random | 2 |" in out


def test_task_similarity_is_the_cosine_of_mean_virtual_tokens():
    a = torch.tensor([[1.0, 0.0], [1.0, 2.0]])  # mean [1, 1]
    b = torch.tensor([[2.0, 0.0], [0.0, 0.0]])  # mean [1, 0]
    assert transfer.similarity(a, b) == pytest.approx(2**-0.5)
