"""LoRA's variants as settings of method=lora: DoRA, rsLoRA, the initialisations (gaussian, PiSSA, OLoRA, LoftQ),
LoRA+ and AdaLoRA, each training what it should, counted, labelled and refused where it cannot run (tiny random
models)."""

import math

import pytest
import torch
from omegaconf import OmegaConf
from tiny import changed_by_training

from bench import count
from bench.errors import ConfigError
from bench.methods import METHODS
from bench.predict import predict
from bench.runner import build
from bench.validate import validate
from tests.conftest import tiny_bert

TRAINED = ("train.max_steps=3", "train.batch_size=8", "method.lr=1e-2")
H, R, L = 32, 8, 2  # tiny BERT: width 32, 2 layers; LoRA r 8 on q and v


@pytest.mark.parametrize(
    "variant",
    [
        "method.use_dora=true",
        "method.use_rslora=true",
        "method.init=gaussian",
        "method.init=pissa",
        "method.init=olora",
    ],
)
def test_each_variant_trains_its_adapters_and_the_head_only(make_config, tiny_models, variant):
    changed, trainable = changed_by_training(make_config(*tiny_bert(tiny_models), variant, *TRAINED))
    assert changed == trainable and any("lora_" in n for n in changed)
    assert all("lora_" in n or n.split(".")[-3] in ("pooler", "classifier") or "modules_to_save" in n for n in changed)
    if variant == "method.use_dora=true":  # DoRA's trained magnitude, one per output of each adapted matrix
        assert any("lora_magnitude_vector" in n for n in changed)


def test_rslora_scales_by_the_square_root_of_the_rank(make_config, tiny_models):
    scales = {}
    for rs in ("false", "true"):
        model = build(make_config(*tiny_bert(tiny_models), f"method.use_rslora={rs}")).model
        [scales[rs]] = {m.scaling["default"] for m in model.modules() if hasattr(m, "lora_A")}
    assert scales == {"false": 16 / R, "true": 16 / math.sqrt(R)}


def test_pissa_moves_the_principal_directions_into_the_adapter_and_leaves_the_output(make_config, tiny_models):
    outputs = {}
    for init in ("default", "pissa"):
        cfg = make_config(*tiny_bert(tiny_models), f"method.init={init}")
        torch.manual_seed(0)  # the same fresh classification head
        built = build(cfg)
        outputs[init], _ = predict(
            built.model.eval(), built.tokenizer, built.task, built.task.test[:8], "encoder", cfg.task, 8, "cpu"
        )
        b = next(m.lora_B["default"].weight for m in built.model.modules() if hasattr(m, "lora_B"))
        assert (b.abs().sum() > 0) == (init == "pissa")  # B starts at zero, or holds the principal directions
    assert torch.tensor(outputs["pissa"]) == pytest.approx(torch.tensor(outputs["default"]), abs=1e-4)


def test_dora_counts_a_magnitude_per_output_and_the_rest_as_lora(make_config, tiny_models):
    counted = {
        dora: count.count(make_config(*tiny_bert(tiny_models), "model.config=null", f"method.use_dora={dora}"))
        for dora in ("false", "true")  # on the meta device, from the tiny folder's config.json
    }
    assert counted["true"]["params"]["method"] - counted["false"]["params"]["method"] == L * 2 * H


@pytest.mark.parametrize(
    "overrides, key, says",
    [
        (["method.init=loftx"], "method.init", "one of default, gaussian, pissa, olora, loftq"),
        (["method.init=pissa", "model.quantize=nf4"], "method.init", "the float weights"),
        (["method.init=loftq"], "model.quantize", "nf4 or fp4 with method.init=loftq"),
        (["method.init=loftq", "model.quantize=int8"], "model.quantize", "nf4 or fp4 with method.init=loftq"),
        (["method.adalora=true", "method.use_dora=true"], "method.use_dora", "peft's AdaLoRA has no such variant"),
        (["method.adalora=true", "method.lr_ratio=4"], "method.lr_ratio", "peft's AdaLoRA has no such variant"),
        (["method.adalora=true", "method.init_r=8"], "method.init_r", "a starting rank > method.r=8"),
        (
            ["method.adalora=true", "train.early_stopping_patience=2", "train.eval_every=10"],
            "train.early_stopping_patience",
            "would keep the ranks allocated since",
        ),
        (["method.init=loftq", "model.quantize=nf4", "method.use_dora=true"], "method.use_dora", "DoRA's magnitudes"),
        (["method.adalora=true", "train.optimizer=lomo"], "train.optimizer", "AdaLoRA reads the gradients"),
    ],
)
def test_variants_that_cannot_run_are_refused_before_loading(make_config, overrides, key, says):
    with pytest.raises(ConfigError) as e:
        validate(make_config(*overrides))
    assert e.value.key == key and says in str(e.value)


def test_tables_name_the_variant():
    row = OmegaConf.create({"r": 8, "targets": "['q', 'v']", "use_dora": True, "use_rslora": False, "init": "pissa"})
    assert METHODS["lora"].label(row) == "LoRA (r=8; ['q', 'v']; DoRA; pissa init)"


def test_lora_plus_trains_b_at_its_ratio_of_as_rate(make_config, tiny_models):
    # peft's create_loraplus_optimizer groups the weights: B (and the head, as peft groups it) at lr x ratio
    from bench import optimizers

    cfg = make_config(*tiny_bert(tiny_models), "method.lr_ratio=16", "method.lr=1e-3")
    model = build(cfg).model
    make = METHODS["lora"].make_optimizer(model, cfg.method)
    update = optimizers.build("adamw", model, cfg.method.lr, cfg.train, make=make)
    rates = {}
    for group in update.optimizer.param_groups:
        for p in group["params"]:
            rates[next(n for n, q in model.named_parameters() if q is p)] = group["lr"]
    assert {r for n, r in rates.items() if "lora_A" in n} == {1e-3}
    assert {r for n, r in rates.items() if "lora_B" in n} == {16e-3}
    assert set(rates) == {n for n, p in model.named_parameters() if p.requires_grad}  # every trained weight, once
    assert METHODS["lora"].make_optimizer(model, make_config().method) is None  # plain LoRA: one group


def test_lora_plus_trains_and_a_ratio_below_one_is_refused(make_config, tiny_models):
    changed, trainable = changed_by_training(make_config(*tiny_bert(tiny_models), "method.lr_ratio=16", *TRAINED))
    assert changed == trainable
    with pytest.raises(ConfigError, match=r"method.lr_ratio=0.5 is not valid: expected a ratio >= 1"):
        validate(make_config("method.lr_ratio=0.5"))
    with pytest.raises(ConfigError, match=r"method.lr_ratio=16.0 is not valid: expected 1 with train.optimizer=lomo"):
        validate(make_config("method.lr_ratio=16", "train.optimizer=lomo"))


def test_adalora_prunes_ranks_to_the_budget_and_counts_what_it_kept(make_config, tiny_models):
    from test_kept import _reloaded

    from bench.launch import launch

    rec = launch(
        make_config(
            *tiny_bert(tiny_models),
            "method.adalora=true",
            "method.r=2",
            "method.init_r=4",
            "train.max_steps=10",
            "train.batch_size=8",
            "method.lr=1e-2",
        )
    )
    assert rec.status == "ok", rec.error
    ranks = {k: v for k, v in rec.params.items() if k.startswith("rank/")}
    assert len(ranks) == L * 2 and sum(ranks.values()) == 2 * len(ranks)  # the budget: r on average over q and v
    assert all(0 <= r <= 4 for r in ranks.values())
    per_rank = H + H + 1  # a row of A, a column of B and a singular value
    assert rec.params.method == sum(ranks.values()) * per_rank
    assert rec.params.trainable == rec.params.method + rec.params.head
    # peft keeps the allocated ranks only, and rebuilds them from its config on reload
    assert _reloaded(rec)[1] == rec.per_example["predicted"]


def test_adalora_state_in_the_estimate_is_what_its_rank_allocator_keeps(make_config, tiny_models):
    cfg = make_config(*tiny_bert(tiny_models), "method.adalora=true")
    model = build(cfg).model
    model(input_ids=torch.randint(5, 100, (2, 8)), labels=torch.tensor([0, 1])).loss.backward()
    allocator = model.base_model.rankallocator
    allocator.update_ipt(model)  # what each step of the budgeting phase keeps
    kept = sum(t.numel() for d in (allocator.ipt, allocator.exp_avg_ipt, allocator.exp_avg_unc) for t in d.values())
    assert kept and METHODS["lora"].state_elements(model, cfg.method) == kept


def test_adalora_trains_its_svd_factors_and_the_head_only(make_config, tiny_models):
    changed, trainable = changed_by_training(make_config(*tiny_bert(tiny_models), "method.adalora=true", *TRAINED))
    assert changed == trainable and any("lora_E" in n for n in changed)
    assert all("lora_" in n or n.split(".")[-3] in ("pooler", "classifier") or "modules_to_save" in n for n in changed)


def test_loftq_starts_the_adapter_at_the_quantization_error(make_config, tiny_models):
    # the 4-bit base plus LoftQ's B·A is nearer the float weight than the 4-bit base alone
    import bitsandbytes as bnb
    from safetensors.torch import load_file

    built = build(make_config(*tiny_bert(tiny_models), "model.quantize=nf4", "method.init=loftq"))
    weights = load_file(f"{tiny_models['bert']}/model.safetensors")
    errors = []
    for name, m in built.model.named_modules():
        if hasattr(m, "lora_A") and isinstance(m.get_base_layer(), bnb.nn.Linear4bit):
            key = name.removeprefix("base_model.model.") + ".weight"
            w = weights.get(key, weights.get(key.removeprefix("bert.")))
            q = bnb.functional.dequantize_4bit(m.get_base_layer().weight.data, m.get_base_layer().weight.quant_state)
            ba = m.lora_B["default"].weight @ m.lora_A["default"].weight * m.scaling["default"]
            errors.append(((w - q).norm().item(), (w - q - ba).norm().item()))
    assert errors and all(after < before for before, after in errors)
