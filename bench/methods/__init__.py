"""The method registry. A method is one module in this package plus one YAML in conf/method.

Each module defines a schema dataclass (its config keys, typed) and a `Method` subclass that
`register` adds to METHODS. `apply` returns the model with exactly the method's parameters and
the task head trainable; everything else is frozen.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from omegaconf import MISSING
from peft import PeftConfig, PeftModel, TaskType, get_peft_model
from safetensors.torch import save_file

from bench.config import ConfigError
from bench.families import Family, accepted_matrices


@dataclass
class MethodSchema:
    name: str = MISSING
    lr: float = MISSING  # each method's own default: they differ by orders of magnitude


class Method:
    name: str
    schema: type = MethodSchema

    def check(self, cfg, family: Family) -> Optional[str]:
        """Raise ConfigError on a bad value; return a reason if the method does not apply."""
        return None

    def apply(self, model: torch.nn.Module, cfg, family: Family, tokenizer) -> torch.nn.Module:
        raise NotImplementedError

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        """Write what a user must store per task: the trainable tensors."""
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(model, PeftModel):
            model.save_pretrained(str(folder))  # peft's own format: adapter plus head
            return
        tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
        save_file(tensors, str(folder / "trainable.safetensors"))


METHODS: dict[str, Method] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls()
    return cls


def is_head(param_name: str, family: Family) -> bool:
    parts = param_name.split(".")
    return any(h in parts for h in family.head)


def freeze_all_but_head(model: torch.nn.Module, family: Family) -> None:
    for n, p in model.named_parameters():
        p.requires_grad = is_head(n, family)


def wrap_peft(model: torch.nn.Module, config: PeftConfig, family: Family) -> PeftModel:
    config.task_type = TaskType.SEQ_CLS
    # peft keeps a frozen copy of each of these and trains another; measure skips the frozen one
    config.modules_to_save = list(family.head)
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in 5.x; not ours to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def check_targets(key: str, targets, family: Family) -> None:
    if len(targets) == 0:
        raise ConfigError(key, list(targets), "a non-empty list of: " + ", ".join(accepted_matrices(family)))
    for t in targets:
        if t in family.fused:
            raise ConfigError(key, list(targets), f"targets without {t!r}: {family.fused[t]}")
        if t not in family.matrices:
            raise ConfigError(
                key, list(targets), f"names from: {', '.join(accepted_matrices(family))} (family {family.name} has no {t!r})"
            )


for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
