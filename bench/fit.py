"""Will a training job fit? An estimate of its peak memory before any weight loads, and the refusal.

The preset's architecture is built on the meta device with the method applied, as mode=count
builds it (shapes, no storage), and the job's bytes are added up from it and its settings:

  weights          4 bytes each; frozen ones 2 under train.precision=bf16 (stored in bfloat16)
  gradients        of the trained weights, which stay float32 in every precision, as do the
  optimizer state  optimizer's state (bench/optimizers.py: AdamW two moments, LOMO none, ...)
  optimizer step   and its temporaries (AdamW's square root of the second moments)
  activations      what the forward pass keeps for backward, below

A training step needs the weights, gradients and optimizer state, and the larger of the
activations (forward and backward) and the step's temporaries (after them). Backward frees
activations as it makes gradients, so counting all of both errs high by at most the smaller. An
evaluation batch (train.eval_batch_size; no gradients, but vocabulary-wide logits or a generation's
key-value cache) can need more than a training step: the estimate is the larger of the two.

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
Models", section 4.1): sbh(34 + 5as/h) bytes per layer in 16-bit (s tokens, b examples, h hidden,
a heads, a 4h feed-forward). Here the same terms per token and layer, in e bytes per activation
element (4 in float32; 2 under autocast, or where frozen weights are bfloat16), with the
feed-forward width f and m bytes per dropout mask element (1 on CUDA; on CPU torch keeps the
scaled noise it multiplied by, e), counting only what autograd keeps for the gradients it computes:

  e(2h + 3h + f) + 2hm  the two norms' inputs, q, k and v, the activation's input (a gated
                        feed-forward keeps 3f: the activation's input and both factors of the
                        product), two dropout masks: kept wherever gradients pass
  + a·s_k·(2e + m)      the softmax output, its dropout mask and output over s_k keys, where the
    or e·h + 4a         scores are materialised; fused attention (SDPA on CUDA, or on CPU without
                        attention dropout) keeps only its output and log-sum-exp
  + e·(input widths)    the inputs of trained linear layers, which their weight gradients read:
                        every matrix under full fine-tuning, LoRA's A and B, an adapter's
                        bottleneck; frozen matrices keep none. q, k and v share one input, here
                        counted three times (errs high by 2eh)

With gradient checkpointing a layer keeps only its input (e·h per token), and one layer's
activations exist at a time, recomputed in backward after the loss's. Beyond the layers: the
embeddings' output and dropout mask (e·h + hm per token); for text-to-text models, logits over the
vocabulary in three float32 copies per output position (the logits, the log-softmax the loss
keeps, its gradient). Under autocast (bf16-mixed, fp16-mixed) backward also reads the 16-bit copy
of each weight that the forward cast (2 bytes per weight).

Tokens per example, the longest batch being what must fit: task.max_length for encoders;
max_length + max_new_tokens for decoders (prompt and completion in one sequence); T5 reads
max_length in its encoder, max_new_tokens in its decoder. Prompt and prefix tuning add their
virtual tokens.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from bench import assets, measure, meta, optimizers, quantization, utilisation
from bench.errors import ConfigError
from bench.families import FAMILIES
from bench.machine import device_of
from bench.methods import METHODS
from bench.shapes import Shape
from bench.tasks import TASKS

GIB = 2**30
FLOAT32 = 4  # bytes of trained weights, their gradients and optimizer state, and the logits a loss reads
# config fields, by architecture, of the attention dropout
ATTENTION_DROPOUT = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop", "dropout_rate")


@dataclass(frozen=True)
class Architecture:
    """What the estimate reads off the model built on meta with the method applied."""

    layers: int  # of the (encoder) stack
    decoder_layers: int  # T5's decoder stack; 0 elsewhere
    hidden: int
    heads: int
    ffn: int
    gated: bool  # Llama's SwiGLU, T5 v1.1's gated GELU
    vocab: int
    registry_attention: bool  # through transformers' attention functions (SDPA), which can fuse
    attention_dropout: bool
    trains: bool  # gradients pass the layers
    trained_inputs: tuple[int, int]  # per token: input widths of trained linear layers, (encoder) stack and decoder
    weights: dict[str, int]  # bytes, with frozen weights stored as under fp32 and under bf16
    gradients: int
    optimizer_state: int
    optimizer_step: dict[str, int]  # bytes of the step's temporaries, by device
    parameters: int  # elements of all weights: autocast's 16-bit copies
    # bytes of the float copy bitsandbytes makes of a quantized layer's weight for its matmul, one layer at a
    # time in the forward and again in the backward: the largest layer's (0 on a float base)
    dequantized: int = 0
    # bitsandbytes' paged optimizers keep their state in CUDA unified memory, which pages out to the host under
    # pressure: counted apart from the device's peak
    paged: bool = False


@dataclass(frozen=True)
class Job:
    """The settings the estimate varies to say what would fit."""

    batch_size: int
    eval_batch_size: int
    gradient_checkpointing: bool
    precision: str
    tokens: int  # per example, in the (encoder) stack
    decoder_tokens: int  # T5's decoder; 0 elsewhere
    new_tokens: int  # generated per example at evaluation (generation tasks); 0 elsewhere
    text_to_text: bool  # logits over the vocabulary
    device: str


def _pretrained(model: torch.nn.Module) -> PreTrainedModel:
    """The transformers model inside whatever a method wrapped it in (peft, the probe)."""
    return next(m for m in model.modules() if isinstance(m, PreTrainedModel))


def _is_decoder(name: str) -> bool:
    return ".decoder." in f".{name}"


def architecture(cfg, model: torch.nn.Module) -> Architecture:
    family, method = FAMILIES[cfg.model.family], METHODS[cfg.method.name]
    config = _pretrained(model).config
    shape = Shape.of(config)
    split = family.architecture == "encoder_decoder"
    inputs = [0, 0]
    for name, module in model.named_modules():
        # a classification head reads one token per example: not counted
        if isinstance(module, (torch.nn.Linear, Conv1D)) and module.weight.requires_grad and not family.is_head(name):
            inputs[split and _is_decoder(name)] += utilisation.in_width(module)
    optimizer = method.optimizer or cfg.train.optimizer
    stored = _quantized(cfg, model, family)
    sizes = {id(p): p.numel() for p in model.parameters()}
    dequantized = max((sizes[i] for i in stored), default=0) * (FLOAT32 if cfg.model.compute_dtype == "float32" else 2)
    analytic = {
        p: measure.analytic_bytes(
            model,
            optimizer,
            cfg.train.optimizer_args,
            frozen_element=2 if p == "bf16" else None,
            stored=stored,
            method_state=method.state_elements(model, cfg.method),
        )
        for p in ("fp32", "bf16")
    }
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizers.check_blocks(optimizer, cfg.train.optimizer_args, [n for n, _ in trained])
    return Architecture(
        layers=shape.layers,
        decoder_layers=shape.decoder_layers,
        hidden=shape.width,
        heads=shape.heads,
        ffn=shape.ff_width,
        gated=shape.gated,
        vocab=shape.vocab,
        registry_attention=family.attention == "registry",
        attention_dropout=any(getattr(config, k, None) for k in ATTENTION_DROPOUT),
        trains=method.trains and any(p.requires_grad for p in model.parameters()),
        trained_inputs=(inputs[0], inputs[1]),
        weights={p: a["weights"] for p, a in analytic.items()},
        gradients=analytic["fp32"]["gradients"],
        optimizer_state=analytic["fp32"]["optimizer_state"],
        optimizer_step={
            d: FLOAT32 * optimizers.step_elements(optimizer, cfg.train.optimizer_args, trained, d)
            for d in ("cpu", "cuda")
        },
        parameters=sum(p.numel() for p in model.parameters()),
        dequantized=dequantized,
        paged=bool(cfg.train.optimizer_args.get("is_paged", False)),
    )


def _quantized(cfg, model: torch.nn.Module, family) -> dict[int, float]:
    """Bytes per weight of the layers bitsandbytes would store quantized (model.quantize): every frozen linear
    layer but the task head and the output embedding, which stay in float (bench/quantization.py)."""
    if not quantization.quantized(cfg.model):
        return {}
    output = _pretrained(model).get_output_embeddings()
    return {
        id(module.weight): quantization.bytes_per_weight(cfg.model, utilisation.in_width(module))
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, Conv1D))
        and module is not output
        and not module.weight.requires_grad
        and not family.is_head(name)
    }


def job(cfg, device: str) -> Job:
    family, method, task = FAMILIES[cfg.model.family], METHODS[cfg.method.name], TASKS[cfg.task.name]
    text_to_text = method.form(family) == "text_to_text"
    # the fit estimate keeps a prefix's keys and values as it keeps a prompt's positions: both lengthen attention
    t, virtual = cfg.task, method.virtual_tokens(cfg.method) + method.prefix_tokens(cfg.method)
    decoder_only = text_to_text and family.architecture == "decoder"
    return Job(
        batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size,
        gradient_checkpointing=cfg.train.gradient_checkpointing,
        precision=cfg.train.precision,
        tokens=t.max_length + virtual + (t.max_new_tokens if decoder_only else 0),
        decoder_tokens=t.max_new_tokens if family.architecture == "encoder_decoder" else 0,
        new_tokens=t.max_new_tokens
        if text_to_text and "encoder" not in task.forms
        else 0,  # generation tasks have no encoder form
        text_to_text=text_to_text,
        device=device,
    )


def parts(a: Architecture, j: Job) -> dict[str, int]:
    """Bytes of the job's parts: weights, gradients, optimizer state and activations of a training
    step, and what an evaluation batch needs beside the weights (the module docstring's formulas)."""
    frozen = a.weights["bf16"] < a.weights["fp32"]
    e = 4 if j.precision == "fp32" or (j.precision == "bf16" and not frozen) else 2
    h, heads, f, ff_kept = a.hidden, a.heads, a.ffn, 3 * a.ffn if a.gated else a.ffn
    fused = a.registry_attention and (j.device == "cuda" or not a.attention_dropout)
    b, s, sd = j.batch_size, j.tokens, j.decoder_tokens
    mask = (
        1 if j.device == "cuda" else e
    )  # CUDA's dropout keeps a boolean mask; CPU's the scaled noise it multiplied by

    def attention(keys: int) -> int:  # per token
        return e * h + 4 * heads if fused else heads * keys * (2 * e + mask)

    # (layers, tokens, keys each token attends to, trained input widths per layer and token, bytes per
    # example besides): T5's decoder adds cross-attention's norm input and query per token, and the keys
    # and values it makes of the encoder's output
    stacks = [(a.layers, s, s, a.trained_inputs[0] / a.layers, 0)]
    if a.decoder_layers:
        stacks.append((a.decoder_layers, sd, s + sd, a.trained_inputs[1] / a.decoder_layers + 2 * h, 2 * s * e * h))
    kept = one_layer = 0.0
    for layers, tokens, keys, inputs, per_example in stacks:
        layer = b * (tokens * (e * (5 * h + ff_kept + inputs) + 2 * h * mask + attention(keys)) + per_example)
        embeddings = b * tokens * (e * h + h * mask)
        kept += embeddings + (layers * b * tokens * e * h if j.gradient_checkpointing else layers * layer)
        one_layer = max(one_layer, layer)
    logits = 3 * FLOAT32 * b * (sd or s) * a.vocab if j.text_to_text else 0
    # checkpointing: the loss's backward is done before the first layer is recomputed
    activations = kept + (max(one_layer, logits) if j.gradient_checkpointing else logits)
    if j.precision.endswith("-mixed"):
        activations += 2 * a.parameters

    # evaluation: no gradients; one layer's working set (q, k, v, attention output, the feed-forward's
    # intermediates, the scores unless fused: no dropout then), then the logits (and the loss's
    # log-softmax) or a generation's key-value cache, whichever is larger
    be = j.eval_batch_size
    work = be * s * (e * (4 * h + (2 if a.gated else 1) * f) + (0 if a.registry_attention else 2 * e * heads * s))
    logits = 2 * FLOAT32 * be * (sd or s) * a.vocab if j.text_to_text else 0
    # every layer's keys and values: over prompt and completion (T5's decoder: over the encoder's output too)
    cache = 2 * e * h * be * (s + sd) * (a.decoder_layers or a.layers) if j.new_tokens else 0
    return {
        "weights": a.weights["bf16" if j.precision == "bf16" else "fp32"],
        "gradients": a.gradients if a.trains else 0,
        "optimizer_state": a.optimizer_state if a.trains and not a.paged else 0,
        "paged_optimizer_state": a.optimizer_state if a.trains and a.paged else 0,
        "activations": round(activations) + a.dequantized if a.trains else 0,
        "optimizer_step": a.optimizer_step[j.device] if a.trains else 0,
        "evaluation": round(work + max(logits, cache)) + a.dequantized,
    }


def peaks(p: dict[str, int]) -> dict[str, int]:
    """Bytes of a training step (activations live in the forward and backward passes, the optimizer's
    temporaries after them) and of an evaluation batch."""
    return {
        "training step": p["weights"]
        + p["gradients"]
        + p["optimizer_state"]
        + max(p["activations"], p["optimizer_step"]),
        "evaluation": p["weights"] + p["evaluation"],
    }


def available(cfg, device: str) -> tuple[int, str]:
    """The bytes a job must fit and where that number comes from."""
    if cfg.train.memory_limit_gib is not None:
        return round(cfg.train.memory_limit_gib * GIB), "train.memory_limit_gib"
    if device == "cuda":  # reads the device's properties; allocates nothing on it
        props = torch.cuda.get_device_properties(0)
        return props.total_memory, f"the memory of {props.name}"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's RAM"


def meta_model(cfg) -> torch.nn.Module:
    """The run's model, built on the meta device with the method applied. A run loads the weights of
    its folder (a package copy, or a local folder given as hub id, as the tests' tiny models are)
    with that folder's config.json; elsewhere the preset's `config` says what the hub holds."""
    model_cfg = cfg.model
    asset = model_cfg.asset and model_cfg.source != "hub"  # a GGUF asset's folder is made at its first load: not here
    folder = None if asset else assets.source(model_cfg)  # None too for a configuration-only preset
    if folder and Path(folder).is_dir():
        model_cfg = OmegaConf.merge(model_cfg, {"config": None})
    # an encoder's head is sized for 2 labels: reading the task's data to count them is not worth it
    return meta.meta_model(cfg, model_cfg, meta.DEFAULT_LABELS)[0]


def check_checkpointing(cfg, model: torch.nn.Module) -> None:
    if not cfg.train.gradient_checkpointing:
        return
    base = _pretrained(model)
    if not base.supports_gradient_checkpointing:
        raise ConfigError(
            "train.gradient_checkpointing",
            True,
            f"false: {type(base).__name__} (model {cfg.model.name}) "
            "does not implement transformers' gradient checkpointing",
        )


def estimate(cfg, model: torch.nn.Module | None = None) -> dict:
    """The record's `estimate` of a job (`model`: its meta model, when built already): bytes at the
    peak with their parts, the memory available, whether it fits, and if not, what would."""
    start = time.perf_counter()
    model = meta_model(cfg) if model is None else model
    check_checkpointing(cfg, model)
    device = device_of(cfg)
    a, j = architecture(cfg, model), job(cfg, device)
    limit, limit_of = available(cfg, device)
    p = parts(a, j)
    peak_of, total = max(peaks(p).items(), key=lambda kv: kv[1])
    out = {
        "bytes": total,
        "peak_of": peak_of,
        "parts": p,
        "limit_bytes": limit,
        "limit_of": limit_of,
        "fits": total <= limit,
        "device": device,
        "tokens": j.tokens,
        "decoder_tokens": j.decoder_tokens,
    }
    if total > limit:
        out["would_fit"] = alternatives(a, j, limit)
    out["seconds"] = time.perf_counter() - start
    return out


def checked(cfg) -> dict:
    """`estimate`, or where the job cannot be built on the meta device, the error, with `fits` None:
    a job that cannot be estimated goes ahead unchecked. A ConfigError is raised."""
    try:
        return estimate(cfg)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of the estimate leaves the run as it was
        return {"fits": None, "error": f"{type(e).__name__}: {e}"}


def _largest(fits, high: int) -> int | None:
    """The largest n in [1, high] with fits(n) (fits is monotone: false from some n on), or None."""
    if not fits(1):
        return None
    low = 1
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def alternatives(a: Architecture, j: Job, limit: int) -> dict:
    """What would fit in `limit`: the largest batch sizes (training and evaluation apart), and the
    bytes with gradient checkpointing or with bf16."""

    def with_(**changes) -> dict[str, int]:
        return peaks(parts(a, replace(j, **changes)))

    return {
        "batch_size": _largest(lambda n: with_(batch_size=n)["training step"] <= limit, j.batch_size),
        "eval_batch_size": _largest(lambda n: with_(eval_batch_size=n)["evaluation"] <= limit, j.eval_batch_size),
        "gradient_checkpointing_bytes": max(with_(gradient_checkpointing=True).values()),
        "bf16_bytes": max(with_(precision="bf16").values()),
    }


def _gib(n: float) -> str:
    return f"{n / GIB:,.1f}"


def describe(est: dict) -> str:
    """The estimate in one line: its total and its parts."""
    p = est["parts"]
    return (
        f"{_gib(est['bytes'])} GiB at the {est['peak_of']} (weights {_gib(p['weights'])}, gradients "
        f"{_gib(p['gradients'])}, optimizer state {_gib(p['optimizer_state'])}, activations {_gib(p['activations'])} "
        f"or the optimizer step's {_gib(p['optimizer_step'])}; evaluation {_gib(p['evaluation'])} beside the weights"
        + (
            f"; paged optimizer state {_gib(p['paged_optimizer_state'])}, host-backed"
            if p.get("paged_optimizer_state")
            else ""
        )
        + ")"
    )


def refusal(est: dict, train) -> str:
    """Why a job that does not fit is refused, and what would fit."""
    w, limit, p = est["would_fit"], est["limit_bytes"], est["parts"]
    fits = []
    if w["batch_size"] is None:
        fixed = p["weights"] + p["gradients"] + p["optimizer_state"] + p["optimizer_step"]
        fits.append(f"no train.batch_size (weights, gradients, optimizer state and step alone: {_gib(fixed)} GiB)")
    elif w["batch_size"] < train["batch_size"]:
        steps = -(-train["batch_size"] // w["batch_size"])
        fits.append(
            f"train.batch_size={w['batch_size']} (with train.grad_accum={steps * train['grad_accum']} for about "
            f"the same {train['batch_size'] * train['grad_accum']} examples per step)"
        )
    if w["eval_batch_size"] is None:
        fits.append("no train.eval_batch_size (the weights and one evaluation example are too many)")
    elif w["eval_batch_size"] < train["eval_batch_size"]:
        fits.append(f"train.eval_batch_size={w['eval_batch_size']}")
    for key, setting in (
        ("gradient_checkpointing_bytes", "train.gradient_checkpointing=true"),
        ("bf16_bytes", "train.precision=bf16"),
    ):
        fits.append(f"{setting}: {'yes' if w[key] <= limit else 'no'} ({_gib(w[key])} GiB)")
    return (
        f"the job needs an estimated {describe(est)}, more than the {_gib(limit)} GiB of {est['limit_of']}. "
        f"What would fit: {'; '.join(fits)}"
    )
