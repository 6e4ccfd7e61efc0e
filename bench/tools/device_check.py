"""The prepared GPU check: the default encoder and SmolLM2-135M under LoRA, IA3, prompt tuning and full
fine-tuning in bf16-mixed, a few hundred steps each, every job a fresh process through the ordinary
runner, with only offline assets; then one table of what the records say.

    python -m bench.tools.device_check                       # on a GPU: about 5 minutes on one H200
    python -m bench.tools.device_check --device cpu --steps 2 --models minilm-l6 --methods lora   # a dry run here

Records go to <results_dir>/device_check/ (a finished job is skipped, as in any sweep; force=true reruns),
the table to <results_dir>/device_check/table.md. Extra arguments are Hydra overrides for every job.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.compose import compose
from bench.record import Record

# model preset -> the offline task it trains on
MODELS = {"minilm-l6": "tweets", "smollm2-135m": "arithmetic"}
METHODS = ("lora", "ia3", "prompt_tuning", "full_ft")


def jobs(models, methods, steps: int, device: str, overrides: list[str]) -> list[list[str]]:
    return [
        [
            f"model={model}",
            f"task={MODELS[model]}",
            f"method={method}",
            "sweep_name=device_check",
            "train.precision=bf16-mixed",
            f"train.device={device}",
            f"train.max_steps={steps}",
            "train.eval_every=0",
            "tracking=none",
            *overrides,
        ]
        for model in models
        for method in methods
    ]


def row(rec: Record) -> str:
    c = rec.config
    what = f"| {c['model']['name']} | {c['method']['name']} | {rec.status} |"
    if rec.status != "ok":
        return what + f" {rec.error.type}: {rec.error.message[:80]} |" + " |" * 7
    t, mem, u = rec.time, rec.memory, rec.utilisation
    analytic = sum((mem.analytic_bytes or {}).values())
    metric, value = next((k, v) for k, v in rec.metrics.model_dump().items() if k not in ("split", "size", "loss"))
    fraction = f"{100 * u.fraction:.1f}%" if u and u.fraction is not None else "-"
    return (
        what + f" {metric} {value:.3f} | {t.median_step_seconds * 1000:.1f} | {t.tokens_per_second:,.0f} | "
        f"{fraction} | {_mib(mem.peak_bytes)} | {_mib(mem.peak_reserved_bytes)} | "
        f"{_mib(analytic)} | {100 * t.stages.seconds.get('training', 0) / t.stages.wall_seconds:.0f}% |"
    )


def _mib(n: int | None) -> str:
    return f"{n / 2**20:,.0f}" if n is not None else "-"


HEADER = (
    "| model | method | status | test score | ms/step | tokens/s | utilisation | peak allocated MiB | "
    "peak reserved MiB | analytic MiB | training share |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    argv = sys.argv[1:] if argv is None else argv
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]  # Hydra's key=value, for every job
    args = parser.parse_args([a for a in argv if a not in overrides])

    from bench.launch import launch  # after the arguments: a bad one answers at once

    rows, failed = [], 0
    for job in jobs(args.models, args.methods, args.steps, args.device, overrides):
        cfg = compose(job)
        rec = launch(cfg)  # validates (a bad override is a ConfigError here), skips a finished job
        rows.append(row(rec) if rec else f"| {' '.join(job[:3])} | running elsewhere |")
        failed += rec is None or rec.status != "ok"
    table = "\n".join([HEADER, *rows])
    out = Path(cfg.results_dir) / "device_check" / "table.md"
    out.write_text(table + "\n")
    print(table)
    print(f"table: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
