"""Forgetting: the loss on a fixed sample of general English, after tuning minus before."""

import warnings

import pytest

from analysis import tables
from bench import forgetting
from bench import results as records
from bench.launch import launch
from tests.test_families import PRESETS


def _run(make_config, tiny_models, family, *overrides):
    cfg = make_config(
        f"model={PRESETS[family]}",
        "model.source=hub",
        f"model.hub_id={tiny_models[family]}",
        "task.max_length=48",
        *overrides,
    )
    rec = launch(cfg)
    assert rec.status == "ok", rec.error
    return rec


def test_the_sample_is_fixed_general_english():
    texts = forgetting.sample()
    assert len(texts) == forgetting.TEXTS and texts == forgetting.sample()
    assert texts[0].startswith("Hundreds of people have been forced to vacate their homes")


def test_nothing_trained_is_nothing_forgotten(make_config, tiny_models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rec = _run(make_config, tiny_models, "llama", "method=icl", "method.shots=2")
    assert rec.forgetting.score == 0.0 and "nothing trains" in rec.forgetting.reason  # so not measured
    # what it would have measured: the same model scores the same loss twice, on every article's tokens
    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    first, again = (forgetting.mean_token_loss(model, tokenizer, "decoder", "cpu") for _ in range(2))
    assert first == again and first["loss"] > 0
    assert first["tokens"] > forgetting.TEXTS  # every article scored, not only its first token


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_tuning_moves_the_loss_on_general_text(make_config, tiny_models, family, tmp_path):
    rec = _run(make_config, tiny_models, family, "method=full_ft", "method.lr=1e-2", "train.max_steps=3")
    f = rec.forgetting
    assert f.score == pytest.approx(f.loss_after - f.loss_before) and f.score != 0
    # the record fits analysis, and the methods table shows the score
    _run(make_config, tiny_models, family, "method=icl", "method.shots=2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a record analysis cannot read would be skipped with a warning
        frame = records.load(tmp_path / "results")
    assert len(frame) == 2 and frame.forgetting.notna().all()
    table = tables.methods_table(frame[frame.status == "ok"], frame.task.iloc[0]).frame
    assert set(table["forgetting (nats/token)"]) == {"-", "+0.000", f"{f.score:+.3f}"}  # "-": the majority class


def test_an_encoder_classifier_has_no_score(make_config, tiny_models):
    rec = _run(make_config, tiny_models, "bert", "method=lora")
    assert rec.forgetting.score is None and "no language-model head" in rec.forgetting.reason
