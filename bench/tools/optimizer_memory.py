"""Benchmark: peak training memory of one model under several optimizers (default AdamW and LOMO,
the question LOMO answers), on the same batches, in one process, interleaved round by round.

Each round trains a fresh copy of the model with every trainable weight (full fine-tuning) for
three steps per optimizer, alternating which goes first: the second is timed, the third measured
(AdamW's state exists by then): on CPU the profiler's tensor-level peak with its breakdown, on
CUDA the allocator's peak. Prints each optimizer's peak, breakdown and step time, and each peak
as a ratio of the first optimizer's.

    python -m bench.tools.optimizer_memory [--optimizers adamw,lomo] [--rounds 3] [hydra overrides ...]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from contextlib import nullcontext

import torch

from bench import optimizers
from bench.compose import compose
from bench.machine import device_of
from bench.measure import cpu_step_profile, environment
from bench.runner import build, seed_everything
from bench.validate import validate

MIB = 2**20


def three_steps(
    model: torch.nn.Module, name: str, batches: list[dict], lr: float, train_cfg, device: str
) -> tuple[dict, float]:
    """(the third step's memory, the second step's seconds) for `name` on `model`."""
    update = optimizers.build(name, model, lr, train_cfg)
    model.train()

    def step(batch):
        update.backward(model(**batch).loss)
        update.step()
        if device == "cuda":
            torch.cuda.synchronize()

    step(batches[0])  # allocates the optimizer's state
    start = time.perf_counter()
    step(batches[1])
    seconds = time.perf_counter() - start
    memory: dict = {}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with cpu_step_profile(memory) if device == "cpu" else nullcontext():
        step(batches[2])
    if device == "cuda":
        memory = {
            "measure": "torch.cuda.max_memory_allocated (one training step)",
            "peak_bytes": torch.cuda.max_memory_allocated(),
        }
    return memory, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--optimizers", default="adamw,lomo", help="comma-separated train.optimizer names; the first is the reference"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    names = args.optimizers.split(",")

    cfg = compose(["tracking=none", "method=full_ft", *args.overrides])
    validate(cfg)
    for name in names:
        optimizers.check(name, cfg.train.optimizer_args if name == cfg.train.optimizer else {}, 1)
    device = device_of(cfg)
    seed_everything(cfg.seed)
    built = build(cfg)
    base, loader = built.model, built.train_loader(cfg)
    batches = [{k: v.to(device) for k, v in b.items() if k != "index"} for b, _ in zip(loader, range(3))]

    peaks: dict[str, list[dict]] = {name: [] for name in names}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            model = copy.deepcopy(base).to(device)  # fresh weights, no state or hooks from another optimizer
            memory, step = three_steps(model, name, batches, cfg.method.lr, cfg.train, device)
            peaks[name].append(memory)
            seconds[name].append(step)
            del model

    env = environment(device)
    print(
        f"{cfg.model.name} / full fine-tuning / batch {cfg.train.batch_size} of {cfg.task.name}; {args.rounds} rounds, "
        f"interleaved; {env['device']}, {env['cpu_count']} CPUs, torch {env['torch']}"
    )
    print(f"measure: {peaks[names[0]][0]['measure']}")
    reference = statistics.median(m["peak_bytes"] for m in peaks[names[0]])
    for name in names:
        peak = statistics.median(m["peak_bytes"] for m in peaks[name])
        breakdown = peaks[name][0].get("breakdown_at_peak", {})
        parts = ", ".join(f"{k} {v / MIB:.1f}" for k, v in breakdown.items() if v)
        rounds = ", ".join(f"{m['peak_bytes'] / MIB:.1f}" for m in peaks[name])
        print(
            f"{name:>9}: peak {peak / MIB:.1f} MiB (rounds: {rounds}), "
            f"{peak / reference:.3f} of {names[0]}; step {1000 * statistics.median(seconds[name]):.0f} ms; "
            f"at the peak (MiB): {parts}"
        )


if __name__ == "__main__":
    main()
