"""Where the default run's compute goes: its training steps and its evaluation, profiled alone.

    python experiments/runner_overhead/where_time_goes.py [--no-dropout] [hydra overrides ...]

Prints the training steps' time, their real and padded tokens and the operators that took the most
time, then the evaluation's padded tokens and the least time its matrix products can take at the
cached matmul peak (bench/utilisation.py's probe).
"""

from __future__ import annotations

import argparse
import time

import torch
from omegaconf import OmegaConf
from torch.profiler import ProfilerActivity, profile

from bench import batching, utilisation
from bench.compose import compose, to_container
from bench.runner import build, seed_everything


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-dropout", action="store_true", help="set every dropout to 0 (what dropout costs)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = OmegaConf.create(to_container(compose(["tracking=none", *args.overrides])))
    seed_everything(cfg.seed)
    built = build(cfg)
    task, model, tokenizer, architecture = built.task, built.model, built.tokenizer, built.architecture
    if args.no_dropout:
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    loader = batching.train_loader(task, tokenizer, architecture, cfg.task, cfg.train.batch_size, cfg.seed)
    batches = [{k: v for k, v in b.items() if k != "index"} for b, _ in zip(loader, range(6))]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.method.lr)
    model.train()

    def step(batch):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:2]:  # warm-up
        step(batch)
    timed = batches[2:]
    start = time.perf_counter()
    for batch in timed:
        step(batch)
    seconds = (time.perf_counter() - start) / len(timed)
    real = sum(int(b["attention_mask"].sum()) for b in timed) / len(timed)
    padded = sum(b["input_ids"].numel() for b in timed) / len(timed)
    print(
        f"training: {1000 * seconds:.0f} ms/step, {real:.0f} real of {padded:.0f} tokens per batch "
        f"({100 * (1 - real / padded):.0f}% padding)"
    )
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in timed:
            step(batch)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))

    # evaluation: every matrix of the layers (LoRA's too), 2 FLOPs per weight per token, padding included
    weights = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and ".layer." in n)
    peak = utilisation.peak_flops("cpu", cfg.train.precision).flops_per_second
    total = 0
    for name, examples, times in (("validation", task.validation, 2), ("test", task.test, 1)):
        rows = batching.training_rows(
            task, examples, tokenizer, architecture, cfg.task.max_length, cfg.task.max_new_tokens
        )
        tokens = sum(b["input_ids"].numel() for b in batching.loader(rows, tokenizer, cfg.train.eval_batch_size))
        total += times * tokens
        print(f"evaluation, {name}: {len(examples)} examples x {times}, {tokens:,} tokens with padding")
    print(
        f"evaluation: {weights:,} layer weights x 2 x {total:,} tokens = {2 * weights * total:.3g} FLOPs, "
        f"{2 * weights * total / peak:.1f} s at the matmul peak of {peak / 1e9:.0f} GFLOP/s"
    )


if __name__ == "__main__":
    main()
