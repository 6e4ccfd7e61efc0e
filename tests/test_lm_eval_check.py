"""lm-evaluation-harness as a second scorer of a kept decoder adapter (bench/tools/lm_eval_check.py), on the tiny
random Llama: the same examples, prompts and greedy decoding give the same hits, example by example."""

import pytest

from bench.launch import launch
from bench.tools import lm_eval_check

pytest.importorskip("lm_eval", reason="lm-eval is an optional extra: pip install -e '.[lmeval]'")


@pytest.mark.slow  # lm-eval's start and its generations, example by example
@pytest.mark.parametrize("task", ["arithmetic", "tweets"])
def test_lm_eval_scores_a_kept_adapter_as_the_harness_did(make_config, tiny_models, task, tmp_path, capsys):
    rec = launch(
        make_config(
            "model=smollm2-135m",
            "model.source=hub",
            f"model.hub_id={tiny_models['llama']}",
            f"task={task}",
            "task.test_size=24",
            "task.max_length=48",
            "task.max_new_tokens=8",
            "train.max_steps=4",
            "method.lr=1e-2",
        )
    )
    assert rec.status == "ok", rec.error
    path = tmp_path / "results" / "default" / f"{rec.run_id}.json"
    assert lm_eval_check.main([str(path), "--keep", str(tmp_path / "lm_eval")]) == 0
    out = capsys.readouterr().out
    assert "per example: 24 of 24 agree" in out
    assert (tmp_path / "lm_eval" / f"peft_bench_{task}.yaml").is_file()


def test_a_run_without_an_adapter_is_refused_in_one_line(make_config, tiny_models, tmp_path):
    rec = launch(
        make_config(
            "method=full_ft", "model=bert-base-uncased", "model.source=hub", f"model.hub_id={tiny_models['bert']}"
        )
    )
    with pytest.raises(SystemExit):
        lm_eval_check.main([str(tmp_path / "results" / "default" / f"{rec.run_id}.json")])
