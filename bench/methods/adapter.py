"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021): h + up(act(down(h))) on the
output of a sublayer, before its residual connection, with `up` starting at zero so that training
starts from the pre-trained function.

houlsby: after the attention output projection and after the feed-forward output projection of
every layer; pfeiffer: after the feed-forward output only. The adapters are attached with forward
hooks on those projections (abstract names o and ff_out, mapped per family), without editing model
code; each is a child module of its projection, so its weights move, count and save with the model.
(The `adapters` library would do this, but it pins transformers 4.x.)
"""

from dataclasses import dataclass

from bench.errors import ConfigError
from bench.methods import Method, MethodSchema, freeze_all_but_head, register

PLACES = {"houlsby": ["o", "ff_out"], "pfeiffer": ["ff_out"]}


@dataclass
class AdapterSchema(MethodSchema):
    kind: str = "pfeiffer"  # houlsby | pfeiffer
    # the bottleneck's width; null: the model's hidden width / reduction_factor
    size: int | None = None
    reduction_factor: int = 16
    activation: str = "relu"


def _out_width(module) -> int:
    """A projection's output width: nn.Linear's out_features, or GPT-2's Conv1D's nf."""
    return module.out_features if hasattr(module, "out_features") else module.nf


@register
class Adapter(Method):
    name = "adapter"
    schema = AdapterSchema

    def check(self, cfg, family):
        if cfg.kind not in PLACES:
            raise ConfigError("method.kind", cfg.kind, "one of " + ", ".join(PLACES))
        if cfg.size is not None and cfg.size < 1:
            raise ConfigError(
                "method.size", cfg.size, "a bottleneck width >= 1, or null to use method.reduction_factor"
            )
        if cfg.reduction_factor < 1:
            raise ConfigError(
                "method.reduction_factor", cfg.reduction_factor, "a factor >= 1 (hidden width / bottleneck width)"
            )
        # transformers' registry of activations; importing it imports torch, but only with method=adapter
        from transformers.activations import ACT2FN

        if cfg.activation not in ACT2FN:
            raise ConfigError(
                "method.activation",
                cfg.activation,
                "an activation of transformers' ACT2FN: " + ", ".join(sorted(ACT2FN)),
            )

    def check_sizes(self, cfg, width):
        if width and cfg.size is not None and cfg.size > width:
            raise ConfigError("method.size", cfg.size, f"a bottleneck width <= {width}, the model's width")

    def apply(self, model, cfg, family, tokenizer):
        from bench.methods.nn.bottleneck import Bottleneck  # deferred: torch

        freeze_all_but_head(model, family)
        for name in family.modules(model, PLACES[cfg.kind]):
            target = model.get_submodule(name)
            width = _out_width(target)
            size = cfg.size or max(1, width // cfg.reduction_factor)
            target.add_module("adapter", Bottleneck(width, size, cfg.activation, next(target.parameters())))
            target.register_forward_hook(lambda module, args, output: module.adapter(output))
        return model
