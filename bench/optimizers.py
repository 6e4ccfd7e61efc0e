"""The optimizers `train.optimizer` names: how one training step updates the weights, and the
state each keeps per trainable weight (the analytic memory of a run).

A torch optimizer steps after backward: accumulate gradients, clip them, step. LOMO (Lv et al.
2023, the authors' `lomo-optim`) has no step: it updates each weight inside backward, as its
gradient arrives, and frees that gradient at once, so neither full gradients nor optimizer state
ever exist. Clipping by the global norm then needs a backward pass of its own before the one that
updates, and gradients cannot be accumulated across micro-batches.

The memory-lean optimizers of full-parameter training keep less state than AdamW in four ways: in 8 bits
(bitsandbytes' AdamW8bit), in a low-rank projection of each matrix's gradient (GaLore, APOLLO), with one
second moment per block of weights instead of per weight (Adam-mini), or for one block of layers at a time
(BAdam). Each is its authors' package.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from bench.errors import ConfigError

if TYPE_CHECKING:
    import torch

# name -> the class in torch.optim; lomo is the authors' package's, adamw8bit bitsandbytes' (Dettmers et al.
# 2022: AdamW with both moments stored in 8 bits, blockwise quantized)
TORCH = {"adamw": "AdamW", "sgd": "SGD", "adafactor": "Adafactor"}
NAMES = (*TORCH, "adamw8bit", "galore", "apollo", "apollo_mini", "adam_mini", "badam", "lomo")
# GaLore (Zhao et al. 2024, the authors' galore-torch): AdamW on each weight matrix's gradient projected onto
# `rank` directions (recomputed by SVD every `update_proj_gap` steps), the update scaled by `scale`; these are
# the defaults of the authors' scripts, set per parameter group, not by the optimizer's constructor. Every
# trainable matrix wider than the rank on both sides is projected (the embeddings too, where the authors'
# scripts take the attention and MLP matrices only); the others step as AdamW
GALORE = {"rank": 128, "update_proj_gap": 200, "scale": 0.25, "proj_type": "std"}
PROJECTIONS = ("std", "reverse_std", "right", "left")
# APOLLO (Zhu et al. 2024, the authors' apollo-torch): AdamW's moments of a random projection of each matrix's
# gradient, from which it scales the raw gradient per channel (rank 256, scale 1) or, APOLLO-Mini, per tensor from
# a rank-1 projection (scale 128): the authors' defaults for both
APOLLO = {**GALORE, "rank": 256, "scale": 1.0, "proj": "random", "scale_type": "channel"}
APOLLO_MINI = {**APOLLO, "rank": 1, "scale": 128.0, "scale_type": "tensor"}
# the projected optimizers: their settings per parameter group, which their constructors do not take
PROJECTED = {"galore": GALORE, "apollo": APOLLO, "apollo_mini": APOLLO_MINI}
CHOICES = {"proj_type": PROJECTIONS, "proj": ("random", "svd"), "scale_type": ("channel", "tensor")}
# BAdam (Luo et al. 2024, the authors' badam): AdamW on one block (a transformer layer, or the embeddings) at a
# time, the block switched every `switch_block_every` steps in `switch_mode` order (its constructor's
# defaults); what lies outside every block (the task head, a final norm) trains at every step
BADAM = {"switch_block_every": 50, "switch_mode": "descending", "start_block": None}
SWITCH_MODES = ("random", "descending", "ascending", "fixed")
# one transformer layer's parameter names, up to its index (BERT's encoder.layer.3., LLaMA's layers.3., GPT-2's
# h.3., T5's block.3.), and the embeddings (BAdam's own pattern)
LAYER = re.compile(r"^(.*?(?:^|\.)(?:layer|layers|h|block|blocks)\.\d+\.)")
EMBEDDINGS = re.compile(r"^(.*?(?:embed[^.]*|wte|wpe)\.)")  # GPT-2's are wte and wpe
# optimizers that step the base model's own matrices in their own partition (Adam-mini's heads and neurons,
# BAdam's layers): only for methods that train the base's own weights (Method.trains_base)
WHOLE_MODEL = ("adam_mini", "badam")
# bitsandbytes keeps 32-bit state for a tensor smaller than this (its min_8bit_size), and a float32 absmax
# per block of 256 values of each 8-bit moment
MIN_8BIT, BLOCK_8BIT = 4096, 256
# set by train.*, not by train.optimizer_args
SET_ELSEWHERE = {
    "params": "the trainable weights",
    "named_parameters": "the trainable weights",
    "lr": "method.lr",
    "weight_decay": "train.weight_decay",
    "dim": "the model's config (its hidden size)",
    "n_heads": "the model's config (its attention heads)",
    "n_kv_heads": "the model's config (its key-value heads)",
}


def optimizer_class(name: str) -> type:
    """The optimizer's class, imported here: torch takes seconds to import, and `check` runs before
    a run is skipped or started, where only train.optimizer_args need the class (its signature)."""
    if name == "lomo":
        from lomo_optim import Lomo

        return Lomo
    if name == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit
    if name == "galore":
        from galore_torch import GaLoreAdamW

        return GaLoreAdamW
    if name in ("apollo", "apollo_mini"):
        from apollo_torch import APOLLOAdamW

        return APOLLOAdamW
    if name == "adam_mini":
        from adam_mini import Adam_mini

        return Adam_mini
    import torch

    if name == "badam":  # the optimizer of each block, which BAdam's BlockOptimizer wraps
        return torch.optim.AdamW

    return getattr(torch.optim, TORCH[name])


def accepted_args(name: str) -> list[str]:
    names = inspect.signature(optimizer_class(name).__init__).parameters
    set_here = {
        *("self", "model", "params", "lr", "weight_decay", "clip_grad_norm", "defaults", "verbose"),
        "no_deprecation_warning",  # set to True: the authors' AdamW warns that transformers deprecated its original
    }
    own = [a for a in names if a not in set_here and a not in SET_ELSEWHERE and a != "model_sharding"]
    return own + list(PROJECTED.get(name, {})) + (list(BADAM) if name == "badam" else [])


def settings(name: str, args: dict) -> tuple[dict, dict]:
    """The settings an optimizer takes beside its constructor's arguments (a projected optimizer's per
    parameter group, BAdam's block switching), its defaults where not given; and those arguments."""
    own = {**PROJECTED, "badam": BADAM}.get(name, {})
    return {k: args.get(k, v) for k, v in own.items()}, {k: v for k, v in args.items() if k not in own}


def projected(params, rank: int) -> list:
    """The weights GaLore projects: matrices wider than the rank on both sides."""
    return [p for p in params if p.dim() == 2 and min(p.shape) > rank]


def check(name: str, args: dict, grad_accum: int, precision: str = "fp32") -> None:
    """Raise ConfigError for an optimizer, argument or combination that cannot train (before any
    weight loads)."""
    if name not in NAMES:
        raise ConfigError("train.optimizer", name, "one of " + ", ".join(NAMES))
    accepted = accepted_args(name) if args else []
    for arg, value in args.items():
        if arg in SET_ELSEWHERE:
            raise ConfigError(f"train.optimizer_args.{arg}", value, f"no value here: {SET_ELSEWHERE[arg]} sets it")
        if arg not in accepted:
            raise ConfigError(
                f"train.optimizer_args.{arg}",
                value,
                f"an argument of {name}: " + (", ".join(accepted) or "it takes none"),
            )
    if name in PROJECTED:
        _check_projection(settings(name, args)[0])
    if name == "badam":
        _check_blocks(settings(name, args)[0])
    if args and name != "lomo":
        _check_values(name, settings(name, args)[1])
    if name == "lomo" and precision == "fp16-mixed":
        raise ConfigError(
            "train.precision",
            precision,
            "fp32, bf16-mixed or bf16: LOMO updates each weight inside "
            "backward, before a gradient scaler could unscale and check the gradients",
        )
    if name == "lomo" and grad_accum != 1:
        raise ConfigError(
            "train.grad_accum",
            grad_accum,
            "1: LOMO updates each weight inside backward, so gradients of several micro-batches cannot be accumulated",
        )


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_projection(group: dict) -> None:
    for key in ("rank", "update_proj_gap"):
        if not _whole(group[key]):
            raise ConfigError(f"train.optimizer_args.{key}", group[key], "a whole number >= 1")
    if not isinstance(group["scale"], (int, float)) or not group["scale"] > 0:
        raise ConfigError("train.optimizer_args.scale", group["scale"], "a scale > 0 for the projected update")
    for key, choices in CHOICES.items():
        if key in group and group[key] not in choices:
            raise ConfigError(f"train.optimizer_args.{key}", group[key], "one of " + ", ".join(choices))
    if group.get("scale_type") == "channel" and group["proj_type"] != "std":
        raise ConfigError(
            "train.optimizer_args.proj_type",
            group["proj_type"],
            "std with scale_type=channel: APOLLO's channel-wise scale assumes std's orientation of the projection",
        )


def _check_blocks(group: dict) -> None:
    if not _whole(group["switch_block_every"]):
        raise ConfigError("train.optimizer_args.switch_block_every", group["switch_block_every"], "a step count >= 1")
    if group["switch_mode"] not in SWITCH_MODES:
        raise ConfigError("train.optimizer_args.switch_mode", group["switch_mode"], "one of " + ", ".join(SWITCH_MODES))
    start = group["start_block"]
    if start is not None and not (isinstance(start, int) and not isinstance(start, bool) and start >= 0):
        raise ConfigError("train.optimizer_args.start_block", start, "a block index >= 0, or null for switch_mode's")


def check_blocks(name: str, args: dict, trained: list[str]) -> None:
    """BAdam's start_block among the blocks of the weights that train: only the model says how many there are,
    so this is checked on the meta model (bench/fit.py), still before any weight loads."""
    start = settings(name, args)[0].get("start_block") if name == "badam" else None
    count = len(blocks(trained)[0])
    if start is not None and start >= count:
        raise ConfigError(
            "train.optimizer_args.start_block",
            start,
            f"a block index below {count}, or null: the trained weights form {count} blocks (layers, embeddings)",
        )


def _check_values(name: str, args) -> None:
    """torch's own answer to the argument values: its constructor checks them (momentum >= 0, betas in
    [0, 1), ...), here on a one-element weight instead of after the model has loaded."""
    import torch

    values = OmegaConf.to_container(args) if OmegaConf.is_config(args) else dict(args)
    quiet = {"no_deprecation_warning": True} if name == "galore" else {"verbose": False} if name == "adam_mini" else {}
    weight = torch.nn.Parameter(torch.zeros(1))
    try:
        optimizer_class(name)(
            [("weight", weight)] if name == "adam_mini" else [weight], lr=1e-3, weight_decay=0.0, **{**quiet, **values}
        )
    except (ValueError, TypeError) as e:
        raise ConfigError("train.optimizer_args", values, f"values {name} accepts ({e})") from None


class Update:
    """One optimizer step over the micro-batches of a batch: `backward` each loss, then `step`.
    With a gradient scaler (train.precision=fp16-mixed, bench/precision.py) the loss is scaled
    before backward and the gradients unscaled before clipping; a step whose gradients overflowed
    is skipped and the scale lowered."""

    def __init__(self, name: str, model: torch.nn.Module, lr: float, cfg, args: dict, scaler=None, make=None):
        # taken before BAdam freezes all but its first block: clipping skips the frozen ones (no gradient), `end`
        # makes them trainable again
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.max_grad_norm, self.scaler = cfg.max_grad_norm, scaler
        # a method's own work after each step, before the gradients are cleared (AdaLoRA's ranks): given the steps
        self.after_step, self.steps = None, 0
        own, args = settings(name, args)
        kwargs = {"lr": lr, "weight_decay": cfg.weight_decay, **args}
        if make is not None:  # a method's own grouping of the weights (LoRA+: B's at a higher rate)
            self.optimizer = make(optimizer_class(name), **kwargs)
        elif name in PROJECTED:
            matrices = {id(p) for p in projected(self.params, own["rank"])}
            groups = [
                {"params": [p for p in self.params if id(p) not in matrices]},
                {"params": [p for p in self.params if id(p) in matrices], **own},
            ]
            # the authors' AdamW warns that transformers deprecated the one it copies
            self.optimizer = optimizer_class(name)(
                [g for g in groups if g["params"]], no_deprecation_warning=True, **kwargs
            )
        elif name == "adam_mini":
            self.optimizer = adam_mini(model, kwargs)
        elif name == "badam":
            self.optimizer = block_optimizer(model, own, kwargs)
        else:
            self.optimizer = optimizer_class(name)(self.params, **kwargs)

    def end(self) -> None:
        """After the last step: every weight the run trained is trainable again (BAdam froze all but a block)."""
        for p in self.params:
            p.requires_grad_(True)

    def __enter__(self) -> Update:
        return self

    def __exit__(self, *exc) -> None:
        self.end()

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self) -> None:
        from torch.nn.utils import clip_grad_norm_

        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.max_grad_norm > 0:
            clip_grad_norm_(self.params, self.max_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.steps += 1
        if self.after_step:
            self.after_step(self.steps)
        self.optimizer.zero_grad(set_to_none=True)


def adam_mini(model: torch.nn.Module, kwargs: dict, config=None):
    """Adam-mini over the trained weights, told the model's width and heads (`config`, else the model's): it
    gives query and key one second moment per head, the other matrices one per neuron. Its own names are
    LLaMA's and GPT-2's; BERT's feed-forward and attention output are named here, as its authors ask for a
    model their names miss."""
    from bench.shapes import Shape  # deferred: bench.shapes imports transformers' config classes

    shape = Shape.of(config or model.config)
    optimizer = optimizer_class("adam_mini")(
        adam_mini_names([(n, p) for n, p in model.named_parameters() if p.requires_grad]),
        dim=shape.width,
        n_heads=shape.heads,
        n_kv_heads=shape.kv_heads,
        verbose=False,
        **kwargs,
    )
    optimizer.mlp_names.update({"intermediate.dense", "output.dense"})
    return optimizer


def adam_mini_names(named: list[tuple[str, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
    """The names Adam-mini is given: a vector's that is no bias as a norm's (one second moment for it, as
    Adam-mini gives a LayerNorm), since one named like a matrix (BERT's embeddings.LayerNorm) fails its step."""
    return [(n if p.dim() > 1 or "bias" in n.lower() else f"norm.{i}", p) for i, (n, p) in enumerate(named)]


def blocks(names: list[str]) -> tuple[list[list[str]], list[str]]:
    """BAdam's blocks of these parameter names, each by its prefix (a transformer layer, or the embeddings),
    and the names outside every block, which train at every step."""
    prefixes, always = [], []
    for n in names:
        found = LAYER.match(n) or EMBEDDINGS.match(n)
        if found is None:
            always.append(n)
        elif [found.group(1)] not in prefixes:
            prefixes.append([found.group(1)])
    return prefixes, always


def block_optimizer(model: torch.nn.Module, own: dict, kwargs: dict):
    """BAdam's BlockOptimizer around AdamW over these weights; it freezes all but the current block."""
    from badam import BlockOptimizer

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    prefixes, always = blocks([n for n, _ in named])
    with warnings.catch_warnings():  # it warns that float32 weights make its float32 copy of a block redundant
        warnings.filterwarnings("ignore", message="BAdam expect model", category=UserWarning)
        return BlockOptimizer(
            optimizer_class("badam")([p for _, p in named], **kwargs),
            named,
            block_prefix_list=prefixes,
            active_modules=always,
            verbose=0,
            **own,
        )


class LomoUpdate(Update):
    """LOMO's fused update: the step happens in `backward` (at the scheduler's current rate)."""

    def __init__(self, name: str, model: torch.nn.Module, lr: float, cfg, args: dict, scaler=None, make=None):
        clip = cfg.max_grad_norm if cfg.max_grad_norm > 0 else None
        self.optimizer = optimizer_class(name)(model, lr=lr, clip_grad_norm=clip, weight_decay=cfg.weight_decay, **args)

    def backward(self, loss: torch.Tensor) -> None:
        if self.optimizer.clip_grad_norm:  # the extra pass that computes the global gradient norm
            self.optimizer.grad_norm(loss)
        self.optimizer.fused_backward(loss, self.optimizer.param_groups[0]["lr"])

    def step(self) -> None:
        # every weight was updated during backward; torch's scheduler checks that a step ran, and one did
        self.optimizer._opt_called = True

    def end(self) -> None:
        pass


def build(name: str, model: torch.nn.Module, lr: float, cfg, scaler=None, make=None) -> Update:
    """The update of `name`; `make(optimizer_class, lr=, weight_decay=, **args)`, where given, builds the
    torch optimizer over the weights in the method's own groups (validation refuses it with LOMO)."""
    return (LomoUpdate if name == "lomo" else Update)(
        name, model, lr, cfg, OmegaConf.to_container(cfg.optimizer_args), scaler, make
    )


def state_elements(name: str, args: dict, named: list[tuple[str, torch.Tensor]], config=None) -> int:
    """Elements of optimizer state for these trainable weights (by name; `config`, the model's, gives Adam-mini
    its heads): AdamW two moments each (three with amsgrad), 8-bit AdamW a quarter of that where it quantizes,
    GaLore's and APOLLO's AdamW of the projected gradients and the projections, Adam-mini one moment per weight
    and one second moment per head, neuron or block, BAdam AdamW's and a float32 copy of the largest block and of
    what trains at every step, SGD one momentum buffer (none without momentum), Adafactor a row and a column
    second moment per matrix (a full one per vector), LOMO none."""
    params = [p for _, p in named]
    if name == "adamw":
        return (3 if args.get("amsgrad") else 2) * sum(p.numel() for p in params)
    if name == "adamw8bit":  # in float32 elements: two 1-byte moments, their blocks' absmax, one shared code table each
        small = args.get("min_8bit_size", MIN_8BIT)
        big = [p.numel() for p in params if p.numel() >= small]
        quantized = sum(2 * n / 4 + 2 * math.ceil(n / BLOCK_8BIT) for n in big) + (2 * 256 if big else 0)
        return round(quantized) + sum(2 * p.numel() for p in params if p.numel() < small)
    if name in PROJECTED:  # two moments of each projected gradient, and its projection matrix
        rank = settings(name, args)[0]["rank"]
        matrices = projected(params, rank)
        ids = {id(p) for p in matrices}
        limiter = 1 if name != "galore" else 0  # APOLLO's norm-growth limiter keeps the last update's norm
        return sum(2 * rank * max(p.shape) + rank * min(p.shape) + limiter for p in matrices) + 2 * sum(
            p.numel() for p in params if id(p) not in ids
        )
    if name == "adam_mini":
        return sum(p.numel() for p in params) + _adam_mini_moments(named, config)
    if name == "badam":  # the block's moments and its float32 copy, which BAdam steps and copies back
        return (4 if args.get("amsgrad") else 3) * _largest_block(named)
    if name == "sgd":
        return sum(p.numel() for p in params) if args.get("momentum", 0) else 0
    if name == "adafactor":
        return sum(
            math.prod(p.shape[:-1]) + math.prod(p.shape[:-2]) * p.shape[-1] if p.dim() >= 2 else p.numel()
            for p in params
        )
    return 0


def _adam_mini_moments(named: list[tuple[str, torch.Tensor]], config) -> int:
    """Adam-mini's second moments, by each weight's name as Adam-mini reads it (with the name sets of an
    instance of it): a bias one per entry, a query or key one per head, a named matrix one per neuron (row),
    anything else one."""
    import torch

    mini = adam_mini(torch.nn.Linear(1, 1, bias=False), {"lr": 1e-3}, config)
    rowwise = mini.embd_names | mini.output_names | mini.wv_names | mini.mlp_names | mini.attn_proj_names
    total = 0
    for name, p in adam_mini_names(named):
        name = name.lower()
        if any(b in name for b in mini.adam_block_names):
            total += p.numel()
        elif any(b in name for b in mini.wqk_names):
            total += p.numel() // mini.head_numel
        else:
            total += p.shape[0] if any(b in name for b in rowwise) else 1
    return total


def _largest_block(named: list[tuple[str, torch.Tensor]]) -> int:
    """Elements BAdam trains at once: its largest block and what lies outside every block."""
    prefixes, always = blocks([n for n, _ in named])
    sizes = [sum(p.numel() for n, p in named if n.startswith(prefix[0])) for prefix in prefixes]
    return max(sizes, default=0) + sum(p.numel() for n, p in named if n in always)


def gradient_elements(name: str, named: list[tuple[str, torch.Tensor]]) -> int:
    """Elements of gradient held at once: every trainable weight's, under BAdam those of its largest block,
    or under LOMO about one weight's at a time (it frees each as soon as it has applied it)."""
    if name == "lomo":
        return max((p.numel() for _, p in named), default=0)
    if name == "badam":
        return _largest_block(named)
    return sum(p.numel() for _, p in named)


def step_elements(name: str, args: dict, named: list[tuple[str, torch.Tensor]], device: str) -> int:
    """Elements of the temporaries one optimizer step allocates. AdamW takes the square root of its
    second moments: on CUDA, where torch steps all weights together (foreach), for every weight at
    once; on CPU weight by weight, with a second temporary for the division: twice the largest
    weight (BAdam: AdamW over its largest block). GaLore projects its update back to the weight's shape and
    renews its projection by an SVD of the gradient (its two factors); APOLLO scales the full gradient and
    limits its norm (two copies); Adam-mini builds each update whole (one). SGD, Adafactor and LOMO are taken to
    update in place."""
    params = [p for _, p in named]
    largest = max((p.numel() for p in params), default=0)
    if name in ("adamw", "badam"):
        if device == "cuda":
            return _largest_block(named) if name == "badam" else sum(p.numel() for p in params)
        return 2 * largest
    if name in PROJECTED:
        matrices = projected(params, settings(name, args)[0]["rank"])
        if not matrices:
            return 2 * largest  # nothing projected: AdamW's step
        biggest = max(p.numel() for p in matrices)
        if name != "galore":
            return 2 * biggest
        return biggest + max(min(p.shape) * sum(p.shape) for p in matrices)
    return largest if name == "adam_mini" else 0
