"""mode=fit: every method on a float and a quantized base, estimated against one memory without weights."""

import pytest

from bench import fit, whatfits
from bench.errors import ConfigError
from bench.methods import METHODS


def test_every_method_that_can_run_is_a_row_with_its_own_estimate(make_config, capsys):
    cfg = make_config("mode=fit", "train.memory_limit_gib=0.3")
    rows = whatfits.launch(cfg)
    combos = {(r["method"], r["quantize"], r["optimizer"]) for r in rows}
    assert {m for m, _, _ in combos} == set(METHODS) - {"icl"}  # few-shot prompting does not apply to an encoder
    # methods that train the base's own weights only on a float base; the others on all three
    assert {q for m, q, _ in combos if m in ("full_ft", "lomo", "bitfit", "diff_pruning")} == {"none"}
    assert {(q, o) for m, q, o in combos if m == "lora"} == {
        (q, o) for q in whatfits.QUANTIZE for o in whatfits.OPTIMIZERS
    }
    assert {o for m, _, o in combos if m in ("lomo", "probe")} == {"lomo", "-"}  # its own update rule; nothing trains
    lora, qlora = (
        next(r for r in rows if (r["method"], r["quantize"], r["optimizer"]) == ("lora", q, "adamw"))
        for q in ("none", "nf4")
    )
    # LoRA r 8 on q and v, and the head (pooler and a 2-label classifier: the estimate reads no task data)
    assert lora["trainable"] == qlora["trainable"] == 73_728 + (384 * 384 + 384) + (384 * 2 + 2)
    assert qlora["parts"]["weights"] < 0.7 * lora["parts"]["weights"]
    # each row is what the run's own estimate would say
    assert lora["bytes"] == fit.estimate(whatfits.variant(cfg, "lora", "none"))["bytes"]
    out = capsys.readouterr().out
    assert out.startswith("what fits minilm-l6 in 0.3 GiB (train.memory_limit_gib)")
    assert "full_ft        none  adamw8bit" in out and "no batch size; gradient checkpointing" in out
    full, full8 = (
        next(r for r in rows if (r["method"], r["optimizer"]) == ("full_ft", o)) for o in ("adamw", "adamw8bit")
    )
    assert full8["parts"]["optimizer_state"] < 0.3 * full["parts"]["optimizer_state"]


def test_the_commands_own_settings_are_validated_first(make_config):
    with pytest.raises(ConfigError, match="method.r=0 is not valid"):
        whatfits.launch(make_config("mode=fit", "method.r=0"))


def test_a_configuration_only_preset_is_estimated_without_weights(make_config, capsys):
    full = whatfits.row(make_config("mode=fit", "model=gpt3-175b", "train.memory_limit_gib=80"), "full_ft", "none")
    assert full["trainable"] > 170e9 and not full["fits"]
