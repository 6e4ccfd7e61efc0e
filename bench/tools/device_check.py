"""The GPU check: real-shaped models with random weights (model.weights=random: speed, memory and utilisation do
not depend on what the weights are) under LoRA, QLoRA, IA3, prompt tuning and full fine-tuning in bf16-mixed, a
few hundred steps each, and the default encoder with its real weights under LoRA for a correctness point; every
job a fresh process through the ordinary runner. Then one table of what the records say.

    python -m bench.tools.gpu_bundle                          # here: what travels (gpu_bundle/, under 64 MiB)
    python -m bench.tools.device_check --bundle gpu_bundle    # there: installs its wheels, runs every job
    python -m bench.tools.device_check --device cpu --steps 2 --models minilm-l6 --methods lora   # a dry run here

With --bundle, the wheels install once into <bundle>/site (pip, no index) and the check starts itself again
with it on PYTHONPATH and PEFT_BENCH_CACHE at <bundle>/cache, before anything imports them. Records go to
<results_dir>/device_check/ (a finished job is skipped, as in any sweep: a second call finishes what a first
one left; force=true reruns), the table to <results_dir>/device_check/table.md. Extra key=value arguments are
Hydra overrides for every job. Only the standard library is imported before the bundle is in place.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

# model preset -> the offline task it trains on, and the preset whose tokenizer it uses with random weights
MODELS = {
    "minilm-l6": ("tweets", "minilm-l6"),  # the default encoder's shape
    "smollm2-360m": ("arithmetic", "smollm2-135m"),  # Llama-architecture decoders (SmolLM2 is a Llama)
    "smollm2-1.7b": ("arithmetic", "smollm2-135m"),
}
METHODS = {
    "lora": ["method=lora"],
    "qlora": ["method=lora", "model.quantize=nf4"],
    "ia3": ["method=ia3"],
    "prompt_tuning": ["method=prompt_tuning"],
    "full_ft": ["method=full_ft"],
}
REAL = "minilm-l6"  # travels with its weights (bench/tools/gpu_bundle.py): its LoRA run is the correctness point
# what every job shares: bf16-mixed, no validation during training, small test splits (random weights score
# nothing worth the time), arithmetic's default problems (up to 16 digits: long enough sequences to load a GPU)
COMMON = [
    "sweep_name=device_check",
    "train.precision=bf16-mixed",
    "train.eval_every=0",
    "train.batch_size=16",
    "task.test_size=128",
    "task.val_size=64",
    "tracking=none",
]


def jobs(models, methods, steps: int, device: str, tokenizers: dict, real: str | None) -> list[tuple[str, list]]:
    """(name, overrides) of each job: the real model's correctness point first, then models x methods."""
    run = [f"train.device={device}", f"train.max_steps={steps}", *COMMON]
    out = [(f"{REAL} real weights lora", [f"model={REAL}", f"task={MODELS[REAL][0]}", *real_source(real), *run])]
    for model in models:
        task, tokenizer = MODELS[model]
        for method in methods:
            random = [f"model={model}", "model.weights=random", f"model.tokenizer={tokenizers[tokenizer]}"]
            out.append((f"{model} {method}", [*random, f"task={task}", *METHODS[method], *run]))
    return out


def real_source(folder: str | None) -> list[str]:
    """The real model from the bundle's folder where one came along, else from its package here."""
    return ["model.source=hub", f"model.hub_id={folder}", "method=lora"] if folder else ["method=lora"]


def row(name: str, rec, anchor: float) -> str:
    from bench.fit import peaks

    if rec.status != "ok":
        return f"| {name} | {rec.status} | {rec.error.type}: {rec.error.message[:80]} |" + " |" * 9
    t, mem, u = rec.time, rec.memory, rec.utilisation
    metric, value = next((k, v) for k, v in rec.metrics.model_dump().items() if k not in ("split", "size", "loss"))
    parts = (rec.estimate or {}).get("parts")
    estimate = peaks(parts)["training step"] if parts else None
    achieved = u.achieved_flops_per_second if u else None
    cells = [
        name,
        rec.status,
        f"{metric} {value:.3f}",
        f"{t.median_step_seconds * 1000:.1f}",
        f"{t.tokens_per_second:,.0f}",
        _pct(u.fraction if u else None),
        _pct(achieved / anchor if achieved else None),
        _mib(mem.peak_bytes),
        _mib(mem.peak_reserved_bytes),
        _mib(estimate),
        f"{mem.peak_bytes / estimate:.2f}" if mem.peak_bytes and estimate else "-",
        f"{100 * t.stages.seconds.get('training', 0) / t.stages.wall_seconds:.0f}%",
    ]
    return "| " + " | ".join(cells) + " |"


def _pct(x: float | None) -> str:
    return f"{100 * x:.1f}%" if x is not None else "-"


def _mib(n: float | None) -> str:
    return f"{n / 2**20:,.0f}" if n is not None else "-"


HEADER = (
    "| job | status | test score | ms/step | tokens/s | MFU (datasheet) | MFU (measured matmul) | peak allocated MiB | "
    "peak reserved MiB | estimate MiB | allocated / estimate | training share |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def environment(device: str) -> str:
    """The device, its driver and the versions that ran, for the table's heading."""
    import importlib.metadata

    import torch

    packages = ("torch", "transformers", "peft", "bitsandbytes")
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in packages)
    if device != "cuda":
        return f"CPU dry run; {versions}"
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
    )
    driver = smi.stdout.strip() or "unknown"
    return f"{torch.cuda.get_device_name()}, driver {driver}, CUDA {torch.version.cuda}; {versions}"


def matmul_flops(device: str) -> float:
    """The anchor beside the datasheet: FLOP/s of an 8192³ bfloat16 product on the GPU (mean of ten after three
    warm-ups, on the device's clock), or of a 1024³ float32 one on a CPU dry run."""
    import torch

    n, dtype = (8192, torch.bfloat16) if device == "cuda" else (1024, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if device != "cuda":
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        return 10 * 2 * n**3 / (time.perf_counter() - start)
    began, ended = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    began.record()
    for _ in range(10):
        a @ b
    ended.record()
    ended.synchronize()
    return 10 * 2 * n**3 / (began.elapsed_time(ended) / 1000)


def use_bundle(bundle: Path, argv: list[str]) -> None:
    """Install the bundle's wheels (once) and start this check again with them importable; returns when they are."""
    site = bundle.resolve() / "site"
    if os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] == str(site):
        return
    if not (site / ".installed").is_file():
        wheels = sorted(str(w) for w in (bundle / "wheels").glob("*.whl"))
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--upgrade"]
        subprocess.run([*pip, "--target", str(site), *wheels], check=True)
        (site / ".installed").write_text("")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "PEFT_BENCH_CACHE": str(bundle.resolve() / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    os.execve(sys.executable, [sys.executable, "-m", "bench.tools.device_check", *argv], env)


def tokenizer_folders(bundle: Path | None) -> dict[str, str]:
    """The tokenizers the random-weight models use: the bundle's, or here the presets' own sources."""
    if bundle:
        return {t: str(bundle.resolve() / "tokenizers" / t) for _, t in MODELS.values()}
    from bench import assets
    from bench.compose import compose

    return {t: assets.source(compose([f"model={t}"]).model) for _, t in MODELS.values()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--bundle", type=Path, help="what gpu_bundle prepared: wheels, tokenizers, the real model")
    argv = sys.argv[1:] if argv is None else argv
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]  # Hydra's key=value, for every job
    args = parser.parse_args([a for a in argv if a not in overrides])
    if args.bundle:
        use_bundle(args.bundle, argv)

    from bench.compose import compose
    from bench.launch import launch  # after the arguments and the bundle: a bad argument answers at once

    real = str(args.bundle.resolve() / "models" / REAL) if args.bundle else None
    anchor = matmul_flops(args.device)
    print(f"measured matmul: {anchor / 1e12:,.1f} TFLOP/s", flush=True)
    rows, failed, results_dir = [], 0, None
    for name, job in jobs(args.models, args.methods, args.steps, args.device, tokenizer_folders(args.bundle), real):
        cfg = compose([*job, *overrides])
        results_dir = cfg.results_dir
        rec = launch(cfg)  # validates (a bad override is a ConfigError here), skips a finished job
        rows.append(row(name, rec, anchor) if rec else f"| {name} | running elsewhere |")
        failed += rec is None or rec.status != "ok"
    heading = f"{environment(args.device)}; measured matmul {anchor / 1e12:,.1f} TFLOP/s\n"
    table = "\n".join([heading, HEADER, *rows])
    out = Path(results_dir) / "device_check" / "table.md"
    out.write_text(table + "\n")
    print(table)
    print(f"table: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
