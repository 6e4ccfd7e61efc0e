"""Diff pruning's difference vector (bench/methods/diff_pruning.py): a parametrization that adds
δ = z ⊙ w to a frozen weight, with hard-concrete gates z, their L0 penalty, the projection to the
largest entries, and δ stored sparse (indices and values per tensor)."""

from __future__ import annotations

import math

import torch
from torch.nn.utils import parametrize

# the hard-concrete distribution's temperature and stretch (Louizos et al. 2018, as the paper)
BETA, GAMMA, ZETA = 2 / 3, -0.1, 1.1


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


def attach(model: torch.nn.Module, init_log_alpha: float, l0_weight: float) -> None:
    """A Difference on every frozen weight, and λ · L0 added to the loss of every training forward
    pass, so that the shared training loop trains it."""
    for name, p in list(model.named_parameters()):  # named_parameters lists a tied tensor once
        if not p.requires_grad:
            module_name, _, tensor = name.rpartition(".")
            parametrize.register_parametrization(
                model.get_submodule(module_name), tensor, Difference(p.detach(), init_log_alpha), unsafe=True
            )
    diffs = list(differences(model).values())

    def penalise(module, args, output):
        if module.training and getattr(output, "loss", None) is not None and diffs[0].mask is None:
            output.loss = output.loss + l0_weight * sum(d.expected_open() for d in diffs)
        return output

    model.register_forward_hook(penalise)


def differences(model: torch.nn.Module) -> dict[str, Difference]:
    """'module.tensor' -> its Difference."""
    return {
        f"{name}.{tensor}": plist[0]
        for name, module in model.named_modules()
        if parametrize.is_parametrized(module)
        for tensor, plist in module.parametrizations.items()
    }


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


def kept(model: torch.nn.Module) -> int | None:
    """The entries of δ the projection kept; None before it."""
    diffs = list(differences(model).values())
    if diffs and diffs[0].mask is not None:
        return sum(int(torch.count_nonzero(d.w)) for d in diffs)
    return None


def sparse(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Each difference as the indices and values of its non-zero entries."""
    tensors = {}
    for name, d in differences(model).items():
        delta = d.delta().detach().flatten()
        index = delta.nonzero().flatten()
        tensors[f"{name}.index"] = index.to(torch.int32 if delta.numel() < 2**31 else torch.int64).contiguous()
        tensors[f"{name}.value"] = delta[index].contiguous().cpu()
    return tensors


def restore_sparse(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Put each difference that `sparse` wrote in place, its mask fixed as after the projection;
    takes the tensors it uses out of `saved`."""
    with torch.no_grad():
        for name, d in differences(model).items():
            index, value = saved.pop(f"{name}.index").long(), saved.pop(f"{name}.value")
            d.mask = torch.zeros_like(d.w)
            d.mask.view(-1)[index] = 1
            d.w.zero_().view(-1)[index] = value
