"""LoRA (Hu et al. 2021): a low-rank update B·A on the chosen matrices, through peft."""

import json
from dataclasses import dataclass, field
from pathlib import Path

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
    # a large rank still learns; `init` starts B·A at zero (default, gaussian), from the weight's principal
    # (pissa: Meng et al. 2024) or orthonormal (olora: Büyükakyüz 2024) directions, taken out of the weight, or
    # (loftq: Li et al. 2023, on a 4-bit base) at the low-rank part of the error quantization made
    use_dora: bool = False
    use_rslora: bool = False
    init: str = "default"
    # LoRA+ (Hayou et al. 2024): B's learning rate this many times A's (method.lr), through peft's
    # create_loraplus_optimizer; 1 is plain LoRA
    lr_ratio: float = 1.0
    # AdaLoRA (Zhang et al. 2023): each matrix's update in SVD form P·E·Q starting at rank init_r (null: 1.5 r,
    # peft's 12 for 8), the least important singular values pruned during training until the ranks average r
    adalora: bool = False
    init_r: int | None = None


# peft's init_lora_weights; LoftQ (Li et al. 2023) is set after the adapters are made, on a 4-bit base
INITS = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora", "loftq": True}
# what moves the weights at initialisation: not a stored integer's, nor a tensor without values (meta)
FROM_WEIGHTS = {"pissa", "olora"}
# AdaLoRA's phases, as fractions of the run's steps: every rank trains for the first, the budget falls (cubically)
# to r on average until the last, in which the final ranks train alone; the paper sets both per task in steps
ADALORA_PHASES = (0.1, 0.2)


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
        return "ADALORA" if cfg.adalora else "LORA"

    def label(self, row):
        variants = [
            v
            for v, on in (
                ("DoRA", row.get("use_dora")),
                ("rsLoRA", row.get("use_rslora")),
                ("AdaLoRA", row.get("adalora")),
            )
            if on is True
        ]
        if isinstance(row.get("lr_ratio"), (int, float)) and row.get("lr_ratio") != 1:
            variants.append(f"LoRA+ x{row.get('lr_ratio'):g}")
        init = row.get("init")
        if isinstance(init, str) and init != "default":
            variants.append(f"{init} init")
        return f"LoRA (r={row.r:g}; {row.targets}{''.join(f'; {v}' for v in variants)})"

    def countable(self, cfg):
        if cfg.init not in FROM_WEIGHTS | {"loftq"}:
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
        if cfg.adalora:
            self._check_adalora(cfg)

    def _check_adalora(self, cfg):
        for key, plain in (("use_dora", False), ("use_rslora", False), ("init", "default"), ("lr_ratio", 1.0)):
            if cfg[key] != plain:
                raise ConfigError(
                    f"method.{key}", cfg[key], f"{plain} with method.adalora=true: peft's AdaLoRA has no such variant"
                )
        if cfg.init_r is not None and cfg.init_r <= cfg.r:
            raise ConfigError(
                "method.init_r", cfg.init_r, f"a starting rank > method.r={cfg.r}, the average AdaLoRA prunes down to"
            )

    def check_training(self, cfg, train_cfg):
        if cfg.adalora:
            self._check_adalora_training(train_cfg)
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

    @staticmethod
    def _check_adalora_training(t):
        if t.optimizer == "lomo":
            raise ConfigError(
                "train.optimizer",
                "lomo",
                "another optimizer with method.adalora=true: AdaLoRA reads the gradients LOMO frees",
            )
        if t.early_stopping_patience:
            raise ConfigError(
                "train.early_stopping_patience",
                t.early_stopping_patience,
                "0 with method.adalora=true: restoring an earlier step's weights would keep the ranks allocated since",
            )
        if t.precision == "fp16-mixed":
            raise ConfigError(
                "train.precision",
                t.precision,
                "fp32, bf16-mixed or bf16 with method.adalora=true: a step the gradient scaler skips would still feed "
                "its overflowed gradients into AdaLoRA's importance scores",
            )

    def check_quantized(self, cfg, quantize):
        if cfg.init == "loftq" and cfg.use_dora:
            raise ConfigError(
                "method.use_dora",
                True,
                "false with method.init=loftq: DoRA's magnitudes are set before LoftQ moves B·A",
            )
        if cfg.init == "loftq" and quantize not in ("nf4", "fp4"):
            raise ConfigError(
                "model.quantize",
                quantize,
                "nf4 or fp4 with method.init=loftq: LoftQ starts the adapters at the error of a 4-bit base",
            )
        if cfg.init in FROM_WEIGHTS and quantize != "none":
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
        from peft import AdaLoraConfig, LoraConfig

        common = {
            "lora_alpha": cfg.alpha,
            "lora_dropout": cfg.dropout,
            "target_modules": family.modules(model, cfg.targets),
        }
        if cfg.adalora:  # its schedule is set in `fit`, which knows the run's steps
            config = AdaLoraConfig(target_r=cfg.r, init_r=self.init_r(cfg), total_step=1, **common)
        else:
            config = LoraConfig(
                r=cfg.r, use_dora=cfg.use_dora, use_rslora=cfg.use_rslora, init_lora_weights=INITS[cfg.init], **common
            )
        model = wrap_peft(model, config, family)
        if cfg.init == "loftq":
            self._loftq(model)
        return model

    @staticmethod
    def _loftq(model):
        """B·A set to the best rank-r approximation of each 4-bit layer's quantization error, W - dequant(Q(W)),
        divided by LoRA's scale, with W read again from the base's safetensors (one LoftQ step, as peft's
        replace_lora_weights_loftq takes it). Written here because peft computes it on CUDA only (0.21 hard-codes
        the device) and sets B·A without the scale."""
        import bitsandbytes as bnb
        import torch

        base = model.get_base_model()
        read = _float_weights(_folder(base.config._name_or_path))
        layers = [
            (n, m)
            for n, m in model.named_modules()
            if hasattr(m, "lora_A") and isinstance(m.get_base_layer(), bnb.nn.Linear4bit)
        ]
        if not layers:
            raise ValueError("LoftQ found no 4-bit layer under a LoRA adapter to start from")
        with torch.no_grad():
            for name, m in layers:
                q = m.get_base_layer().weight
                w = read(name.removeprefix("base_model.model."), base.base_model_prefix).to(q.device)
                error = w - bnb.functional.dequantize_4bit(q.data, q.quant_state).float()
                u, s, vh = torch.linalg.svd(error, full_matrices=False)
                r, a, b = m.r["default"], m.lora_A["default"].weight, m.lora_B["default"].weight
                root = s[:r].sqrt()
                a.copy_(root[:, None] * vh[:r])
                b.copy_(u[:, :r] * root / m.scaling["default"])

    @staticmethod
    def init_r(cfg) -> int:
        return cfg.init_r if cfg.init_r is not None else max(cfg.r + 1, round(1.5 * cfg.r))

    def fit(self, model, loader, cfg, train_cfg, device, evaluate=None, log=None, monitor=None):
        if cfg.adalora:
            from bench.train import total_steps  # deferred: torch

            config = model.peft_config["default"]
            config.total_step = total_steps(train_cfg, len(loader))
            config.tinit, config.tfinal = (round(f * config.total_step) for f in ADALORA_PHASES)
        return super().fit(model, loader, cfg, train_cfg, device, evaluate, log, monitor)

    def load(self, model, cfg, family, tokenizer, folder):
        loaded = super().load(model, cfg, family, tokenizer, folder)
        if cfg.adalora:  # peft 0.21's AdaLoRA forward names the adapter it trains, even one loaded to predict
            loaded.base_model.trainable_adapter_name = "default"
        return loaded

    def after_step(self, model, cfg):
        return model.base_model.update_and_allocate if cfg.adalora else None

    def state_elements(self, model, cfg):
        """AdaLoRA's rank allocator keeps three tensors the size of each of its weights (the sensitivity, its
        moving average and its uncertainty: peft's RankAllocator.update_ipt)."""
        if not cfg.adalora:
            return 0
        return 3 * sum(p.numel() for n, p in model.named_parameters() if "lora_" in n and p.requires_grad)

    def count(self, model, cfg, family):
        """AdaLoRA's, once training has allocated the ranks: the parameters of those it kept (peft stores no
        more), and each matrix's rank (`rank/<module>`)."""
        counted = super().count(model, cfg, family)
        pattern = model.peft_config["default"].rank_pattern if cfg.adalora else None
        if not pattern:
            return counted
        ranks = {n.removesuffix(".lora_E.default"): sum(kept) for n, kept in pattern.items()}
        method = sum(  # each rank kept: a column of B, a row of A and its singular value
            ranks[n.removeprefix("base_model.model.")]
            * (m.lora_A["default"].shape[1] + m.lora_B["default"].shape[0] + 1)
            for n, m in model.named_modules()
            if n.removeprefix("base_model.model.") in ranks and hasattr(m, "lora_E")
        )
        trainable = counted["head"] + method
        return {
            **counted,
            "trainable": trainable,
            "method": method,
            "trainable_pct": 100.0 * trainable / counted["total"],
            **{f"rank/{n}": r for n, r in ranks.items()},
        }


def _folder(source: str) -> Path:
    """The folder a base loaded from: a local one as it is, a hub id's snapshot in the hub cache."""
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, local_files_only=True))


def _float_weights(folder: Path):
    """`read(module, prefix)`: a module's float weight from the safetensors in `folder` (one file or shards), by
    its name in the model or without the model's base prefix (a checkpoint of the bare backbone)."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    files = json.loads(index.read_text())["weight_map"] if index.exists() else None

    def read(module: str, prefix: str):
        for key in (f"{module}.weight", f"{module.removeprefix(prefix + '.')}.weight"):
            file = folder / (files.get(key, "") if files else "model.safetensors")
            if file.is_file():
                with safe_open(str(file), "pt") as f:
                    if key in f.keys():
                        return f.get_tensor(key).float()
        raise KeyError(f"{module}.weight is in no safetensors file of {folder}: LoftQ needs the float weights")

    return read
