"""Will it fit (bench/fit.py): the estimate against the profiled peak of real training steps, the
refusal before loading, the paper sweeps against one H200, and gradient checkpointing."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_families import run_config
from test_sweeps import SWEEPS, jobs_of

from bench import count, fit, optimizers, record
from bench.compose import to_container
from bench.errors import ConfigError
from bench.launch import launch
from bench.runner import build, seed_everything

REPO = Path(__file__).resolve().parents[1]
# the estimate's training step against the profiler's peak of one (as runs measure it): tiny models
# came within 0.74x-1.17x, the default model within 0.96x-1.00x (1.20x at 16 tweets of up to 64 tokens)
TINY, REAL = (0.7, 1.3), (0.8, 1.3)
H200 = 141e9  # bytes: the card's 143,771 MiB less room for the CUDA context and the allocator's slack


def _ratio(rec: dict) -> float:
    assert rec.status == "ok", rec.error
    return fit.peaks(rec.estimate["parts"])["training step"] / rec.memory.peak_bytes


# batches of 8 tweets, each padded to max_length (a few tweets are shorter, never a whole batch):
# completions cut to one token, so a decoder's rows are 33 tokens, T5's decoder reads 1
PROFILED = ["train.profile_memory=true", "train.batch_size=8", "task.max_length=32", "task.max_new_tokens=1"]


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("method", ["full_ft", "lora"])
@pytest.mark.parametrize(
    "family", ["bert", pytest.param("llama", marks=pytest.mark.slow), pytest.param("t5", marks=pytest.mark.slow)]
)
def test_estimate_is_near_the_profiled_peak_on_tiny_models(make_config, tiny_models, family, method, checkpointing):
    rec = launch(
        run_config(
            make_config,
            tiny_models,
            family,
            f"method={method}",
            *PROFILED,
            f"train.gradient_checkpointing={checkpointing}",
        )
    )
    assert (rec.estimate["tokens"], rec.estimate["decoder_tokens"]) == {"llama": (33, 0), "t5": (32, 1)}.get(
        family, (32, 0)
    )
    assert TINY[0] < _ratio(rec) < TINY[1]


@pytest.mark.slow  # the default model, profiled
@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("method", ["full_ft", "lora"])
def test_estimate_is_near_the_profiled_peak_on_the_default_model(make_config, method, checkpointing):
    # full fine-tuning's peak is AdamW's step on CPU (its temporaries for the word embeddings)
    rec = launch(make_config(f"method={method}", *PROFILED, f"train.gradient_checkpointing={checkpointing}"))
    assert REAL[0] < _ratio(rec) < REAL[1]


def test_a_huge_job_is_refused_before_loading_with_what_would_fit(make_config, monkeypatch, capsys):
    monkeypatch.setattr("bench.models.load", lambda *a, **k: pytest.fail("a refused job loaded its model"))
    rec = launch(make_config("model=llama2-70b", "method=full_ft", "train.memory_limit_gib=16"))
    assert rec.status == "refused" and rec.error.type == "WontFit"
    message, parts = rec.error.message, rec.estimate["parts"]
    assert (
        parts["weights"] == parts["gradients"] == 4 * 68_976_648_192
        and parts["optimizer_state"] == 2 * parts["weights"]
    )
    assert "more than the 16.0 GiB of train.memory_limit_gib" in message
    assert (
        f"needs an estimated {rec.estimate['bytes'] / 2**30:,.1f} GiB at the training step "
        "(weights 257.0, gradients 257.0" in message
    )
    assert "What would fit: no train.batch_size (weights, gradients, optimizer state and step alone" in message
    assert "train.gradient_checkpointing=true: no" in message and "train.precision=bf16: no" in message
    assert "refused" in capsys.readouterr().out
    assert json.loads(Path(record.path_for(rec.config)).read_text())["status"] == "refused"


def test_what_would_fit_is_the_largest_batch_that_fits(make_config):
    def estimate(batch: int) -> dict:
        cfg = make_config(
            "model=llama2-7b",
            "task=arithmetic",
            f"train.batch_size={batch}",
            "train.eval_batch_size=8",
            "train.memory_limit_gib=40",
        )
        return fit.estimate(cfg), cfg

    est, cfg = estimate(64)
    largest = est["would_fit"]["batch_size"]
    assert not est["fits"] and 1 < largest < 64
    assert estimate(largest)[0]["fits"] and not estimate(largest + 1)[0]["fits"]
    message = fit.refusal(est, cfg.train)
    assert (
        f"train.batch_size={largest} (with train.grad_accum={-(-64 // largest)} for about the same 64 examples"
        in message
    )
    assert (
        est["would_fit"]["bf16_bytes"] < est["bytes"]
        and est["would_fit"]["gradient_checkpointing_bytes"] < est["bytes"]
    )


def test_a_refused_job_is_estimated_again_when_rerun(make_config, tiny_models):
    tiny = run_config(make_config, tiny_models, "bert", "train.memory_limit_gib=0.000001")
    assert launch(tiny).status == "refused"
    # the limit is not part of the run id: the same run, with room now, runs
    assert launch(run_config(make_config, tiny_models, "bert")).status == "ok"


def test_count_mode_estimates_any_preset(make_config, capsys):
    rec = count.launch(make_config("mode=count", "model=gpt3-175b", "method=lora", "method.r=1"))
    est = rec.estimate
    assert est["parts"]["weights"] == 4 * rec.params.total and est["parts"]["gradients"] == 4 * rec.params.trainable
    assert est["seconds"] < 10 and not est["fits"]  # about a second on an idle core
    assert f"memory on cpu: {est['bytes'] / 2**30:,.1f} GiB at the training step" in capsys.readouterr().out


@pytest.mark.slow  # builds every job of every paper sweep on the meta device
@pytest.mark.parametrize("sweep", [s for s in SWEEPS if s.endswith("_paper")])
def test_every_paper_sweep_job_fits_one_h200(make_config, sweep):
    for job in jobs_of(make_config(f"+sweep={sweep}", fast=False, hydra=True)):
        cfg = make_config(
            f"+sweep={sweep}", *job, "train.device=cuda", f"train.memory_limit_gib={H200 / 2**30}", fast=False
        )
        est = fit.estimate(cfg)
        assert est["fits"], (sweep, job, fit.describe(est))


@pytest.mark.slow  # starts python -m bench
def test_a_refused_run_exits_non_zero_and_a_sweep_goes_on(tmp_path, tiny_models):
    from tests.conftest import FAST, tiny_bert

    def bench(*args):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "bench",
                *[a for a in args if a.startswith("-")],
                *FAST,
                *tiny_bert(tiny_models),
                f"results_dir={tmp_path}",
                "train.memory_limit_gib=4",
                *[a for a in args if not a.startswith("-")],
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    # the tiny BERT (estimated from its folder's config.json): 60,000 tweets of 64 tokens take tens of GiB
    single = bench("train.batch_size=60000")
    assert single.returncode == 1 and "WontFit: the job needs an estimated" in single.stdout
    sweep = bench("-m", "sweep_name=mixed", "train.batch_size=8,60000")
    assert sweep.returncode == 1, sweep.stderr[-2000:]
    records = {
        json.loads(p.read_text())["config"]["train"]["batch_size"]: json.loads(p.read_text())
        for p in (tmp_path / "mixed").glob("*.json")
    }
    assert records[8]["status"] == "ok" and records[60000]["status"] == "refused"
    assert "What would fit: train.batch_size=" in records[60000]["error"]["message"]


# ---- gradient checkpointing (train.gradient_checkpointing=true)


def _step(cfg, *, seed: int = 1) -> tuple[float, dict[str, torch.Tensor], int]:
    """One training step of the run's model on its first batch: the loss, the trained weights'
    gradients (LOMO: the weights it updated), and how often the first layer's first matrix ran."""
    seed_everything(cfg.seed)
    built = build(cfg)
    method, model = built.method, built.model
    batch = next(iter(built.train_loader(cfg, batch_size=4)))
    batch.pop("index")
    layer = next(m for n, m in model.named_modules() if n.endswith((".layer.0", ".layers.0", ".block.0")))
    calls = []  # transformers checkpoints a layer's forward, not its hooks: a module inside it shows the recompute
    next(m for m in layer.modules() if isinstance(m, torch.nn.Linear)).register_forward_hook(lambda *_: calls.append(1))
    update = optimizers.build(method.optimizer or cfg.train.optimizer, model, 1e-3, cfg.train)
    model.train()
    torch.manual_seed(seed)  # the same dropout masks in both runs
    loss = model(**batch).loss
    update.backward(loss)
    trained = {
        n: (p.grad if p.grad is not None else p).detach().clone()
        for n, p in model.named_parameters()
        if p.requires_grad
    }
    return loss.item(), trained, len(calls)


FAST_METHODS = [
    "full_ft",
    "lora",
    "adapter",
    "prefix_tuning",
    "prompt_tuning",
    "ia3",
    "bitfit",
    "diff_pruning",
    "peft",
    "lomo",
]


@pytest.mark.parametrize(
    "method", [*FAST_METHODS[:6], *(pytest.param(m, marks=pytest.mark.slow) for m in FAST_METHODS[6:])]
)
@pytest.mark.parametrize(
    "family", ["bert", pytest.param("llama", marks=pytest.mark.slow), pytest.param("t5", marks=pytest.mark.slow)]
)
def test_checkpointing_recomputes_and_changes_no_loss_or_gradient(make_config, tiny_models, family, method):
    if method == "bitfit" and family != "bert":
        pytest.skip("BitFit does not apply: no biases")
    plain = _step(run_config(make_config, tiny_models, family, f"method={method}"))
    checkpointed = _step(
        run_config(make_config, tiny_models, family, f"method={method}", "train.gradient_checkpointing=true")
    )
    # the layer's forward runs again in each backward pass (LOMO's clipping makes one more)
    assert (plain[2], checkpointed[2]) == (1, 3 if method == "lomo" else 2)
    assert checkpointed[0] == pytest.approx(plain[0], abs=1e-5)
    assert plain[1].keys() == checkpointed[1].keys() and plain[1]
    for name, grad in plain[1].items():
        torch.testing.assert_close(checkpointed[1][name], grad, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.slow  # two profiled runs
def test_checkpointing_lowers_the_profiled_peak(make_config, tiny_models):
    peaks = [
        launch(
            run_config(
                make_config,
                tiny_models,
                "bert",
                "method=lora",
                *PROFILED,
                "task.max_length=64",
                f"train.gradient_checkpointing={c}",
            )
        ).memory.peak_bytes
        for c in (False, True)
    ]
    assert peaks[1] < 0.8 * peaks[0]


def test_a_model_without_checkpointing_is_refused_before_loading(make_config, monkeypatch):
    from transformers import BertForSequenceClassification

    monkeypatch.setattr(BertForSequenceClassification, "supports_gradient_checkpointing", False)
    with pytest.raises(ConfigError, match="train.gradient_checkpointing=True .* BertForSequenceClassification"):
        fit.estimate(make_config("train.gradient_checkpointing=true"))


def test_a_run_asking_checkpointing_of_a_model_without_it_stops_as_a_config_error(make_config, monkeypatch):
    from transformers import BertForSequenceClassification

    monkeypatch.setattr(BertForSequenceClassification, "supports_gradient_checkpointing", False)
    cfg = make_config("train.gradient_checkpointing=true")
    with pytest.raises(ConfigError, match="train.gradient_checkpointing=True"):
        launch(cfg)
    assert record.read(record.path_for(to_container(cfg))) is None  # nothing recorded: the input was wrong


def test_a_paged_optimizers_state_is_counted_apart_from_the_device_peak(make_config):
    # bitsandbytes pages it to the host under pressure: the peak to fit leaves it out, the estimate states it
    common = (
        "model=llama2-7b",
        "method=full_ft",
        "train.optimizer=adamw8bit",
        "train.device=cuda",
        "train.memory_limit_gib=80",
    )
    plain, paged = (
        fit.estimate(make_config(*common, f"+train.optimizer_args.is_paged={p}", fast=False)) for p in ("false", "true")
    )
    state = plain["parts"]["optimizer_state"]
    assert state > 0 and paged["parts"]["optimizer_state"] == 0 and paged["parts"]["paged_optimizer_state"] == state
    assert plain["bytes"] - paged["bytes"] == state
    assert "paged optimizer state 12.7, host-backed" in fit.describe(paged)
