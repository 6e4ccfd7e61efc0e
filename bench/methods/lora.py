"""LoRA (Hu et al. 2021): a low-rank update B·A on the chosen matrices, through peft."""

from dataclasses import dataclass, field

from bench.errors import ConfigError
from bench.methods import Method, MethodSchema, Serving, check_targets, register, wrap_peft


@dataclass
class LoraSchema(MethodSchema):
    r: int = 8
    # the paper fixes alpha and varies r, so the update's scale alpha/r shrinks as r grows
    alpha: float = 16.0
    dropout: float = 0.1
    targets: list[str] = field(default_factory=lambda: ["q", "v"])


@register
class Lora(Method):
    name = "lora"
    schema = LoraSchema
    serving = {
        "lora": Serving("adapter", "LoRA (unmerged)"),
        "lora_merged": Serving("merged", "LoRA merged"),
        "lora_mixed": Serving("mixed", "LoRA, mixed-task batch"),
        "lora_swapped": Serving("swapped", "LoRA, swapped per task"),
    }

    def peft_type(self, cfg):
        return "LORA"

    def label(self, row):
        return f"LoRA (r={row.r:g}; {row.targets})"

    def check(self, cfg, family):
        if cfg.r < 1:
            raise ConfigError("method.r", cfg.r, "a rank >= 1")
        if not cfg.alpha > 0:
            raise ConfigError("method.alpha", cfg.alpha, "a scale > 0")
        if not 0 <= cfg.dropout < 1:
            raise ConfigError("method.dropout", cfg.dropout, "a probability in [0, 1)")
        check_targets("method.targets", cfg.targets, family)

    def check_sizes(self, cfg, width):
        if width and cfg.r > width:
            raise ConfigError(
                "method.r", cfg.r, f"a rank <= {width}, the model's width (beyond it B·A cannot grow in rank)"
            )

    def apply(self, model, cfg, family, tokenizer):
        from peft import LoraConfig

        config = LoraConfig(
            r=cfg.r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=family.modules(model, cfg.targets),
        )
        return wrap_peft(model, config, family)
