"""The typed run config: Hydra checks types and unknown keys against these dataclasses at compose time.

A core module: it imports nothing of the project, so that everything may read the schema. What checks
values against the registries (bench/validate.py) and what composes a config from conf/
(bench/compose.py) stand above the registries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class ModelConfig:
    name: str = MISSING
    hub_id: str | None = MISSING  # the online source; null: a configuration-only preset (mode=count only)
    family: str = MISSING  # a key of bench.families.FAMILIES
    params: float = MISSING  # nominal parameter count of the preset, for tables
    # offline source: a pip package that carries the model folder (None: hub only)
    package: str | None = None
    package_dir: str = "model"
    # or a GGUF in a registry package (a name in bench.assets.ASSETS), converted once into a cached folder
    asset: str | None = None
    source: str = "auto"  # auto: the package when installed, else the hub
    # weights load in float32; train.precision says what computes (and is stored) in lower precision
    dtype: str = "float32"
    # the architecture as Hugging Face config fields (model_type plus sizes), copied from the hub's
    # config.json: what mode=count builds on the meta device, without weights or network
    config: dict[str, Any] | None = None
    # the base's linear layers stored by bitsandbytes (bench/quantization.py): none, nf4, fp4 or int8; the
    # 4-bit blocks' constants quantized again; what 4-bit layers compute in
    quantize: str = "none"
    double_quant: bool = True
    compute_dtype: str = "float32"
    # pretrained, or random: the preset's `config` with its own initialisation (bench/random_weights.py), for
    # measuring speed and memory without carrying weights; then the tokenizer comes from `tokenizer` (a folder
    # or hub id; null: the preset's source)
    weights: str = "pretrained"
    tokenizer: str | None = None


@dataclass
class TrainConfig:
    batch_size: int = 32
    grad_accum: int = 1
    max_steps: int | None = 100  # optimizer steps; None: use epochs
    epochs: float | None = None
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    lr_schedule: str = "linear"  # after warmup: linear decay to zero at the last step, or constant
    max_grad_norm: float = 1.0
    optimizer: str = "adamw"  # one of bench/optimizers.py NAMES: adamw, sgd, adafactor, the memory-lean ones, lomo
    # the optimizer's own arguments (momentum, betas, ...); lr and weight decay come from method.lr and
    # train.weight_decay
    optimizer_args: dict[str, Any] = field(default_factory=dict)
    eval_every: int = 50  # validation every N steps (0: only at the end)
    # stop after this many validations without a better score and restore the best weights (0: off)
    early_stopping_patience: int = 0
    eval_batch_size: int = 128
    log_every: int = 10
    device: str = "auto"  # auto | cpu | cuda
    profile_memory: bool = True  # CPU: profile one training step for the tensor-level peak
    latency_samples: int = 20  # batch-1 forward passes timed for serving latency
    timing_warmup: int = 2  # steps left out of the median step time
    # fp32 | bf16-mixed (autocast; weights and optimizer state float32) | bf16 (frozen weights in bfloat16,
    # trained ones and their optimizer state float32, as peft keeps adapters) | fp16-mixed (autocast, gradient scaler)
    precision: str = "fp32"
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, more compute
    # batches of examples of about the same length (bench/batching.py): less padding, other batches than random ones
    group_by_length: bool = False
    # what a job must fit before it loads, in GiB; null: the device's own (a GPU's memory, or this machine's RAM)
    memory_limit_gib: float | None = None


@dataclass
class TrackingConfig:
    backend: str = "wandb"  # wandb | none
    mode: str = "offline"  # offline | online
    project: str = "peft-bench"
    entity: str | None = None
    group: str | None = None  # None: the sweep name (sweep_name)
    tags: list[str] = field(default_factory=list)


@dataclass
class ServeConfig:
    """mode=serve (bench/serve.py): serving cost of each method against the base model."""

    variants: list[str] = field(
        default_factory=lambda: [
            "base",
            "lora",
            "lora_merged",
            "ia3",
            "ia3_merged",
            "prompt_tuning",
            "prefix_tuning",
            "lora_mixed",
            "lora_swapped",
            "prompt_mixed",
        ]
    )
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    lengths: list[int] = field(default_factory=lambda: [32, 128])  # tokens per row, no padding
    tasks: int = 4  # task adapters on one base model for the mixed, swapped and merged-copy measurements
    repeats: int = 10  # timed rounds; each round times every variant once
    warmup: int = 2  # untimed rounds first


@dataclass
class RunConfig:
    model: ModelConfig = MISSING
    task: Any = MISSING  # typed by the task's schema (bench/tasks/__init__.py, or the task's own module)
    method: Any = MISSING  # typed by the method's own schema (bench/methods/<name>.py)
    train: TrainConfig = MISSING
    tracking: TrackingConfig = MISSING
    seed: int = 0
    results_dir: str = "results"
    # results go to <results_dir>/<sweep_name>/ (the group conf/sweep holds the sweep presets)
    sweep_name: str = "default"
    process: str = "fresh"  # fresh: each run in its own process; inline: in the caller's
    force: bool = False  # rerun even when a record exists
    retry_failed: bool = False  # rerun runs recorded as failed or oom
    # a run keeps what it trained beside its record; a method that trains every weight writes a
    # whole model copy per run, so only when this asks for it
    keep_full_copies: bool = False
    # run: train and score; count: parameters only, on the meta device (bench/count.py); serve: serving cost
    # (bench/serve.py)
    mode: str = "run"
    serve: ServeConfig = field(default_factory=ServeConfig)


PRECISIONS = ("fp32", "bf16-mixed", "bf16", "fp16-mixed")
# beyond these a value is a typo: a million-example batch, a trillion steps, a billion epochs or timed passes
MAX_BATCH, MAX_STEPS, MAX_EPOCHS, MAX_SAMPLES = 65_536, 100_000_000, 100_000, 100_000
MAX_EXAMPLES, MAX_TOKENS = 1_000_000_000, 1_048_576  # a split's examples; a sequence's tokens
