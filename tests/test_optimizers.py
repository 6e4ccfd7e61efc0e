"""train.optimizer: arguments checked before loading, the analytic state against what each torch
optimizer really allocates, and LOMO's fused update against a plain SGD step."""

import copy

import pytest
import torch
from omegaconf import OmegaConf, open_dict
from transformers import AutoModelForSequenceClassification

from bench import fit, optimizers
from bench.errors import ConfigError
from bench.validate import validate


def _model(tiny_models):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"], num_labels=3)
    return model.eval()  # no dropout: two copies must compute the same gradients


def _batch():
    g = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(5, 90, (4, 12), generator=g), "labels": torch.tensor([0, 1, 2, 1])}


def _train_cfg(max_grad_norm=0.0, **args):
    return OmegaConf.create({"max_grad_norm": max_grad_norm, "weight_decay": 0.0, "optimizer_args": args})


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["train.optimizer=adam"], "train.optimizer"),
        (["train.optimizer=sgd", "+train.optimizer_args.betas=[0.9,0.99]"], "train.optimizer_args.betas"),
        (["+train.optimizer_args.lr=0.1"], "train.optimizer_args.lr"),
        (["train.optimizer=lomo", "train.grad_accum=4"], "train.grad_accum"),
        (["method=lomo", "train.optimizer=adafactor"], "train.optimizer"),
        # values torch's constructors refuse, refused before loading with torch's words
        (["train.optimizer=sgd", "+train.optimizer_args.momentum=-1"], "train.optimizer_args"),
        (["+train.optimizer_args.betas=[1.5,0.9]"], "train.optimizer_args"),
    ],
)
def test_bad_optimizer_settings_name_the_key(make_config, overrides, key):
    with pytest.raises(ConfigError, match=f"^{key}="):
        validate(make_config(*overrides))


def test_eight_bit_adamw_trains_and_paging_is_refused_on_cpu(make_config, tiny_models):
    from tiny import changed_by_training

    from tests.conftest import tiny_bert

    for method in ("full_ft", "lora"):
        cfg = make_config(*tiny_bert(tiny_models), f"method={method}", "train.optimizer=adamw8bit", "train.max_steps=2")
        changed, trainable = changed_by_training(cfg)
        assert changed == trainable
    with pytest.raises(ConfigError, match="train.optimizer_args.is_paged=True is not valid: expected false on CPU"):
        validate(make_config("train.optimizer=adamw8bit", "+train.optimizer_args.is_paged=true", "train.device=cpu"))


def test_galore_projects_the_matrices_and_full_fine_tuning_trains_with_it(make_config, tiny_models):
    from tiny import changed_by_training

    from tests.conftest import tiny_bert

    cfg = make_config(*tiny_bert(tiny_models), "method=full_ft", "train.optimizer=galore", "train.max_steps=3")
    with open_dict(cfg):
        cfg.train.optimizer_args = {"rank": 4, "update_proj_gap": 2}
    changed, trainable = changed_by_training(cfg)
    assert changed == trainable
    model = _model(tiny_models)
    update = optimizers.build("galore", model, 1e-3, OmegaConf.merge(_train_cfg(rank=4), {"optimizer": "galore"}))
    update.backward(model(**_batch()).loss)
    update.step()
    projected = {id(p) for p in optimizers.projected(update.params, 4)}
    assert projected and all(
        ("projector" in s) == (id(p) in projected) for p, s in update.optimizer.state.items()
    )  # a projection for each matrix wider than the rank, and only for those


@pytest.mark.parametrize(
    "name, args",
    [
        ("apollo", {"rank": 4, "update_proj_gap": 2}),
        ("apollo_mini", {}),
        ("adam_mini", {}),
        ("badam", {"switch_block_every": 1}),  # 3 steps: the tiny BERT's embeddings and its two layers, in turn
    ],
)
def test_memory_lean_optimizers_train_every_weight_of_full_fine_tuning(make_config, tiny_models, name, args):
    from tiny import changed_by_training

    from tests.conftest import tiny_bert

    cfg = make_config(*tiny_bert(tiny_models), "method=full_ft", f"train.optimizer={name}", "train.max_steps=3")
    with open_dict(cfg):
        cfg.train.optimizer_args = args
    changed, trainable = changed_by_training(cfg)
    assert changed == trainable and len(trainable) > 30  # BAdam's frozen blocks are trainable again at the end


def test_badam_trains_one_block_at_a_time_and_the_head_always():
    prefixes, always = optimizers.blocks(
        [
            "bert.embeddings.word_embeddings.weight",
            "bert.encoder.layer.0.attention.self.query.weight",
            "bert.encoder.layer.1.output.dense.weight",
            "bert.encoder.layer.11.output.dense.weight",
            "bert.pooler.dense.weight",
            "classifier.weight",
        ]
    )
    assert prefixes == [
        ["bert.embeddings."],
        ["bert.encoder.layer.0."],
        ["bert.encoder.layer.1."],
        ["bert.encoder.layer.11."],
    ]
    assert always == ["bert.pooler.dense.weight", "classifier.weight"]
    assert optimizers.blocks(["model.layers.3.mlp.up_proj.weight", "transformer.h.0.attn.c_attn.weight"])[0] == [
        ["model.layers.3."],
        ["transformer.h.0."],
    ]


@pytest.mark.parametrize(
    "method, optimizer, arg, key",
    [  # arg: one train.optimizer_args entry; key: what the error names
        ("lora", "adam_mini", None, "train.optimizer"),
        ("lora", "badam", None, "train.optimizer"),
        ("full_ft", "apollo", "scale_type=row", "train.optimizer_args.scale_type"),
        ("full_ft", "apollo_mini", "proj=gaussian", "train.optimizer_args.proj"),
        ("full_ft", "badam", "switch_mode=cyclic", "train.optimizer_args.switch_mode"),
        ("full_ft", "badam", "switch_block_every=0", "train.optimizer_args.switch_block_every"),
        ("full_ft", "adam_mini", "dim=64", "train.optimizer_args.dim"),
        ("full_ft", "apollo", "proj_type=reverse_std", "train.optimizer_args.proj_type"),
        ("full_ft", "galore", "no_deprecation_warning=false", "train.optimizer_args.no_deprecation_warning"),
        ("full_ft", "adam_mini", "betas=[0.9,2.0]", "train.optimizer_args"),
    ],
)
def test_bad_memory_lean_settings_name_the_key(make_config, method, optimizer, arg, key):
    overrides = [f"method={method}", f"train.optimizer={optimizer}", *([f"+train.optimizer_args.{arg}"] if arg else [])]
    with pytest.raises(ConfigError, match=f"^{key}="):
        validate(make_config(*overrides))


def test_a_badam_start_block_beyond_the_models_blocks_is_refused_before_loading(make_config, tmp_path):
    # MiniLM: six layers and the embeddings; the estimate builds it on the meta device, no weight loads
    cfg = make_config("method=full_ft", "train.optimizer=badam", "+train.optimizer_args.start_block=7")
    with pytest.raises(ConfigError, match="^train.optimizer_args.start_block=7 .* below 7"):
        fit.checked(cfg)
    assert fit.checked(make_config("method=full_ft", "train.optimizer=badam", "+train.optimizer_args.start_block=6"))


@pytest.mark.parametrize(
    "args, key",
    [({"rank": 0}, "rank"), ({"scale": -1}, "scale"), ({"proj_type": "diagonal"}, "proj_type"), ({"eps": -1}, "")],
)
def test_bad_galore_settings_are_refused_by_name(make_config, args, key):
    cfg = make_config("method=full_ft", "train.optimizer=galore")
    with open_dict(cfg):
        cfg.train.optimizer_args = args
    with pytest.raises(ConfigError, match=f"^train.optimizer_args{'.' + key if key else ''}="):
        validate(cfg)


def test_optimizer_values_are_refused_in_torchs_words(make_config):
    with pytest.raises(
        ConfigError, match=r"momentum.: -1\} is not valid: expected values sgd accepts \(Invalid momentum"
    ):
        validate(make_config("train.optimizer=sgd", "+train.optimizer_args.momentum=-1"))
    validate(make_config("train.optimizer=sgd", "+train.optimizer_args.momentum=0.9"))


@pytest.mark.parametrize(
    "name, args",
    [
        ("adamw", {}),
        ("adamw", {"amsgrad": True}),
        ("adamw8bit", {}),
        ("adamw8bit", {"min_8bit_size": 64}),
        ("galore", {"rank": 4, "update_proj_gap": 2}),
        ("galore", {}),  # rank 128: wider than every tiny matrix, so nothing is projected
        ("apollo", {"rank": 4, "update_proj_gap": 2}),
        ("apollo_mini", {}),  # rank 1: every matrix projected
        ("adam_mini", {}),
        ("badam", {"start_block": 0}),  # the embeddings: the tiny model's largest block
        ("sgd", {}),
        ("sgd", {"momentum": 0.9}),
        ("adafactor", {}),
    ],
)
def test_analytic_state_is_what_the_optimizer_allocates(tiny_models, name, args):
    model = _model(tiny_models)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    update = optimizers.build(name, model, 1e-3, OmegaConf.merge(_train_cfg(**args), {"optimizer": name}))
    update.backward(model(**_batch()).loss)
    update.step()
    inner = getattr(update.optimizer, "base_optimizer", update.optimizer)  # BAdam's AdamW of the current block
    held = [  # GaLore's and APOLLO's projection matrix sits in its projector object
        getattr(v, "ortho_matrix", v) for state in inner.state.values() for k, v in state.items() if k != "step"
    ]
    held += list(getattr(update.optimizer, "param_idx2hp", {}).values())  # BAdam's float32 copy of the block
    # by storage: bitsandbytes' states share one code table per moment
    tensors = {v.data_ptr(): v for v in held if isinstance(v, torch.Tensor)}
    allocated = round(sum(v.numel() * v.element_size() for v in tensors.values()) / 4)  # in float32 elements
    assert allocated == optimizers.state_elements(name, args, named, model.config)
    assert allocated > 0 or name == "sgd" and not args


@pytest.mark.parametrize("max_grad_norm", [0.0, 0.05])  # 0.05: far below the gradient's norm, so clipping acts
def test_lomo_step_is_a_plain_sgd_step(tiny_models, max_grad_norm):
    sgd_model = _model(tiny_models)
    lomo_model = copy.deepcopy(sgd_model)
    before = {n: p.detach().clone() for n, p in sgd_model.named_parameters()}
    for name, model in (("sgd", sgd_model), ("lomo", lomo_model)):
        update = optimizers.build(name, model, 0.1, _train_cfg(max_grad_norm))
        update.backward(model(**_batch()).loss)
        update.step()
    lomo = dict(lomo_model.named_parameters())
    assert sum(not torch.equal(p, before[n]) for n, p in sgd_model.named_parameters()) > 30  # the step moved weights
    for n, p in sgd_model.named_parameters():
        torch.testing.assert_close(lomo[n], p, rtol=1e-5, atol=1e-6, msg=lambda m, n=n: f"{n}: {m}")
    assert all(p.grad is None for p in lomo_model.parameters())  # LOMO keeps no gradient


@pytest.mark.slow  # whole runs through the runner
@pytest.mark.parametrize(
    "overrides, state",
    [
        (["method=lomo"], 0),
        (["method=full_ft", "train.optimizer=sgd"], 0),
        (["method=full_ft", "train.optimizer=sgd", "+train.optimizer_args.momentum=0.9"], 1),
    ],
)
def test_the_record_states_the_optimizers_memory(make_config, tiny_models, overrides, state):
    from test_families import run_config

    from bench.launch import launch

    rec = launch(run_config(make_config, tiny_models, "bert", *overrides))
    assert rec.status == "ok", rec.error
    analytic, trainable = rec.memory.analytic_bytes, rec.params.trainable
    assert analytic["optimizer_state"] == state * 4 * trainable
    # LOMO holds one weight's gradient at a time: the largest, the tiny model's word embeddings (vocabulary x 32)
    assert (
        analytic["gradients"] < 4 * trainable
        if overrides == ["method=lomo"]
        else analytic["gradients"] == 4 * trainable
    )


@pytest.mark.slow  # profiles three full fine-tuning steps of the default model under each optimizer
def test_the_memory_benchmark_finds_lomo_under_half_of_adamw(monkeypatch, capsys):
    import sys

    from bench.tools import optimizer_memory

    monkeypatch.setattr(
        sys,
        "argv",
        ["optimizer_memory", "--rounds", "1", "train.batch_size=2", "task.train_size=16", "task.max_length=32"],
    )
    optimizer_memory.main()
    out = capsys.readouterr().out
    adamw, lomo = (line for line in out.splitlines() if line.strip().startswith(("adamw:", "lomo:")))
    assert "optimizer_state" in adamw and "optimizer_state" not in lomo
    # MiniLM-L6: AdamW holds weights, gradients and two moments (about 4 x 87 MiB); LOMO the weights,
    # one weight's gradient (the word embeddings', 45 MiB) and the activations
    assert float(lomo.split(" of adamw")[0].rsplit(" ", 1)[1]) < 0.5
