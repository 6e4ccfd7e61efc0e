"""The optimizers `train.optimizer` names: how one training step updates the weights, and the
state each keeps per trainable weight (the analytic memory of a run).

A torch optimizer steps after backward: accumulate gradients, clip them, step. LOMO (Lv et al.
2023, the authors' `lomo-optim`) has no step: it updates each weight inside backward, as its
gradient arrives, and frees that gradient at once, so neither full gradients nor optimizer state
ever exist. Clipping by the global norm then needs a backward pass of its own before the one that
updates, and gradients cannot be accumulated across micro-batches.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from bench.errors import ConfigError

if TYPE_CHECKING:
    import torch

# name -> the class in torch.optim; lomo is the authors' package's, adamw8bit bitsandbytes' (Dettmers et al.
# 2022: AdamW with both moments stored in 8 bits, blockwise quantized)
TORCH = {"adamw": "AdamW", "sgd": "SGD", "adafactor": "Adafactor"}
NAMES = (*TORCH, "adamw8bit", "galore", "lomo")
# GaLore (Zhao et al. 2024, the authors' galore-torch): AdamW on each weight matrix's gradient projected onto
# `rank` directions (recomputed by SVD every `update_proj_gap` steps), the update scaled by `scale`; these are
# the defaults of the authors' scripts, set per parameter group, not by the optimizer's constructor. Every
# trainable matrix wider than the rank on both sides is projected (the embeddings too, where the authors'
# scripts take the attention and MLP matrices only); the others step as AdamW
GALORE = {"rank": 128, "update_proj_gap": 200, "scale": 0.25, "proj_type": "std"}
PROJECTIONS = ("std", "reverse_std", "right", "left")
# bitsandbytes keeps 32-bit state for a tensor smaller than this (its min_8bit_size), and a float32 absmax
# per block of 256 values of each 8-bit moment
MIN_8BIT, BLOCK_8BIT = 4096, 256
# set by train.*, not by train.optimizer_args
SET_ELSEWHERE = {"params": "the trainable weights", "lr": "method.lr", "weight_decay": "train.weight_decay"}


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
    import torch

    return getattr(torch.optim, TORCH[name])


def accepted_args(name: str) -> list[str]:
    names = inspect.signature(optimizer_class(name).__init__).parameters
    own = [a for a in names if a not in {"self", "model", "params", "lr", "weight_decay", "clip_grad_norm", "defaults"}]
    return own + list(GALORE) if name == "galore" else own


def galore_settings(args: dict) -> tuple[dict, dict]:
    """GaLore's projection settings (its defaults where not given) apart from its constructor's arguments."""
    group = {k: args.get(k, v) for k, v in GALORE.items()}
    return group, {k: v for k, v in args.items() if k not in GALORE}


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
    if name == "galore":
        _check_galore(galore_settings(args)[0])
    if args and name != "lomo":
        _check_values(name, galore_settings(args)[1] if name == "galore" else args)
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


def _check_galore(group: dict) -> None:
    for key in ("rank", "update_proj_gap"):
        if not isinstance(group[key], int) or isinstance(group[key], bool) or group[key] < 1:
            raise ConfigError(f"train.optimizer_args.{key}", group[key], "a whole number >= 1")
    if not isinstance(group["scale"], (int, float)) or not group["scale"] > 0:
        raise ConfigError("train.optimizer_args.scale", group["scale"], "a scale > 0 for the projected update")
    if group["proj_type"] not in PROJECTIONS:
        raise ConfigError("train.optimizer_args.proj_type", group["proj_type"], "one of " + ", ".join(PROJECTIONS))


def _check_values(name: str, args) -> None:
    """torch's own answer to the argument values: its constructor checks them (momentum >= 0, betas in
    [0, 1), ...), here on a one-element weight instead of after the model has loaded."""
    import torch

    values = OmegaConf.to_container(args) if OmegaConf.is_config(args) else dict(args)
    quiet = {"no_deprecation_warning": True} if name == "galore" else {}
    try:
        optimizer_class(name)([torch.nn.Parameter(torch.zeros(1))], lr=1e-3, weight_decay=0.0, **{**quiet, **values})
    except (ValueError, TypeError) as e:
        raise ConfigError("train.optimizer_args", values, f"values {name} accepts ({e})") from None


class Update:
    """One optimizer step over the micro-batches of a batch: `backward` each loss, then `step`.
    With a gradient scaler (train.precision=fp16-mixed, bench/precision.py) the loss is scaled
    before backward and the gradients unscaled before clipping; a step whose gradients overflowed
    is skipped and the scale lowered."""

    def __init__(self, name: str, model: torch.nn.Module, lr: float, cfg, args: dict, scaler=None, make=None):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.max_grad_norm, self.scaler = cfg.max_grad_norm, scaler
        if make is not None:  # a method's own grouping of the weights (LoRA+: B's at a higher rate)
            self.optimizer = make(optimizer_class(name), lr=lr, weight_decay=cfg.weight_decay, **args)
        elif name == "galore":
            group, own = galore_settings(args)
            matrices = {id(p) for p in projected(self.params, group["rank"])}
            groups = [
                {"params": [p for p in self.params if id(p) not in matrices]},
                {"params": [p for p in self.params if id(p) in matrices], **group},
            ]
            self.optimizer = optimizer_class(name)(
                [g for g in groups if g["params"]],
                lr=lr,
                weight_decay=cfg.weight_decay,
                no_deprecation_warning=True,  # the authors' AdamW warns that transformers deprecated the one it copies
                **own,
            )
        else:
            self.optimizer = optimizer_class(name)(self.params, lr=lr, weight_decay=cfg.weight_decay, **args)

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
        self.optimizer.zero_grad(set_to_none=True)


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


def build(name: str, model: torch.nn.Module, lr: float, cfg, scaler=None, make=None) -> Update:
    """The update of `name`; `make(optimizer_class, lr=, weight_decay=, **args)`, where given, builds the
    torch optimizer over the weights in the method's own groups (validation refuses it with LOMO)."""
    return (LomoUpdate if name == "lomo" else Update)(
        name, model, lr, cfg, OmegaConf.to_container(cfg.optimizer_args), scaler, make
    )


def state_elements(name: str, args: dict, params: list[torch.Tensor]) -> int:
    """Elements of optimizer state for these trainable weights: AdamW two moments each (three
    with amsgrad), 8-bit AdamW a quarter of that where it quantizes, GaLore AdamW's of the projected gradients
    and the projections, SGD one momentum buffer (none without
    momentum), Adafactor a row and a column second moment per matrix (a full one per vector), LOMO none."""
    if name == "adamw":
        return (3 if args.get("amsgrad") else 2) * sum(p.numel() for p in params)
    if name == "adamw8bit":  # in float32 elements: two 1-byte moments, their blocks' absmax, one shared code table each
        small = args.get("min_8bit_size", MIN_8BIT)
        big = [p.numel() for p in params if p.numel() >= small]
        quantized = sum(2 * n / 4 + 2 * math.ceil(n / BLOCK_8BIT) for n in big) + (2 * 256 if big else 0)
        return round(quantized) + sum(2 * p.numel() for p in params if p.numel() < small)
    if name == "galore":  # two moments of each projected gradient, and its projection matrix
        rank = galore_settings(args)[0]["rank"]
        matrices = projected(params, rank)
        ids = {id(p) for p in matrices}
        return sum(2 * rank * max(p.shape) + rank * min(p.shape) for p in matrices) + 2 * sum(
            p.numel() for p in params if id(p) not in ids
        )
    if name == "sgd":
        return sum(p.numel() for p in params) if args.get("momentum", 0) else 0
    if name == "adafactor":
        return sum(
            math.prod(p.shape[:-1]) + math.prod(p.shape[:-2]) * p.shape[-1] if p.dim() >= 2 else p.numel()
            for p in params
        )
    return 0


def gradient_elements(name: str, params: list[torch.Tensor]) -> int:
    """Elements of gradient held at once: every trainable weight's, or under LOMO about one
    weight's at a time (it frees each as soon as it has applied it)."""
    if name == "lomo":
        return max((p.numel() for p in params), default=0)
    return sum(p.numel() for p in params)


def step_elements(name: str, params: list[torch.Tensor], device: str) -> int:
    """Elements of the temporaries one optimizer step allocates. AdamW takes the square root of its
    second moments: on CUDA, where torch steps all weights together (foreach), for every weight at
    once; on CPU weight by weight, with a second temporary for the division: twice the largest
    weight. SGD, Adafactor and LOMO are taken to update in place."""
    if name != "adamw":
        return 0
    if device == "cuda":
        return sum(p.numel() for p in params)
    return 2 * max((p.numel() for p in params), default=0)
