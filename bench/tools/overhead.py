"""Benchmark: the runner's training loop against a bare PyTorch loop.

Same model, method and batches, in one process, interleaved round by round (alternating which
loop goes first), so both see the same machine state. Prints per-step times and their ratio.

    python -m bench.tools.overhead [--rounds 5] [--steps 10] [hydra overrides ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from omegaconf import OmegaConf

from bench import precision
from bench.compose import compose
from bench.measure import environment
from bench.runner import build, seed_everything
from bench.train import train
from bench.validate import validate


def bare_loop(model, batches, lr: float, mode: str) -> None:
    """The textbook loop at the same train.precision (bench/precision.py): autocast, a scaler for fp16."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    scaler = precision.scaler(mode, "cpu")
    model.train()
    for batch in batches:
        with precision.autocast(mode, "cpu"):
            loss = model(**batch).loss
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per loop per round")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    cfg = compose(["tracking=none", *args.overrides])
    validate(cfg)
    # the runner's loop as a run uses it, minus evaluation and memory profiling (not step costs)
    run_train = OmegaConf.merge(cfg.train, {"max_steps": args.steps, "eval_every": 0, "grad_accum": 1})
    seed_everything(cfg.seed)
    built = build(cfg)
    model, loader = built.model, built.train_loader(cfg)
    batches = [
        {k: v for k, v in b.items() if k != "index"} for b, _ in zip(loader, range(args.steps))
    ]  # the same batches for both loops, every round

    loops = {
        "runner": lambda: train(model, batches, run_train, cfg.method.lr, "cpu"),
        "bare": lambda: bare_loop(model, batches, cfg.method.lr, cfg.train.precision),
    }
    per_step = {name: [] for name in loops}
    loops["bare"]()  # warm-up: first-call allocations and thread pools
    for r in range(args.rounds):
        for name in ["runner", "bare"] if r % 2 == 0 else ["bare", "runner"]:
            start = time.perf_counter()
            loops[name]()
            per_step[name].append((time.perf_counter() - start) / args.steps)

    env = environment("cpu")
    print(
        f"{cfg.model.name} / {cfg.method.name} / batch {cfg.train.batch_size} / {cfg.train.precision}; "
        f"{args.rounds} rounds x {args.steps} steps per loop"
    )
    print(f"{env['device']}, {env['cpu_count']} CPUs, torch {env['torch']}")
    for name, times in per_step.items():
        print(
            f"{name:>6}: median {1000 * statistics.median(times):.1f} ms/step  "
            f"(rounds: {', '.join(f'{1000 * t:.0f}' for t in times)})"
        )
    # rounds are paired (adjacent in time), so the median of per-round ratios resists machine noise
    ratios = sorted(r / b for r, b in zip(per_step["runner"], per_step["bare"]))
    print(
        f"ratio runner/bare: median of per-round ratios {statistics.median(ratios):.3f} "
        f"(interquartile {ratios[len(ratios) // 4]:.3f} to {ratios[(3 * len(ratios)) // 4]:.3f}); "
        f"ratio of medians {statistics.median(per_step['runner']) / statistics.median(per_step['bare']):.3f}"
    )


if __name__ == "__main__":
    main()
