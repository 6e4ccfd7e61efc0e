"""The method registry. A method is one module in this package plus one YAML in conf/method.

Each module defines a schema dataclass (its config keys, typed) and a `Method` subclass that
`register` adds to METHODS. `apply` returns the model with exactly the method's parameters and
the task head trainable; everything else is frozen.

Every `python -m bench` imports all these modules (their schemas are registered before Hydra reads
the command line, and `validate` calls their `check`), so none imports torch, transformers or peft
at module level: a --help, a config error or a skipped run answers at once instead of after the
seconds those take. What runs a method (`apply`, `fit`, `save`, ...) imports them where it needs
them, and the torch modules a method adds to a model live in the subpackage `nn`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import MISSING, DictConfig

from bench.errors import ConfigError
from bench.families import Family, accepted_matrices

if TYPE_CHECKING:
    import torch
    from peft import PeftConfig, PeftModel

    from bench.train import TrainResult


@dataclass
class MethodSchema:
    name: str = MISSING
    lr: float = MISSING  # each method's own default: they differ by orders of magnitude
    # the learning rates `python -m bench.search` tries for this method (not part of a run's identity)
    lr_grid: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Serving:
    """One way mode=serve (bench/serve.py) serves a task of this method. `kind`: "adapter" (the model as the
    method made it), "merged" (its update folded into the weights: one plain model per task), "mixed" (rows
    of several tasks in one forward, each through its own adapter) or "swapped" (one forward per task's
    rows, the active adapter switched between them)."""

    kind: str
    label: str  # how the serving table names it


class Method:
    """What the harness knows about a method, answered by the method's own module; the defaults fit a
    method that trains existing or added weights through the shared loop, adds no tokens, and is not served."""

    name: str
    title: str = ""  # how tables name it where its settings say nothing more (default: its name)
    schema: type = MethodSchema
    trains: bool = True  # gradient training (with method.lr); the baselines icl and probe do not
    optimizer: str | None = None  # a method that is its own update rule (LOMO) names it; others use train.optimizer
    trains_base: bool = False  # it updates the base model's own weights: not on a quantized base (model.quantize)
    full_copy: bool = False  # what it trains is every weight: saved only with keep_full_copies=true
    serving: dict[str, Serving] = {}  # serve.variants names -> how that variant serves it
    refused_serving: dict[str, str] = {}  # variants that cannot serve it, with why

    def virtual_tokens(self, cfg) -> int:
        """Input positions the method puts before every input (prompt tuning's soft prompt), which every
        layer computes: more tokens for the fit estimate, more work per token for utilisation."""
        return 0

    def prefix_tokens(self, cfg) -> int:
        """Key and value positions the method adds in every attention layer (prefix tuning)."""
        return 0

    @property
    def keys(self) -> list[str]:
        """Its own config keys (its schema beyond name, lr and lr_grid): a column each in analysis, so that
        a method's settings reach the tables without naming them there."""
        common = {f.name for f in dataclasses.fields(MethodSchema)}
        return [f.name for f in dataclasses.fields(self.schema) if f.name not in common]

    def label(self, row) -> str:
        """How tables name one setting of the method (`row`: a record's row as a mapping, its `keys` among
        the columns): its title, else its name and its keys' values."""
        if self.title:
            return self.title
        values = [(k, row.get(k)) for k in self.keys]
        shown = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values if v is not None and v == v]
        return f"{self.name} ({'; '.join(shown)})" if shown else self.name

    def check(self, cfg, family: Family) -> str | None:
        """Raise ConfigError on a bad value; return a reason if the method does not apply."""
        return None

    def check_sizes(self, cfg, width: int | None) -> None:
        """Raise ConfigError for a value the model's width (its hidden size, from its config before any
        weight loads) rules out. Lengths against its positions are validation's, with `virtual_tokens`."""

    def check_training(self, cfg, train_cfg) -> None:
        """Raise ConfigError for a method setting the run's training settings rule out."""

    def check_quantized(self, cfg, quantize: str) -> None:
        """Raise ConfigError where the method cannot train on a base stored as model.quantize says (or none)."""
        if self.trains_base and quantize != "none":
            raise ConfigError(
                "method",
                self.name,
                f"a method that trains added weights ({', '.join(quantizable())}) with "
                f"model.quantize={quantize}: {self.name} updates the base model's own weights, which "
                "bitsandbytes stores as integers that no gradient can change (or model.quantize=none)",
            )

    def form(self, family: Family) -> str:
        """How the task presents examples under this method (bench.tasks.FORMS)."""
        return family.form

    def countable(self, cfg) -> tuple[DictConfig, list[str]]:
        """The method config as mode=count builds it without a tokenizer, with what was changed to do so."""
        return cfg, []

    def prepare(self, task, cfg, seed: int):
        """The task data this method sees (few-shot prompting rewrites the prompts)."""
        return task

    def apply(self, model: torch.nn.Module, cfg, family: Family, tokenizer) -> torch.nn.Module:
        raise NotImplementedError

    def fit(
        self,
        model: torch.nn.Module,
        loader,
        cfg,
        train_cfg,
        device: str,
        evaluate=None,
        log=None,
        monitor: str | None = None,
    ) -> TrainResult:
        """Train the model's trainable parameters (gradient methods share the one loop); `monitor`
        names the validation score early stopping watches."""
        from bench.train import train  # deferred: imports torch, which every python -m bench would pay for

        return train(
            model,
            loader,
            train_cfg,
            cfg.lr,
            device,
            evaluate,
            log,
            train_cfg.profile_memory,
            monitor=monitor,
            optimizer=self.optimizer,
            make_optimizer=self.make_optimizer(model, cfg),
            after_step=self.after_step(model, cfg),
        )

    def after_step(self, model: torch.nn.Module, cfg):
        """What the method does after each optimizer step, before the gradients are cleared (`f(step)`:
        AdaLoRA's rank allocation); None: nothing."""
        return None

    def state_elements(self, model: torch.nn.Module, cfg) -> int:
        """Elements of state the method keeps beside the optimizer's, as long as it (AdaLoRA's importance scores),
        for the fit estimate and the record's analytic bytes."""
        return 0

    def make_optimizer(self, model: torch.nn.Module, cfg):
        """How to build the optimizer over this model's trained weights, where the method groups them itself
        (`make(optimizer_class, lr=, weight_decay=, **args)`); None: one group at method.lr."""
        return None

    def count(self, model: torch.nn.Module, cfg, family: Family) -> dict:
        """The parameters of the model with the method applied (bench/measure.py); a method whose
        kept parameters training decides (diff pruning's mask) counts them itself."""
        from bench.measure import count_params  # deferred: imports torch, which every python -m bench would pay for

        return count_params(model, family)

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        """Write what a user must store per task: peft's own format where peft made the model,
        else the trainable tensors by name (`trainable.safetensors`)."""
        from peft import PeftModel
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(model, PeftModel):
            model.save_pretrained(str(folder))  # adapter plus head
            return
        tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
        save_file(tensors, str(folder / "trainable.safetensors"), metadata={"method": self.name})

    def load(self, model: torch.nn.Module, cfg, family: Family, tokenizer, folder: Path) -> torch.nn.Module:
        """The trained model again: a freshly loaded base `model` and the folder `save` wrote."""
        from peft import PeftModel
        from safetensors import safe_open
        from safetensors.torch import load_file

        if (folder / "adapter_config.json").exists():
            kept = json.loads((folder / "adapter_config.json").read_text()).get("peft_type")
            if self.peft_type(cfg) not in (None, kept):
                raise ValueError(
                    f"{folder} holds a {kept} adapter, not the {self.peft_type(cfg)} of method={self.name}"
                )
            return PeftModel.from_pretrained(model, str(folder))
        path = str(folder / "trainable.safetensors")
        with safe_open(path, "pt") as f:
            kept = (f.metadata() or {}).get("method")  # folders kept before the name was written have none
        if kept not in (None, self.name):
            raise ValueError(
                f"{folder} was kept by method={kept}, not method={self.name}: rebuild it under method={kept}"
            )
        model = self.apply(model, cfg, family, tokenizer)
        restore(model, load_file(path))
        return model

    def peft_type(self, cfg) -> str | None:
        """The peft type of the adapter this method keeps (peft's adapter_config.json), None if not peft's."""
        return None


def quantizable() -> list[str]:
    """The methods that train on a quantized base: what they train is added to it."""
    return [name for name, m in METHODS.items() if m.trains and not m.trains_base]


def restore(model: torch.nn.Module, tensors: dict[str, torch.Tensor], complete: bool = True) -> None:
    """Copy saved tensors into the model's parameters of the same names; a name the model lacks is an error,
    and (`complete`) so is a trained parameter the tensors lack: a damaged or emptied file never loads silently."""
    unexpected = model.load_state_dict(tensors, strict=False).unexpected_keys
    if unexpected:
        raise KeyError(f"saved tensors that this model does not have: {', '.join(unexpected[:5])}")
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in tensors]
    if complete and missing:
        raise KeyError(f"trained parameters the saved tensors lack ({len(missing)}): {', '.join(missing[:5])}")


METHODS: dict[str, Method] = {}


def register(cls: type[Method]) -> type[Method]:
    """Add the method under its name; a second method of that name is refused, naming both definitions."""
    if cls.name in METHODS:
        first = type(METHODS[cls.name])
        raise ValueError(
            f"method name {cls.name!r} is taken: {first.__module__}.{first.__qualname__} "
            f"and {cls.__module__}.{cls.__qualname__} both register it"
        )
    METHODS[cls.name] = cls()
    return cls


def freeze_all_but_head(model: torch.nn.Module, family: Family) -> None:
    for n, p in model.named_parameters():
        p.requires_grad = family.is_head(n)


def wrap_peft(model: torch.nn.Module, config: PeftConfig, family: Family) -> PeftModel:
    from peft import TaskType, get_peft_model

    config.task_type = {
        "encoder": TaskType.SEQ_CLS,
        "decoder": TaskType.CAUSAL_LM,
        "encoder_decoder": TaskType.SEQ_2_SEQ_LM,
    }[family.architecture]
    # peft keeps a frozen copy of each of these and trains another; measure skips the frozen one
    config.modules_to_save = list(family.head) or None
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
                key,
                list(targets),
                f"names from: {', '.join(accepted_matrices(family))} (family {family.name} has no {t!r})",
            )


for _mod in pkgutil.iter_modules(__path__):
    if not _mod.ispkg:  # nn: torch modules, imported by the methods that add them
        importlib.import_module(f"{__name__}.{_mod.name}")
