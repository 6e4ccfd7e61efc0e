"""Utilisation: model FLOPs per training token, the device's peak FLOP/s, and their ratio, the model
FLOPs utilisation (MFU) of PaLM (Chowdhery et al. 2022, appendix B).

Model FLOPs are what the model must compute, counted from its config as Kaplan et al. (2020, section
2.1) and PaLM (appendix B) count them: 2 FLOPs (a multiply and an add) per weight of every weight
matrix per token it multiplies, plus the attention scores and their weighted sum of the values, which
grow with sequence length. Embedding lookups, norms, activations, softmax, the loss and the optimizer's
update are not matrix products and are left out; so is work a kernel chooses to do again (gradient
checkpointing's second forward, a fused attention kernel's recomputed scores) and work on padding:
utilisation measures the useful part of what the device could have done.

The backward pass multiplies by each matrix twice more: once for the gradient of its input (wherever
something before it trains) and once for the gradient of the weight (only for weights that train).
Full fine-tuning costs ~6N FLOPs per token for N matrix weights; a frozen model with LoRA ~4N + 6·N_lora,
less the input gradients of the first layer, which reads frozen embeddings. So parameter-efficient
methods do less work per token than full fine-tuning, and their FLOPs per token are lower.

A training token is what bench.batching.count_tokens counts and train.py's tokens_per_second divides by:
a real (non-padding) input token, a 1 in the attention mask. For T5 these are the encoder's tokens:
the decoder's work on the target tokens is counted in full and spread over them.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import quantization
from bench.assets import cache_root
from bench.measure import MachineLoad
from bench.precision import AUTOCAST
from bench.shapes import Shape

# a stack's layer in a module's name (BERT layer.N, Llama layers.N, GPT-2 h.N, T5 block.N, MPT blocks.N); T5's
# sublayers (block.N.layer.M) come after it
LAYER = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")


def _in_first_layer(name: str, encoder_only: bool = False) -> bool:
    """In the first layer of a stack (with encoder_only, of T5's encoder)."""
    found = LAYER.search(f".{name}.")
    return found is not None and found.group(1) == "0" and (not encoder_only or "encoder" in name.split("."))


@dataclass(frozen=True)
class Training:
    """What trains, as the formula needs it; Training.of reads it off a model. The default is full fine-tuning."""

    backbone: float = 1.0  # fraction of the pre-trained matrix weights below the head that train
    head: bool = True  # the classification head or the language-model head trains
    # the first layer's input needs gradients: the embeddings, a soft prompt, or a norm before the first
    # projections trains. When not, the first layer computes gradients only from its first trained part on
    inputs: bool = True
    target_inputs: bool = (
        True  # the same for T5's decoder, which reads its own embeddings (a soft prompt is the encoder's)
    )
    # which of the first layer's matrices train or carry something trained (q, k, v, o, ff_in, ff_out)
    first_trains: frozenset[str] = frozenset({"q", "k", "v", "o", "ff_in", "ff_out"})
    # matrix weights a method adds (LoRA's A and B, bottleneck adapters), all trained: per input token,
    # and (T5) per decoder token
    added: int = 0
    added_target: int = 0
    added_first: int = 0  # of `added`, those that read the first layer's input (LoRA's A on q, k, v)
    added_first_target: int = 0  # of `added_target`, those on the first decoder layer's self-attention q, k, v
    virtual_tokens: int = 0  # prompt tuning: positions the model computes before every input (T5: the encoder's)
    prefix_tokens: int = 0  # prefix tuning: key/value positions each attention layer adds
    positions: bool = True  # DeBERTa: the relative-position side of c2p/p2c needs gradients

    @property
    def below_head(self) -> bool:
        """Something below the head trains, so gradients flow down through the model."""
        return bool(
            self.backbone
            or self.inputs
            or self.added
            or self.added_target
            or self.virtual_tokens
            or self.prefix_tokens
            or self.first_trains
        )

    @classmethod
    def of(cls, model: torch.nn.Module, family, virtual_tokens: int = 0, prefix_tokens: int = 0) -> Training:
        """From a model with its method applied (peft-wrapped or not), its bench.families.Family, and the
        positions the method adds (its `virtual_tokens` and `prefix_tokens`)."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        shape = Shape.of(base.config)
        two_stacks = base.config.is_encoder_decoder
        outputs = {id(m) for m in [base.get_output_embeddings()] if m is not None}
        first = _first_layer(model, family, two_stacks)
        reads = {"q", "k", "v"} | ({"ff_in"} if shape.parallel else set())  # what reads the layer's input
        readers = tuple(f"{n}." for n, names in first.items() if set(names) & reads)
        # T5's decoder: its first self-attention reads the decoder's (frozen) embeddings too
        target_readers = tuple(
            f"{n}."
            for n, _ in model.named_modules()
            if two_stacks and _in_first_layer(n) and re.search(r"decoder\..*SelfAttention\.[qkv]$", n)
        )
        total = trained = added = added_target = added_first = added_first_target = 0
        head = False
        for name, module, is_added in _matrices(model):
            n, grad = _weight(module)
            if is_added:
                if two_stacks and _target_side(name):
                    added_target += n
                else:
                    added += n
                # an adapter's input side on a projection that reads the first layer's input (LoRA's A)
                if in_width(module) == shape.width:
                    added_first += n if name.startswith(readers) else 0
                    added_first_target += n if target_readers and name.startswith(target_readers) else 0
            elif id(module) in outputs or family.is_head(name):
                head = head or grad
            else:
                total += n
                trained += n if grad else 0
        grads = [n for n, p in model.named_parameters() if p.requires_grad]
        output_names = tuple(f"{n}." for n, m in model.named_modules() if id(m) in outputs)
        in_matrices = tuple(f"{n}." for n in first)
        embeddings = base.get_input_embeddings().weight.requires_grad
        inputs = (
            embeddings
            or bool(virtual_tokens)
            or any(
                ("embed" in n and "rel_embeddings" not in n and not n.startswith(output_names))  # the embeddings' block
                or (_in_first_layer(n, two_stacks) and not n.startswith(in_matrices) and ".prefix." not in n)  # a norm
                for n in grads
            )
        )
        # T5's decoder reads its own embeddings (the shared table) through its own first norm
        target_inputs = (
            embeddings or any(re.search(r"decoder\.block\.0\.layer\.0\.layer_norm", n) for n in grads)
            if two_stacks
            else True
        )
        return cls(
            backbone=trained / total if total else 0.0,
            head=head,
            inputs=inputs,
            target_inputs=target_inputs,
            first_trains=frozenset(
                a
                for name, names in first.items()
                for a in names
                if any(p.requires_grad for p in model.get_submodule(name).parameters())
            ),
            added=added,
            added_target=added_target,
            added_first=added_first,
            added_first_target=added_first_target,
            virtual_tokens=virtual_tokens,
            prefix_tokens=prefix_tokens,
            positions=trained > 0
            or any(k in n for n in grads for k in ("rel_embeddings", "pos_key_proj", "pos_query_proj")),
        )


def _weight(module) -> tuple[int, bool]:
    """(weights, trains) of a linear layer; diff pruning's parametrised weight trains through its difference."""
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(module, "weight"):
        p = module.parametrizations.weight
        return p.original.numel(), any(q.requires_grad for q in p.parameters())
    return quantization.weights(module.weight), module.weight.requires_grad


def in_width(module) -> int:
    """The inputs of a linear layer (GPT-2's Conv1D has nx of them)."""
    return module.in_features if hasattr(module, "in_features") else module.nx  # GPT-2's Conv1D: nx inputs


def _matrices(model: torch.nn.Module):
    """(name, module, added) for every module that multiplies by a weight matrix (nn.Linear, GPT-2's
    Conv1D); `added`: a method put it there (inside a peft adapter, or inside a module of a class from
    outside torch, transformers, peft and bitsandbytes (a quantized base's layers), as bench's bottleneck
    adapters). peft's frozen copies of the
    head (original_module), which the forward does not use, are skipped."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from transformers.pytorch_utils import Conv1D

    adapters: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, BaseTunerLayer):
            adapters += [f"{name}.{a}." for a in module.adapter_layer_names]
        elif name and not type(module).__module__.startswith(("torch.", "transformers.", "peft.", "bitsandbytes.")):
            adapters.append(f"{name}.")
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, Conv1D)) and "original_module" not in name.split("."):
            yield name, module, f"{name}.".startswith(tuple(adapters))


def _first_layer(model: torch.nn.Module, family, two_stacks: bool) -> dict[str, tuple[str, ...]]:
    """The first layer's matrices (T5: the encoder's), module name -> abstract names (q, k, v, o, ff_in,
    ff_out; a fused qkv is all three of q, k, v)."""
    out = {}
    for name, _ in model.named_modules():
        if not _in_first_layer(name, two_stacks):
            continue
        for abstract, pattern in family.matrices.items():
            if re.search(pattern, name):
                out[name] = ("q", "k", "v") if abstract == "qkv" else (abstract,)
    return out


def _target_side(name: str) -> bool:
    """T5: the module runs once per decoder (target) token; its encoder, and its cross-attention's k and v
    (which read the encoder's output), run per input token."""
    parts = name.split(".")
    if "decoder" not in parts:
        return False
    if "EncDecAttention" in parts:
        return parts[parts.index("EncDecAttention") + 1 :][:1] not in (["k"], ["v"])
    return True


def _lengths(x: float | Sequence[float], count: int) -> list[float]:
    return [float(x)] * count if isinstance(x, (int, float)) else [float(v) for v in x]


def model_flops_per_token(
    shape: Shape,
    architecture: str,
    training: Training,
    lengths: float | Sequence[float],
    target_lengths: float | Sequence[float] | None = None,
    batch_size: int = 1,
    inference: bool = False,
) -> float:
    """Model FLOPs of one training step (forward and backward) per training token; `inference`: of the forward
    pass alone, per input token, whatever the method trains.

    architecture: "encoder" (a classification head on the first token), "decoder" (the language-model head
    on every token) or "encoder_decoder" (T5: the head on every decoder token).
    lengths: real input tokens of each training example, or one number for all; target_lengths: T5's
    decoder tokens of each example, or one number. The average is taken over these examples, so that
    attention, which grows with the square of the length, is counted per example, not at the mean length.
    batch_size: examples per batch, for work done once per batch (DeBERTa's relative-position projections).
    """
    sources = _lengths(lengths, 1)
    if architecture == "encoder_decoder" and target_lengths is None:
        raise ValueError("an encoder-decoder model needs target_lengths, its decoder's tokens per example")
    targets = _lengths(0 if target_lengths is None else target_lengths, len(sources))
    s, t = shape, training
    d, q = s.width, s.q_width
    flows = 1.0 if t.below_head else 0.0  # input gradients are computed wherever something below trains
    forward = backward = 0.0

    def matmul(weights: float, tokens: float, trains: float) -> None:
        # forward 2 FLOPs per weight per token; backward 2 for the input's gradient, 2 for the weight's
        nonlocal forward, backward
        forward += 2 * weights * tokens
        backward += 2 * weights * tokens * (flows + trains)

    def attention(queries: float, keys: float, layers: int) -> None:
        # per layer and head: scores q·k and the weighted sum of v, 2·queries·keys·head width FLOPs each (the
        # whole square: implementations compute the causal mask's upper half too); backward: the gradients
        # of the probabilities, q, k and v, as many FLOPs again each
        nonlocal forward, backward
        forward += 4 * queries * keys * q * layers
        backward += 8 * queries * keys * q * layers * flows

    def first_layer(n: float, keys: float, added: float, cross_keys: float | None = None) -> float:
        """Backward FLOPs the first layer does not do when its input needs no gradient: nothing before its
        first trained part needs one (PEFT methods; full fine-tuning trains the embeddings). `cross_keys`:
        T5's decoder, whose cross-attention follows."""
        ops = {x for x in ("q", "k", "v") if x in t.first_trains}  # attention inputs that get gradients
        saved = 2 * d * (q + 2 * s.kv_width) * n + 2 * added * n  # q, k, v (and LoRA's A) read a constant
        if not t.prefix_tokens:
            needed = len(ops) + bool(ops & {"q", "k"})  # of the gradients of probabilities, q, k, v
            saved += 2 * n * keys * q * (4 - needed)
        elif not ops:  # prefix tuning: all but q's gradient (keys and values are [prefix; k], whose gradient is whole)
            saved += 2 * n * keys * q
        for score, side in zip(("c2p", "p2c"), ("q", "k"), strict=True):  # DeBERTa: the content side's gradient
            saved += 2 * n * s.position_columns * q if score in s.position_scores and side not in ops else 0
        attended = bool(ops) or bool(t.prefix_tokens)  # the attention's output depends on something trained
        saved += 0 if attended else 2 * q * d * n  # o reads a constant
        if cross_keys is not None:  # T5: so does cross-attention's q, if nothing trains before it
            return saved + (0 if attended or "o" in t.first_trains else 2 * d * q * n + 2 * n * cross_keys * q)
        ff_in, ff_out = s.ff_inputs * d * s.ff_width, d * s.ff_width
        # the feed-forward block reads a constant: in parallel with attention (GPT-J, GPT-NeoX), or after it
        # when nothing in attention trains
        if s.parallel or not (attended or "o" in t.first_trains):
            saved += 2 * ff_in * n + (0 if "ff_in" in t.first_trains else 2 * ff_out * n)
        return saved

    for src, tgt in zip(sources, targets, strict=True):
        n = src + t.virtual_tokens  # prompt tuning's virtual tokens go through every layer
        matmul(s.layers * s.layer_weights() + 2 * d * s.embed_width, n, t.backbone)
        matmul(t.added, n, 1.0)
        attention(n, n + t.prefix_tokens, s.layers)
        if s.position_scores:  # DeBERTa: c2p, p2c: every query (key) against 2 × span relative positions
            f = 2 * n * s.position_columns * q * len(s.position_scores) * s.layers
            forward += f
            backward += (
                f * flows * (2 if t.positions else 1)
            )  # the content side's gradient, the positions' when they train
        if s.decoder_layers:  # T5's decoder, per target token: self-attention, cross-attention's q and o, feed-forward
            dec = s.decoder_layers
            matmul(dec * (s.layer_weights() + 2 * d * q), tgt, t.backbone)
            matmul(dec * 2 * d * s.kv_width, n, t.backbone)  # cross-attention's k and v read the encoder's output
            matmul(t.added_target, tgt, 1.0)
            attention(tgt, tgt + t.prefix_tokens, dec)
            attention(tgt, n + t.prefix_tokens, dec)
        if not t.inputs and flows:
            backward -= first_layer(n, n + t.prefix_tokens, t.added_first)
        if s.decoder_layers and not t.target_inputs and flows:  # T5's decoder reads frozen embeddings too
            backward -= first_layer(tgt, tgt + t.prefix_tokens, t.added_first_target, cross_keys=n + t.prefix_tokens)
        if architecture == "encoder":
            matmul(s.classifier_weights(), 1, float(t.head))  # once per example, on its first token
        else:
            matmul(s.lm_head_weights(), tgt if architecture == "encoder_decoder" else n, float(t.head))
    if s.position_columns:  # DeBERTa: the 2 × span table through the position projections, once per batch and layer
        f = 2 * s.position_columns * d * q * (2 if s.position_shared else len(s.position_scores)) * s.layers
        f *= len(sources) / batch_size
        forward += f
        # the table's gradient when the positions train; the projections' weights' when the backbone does
        backward += f * (1 + bool(t.backbone)) if t.positions else 0.0
    if inference or not (t.below_head or t.head):  # answering, or nothing trains: a forward pass only
        backward = 0.0
    return (forward + backward) / sum(sources)


def lengths_of(rows: Sequence[dict], architecture: str) -> tuple[list[int], list[int] | None]:
    """(input lengths, T5's target lengths or None) of training rows (bench.batching.training_rows, or those
    a train loader read, its .dataset.read()): the real tokens count_tokens counts, per example."""
    inputs = [sum(row["attention_mask"]) for row in rows]
    return inputs, [len(row["labels"]) for row in rows] if architecture == "encoder_decoder" else None


def flops_per_token(
    model: torch.nn.Module,
    family,
    architecture: str,
    lengths: float | Sequence[float],
    target_lengths: float | Sequence[float] | None = None,
    batch_size: int = 1,
    virtual_tokens: int = 0,
    prefix_tokens: int = 0,
    inference: bool = False,
) -> float:
    """Model FLOPs per training token of `model` as its method left it (peft-wrapped or not), or per input
    token of its forward pass alone (`inference`): the runner's entry point. `family` is its
    bench.families.Family; the rest as in model_flops_per_token, e.g.
    flops_per_token(model, family, architecture, *lengths_of(loader.dataset.read(), architecture),
                    cfg.train.batch_size)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    training = Training.of(model, family, virtual_tokens, prefix_tokens)
    return model_flops_per_token(
        Shape.of(base.config), architecture, training, lengths, target_lengths, batch_size, inference
    )


# --- the device's peak -------------------------------------------------------------------------------

# The precision a run computes its matrix products in (train.precision): the matmul probe's dtype on CPU.
DTYPES = {name: dtype or torch.float32 for name, dtype in AUTOCAST.items()}  # fp32: no autocast

# Dense peak TFLOP/s of NVIDIA data-centre GPUs (no 2:4 sparsity: the datasheets' starred figures are with
# sparsity and twice these), by the precision of the matrix products: fp32 without tensor cores, tf32, bf16
# and fp16 on tensor cores. Looked up by torch.cuda.get_device_name(), first matching pattern wins.
# - H100 SXM, H100 PCIe: NVIDIA H100 Tensor Core GPU datasheet (SXM: FP32 67, TF32 989*, BF16 1,979*,
#   FP16 1,979*; PCIe: FP32 51, TF32 756*, BF16 1,513*, FP16 1,513*; * with sparsity); H100 NVL: FP32 60,
#   TF32 835*, BF16 1,671*, FP16 1,671*
# - H200 SXM, H200 NVL: NVIDIA H200 Tensor Core GPU datasheet (the H100 SXM's and H100 NVL's figures: the
#   same GH100 compute with more memory)
# - A100 40GB and 80GB, SXM and PCIe: NVIDIA A100 Tensor Core GPU datasheet (FP32 19.5, TF32 156, BF16 312,
#   FP16 312, dense)
# - L40S: NVIDIA L40S datasheet (FP32 91.6, TF32 183 / 366*, BF16 362.05 / 733*, FP16 362.05 / 733*)
GPU_PEAKS: list[tuple[str, str, dict[str, float]]] = [
    (r"\bH200\b.*\bNVL\b", "NVIDIA H200 NVL", {"fp32": 60, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (r"\bH200\b", "NVIDIA H200 SXM", {"fp32": 67, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}),
    (r"\bH100\b.*\bNVL\b", "NVIDIA H100 NVL", {"fp32": 60, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (r"\bH100\b.*\bPCIe\b", "NVIDIA H100 PCIe", {"fp32": 51, "tf32": 378, "bf16": 756.5, "fp16": 756.5}),
    (r"\bH100\b", "NVIDIA H100 SXM", {"fp32": 67, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}),
    (r"\bA100\b", "NVIDIA A100", {"fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312}),
    (r"\bL40S\b", "NVIDIA L40S", {"fp32": 91.6, "tf32": 183, "bf16": 362.05, "fp16": 362.05}),
]


@dataclass(frozen=True)
class Peak:
    """A device's peak FLOP/s at a precision, and where the number comes from (or, when None, why not)."""

    flops_per_second: float | None
    source: str


def gpu_peak(name: str, kind: str) -> Peak:
    """The datasheet's dense peak of the GPU called `name` (torch.cuda.get_device_name) for matrix
    products in `kind`: fp32, tf32, bf16 or fp16."""
    for pattern, label, peaks in GPU_PEAKS:
        if re.search(pattern, name, re.IGNORECASE):
            return Peak(peaks[kind] * 1e12, f"datasheet: {label} {kind} dense")
    return Peak(
        None,
        f"no datasheet peak for GPU {name!r} in bench.utilisation.GPU_PEAKS (known: "
        + ", ".join(label for _, label, _ in GPU_PEAKS)
        + ")",
    )


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _time_matmul(size: int, dtype: torch.dtype, repeats: int = 5, budget_s: float = 0.3) -> float:
    """Seconds for one size × size matrix product: the best of a few, after a warm-up, of torch.mm and of
    F.linear (nn.Linear's kernel, which on CPU can be much faster: 5x in bfloat16 on the machine this was
    written on)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    best = float("inf")
    for product in (torch.nn.functional.linear, torch.mm):
        start = time.perf_counter()
        product(a, b)  # warm-up: thread pool, kernel selection
        if time.perf_counter() - start > 4 * best:  # a slow kernel: not worth timing
            continue
        spent = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            product(a, b)
            took = time.perf_counter() - start
            best, spent = min(best, took), spent + took
            if spent > budget_s:
                break
    return best


def _probe(dtype: torch.dtype, largest: int) -> tuple[float, int]:
    """(FLOP/s, size) of square matrix products, doubling the size from 256 until one takes 50 ms or the
    size reaches `largest`: about a second in all, also where a dtype is slow (bfloat16 without native support)."""
    size = 256
    while True:
        seconds = _time_matmul(size, dtype)
        if seconds >= 0.05 or size >= largest:
            return 2 * size**3 / seconds, size
        size *= 2


def cpu_peak(precision: str = "fp32", cache_dir: str | os.PathLike | None = None) -> Peak:
    """This CPU's matrix-product FLOP/s at the run's precision with torch's current thread count: measured
    once per CPU, thread count, torch version and dtype (about a second), then read from
    peak_flops.json in the cache folder (bench.assets.cache_root)."""
    dtype, threads = DTYPES[precision], torch.get_num_threads()
    dtype_name = str(dtype).removeprefix("torch.")
    key = f"{cpu_name()} | {threads} threads | torch {torch.__version__} | {dtype_name}"
    path = Path(cache_root(cache_dir)) / "peak_flops.json"
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    unsaved = ""
    if key not in cache:
        load: dict = {}
        with MachineLoad(load):
            flops, size = _probe(dtype, 1024 if threads <= 8 else 2048)  # larger products keep many threads busy
        cache[key] = {"flops_per_second": flops, "size": size}
        # a probe beside other work reads low: used for this run, never cached
        unsaved = "; machine busy, not cached" if load["busy"] else _save(path, cache)
    found = cache[key]
    return Peak(
        found["flops_per_second"],
        f"matmul probe, {dtype_name}, {threads} thread{'s' * (threads != 1)} "
        f"({found['size']}x{found['size']}, best of a few{unsaved})",
    )


def _save(path: Path, cache: dict) -> str:
    """Write the probe cache; a cache that cannot be written is said in the peak's description, never an
    error: a measurement's side effect must not fail the run it measures."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        os.replace(tmp, path)  # atomic: a concurrent run reads the old file or the new, never half of one
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return f"; not cached: {path.parent} is not writable ({e.strerror or e})"
    return ""


def _tf32() -> bool:
    """Whether CUDA computes float32 matrix products in TF32 on tensor cores (off by default)."""
    matmul = torch.backends.cuda.matmul
    return (
        matmul.allow_tf32
        or torch.get_float32_matmul_precision() != "highest"
        or getattr(matmul, "fp32_precision", None) == "tf32"
    )


def peak_flops(device: str, precision: str, cache_dir: str | os.PathLike | None = None) -> Peak:
    """Peak FLOP/s for matrix products of a run on `device` ("cpu", "cuda", "cuda:N") at `precision`
    (train.precision: fp32, bf16-mixed, bf16, fp16-mixed). CPU: a measured matmul probe (cpu_peak); CUDA:
    the datasheet's dense figure (gpu_peak), in tf32 where fp32 products use tensor cores."""
    if precision not in DTYPES:
        raise ValueError(f"precision {precision!r}: one of {', '.join(DTYPES)}")
    if device == "cpu":
        return cpu_peak(precision, cache_dir)
    if device.startswith("cuda"):
        if precision == "fp32":
            kind = "tf32" if _tf32() else "fp32"
        else:
            kind = "fp16" if precision.startswith("fp16") else "bf16"
        return gpu_peak(torch.cuda.get_device_name(torch.device(device)), kind)
    return Peak(None, f"no peak for device {device!r}")


def utilisation(flops_per_token: float, tokens_per_second: float | None, peak: Peak) -> dict:
    """The run record's utilisation: model FLOPs per training token, the FLOP/s they add up to at the
    run's training tokens per second, the device's peak and its source, and their ratio, the model FLOPs
    utilisation (MFU; None where the peak or the speed is unknown)."""
    achieved = flops_per_token * tokens_per_second if tokens_per_second is not None else None
    return {
        "flops_per_token": flops_per_token,
        "achieved_flops_per_second": achieved,
        "peak_flops_per_second": peak.flops_per_second,
        "peak_from": peak.source,
        "fraction": achieved / peak.flops_per_second if achieved is not None and peak.flops_per_second else None,
    }
