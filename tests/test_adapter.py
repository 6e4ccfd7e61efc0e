"""Bottleneck adapters: they start as the identity, train only themselves and the head, and count
as the formula says (tests/test_count.py has RoBERTa's counts; test_families every family)."""

import pytest
import torch
from test_families import PRESETS, run_config
from tiny import changed_by_training

from bench.errors import ConfigError
from bench.runner import build
from bench.validate import validate


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])  # nn.Linear, GPT-2's Conv1D, an encoder-decoder
def test_adapters_start_as_the_identity(make_config, tiny_models, family):
    cfg = run_config(make_config, tiny_models, family, "method=adapter", "method.kind=houlsby")
    built = build(cfg)
    task, adapted, tokenizer = built.task, built.model, built.tokenizer
    plain = build(run_config(make_config, tiny_models, family, "method=full_ft")).model
    batch = tokenizer([e.text for e in task.test[:3]], return_tensors="pt", padding=True)
    if family == "t5":
        batch["decoder_input_ids"] = batch["input_ids"][:, :4]
    plain.load_state_dict(adapted.state_dict(), strict=False)  # the same head, where one is new
    adapted.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(adapted(**batch).logits, plain(**batch).logits)
    adapters = [n for n, _ in adapted.named_parameters() if ".adapter." in n]
    assert len(adapters) == 4 * (10 if family == "t5" else 2 * 2)  # down and up, weight and bias, per place


@pytest.mark.slow  # trains four tiny models
@pytest.mark.parametrize("kind", ["houlsby", "pfeiffer"])
@pytest.mark.parametrize("family", ["bert", "llama"])
def test_two_steps_change_the_adapters_and_the_head_and_nothing_else(make_config, tiny_models, family, kind):
    # 8 units: with 2 (32 / 16) every ReLU unit of one tiny random layer can be dead for every token
    cfg = run_config(make_config, tiny_models, family, "method=adapter", f"method.kind={kind}", "method.size=8")
    changed, trainable = changed_by_training(cfg)
    assert changed == trainable  # the zero-initialised up projection moves first, then down
    adapted = {n.split(".adapter.")[0] for n in changed if ".adapter." in n}
    assert changed - {n for n in changed if ".adapter." in n} == {
        n for n in changed if n.startswith(("classifier", "bert.pooler"))
    }
    if family == "llama":
        assert {m.rsplit(".", 1)[-1] for m in adapted} == (
            {"o_proj", "down_proj"} if kind == "houlsby" else {"down_proj"}
        )
    assert len(adapted) == 2 * (2 if kind == "houlsby" else 1)  # two layers


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["method.kind=serial"], "method.kind"),
        (["method.size=0"], "method.size"),
        (["method.size=1000"], "method.size"),
        (["method.reduction_factor=0"], "method.reduction_factor"),
        (["method.activation=sigmoidish"], "method.activation"),
    ],
)
def test_bad_adapter_settings_name_the_key(make_config, overrides, key):
    with pytest.raises(ConfigError, match=f"^{key}="):
        validate(make_config("method=adapter", *overrides))


def test_every_family_has_a_place_for_both_kinds():
    from bench.families import FAMILIES

    assert all({"o", "ff_out"} <= set(FAMILIES[f].matrices) for f in PRESETS)
