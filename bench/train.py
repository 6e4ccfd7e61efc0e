"""The training loop: the configured optimizer (bench/optimizers.py), warmup then linear decay (or
constant), clipping, accumulation, and early stopping on the validation score with the best
weights restored.

Only the optimizer steps are timed; reading their batches (a row is tokenized when first read),
evaluation and the one memory-profiled step are not. The loss
stays on the device and is read every train.log_every steps (and at the last), so a step never
waits for it: divergence is caught there.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from bench import optimizers, precision
from bench.batching import count_tokens
from bench.measure import CudaPeak, MachineLoad, cpu_step_profile


@dataclass
class TrainResult:
    steps: int = 0
    step_seconds: list[float] = field(default_factory=list)  # timed steps only
    tokens_timed: int = 0
    eval_seconds: float = 0.0
    profile_seconds: float = 0.0  # the memory-profiled step: a measurement, not training
    data_seconds: float = 0.0  # reading batches: tokenizing rows on their first read, padding
    losses: list[tuple[int, float]] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    memory: dict = field(default_factory=dict)
    examples_seen: int = 0  # training examples read, every step counted (the profiled one too)
    tokens_seen: int = 0
    best_step: int | None = None  # early stopping: the step whose weights were kept
    machine: dict = field(default_factory=dict)  # what else used the machine's CPUs while this trained

    def timing(self, warmup: int) -> dict:
        after_warmup = self.step_seconds[warmup:] or self.step_seconds
        seconds = sum(self.step_seconds)
        return {
            "train_seconds": seconds,
            "steps": self.steps,
            "steps_timed": len(self.step_seconds),
            "median_step_seconds": statistics.median(after_warmup) if after_warmup else None,
            "tokens_per_second": self.tokens_timed / seconds if seconds else None,
            "eval_seconds": self.eval_seconds,
            "examples_seen": self.examples_seen,
            "tokens_seen": self.tokens_seen,
            "best_step": self.best_step,
            "profile_seconds": self.profile_seconds,
            "data_seconds": self.data_seconds,
            "machine": self.machine,
        }


def total_steps(cfg, batches_per_epoch: int) -> int:
    if cfg.max_steps is not None:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * batches_per_epoch / cfg.grad_accum))


def warmup_then(schedule: str, total: int, warmup: int) -> Callable[[int], float]:
    """Linear warmup, then linear decay to zero at `total` or a constant rate. A constant rate
    makes a run stopped early at step s the same as one trained for s steps."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


class EarlyStopping:
    """Keeps the trainable weights of the best validation score (higher is better) and says when
    `patience` evaluations in a row have not beaten it."""

    def __init__(self, model: torch.nn.Module, monitor: str, patience: int):
        self.model, self.monitor, self.patience = model, monitor, patience
        # named before the optimizer is built: BAdam leaves only its current block trainable
        self.trained = [n for n, p in model.named_parameters() if p.requires_grad]
        self.best_score, self.best_step, self.best_state, self.since_best = -math.inf, None, None, 0

    def update(self, step: int, scores: dict) -> bool:
        """Record an evaluation; True when training should stop."""
        if scores[self.monitor] > self.best_score:
            self.best_score, self.best_step, self.since_best = scores[self.monitor], step, 0
            params = dict(self.model.named_parameters())
            self.best_state = {n: params[n].detach().clone() for n in self.trained}
        else:
            self.since_best += 1
        return self.since_best >= self.patience

    def restore(self) -> None:
        with torch.no_grad():
            for n, p in self.model.named_parameters():
                if n in self.best_state:
                    p.copy_(self.best_state[n])


class Diverged(RuntimeError):
    """The training loss stopped being a finite number: the run is recorded as diverged."""

    def __init__(self, step: int, loss: float):
        super().__init__(
            f"training loss {loss} at step {step}: the run diverged (a lower method.lr, or "
            "clipping with train.max_grad_norm, may train)"
        )
        self.step = step


def _forever(loader):
    while True:  # each pass reshuffles through the loader's seeded generator
        yield from loader


def train(
    model: torch.nn.Module,
    loader,
    cfg,
    lr: float,
    device: str,
    evaluate: Callable[[], dict] | None = None,
    log: Callable[[dict, int], None] | None = None,
    measure_memory: bool = False,
    show_progress: bool = True,
    monitor: str | None = None,
    optimizer: str | None = None,
    make_optimizer=None,
    after_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train for cfg.max_steps (or cfg.epochs) optimizer steps; with `measure_memory`, fill
    result.memory: on CPU from a profile of one step, on CUDA from the allocator over all steps.
    With cfg.early_stopping_patience, `evaluate` runs every cfg.eval_every steps and at the end,
    training stops once `monitor` has not improved for that many evaluations, and the weights
    of the best evaluation are restored. `optimizer` overrides cfg.optimizer (a method that is its
    own update rule, LOMO); `make_optimizer` groups the weights as the method asks (bench/optimizers.py);
    `after_step(step)` runs after each optimizer step, before the gradients are cleared (AdaLoRA's ranks)."""
    total = total_steps(cfg, len(loader))
    stopping = (
        EarlyStopping(model, monitor, cfg.early_stopping_patience) if cfg.early_stopping_patience and evaluate else None
    )
    update = optimizers.build(
        optimizer or cfg.optimizer, model, lr, cfg, precision.scaler(cfg.precision, device), make_optimizer
    )
    update.after_step = after_step
    scheduler = LambdaLR(update.optimizer, warmup_then(cfg.lr_schedule, total, round(cfg.warmup_ratio * total)))
    result = TrainResult()
    # CPU: profile the second step, when the optimizer's state exists (the only step of a 1-step run, then
    # untimed); CUDA: the allocator's peak over the loop
    profiled = min(1, total - 1) if measure_memory and device == "cpu" else None
    whole = CudaPeak(result.memory) if measure_memory and device == "cuda" else nullcontext()
    batches = _forever(loader)
    steps_on_device = []  # CUDA: each step's start and end events
    model.train()
    bar = tqdm(total=total, desc="train", disable=not show_progress, dynamic_ncols=True)
    with whole, MachineLoad(result.machine), update:  # the update ends however the loop does
        for step in range(total):
            probe = cpu_step_profile(result.memory) if step == profiled else nullcontext()
            reading = time.perf_counter()
            micro_batches = [next(batches) for _ in range(cfg.grad_accum)]
            start = time.perf_counter()
            result.data_seconds += start - reading
            if device == "cuda":
                began = torch.cuda.Event(enable_timing=True)
                began.record()
            tokens, loss_sum = 0, torch.zeros((), device=device)
            with probe:
                for batch in micro_batches:
                    tokens += count_tokens(batch)  # before it moves: counting on the GPU would wait for it
                    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "index"}
                    result.examples_seen += len(batch["input_ids"])
                    with precision.autocast(cfg.precision, device):
                        loss = model(**batch).loss / cfg.grad_accum
                    update.backward(loss)
                    loss_sum += loss.detach()  # on the device: read only when logged, so no step waits for it
                update.step()
                scheduler.step()
            if device == "cuda":  # timed on the device's own clock after the loop: no step waits for the GPU
                ended = torch.cuda.Event(enable_timing=True)
                ended.record()
                steps_on_device.append((began, ended))
                result.tokens_timed += tokens
            elif step != profiled:
                result.step_seconds.append(time.perf_counter() - start)
                result.tokens_timed += tokens
            else:
                result.profile_seconds = time.perf_counter() - start
            result.tokens_seen += tokens
            result.steps = step + 1
            bar.update(1)
            last = result.steps == total
            if result.steps % cfg.log_every == 0 or last:
                loss_value = loss_sum.item()
                if not math.isfinite(loss_value):
                    raise Diverged(result.steps, loss_value)
                bar.set_postfix(loss=f"{loss_value:.4f}")
                result.losses.append((result.steps, loss_value))
                if log:
                    log({"train/loss": loss_value, "train/lr": scheduler.get_last_lr()[0]}, result.steps)
            # without early stopping the runner evaluates the final weights itself
            if (
                evaluate
                and cfg.eval_every
                and (result.steps % cfg.eval_every == 0 or stopping and last)
                and (stopping or not last)
            ):
                start = time.perf_counter()
                with (
                    whole.paused() if isinstance(whole, CudaPeak) else nullcontext(),
                    precision.autocast(cfg.precision, device),
                ):
                    scores = {"step": result.steps, **evaluate()}
                result.eval_seconds += time.perf_counter() - start
                result.evaluations.append(scores)
                bar.write(
                    f"step {result.steps}: " + ", ".join(f"{k}={v:.4f}" for k, v in scores.items() if k != "step")
                )
                if log:
                    log({f"validation/{k}": v for k, v in scores.items() if k != "step"}, result.steps)
                model.train()
                if stopping and stopping.update(result.steps, scores):
                    break
    bar.close()
    if steps_on_device:
        steps_on_device[-1][1].synchronize()
        result.step_seconds = [began.elapsed_time(ended) / 1000 for began, ended in steps_on_device]
    if stopping and stopping.best_step is not None:
        stopping.restore()
        result.best_step = stopping.best_step
    return result
