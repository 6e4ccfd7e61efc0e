"""IA3 (Liu et al. 2022): learned vectors that rescale keys, values and the feed-forward activation."""

from dataclasses import dataclass, field

from bench.methods import Method, MethodSchema, Serving, check_targets, register, wrap_peft


@dataclass
class IA3Schema(MethodSchema):
    # the paper's choice: k, v, and the input of the second feed-forward matrix
    targets: list[str] = field(default_factory=lambda: ["k", "v", "ff_out"])


@register
class IA3(Method):
    name = "ia3"
    title = "IA3"
    schema = IA3Schema
    serving = {"ia3": Serving("adapter", "IA3 (unmerged)"), "ia3_merged": Serving("merged", "IA3 merged")}

    refused_serving = {
        "ia3_mixed": "peft ignores adapter_names for IA3 (every row would get the active adapter): "
        "serve IA3 tasks in sub-batches or merged copies"
    }

    def peft_type(self, cfg):
        return "IA3"

    def check(self, cfg, family):
        check_targets("method.targets", cfg.targets, family)

    def apply(self, model, cfg, family, tokenizer):
        from peft import IA3Config

        targets = family.modules(model, cfg.targets)
        # ff_out is scaled on its input (the activation); the others on their output
        feedforward = [m for m in targets if m in family.modules(model, ["ff_out"])]
        config = IA3Config(target_modules=targets, feedforward_modules=feedforward)
        return wrap_peft(model, config, family)
