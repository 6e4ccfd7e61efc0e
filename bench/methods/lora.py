"""LoRA (Hu et al. 2021): a low-rank update B·A on the chosen matrices, through peft."""

from dataclasses import dataclass, field

from omegaconf import OmegaConf

from bench.errors import ConfigError
from bench.methods import Method, MethodSchema, Serving, check_targets, register, wrap_peft


@dataclass
class LoraSchema(MethodSchema):
    r: int = 8
    # the paper fixes alpha and varies r, so the update's scale alpha/r shrinks as r grows
    alpha: float = 16.0
    dropout: float = 0.1
    targets: list[str] = field(default_factory=lambda: ["q", "v"])
    # the variants, as peft's LoraConfig has them: DoRA (Liu et al. 2024) splits each weight into a trained
    # magnitude and a direction that LoRA updates; rsLoRA (Kalajdzievski 2023) scales by alpha/sqrt(r), so that
    # a large rank still learns; `init` starts B·A at zero (default, gaussian) or from the weight's principal
    # (pissa: Meng et al. 2024) or orthonormal (olora: Büyükakyüz 2024) directions, taken out of the weight
    use_dora: bool = False
    use_rslora: bool = False
    init: str = "default"
    # LoRA+ (Hayou et al. 2024): B's learning rate this many times A's (method.lr), through peft's
    # create_loraplus_optimizer; 1 is plain LoRA
    lr_ratio: float = 1.0


INITS = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}  # peft's init_lora_weights
# what moves the weights at initialisation: not a stored integer's, nor a tensor without values (meta)
FROM_WEIGHTS = {"pissa", "olora"}


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
        variants = [v for v, on in (("DoRA", row.get("use_dora")), ("rsLoRA", row.get("use_rslora"))) if on is True]
        if isinstance(row.get("lr_ratio"), (int, float)) and row.get("lr_ratio") != 1:
            variants.append(f"LoRA+ x{row.get('lr_ratio'):g}")
        init = row.get("init")
        if isinstance(init, str) and init != "default":
            variants.append(f"{init} init")
        return f"LoRA (r={row.r:g}; {row.targets}{''.join(f'; {v}' for v in variants)})"

    def countable(self, cfg):
        if cfg.init not in FROM_WEIGHTS:
            return cfg, []
        return OmegaConf.merge(cfg, {"init": "default"}), [
            f"LoRA initialised as default (the meta device holds no weights to take {cfg.init}'s directions from): "
            "the same parameters"
        ]

    def check(self, cfg, family):
        if cfg.r < 1:
            raise ConfigError("method.r", cfg.r, "a rank >= 1")
        if not cfg.alpha > 0:
            raise ConfigError("method.alpha", cfg.alpha, "a scale > 0")
        if not 0 <= cfg.dropout < 1:
            raise ConfigError("method.dropout", cfg.dropout, "a probability in [0, 1)")
        check_targets("method.targets", cfg.targets, family)
        if cfg.init not in INITS:
            raise ConfigError("method.init", cfg.init, "one of " + ", ".join(INITS))
        if not cfg.lr_ratio >= 1:
            raise ConfigError("method.lr_ratio", cfg.lr_ratio, "a ratio >= 1 of B's learning rate to A's (1: LoRA)")

    def check_training(self, cfg, train_cfg):
        if cfg.lr_ratio != 1 and train_cfg.optimizer == "lomo":
            raise ConfigError(
                "method.lr_ratio", cfg.lr_ratio, "1 with train.optimizer=lomo: LOMO updates every weight at one rate"
            )

    def make_optimizer(self, model, cfg):
        if cfg.lr_ratio == 1:
            return None
        from peft.optimizers import create_loraplus_optimizer

        return lambda optimizer_class, **kwargs: create_loraplus_optimizer(
            model, optimizer_class, loraplus_lr_ratio=cfg.lr_ratio, **kwargs
        )

    def check_quantized(self, cfg, quantize):
        if cfg.init in FROM_WEIGHTS:
            raise ConfigError(
                "method.init",
                cfg.init,
                f"default or gaussian with model.quantize={quantize}: {cfg.init} takes its directions out of the "
                "float weights, which a quantized base does not hold",
            )

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
            use_dora=cfg.use_dora,
            use_rslora=cfg.use_rslora,
            init_lora_weights=INITS[cfg.init],
        )
        return wrap_peft(model, config, family)
