"""train.precision on CPU: every mode trains tiny models with finite losses, keeps what trains and its
optimizer state in float32, and computes the forward in the mode's dtype (bench/precision.py)."""

import math

import pytest
import torch
from conftest import tiny_bert

from bench import optimizers
from bench.launch import launch
from bench.runner import build, seed_everything
from bench.train import train

MODES = ("fp32", "bf16-mixed", "bf16", "fp16-mixed")
COMPUTES = {"fp32": torch.float32, "bf16-mixed": torch.bfloat16, "bf16": torch.bfloat16, "fp16-mixed": torch.float16}


@pytest.mark.parametrize("precision", MODES)
@pytest.mark.parametrize("method", ["lora", "full_ft"])
def test_each_precision_trains_in_the_dtypes_it_names(make_config, tiny_models, monkeypatch, precision, method):
    cfg = make_config(*tiny_bert(tiny_models), f"method={method}", f"train.precision={precision}", "train.max_steps=3")
    seed_everything(0)
    built = build(cfg)
    task, model, tokenizer, architecture = built.task, built.model, built.tokenizer, built.architecture
    from bench import batching

    loader = batching.train_loader(task, tokenizer, architecture, cfg.task, cfg.train.batch_size, 0)
    updates, computed = [], set()
    real_build = optimizers.build
    monkeypatch.setattr(optimizers, "build", lambda *a, **k: updates.append(real_build(*a, **k)) or updates[-1])
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda mod, inputs, out: computed.add(out.dtype))

    result = train(model, loader, cfg.train, cfg.method.lr, "cpu", show_progress=False)

    assert all(math.isfinite(loss) for _, loss in result.losses)
    assert computed == {COMPUTES[precision]}
    trained = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert trained and {p.dtype for p in trained} == {torch.float32}
    if frozen:
        assert {p.dtype for p in frozen} == {torch.bfloat16 if precision == "bf16" else torch.float32}
    state = [v for s in updates[0].optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim()]
    assert state and {v.dtype for v in state} == {torch.float32}
    assert (updates[0].scaler is not None) == (precision == "fp16-mixed")


@pytest.mark.slow  # six whole runs
@pytest.mark.parametrize("family, task", [("bert", "tweets"), ("llama", "arithmetic"), ("t5", "arithmetic")])
@pytest.mark.parametrize("precision", ["bf16", "fp16-mixed"])
def test_a_lower_precision_run_is_scored_measured_and_recorded(make_config, tiny_models, family, task, precision):
    model = (
        tiny_bert(tiny_models)
        if family == "bert"
        else (
            f"model={'smollm2-135m' if family == 'llama' else 'flan-t5-small'}",
            "model.source=hub",
            f"model.hub_id={tiny_models[family]}",
        )
    )
    rec = launch(
        make_config(
            *model,
            f"task={task}",
            "method=lora",
            f"train.precision={precision}",
            "train.latency_samples=1",
            "train.profile_memory=true",
        )
    )
    assert rec.status == "ok", rec.error
    assert rec.config["train"]["precision"] == precision and "precision" not in rec.run_id
    assert all(math.isfinite(loss) for _, loss in rec.losses) and rec.memory.peak_bytes > 0
    if family != "bert":
        assert math.isfinite(rec.forgetting.score)


def test_lomo_refuses_a_gradient_scaler(make_config):
    from bench.errors import ConfigError
    from bench.validate import validate

    with pytest.raises(
        ConfigError, match="train.precision='fp16-mixed' is not valid: expected fp32, bf16-mixed or bf16"
    ):
        validate(make_config("method=lomo", "train.precision=fp16-mixed"))
