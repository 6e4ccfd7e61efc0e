"""method=peft: any peft type by configuration, its arguments checked against peft's own config
fields before loading, and types that cannot wrap a family's layers recorded as not applicable."""

import pytest
from test_families import run_config
from tiny import changed_by_training

from bench.errors import ConfigError
from bench.launch import launch
from bench.validate import validate


@pytest.mark.parametrize(
    "overrides, key, says",
    [
        (["method.type=LORAX"], "method.type", "LOHA"),
        (["method.type=ADALORA"], "method.type", "update_and_allocate"),
        (["method.type=PROMPT_TUNING"], "method.type", "VERA"),  # prompt learning has its own methods
        (["+method.args.rank=4"], "method.args.rank", "alpha"),  # LoHa's field is r
        (["method.type=VERA", "method.targets=[q,w]"], "method.targets", "ff_in"),
        (["method.type=LN_TUNING", "+method.args.target_modules=[LayerNorm]"], "method.targets", "null"),
        # values peft checks only as it wraps a layer: here on a probe of the model's width, before loading
        (["method.type=LORA", "+method.args.r=-3"], "method.args", "positive integer value but the value passed is -3"),
        (
            ["method.type=BOFT", "+method.args.boft_block_size=5"],
            "method.args",
            r"in_features \(384\) must be divisible",
        ),
    ],
)
def test_bad_peft_settings_name_the_key_and_what_peft_accepts(make_config, overrides, key, says):
    with pytest.raises(ConfigError, match=f"^{key}=.*{says}"):
        validate(make_config("method=peft", *overrides))


def test_a_type_that_cannot_wrap_conv1d_is_not_applicable_on_gpt2(make_config):
    reason = validate(make_config("model=gpt2", "method=peft", "method.type=OFT", "method.targets=[qkv]"))
    assert "OFT does not wrap gpt2's Conv1D" in reason
    assert validate(make_config("model=gpt2", "method=peft", "method.type=VERA", "method.targets=[qkv]")) is None


@pytest.mark.slow  # a whole run through the runner
def test_layer_norm_tuning_by_peft_module_names(make_config, tiny_models):
    rec = launch(
        run_config(
            make_config,
            tiny_models,
            "bert",
            "method=peft",
            "method.type=LN_TUNING",
            "method.targets=null",
            "+method.args.target_modules=[LayerNorm]",
        )
    )
    assert rec.status == "ok", rec.error
    assert rec.params.method == (2 * 2 + 1) * 2 * 32  # two per layer and the embeddings', weight and bias of 32


@pytest.mark.slow  # trains three tiny models
@pytest.mark.parametrize("family, kind", [("bert", "LOKR"), ("llama", "VERA"), ("t5", "OFT")])
def test_two_steps_change_what_peft_marks_trainable_and_nothing_else(make_config, tiny_models, family, kind):
    changed, trainable = changed_by_training(
        run_config(make_config, tiny_models, family, "method=peft", f"method.type={kind}", "method.lr=1e-2")
    )
    assert changed == trainable and changed
