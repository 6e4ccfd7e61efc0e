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

from dataclasses import dataclass

from omegaconf import OmegaConf

from bench.errors import ConfigError
from bench.methods import Method, MethodSchema, freeze_all_but_head, register, restore


@dataclass
class DiffPruningSchema(MethodSchema):
    target_sparsity: float = 0.005  # the fraction of weights the projected difference keeps
    l0_weight: float = 1.25e-7  # the paper's λ on the expected number of non-zero entries
    init_log_alpha: float = 5.0  # gates start almost surely open, so w trains from the first step
    retrain_steps: int = 0  # steps of w with the mask fixed after projection (0: none)


@register
class DiffPruning(Method):
    name = "diff_pruning"
    trains_base = True
    schema = DiffPruningSchema

    def check(self, cfg, family):
        if not 0 < cfg.target_sparsity <= 1:
            raise ConfigError("method.target_sparsity", cfg.target_sparsity, "a fraction of the weights in (0, 1]")
        if cfg.l0_weight < 0:
            raise ConfigError("method.l0_weight", cfg.l0_weight, "a penalty weight >= 0")
        if cfg.retrain_steps < 0:
            raise ConfigError("method.retrain_steps", cfg.retrain_steps, "a number of steps >= 0")

    def apply(self, model, cfg, family, tokenizer):
        from bench.methods.nn.difference import attach  # deferred: torch

        freeze_all_but_head(model, family)
        attach(model, cfg.init_log_alpha, cfg.l0_weight)
        for name, p in model.named_parameters():
            p.requires_grad = family.is_head(name) or name.endswith((".w", ".log_alpha"))
        return model

    def fit(self, model, loader, cfg, train_cfg, device, evaluate=None, log=None, monitor=None):
        from bench.methods.nn.difference import project  # deferred: torch
        from bench.train import train  # deferred: torch

        result = super().fit(model, loader, cfg, train_cfg, device, evaluate, log, monitor)
        project(model, cfg.target_sparsity)
        if cfg.retrain_steps:
            fixed = OmegaConf.merge(
                train_cfg, {"max_steps": cfg.retrain_steps, "epochs": None, "early_stopping_patience": 0}
            )
            again = train(model, loader, fixed, cfg.lr, device, evaluate, log, monitor=monitor)
            result.steps += again.steps
            result.step_seconds += again.step_seconds
            result.tokens_timed += again.tokens_timed
            result.examples_seen += again.examples_seen
            result.tokens_seen += again.tokens_seen
            result.data_seconds += again.data_seconds
            result.eval_seconds += again.eval_seconds
            result.losses += [(result.steps - again.steps + s, loss) for s, loss in again.losses]
            result.evaluations += [{**e, "step": result.steps - again.steps + e["step"]} for e in again.evaluations]
        return result

    def count(self, model, cfg, family):
        """The frozen weights once each (not their differences' w and gates), the head, and the
        difference's entries the projection keeps (before it: the number it will keep)."""
        from bench.methods.nn.difference import differences, kept  # deferred: torch

        counted = super().count(model, cfg, family)
        entries = sum(d.w.numel() for d in differences(model).values())
        method = kept(model)
        if method is None:
            method = max(1, round(cfg.target_sparsity * entries))
        total = counted["total"] - 2 * entries  # w and the gates shadow every frozen weight
        trainable = method + counted["head"]
        return {
            **counted,
            "total": total,
            "trainable": trainable,
            "method": method,
            "trainable_pct": 100.0 * trainable / total,
        }

    def save(self, model, folder):
        """The sparse difference, indices and values per tensor, and the head."""
        from safetensors.torch import save_file

        from bench.methods.nn.difference import sparse  # deferred: torch

        folder.mkdir(parents=True, exist_ok=True)
        head = {
            n: p.detach().contiguous().cpu()
            for n, p in model.named_parameters()
            if p.requires_grad and not n.endswith((".w", ".log_alpha"))
        }
        save_file({**sparse(model), **head}, str(folder / "diff.safetensors"))

    def load(self, model, cfg, family, tokenizer, folder):
        """The base with each saved difference in place and its mask fixed, as after the projection."""
        from safetensors.torch import load_file

        from bench.methods.nn.difference import restore_sparse  # deferred: torch

        model = self.apply(model, cfg, family, tokenizer)
        saved = load_file(str(folder / "diff.safetensors"))
        restore_sparse(model, saved)
        restore(model, saved, complete=False)  # the head (the differences are restored above)
        return model
