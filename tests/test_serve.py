"""Serving mode: mixed-task batches row by row, IA3's refusal, and a serve record end to end (tiny models)."""

import pytest
import torch

from analysis import serving
from bench import compose, models, serve
from bench.errors import ConfigError
from bench.families import FAMILIES
from tests.test_families import PRESETS

TOLERANCE = 1e-5  # float32: one row alone and the same row in a batch take different kernel paths


def _base(make_config, tiny_models, family, *overrides):
    cfg = make_config(f"model={PRESETS[family]}", "model.source=hub", f"model.hub_id={tiny_models[family]}", *overrides)
    model, tokenizer, _ = models.load(cfg.model, FAMILIES[cfg.model.family], 3)
    return cfg, model, tokenizer


def _batch(model, rows: int, architecture: str) -> dict:
    ids = torch.randint(4, model.config.vocab_size, (rows * 12,), generator=torch.Generator().manual_seed(0)).tolist()
    return serve.inputs(ids, rows, 12, architecture, getattr(model.config, "decoder_start_token_id", None), "cpu")


@pytest.mark.parametrize("family", ["bert", "llama", "t5"])
@pytest.mark.parametrize("method", ["lora", "prompt_tuning"])
def test_each_row_of_a_mixed_batch_is_served_as_alone_with_its_adapter(make_config, tiny_models, family, method):
    cfg, base, tokenizer = _base(make_config, tiny_models, family)
    family = FAMILIES[cfg.model.family]
    model = serve.with_adapters(base, compose.method_config(cfg, method), family, tokenizer, 4, seed=0)
    names = [serve.task_names(4)[i % 4] for i in range(8)]
    batch = _batch(base, 8, family.architecture)
    assert serve.check_mixed(model, batch, names) < TOLERANCE
    # the check can fail: served with only the active adapter, the other tasks' rows come out differently
    with torch.no_grad():
        mixed, active = serve.mixed_forward(model, batch, names).logits, model(**batch).logits
    differs = [(mixed[i] - active[i]).abs().max().item() > 1e-3 for i in range(8)]
    assert differs == [n != "default" for n in names]


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_a_merged_copy_serves_what_the_adapter_does(make_config, tiny_models, method):
    cfg, base, tokenizer = _base(make_config, tiny_models, "bert")  # BERT: a pooler and a classifier per task
    model = serve.with_adapters(base, compose.method_config(cfg, method), FAMILIES["bert"], tokenizer, 1, seed=0)
    merged = serve.merged_copy(model)
    assert not any("lora_" in n or "ia3_" in n or "modules_to_save" in n for n, _ in merged.named_parameters())
    batch = _batch(base, 4, "encoder")
    with torch.no_grad():
        assert (merged(**batch).logits - model(**batch).logits).abs().max() < TOLERANCE


def test_ia3_mixed_batches_are_refused_not_served_wrongly(make_config, tiny_models):
    cfg, base, tokenizer = _base(make_config, tiny_models, "bert")
    model = serve.with_adapters(base, compose.method_config(cfg, "ia3"), FAMILIES["bert"], tokenizer, 2, seed=0)
    with pytest.raises(ValueError, match="mixed batch of IA3 adapters: peft ignores adapter_names"):
        serve.mixed_forward(model, _batch(base, 2, "encoder"), serve.task_names(2))
    # asked for in the config, it is refused before anything loads
    with pytest.raises(ConfigError, match=r"serve.variants.*without 'ia3_mixed'.*peft ignores adapter_names for IA3"):
        serve.check(make_config("mode=serve", "serve.variants=[base,ia3_mixed]"))


@pytest.mark.parametrize(
    "override, accepted",
    [
        ("serve.variants=[lora]", "includes 'base'"),
        ("serve.variants=[base,lora_fast]", "names from: base, ia3, ia3_merged, lora, lora_merged"),
        ("serve.batch_sizes=[0]", "numbers >= 1"),
        ("serve.tasks=1", "adapters >= 2"),
        ("serve.repeats=0", "rounds >= 1"),
    ],
)
def test_bad_serve_settings_name_the_key_and_what_would_do(make_config, override, accepted):
    with pytest.raises(ConfigError, match=f"{override.split('=')[0]}.*{accepted}"):
        serve.check(make_config("mode=serve", override))


def test_a_serve_record_end_to_end_and_its_table(make_config, tiny_models, tmp_path):
    cfg, *_ = _base(
        make_config,
        tiny_models,
        "llama",
        "mode=serve",
        "serve.batch_sizes=[1,4]",
        "serve.lengths=[8,16]",
        "serve.repeats=2",
        "serve.warmup=1",
        "serve.tasks=2",
        "sweep_name=served",
    )
    rec = serve.launch(cfg)
    assert rec.status == "ok", rec.error
    assert (
        rec.run_id.startswith("smollm2-135m-serve-") and (tmp_path / f"results/served/serve/{rec.run_id}.json").exists()
    )
    s = rec.serve
    assert [(x["batch_size"], x["length"]) for x in s["shapes"]] == [(1, 8), (1, 16), (4, 8), (4, 16)]
    for shape in s["shapes"]:
        many = set(serve.MANY_TASKS) if shape["batch_size"] > 1 else set()
        assert set(shape["variants"]) == set(serve.VARIANTS) - set(serve.MANY_TASKS) | many
        assert shape["variants"]["base"]["relative_to_base"] == 1.0
        assert all(v["median_ms"] > 0 and v["p90_ms"] >= v["median_ms"] for v in shape["variants"].values())
    full = s["stored_bytes"]["full_copy"]
    assert 0 < s["stored_bytes"]["ia3"] < s["stored_bytes"]["lora"] < full
    assert s["memory"]["merged_copies_bytes"] == 2 * s["memory"]["base_bytes"] > s["memory"]["base_and_adapters_bytes"]
    assert (
        all(d < TOLERANCE for d in s["mixed_max_abs_difference"].values()) and len(s["mixed_max_abs_difference"]) == 2
    )
    found = serving.tables(serving.load(tmp_path / "results")["served"])
    latency, memory = (t.frame for t in found)
    assert list(latency.columns[:4]) == [
        "batch 1, 8 tokens",
        "batch 1, 16 tokens",
        "batch 4, 8 tokens",
        "batch 4, 16 tokens",
    ]
    assert latency.loc["base model", "batch 4, 8 tokens"].endswith("(1.00x)")
    assert latency.loc["LoRA, mixed-task batch", "batch 1, 8 tokens"] == "-"  # one row is one task
    # a merged copy is built from the adapter at load time: the task stores the adapter; the base model is a full copy
    assert (
        latency.loc["LoRA merged", "of a full copy"] == latency.loc["LoRA (unmerged)", "of a full copy"] != "100.000%"
    )
    assert latency.loc["base model", "of a full copy"] == "100.000%"
    assert memory.loc["smollm2-135m", "ratio"] == f"{s['memory']['ratio']:.2f}x"


def test_serving_lengths_must_fit_the_models_positions(make_config):
    cfg = make_config("mode=serve", "serve.lengths=[32,1000]")
    with pytest.raises(ConfigError, match=r"serve.lengths=\[32, 1000\] is not valid: expected lengths <= 492: .* 512"):
        serve.check(cfg)  # the default variants include prompt tuning's 20 virtual tokens
    serve.check(make_config("mode=serve", "serve.lengths=[492]"))
