"""Quantized bases (model.quantize, bitsandbytes on CPU): what is stored in 4 or 8 bits and what stays in
float, training on top, the refusals before loading, kept adapters reloaded onto the same quantized base,
and the fit estimate's weight bytes (tiny random models: plumbing only)."""

from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from test_families import PRESETS
from test_kept import _reloaded
from tiny import changed_by_training

from bench import fit, models, quantization, utilisation
from bench.errors import ConfigError
from bench.families import FAMILIES
from bench.launch import launch
from bench.runner import build
from bench.validate import validate

TRAINED = ("train.max_steps=3", "train.batch_size=8", "method.lr=1e-2")


def _tiny(tiny_models, family: str, *overrides: str) -> list[str]:
    return [f"model={PRESETS[family]}", "model.source=hub", f"model.hub_id={tiny_models[family]}", *overrides]


@pytest.mark.parametrize(
    "overrides, key, says",
    [
        (["method=full_ft"], "method", "full_ft updates the base model's own weights"),
        (["method=bitfit"], "method", "model.quantize=nf4: bitfit updates"),
        (["method=diff_pruning"], "method", "diff_pruning updates"),
        (["method=lomo"], "method", "lomo updates"),
        (["model.quantize=nf5"], "model.quantize", "one of none, nf4, fp4, int8"),
        (["model.quantize=int8", "model.compute_dtype=bfloat16"], "model.compute_dtype", "4-bit bases"),
        (["mode=serve"], "model.quantize", "float bases only"),
    ],
)
def test_what_cannot_run_on_a_quantized_base_is_refused_before_loading(make_config, overrides, key, says):
    with pytest.raises(ConfigError) as e:
        validate(make_config("model.quantize=nf4", *overrides))
    assert e.value.key == key and says in str(e.value)


def test_float_settings_of_a_float_base_are_refused_as_meaningless(make_config):
    with pytest.raises(ConfigError, match="model.double_quant=False is not valid: expected its default"):
        validate(make_config("model.double_quant=false"))
    for method in ("lora", "ia3", "prompt_tuning", "adapter"):
        validate(make_config("model.quantize=nf4", f"method={method}"))


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("kind", ["nf4", "int8"])
def test_the_backbone_is_stored_quantized_and_the_head_stays_float(make_config, tiny_models, family, kind):
    cfg = make_config(*_tiny(tiny_models, family, f"model.quantize={kind}"))
    model, _, _ = models.load(cfg.model, FAMILIES[cfg.model.family], 3)
    layer = bnb.nn.Linear4bit if kind == "nf4" else bnb.nn.Linear8bitLt
    linear = {n: type(m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    backbone = {n for n in linear if not FAMILIES[family].is_head(n) and n != "lm_head"}
    assert backbone and all(issubclass(linear[n], layer) for n in backbone)
    # BERT's pooler.dense and classifier train in every method: a quantized one could not
    assert all(not issubclass(t, layer) for n, t in linear.items() if n not in backbone)
    assert not any(p.requires_grad for p in model.parameters())  # peft's k-bit preparation froze the base


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("method, added", [("lora", "lora_"), ("ia3", "ia3_"), ("prompt_tuning", "prompt_encoder")])
def test_methods_on_a_quantized_base_train_what_they_add_and_the_head_only(
    make_config, tiny_models, family, method, added
):
    changed, trainable = changed_by_training(
        make_config(*_tiny(tiny_models, family, "model.quantize=nf4", f"method={method}", *TRAINED))
    )
    assert changed == trainable and any(added in n for n in changed)
    assert all(added in n or FAMILIES[family].is_head(n) for n in changed)


def test_a_qlora_adapter_reloads_onto_the_quantized_base_to_the_same_predictions(make_config, tiny_models):
    rec = launch(make_config(*_tiny(tiny_models, "bert", "model.quantize=nf4", "method=lora", *TRAINED)))
    assert rec.status == "ok", rec.error
    assert rec.config["model"]["quantize"] == "nf4" and Path(rec.size.folder).is_dir()
    model, predicted = _reloaded(rec)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert predicted == rec.per_example["predicted"]


def test_parameters_are_counted_as_weights_not_as_packed_bytes(make_config, tiny_models):
    counted = {}
    for kind in ("none", "nf4"):
        rec = launch(make_config(*_tiny(tiny_models, "llama", f"model.quantize={kind}", "train.max_steps=1")))
        assert rec.status == "ok", rec.error
        counted[kind] = rec.params
    assert counted["nf4"].total == counted["none"].total and counted["nf4"].trainable == counted["none"].trainable


def _bytes(t) -> int:
    return t.numel() * t.element_size()


def _held(model) -> int:
    """What the loaded model holds: its parameters, and the quantization constants bitsandbytes keeps beside
    them (4-bit: an absmax per block, itself quantized under double quantization; 8-bit: a scale per row)."""
    held = 0
    for p in model.parameters():
        held += _bytes(p)
        state = getattr(p, "quant_state", None)
        if state is not None:
            held += _bytes(state.absmax) + (_bytes(state.state2.absmax) if state.nested else 0)
        if getattr(p, "SCB", None) is not None:
            held += _bytes(p.SCB)
    return held


@pytest.mark.parametrize("kind, double", [("nf4", True), ("nf4", False), ("int8", True)])
def test_the_estimate_counts_the_bytes_a_quantized_base_holds(make_config, tiny_models, kind, double):
    cfg = make_config(*_tiny(tiny_models, "llama", f"model.quantize={kind}", f"model.double_quant={double}"))
    held = _held(build(cfg).model)  # the base as loaded, with the run's LoRA on it
    estimated = fit.estimate(cfg)["parts"]["weights"]
    float_weights = fit.estimate(make_config(*_tiny(tiny_models, "llama")))["parts"]["weights"]
    # what bitsandbytes holds and what the estimate counts agree within 2%, and are well under float32's
    assert abs(estimated - held) / held < 0.02, (estimated, held)
    assert estimated < 0.8 * float_weights
    assert quantization.bytes_per_weight(cfg.model, 4096) < 1.01


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_model_flops_of_a_quantized_base_are_the_float_bases(make_config, tiny_models, family):
    # bitsandbytes' layers are the base's matrices, not a method's added ones: the same work per token
    flops = []
    for kind in ("none", "nf4"):
        built = build(make_config(*_tiny(tiny_models, family, f"model.quantize={kind}")))
        flops.append(utilisation.flops_per_token(built.model, built.family, built.architecture, [24] * 4, None, 4))
    assert flops[0] == flops[1]


@pytest.mark.parametrize("family", ["bert", pytest.param("llama", marks=pytest.mark.slow)])
def test_the_estimate_of_a_qlora_run_is_within_15_percent_of_its_profiled_peak(make_config, tiny_models, family):
    from test_families import run_config
    from test_fit import PROFILED, _ratio

    rec = launch(run_config(make_config, tiny_models, family, "method=lora", "model.quantize=nf4", *PROFILED))
    # the estimate counts the 4-bit weights with their constants and the float copy a matmul dequantizes
    assert rec.estimate["parts"]["weights"] < rec.estimate["parts"]["activations"]  # where tiny models put the peak
    assert 0.85 < _ratio(rec) < 1.15
