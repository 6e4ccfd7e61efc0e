"""Diff Pruning: the frozen weights never move, the projection keeps exactly its share of the
difference, what is stored rebuilds the trained model, and the L0 penalty closes gates."""

import pytest
import torch
from safetensors.torch import load_file
from test_families import run_config
from tiny import changed_by_training

from bench.errors import ConfigError
from bench.methods.nn.difference import differences
from bench.runner import build
from bench.validate import validate


def _trained(make_config, tiny_models, *overrides):
    cfg = run_config(make_config, tiny_models, "bert", "method=diff_pruning", "method.target_sparsity=0.01", *overrides)
    torch.manual_seed(0)
    built = build(cfg)
    task, method, model, tokenizer = built.task, built.method, built.model, built.tokenizer
    loader = built.train_loader(cfg)
    method.fit(model, loader, cfg.method, cfg.train, "cpu")
    return cfg, task, method, model, tokenizer


@pytest.mark.slow  # trains the tiny model
def test_two_steps_move_the_differences_and_the_head_never_the_pretrained_weights(make_config, tiny_models):
    changed, trainable = changed_by_training(run_config(make_config, tiny_models, "bert", "method=diff_pruning"))
    assert changed and changed <= trainable
    assert not [n for n in changed if n.endswith(".original")]  # the pre-trained weights are frozen
    assert all(n.endswith((".w", ".log_alpha")) or n.startswith(("classifier", "bert.pooler")) for n in changed)


@pytest.mark.slow  # trains the tiny model
def test_the_projection_keeps_its_share_and_the_stored_file_rebuilds_the_model(make_config, tiny_models, tmp_path):
    cfg, task, method, model, tokenizer = _trained(make_config, tiny_models, "method.retrain_steps=2")
    diffs = differences(model)
    entries = sum(d.w.numel() for d in diffs.values())
    kept = sum(int(torch.count_nonzero(d.delta())) for d in diffs.values())
    assert kept == round(0.01 * entries) == method.count(model, cfg.method, build(cfg).family)["method"]

    method.save(model, tmp_path)
    stored = load_file(str(tmp_path / "diff.safetensors"))
    assert sum(v.numel() for k, v in stored.items() if k.endswith(".value")) == kept
    # a fresh copy of the pre-trained model plus the stored difference and head scores what the trained one does
    fresh = build(run_config(make_config, tiny_models, "bert", "method=full_ft")).model
    with torch.no_grad():
        params = dict(fresh.named_parameters())
        for name in diffs:
            params[name].view(-1)[stored[f"{name}.index"].long()] += stored[f"{name}.value"]
        for name in ("classifier.weight", "classifier.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias"):
            params[name].copy_(stored[name])
    batch = tokenizer([e.text for e in task.test[:4]], return_tensors="pt", padding=True)
    model.eval(), fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(**batch).logits, model(**batch).logits, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # trains the tiny model twice
def test_the_l0_penalty_closes_gates(make_config, tiny_models):
    def mean_log_alpha(weight):
        model = _trained(make_config, tiny_models, f"method.l0_weight={weight}", "method.lr=0.1")[3]
        return torch.cat([d.log_alpha.flatten() for d in differences(model).values()]).mean().item()

    assert mean_log_alpha(1.0) < mean_log_alpha(0.0) - 0.05


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["method.target_sparsity=0"], "method.target_sparsity"),
        (["method.target_sparsity=1.5"], "method.target_sparsity"),
        (["method.l0_weight=-1"], "method.l0_weight"),
        (["method.retrain_steps=-2"], "method.retrain_steps"),
    ],
)
def test_bad_diff_pruning_settings_name_the_key(make_config, overrides, key):
    with pytest.raises(ConfigError, match=f"^{key}="):
        validate(make_config("method=diff_pruning", *overrides))


def test_roberta_base_counts_half_a_percent_of_its_weights(make_config):
    from bench import count

    p = count.launch(make_config("mode=count", "model=roberta-base", "method=diff_pruning")).params
    assert p.method == round(0.005 * (p.total - p.head)) == 620_275  # of 124,055,040 pre-trained weights
