"""Diff Pruning (Guo et al. 2021): the task's weights are the frozen pre-trained ones plus a
difference vector, δ = z ⊙ w, made sparse by hard-concrete gates z with an L0 penalty (the
expected number of open gates, weighted by `l0_weight`) added to the loss; after training δ is
projected to its `target_sparsity` largest entries in magnitude (the paper's 0.5%) and the mask is
fixed, optionally for `retrain_steps` more steps of w alone.

Every weight except the task head gets a difference (the head trains in full, as in every method),
attached with torch's parametrizations, without editing model code. A tied weight (decoders that
share the embedding with the output layer) gets its difference where it is first found. What a
user stores per task is the sparse δ (indices and values), and its non-zero entries are the
method's trainable count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from torch.nn.utils import parametrize

from bench import measure
from bench.config import ConfigError
from bench.methods import Method, MethodSchema, freeze_all_but_head, register, restore
from bench.train import TrainResult, train

# the hard-concrete distribution's temperature and stretch (Louizos et al. 2018, as the paper)
BETA, GAMMA, ZETA = 2 / 3, -0.1, 1.1


@dataclass
class DiffPruningSchema(MethodSchema):
    target_sparsity: float = 0.005  # the fraction of weights the projected difference keeps
    l0_weight: float = 1.25e-7  # the paper's λ on the expected number of non-zero entries
    init_log_alpha: float = 5.0  # gates start almost surely open, so w trains from the first step
    retrain_steps: int = 0  # steps of w with the mask fixed after projection (0: none)


class Difference(torch.nn.Module):
    """A parametrization: weight -> weight + z ⊙ w."""

    def __init__(self, like: torch.Tensor, init_log_alpha: float):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros_like(like))
        self.log_alpha = torch.nn.Parameter(torch.full_like(like, init_log_alpha))
        self.register_buffer("mask", None)  # the projection's fixed mask, once projected

    def gate(self) -> torch.Tensor:
        if self.mask is not None:
            return self.mask
        if self.training:  # a stretched, clamped sample of the hard-concrete distribution
            u = torch.rand_like(self.log_alpha).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((u.log() - (-u).log1p() + self.log_alpha) / BETA)
        else:
            s = torch.sigmoid(self.log_alpha)
        return (s * (ZETA - GAMMA) + GAMMA).clamp(0, 1)

    def delta(self) -> torch.Tensor:
        return self.gate() * self.w

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta()

    def expected_open(self) -> torch.Tensor:
        """The L0 penalty: the expected number of gates that are not exactly zero."""
        return torch.sigmoid(self.log_alpha - BETA * math.log(-GAMMA / ZETA)).sum()


def differences(model: torch.nn.Module) -> dict[str, Difference]:
    """'module.tensor' -> its Difference."""
    return {f"{name}.{tensor}": plist[0] for name, module in model.named_modules() if parametrize.is_parametrized(module)
            for tensor, plist in module.parametrizations.items()}


def _penalise(model: torch.nn.Module, l0_weight: float):
    """Add λ · L0 to the loss of every training forward pass, so the shared loop trains it."""
    diffs = list(differences(model).values())

    def hook(module, args, output):
        if module.training and getattr(output, "loss", None) is not None and diffs[0].mask is None:
            output.loss = output.loss + l0_weight * sum(d.expected_open() for d in diffs)
        return output

    model.register_forward_hook(hook)


def project(model: torch.nn.Module, sparsity: float) -> None:
    """Keep the largest |δ| entries, `sparsity` of all: fix the mask and fold the gate into w (the
    gates get no gradient from then on)."""
    diffs = list(differences(model).values())
    with torch.no_grad():
        deltas = [d.eval().delta() for d in diffs]
        keep = max(1, round(sparsity * sum(x.numel() for x in deltas)))
        flat = torch.cat([x.abs().flatten() for x in deltas])
        # exactly `keep` entries by index: Adam's first steps move many entries by the same amount,
        # so a magnitude threshold would keep every tie
        chosen = torch.zeros_like(flat, dtype=torch.bool)
        chosen[flat.topk(keep).indices] = True
        chosen &= flat != 0
        for d, x, mask in zip(diffs, deltas, chosen.split([x.numel() for x in deltas]), strict=True):
            d.mask = mask.view_as(x).to(x.dtype)
            d.w.copy_(x * d.mask)


@register
class DiffPruning(Method):
    name = "diff_pruning"
    schema = DiffPruningSchema

    def check(self, cfg, family):
        if not 0 < cfg.target_sparsity <= 1:
            raise ConfigError("method.target_sparsity", cfg.target_sparsity, "a fraction of the weights in (0, 1]")
        if cfg.l0_weight < 0:
            raise ConfigError("method.l0_weight", cfg.l0_weight, "a penalty weight >= 0")
        if cfg.retrain_steps < 0:
            raise ConfigError("method.retrain_steps", cfg.retrain_steps, "a number of steps >= 0")

    def apply(self, model, cfg, family, tokenizer):
        freeze_all_but_head(model, family)
        for name, p in list(model.named_parameters()):  # named_parameters lists a tied tensor once
            if not p.requires_grad:
                module_name, _, tensor = name.rpartition(".")
                parametrize.register_parametrization(model.get_submodule(module_name), tensor,
                                                     Difference(p.detach(), cfg.init_log_alpha), unsafe=True)
        for name, p in model.named_parameters():
            p.requires_grad = family.is_head(name) or name.endswith((".w", ".log_alpha"))
        _penalise(model, cfg.l0_weight)
        return model

    def fit(self, model, loader, cfg, train_cfg, device, evaluate=None, log=None, monitor=None) -> TrainResult:
        result = super().fit(model, loader, cfg, train_cfg, device, evaluate, log, monitor)
        project(model, cfg.target_sparsity)
        if cfg.retrain_steps:
            fixed = OmegaConf.merge(train_cfg, {"max_steps": cfg.retrain_steps, "epochs": None, "early_stopping_patience": 0})
            again = train(model, loader, fixed, cfg.lr, device, evaluate, log, monitor=monitor)
            result.steps += again.steps
            result.step_seconds += again.step_seconds
            result.tokens_timed += again.tokens_timed
            result.examples_seen += again.examples_seen
            result.tokens_seen += again.tokens_seen
            result.losses += [(result.steps - again.steps + s, loss) for s, loss in again.losses]
            result.evaluations += [{**e, "step": result.steps - again.steps + e["step"]} for e in again.evaluations]
        return result

    def count(self, model, cfg, family):
        """The frozen weights once each (not their differences' w and gates), the head, and the
        difference's entries the projection keeps (before it: the number it will keep)."""
        counted = measure.count_params(model, family)
        diffs = list(differences(model).values())
        entries = sum(d.w.numel() for d in diffs)
        if diffs and diffs[0].mask is not None:
            kept = sum(int(torch.count_nonzero(d.w)) for d in diffs)
        else:
            kept = max(1, round(cfg.target_sparsity * entries))
        total = counted["total"] - 2 * entries  # w and the gates shadow every frozen weight
        trainable = kept + counted["head"]
        return {**counted, "total": total, "trainable": trainable, "method": kept, "trainable_pct": 100.0 * trainable / total}

    def save(self, model, folder):
        """The sparse difference, indices and values per tensor, and the head."""
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for name, d in differences(model).items():
            delta = d.delta().detach().flatten()
            index = delta.nonzero().flatten()
            tensors[f"{name}.index"] = index.to(torch.int32 if delta.numel() < 2**31 else torch.int64).contiguous()
            tensors[f"{name}.value"] = delta[index].contiguous().cpu()
        head = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad and not n.endswith((".w", ".log_alpha"))}
        save_file({**tensors, **head}, str(folder / "diff.safetensors"))

    def load(self, model, cfg, family, tokenizer, folder):
        """The base with each saved difference in place and its mask fixed, as after the projection."""
        model = self.apply(model, cfg, family, tokenizer)
        saved = load_file(str(folder / "diff.safetensors"))
        with torch.no_grad():
            for name, d in differences(model).items():
                index, value = saved.pop(f"{name}.index").long(), saved.pop(f"{name}.value")
                d.mask = torch.zeros_like(d.w)
                d.mask.view(-1)[index] = 1
                d.w.zero_().view(-1)[index] = value
        restore(model, saved)  # the head
        return model
