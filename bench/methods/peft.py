"""Any other peft method by configuration: `method=peft method.type=LOHA method.args.r=8`.

The type is a peft PeftType name and `args` its config's own fields; where the type takes target
modules, `targets` are the abstract matrices (q, k, v, o, ff_in, ff_out) mapped per family, or
null for `args.target_modules` in peft's own terms (module names; LN_TUNING's layer norms, for
example) or, without it, peft's default for the model type. The methods this project implements itself (LoRA,
IA3, prompt and prefix tuning) have their own modules.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from bench.errors import ConfigError
from bench.methods import Method, MethodSchema, check_targets, register, wrap_peft

# fields the harness sets itself
SET_HERE = {
    "task_type",
    "peft_type",
    "auto_mapping",
    "peft_version",
    "base_model_name_or_path",
    "revision",
    "inference_mode",
    "modules_to_save",
}
# types that need more than a config: prompt learning changes how the harness feeds and decodes
# (method=prompt_tuning, prefix_tuning); AdaLoRA reallocates its ranks from gradients inside the
# training loop; X-LoRA mixes adapters trained before; Poly and multitask prompts train on several tasks
REFUSED = {
    "ADALORA": "it reallocates ranks inside the training loop (update_and_allocate), which method=peft does not call",
    "XLORA": "it mixes LoRA adapters trained beforehand",
    "POLY": "it routes between adapters of several tasks",
    "MULTITASK_PROMPT_TUNING": "it is prompt learning over several tasks",
}


@dataclass
class PeftSchema(MethodSchema):
    type: str = "LOHA"
    args: dict[str, Any] = field(default_factory=dict)
    targets: list[str] | None = field(default_factory=lambda: ["q", "v"])


def _types() -> dict[str, type]:
    """peft's config classes by type name, less prompt learning and the REFUSED types."""
    from peft import PromptLearningConfig
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    return {
        t.value: cls
        for t, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items()
        if t.value not in REFUSED and not issubclass(cls, PromptLearningConfig)
    }


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in SET_HERE]


def _probe(cls: type, args: dict, layer) -> str | None:
    """peft's own answer, on a one-layer probe: why it cannot wrap `layer` with this config, or None."""
    import torch
    from peft import inject_adapter_in_model

    probe = torch.nn.Module()
    probe.layer = layer
    try:
        inject_adapter_in_model(cls(**{**args, "target_modules": ["layer"]}), probe)
    except (ValueError, TypeError, NotImplementedError) as e:
        return str(e)
    return None


def _refuses_conv1d(cls: type, args: dict) -> str | None:
    """The reason this type cannot wrap a Conv1D layer that it can wrap as nn.Linear, or None."""
    import torch
    from transformers.pytorch_utils import Conv1D

    conv1d = _probe(cls, args, Conv1D(64, 64))
    return conv1d if conv1d and _probe(cls, args, torch.nn.Linear(64, 64)) is None else None


@register
class Peft(Method):
    name = "peft"

    def peft_type(self, cfg):
        return cfg.type

    schema = PeftSchema

    def check(self, cfg, family):
        types = _types()
        if cfg.type not in types:
            why = f" ({cfg.type}: {REFUSED[cfg.type]})" if cfg.type in REFUSED else ""
            raise ConfigError(
                "method.type", cfg.type, "a peft type this method runs: " + ", ".join(sorted(types)) + why
            )
        accepted = _fields(types[cfg.type])
        for arg, value in cfg.args.items():
            if arg not in accepted:
                raise ConfigError(
                    f"method.args.{arg}", value, f"a field of peft's {types[cfg.type].__name__}: " + ", ".join(accepted)
                )
        takes_targets = "target_modules" in {f.name for f in dataclasses.fields(types[cfg.type])}
        if cfg.targets is not None and takes_targets:
            if "target_modules" in cfg.args:
                raise ConfigError(
                    "method.targets", list(cfg.targets), "null when method.args.target_modules names the modules"
                )
            check_targets("method.targets", cfg.targets, family)
        if family.conv1d and takes_targets:
            refused = _refuses_conv1d(types[cfg.type], OmegaConf.to_container(cfg.args))
            if refused:
                return f"peft's {cfg.type} does not wrap {family.name}'s Conv1D projections: {refused}"
        return None

    def check_sizes(self, cfg, width):
        """peft checks most values only as it wraps a layer (LoRA's r > 0, ...): here it wraps a probe of the
        model's width, before loading; a type whose defaults cannot wrap that probe is left to its run."""
        cls = _types()[cfg.type]
        if not width or "target_modules" not in _fields(cls) or not cfg.args:
            return
        import torch

        layer = torch.nn.Linear(width, width)
        error = _probe(cls, OmegaConf.to_container(cfg.args), layer)
        if error and _probe(cls, {}, layer) is None:
            raise ConfigError(
                "method.args", OmegaConf.to_container(cfg.args), f"values peft's {cls.__name__} accepts ({error})"
            )

    def apply(self, model, cfg, family, tokenizer):
        cls = _types()[cfg.type]
        config = cls(**OmegaConf.to_container(cfg.args))
        if cfg.targets is not None and hasattr(config, "target_modules"):
            config.target_modules = family.modules(model, cfg.targets)
        return wrap_peft(model, config, family)
