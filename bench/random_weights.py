"""Random weights in a preset's real shape (`model.weights=random`), saved once as an ordinary model folder.

Speed, memory and utilisation do not depend on what the weights are, so a GPU check can measure a 1.7B
model without carrying 7 GB of them: the preset's `config` (the hub's config.json fields) is built with
the architecture's own initialisation under a fixed seed, saved in bfloat16 (half the disk; a float32 run
loads it back in float32), and then loads through `from_pretrained` like any other folder, so quantization
(`model.quantize`), dtypes and methods take the same path as with pre-trained weights. Accuracy from such
a run measures nothing: records say `model.weights: random`, and tables label the row.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time

import torch
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModel

from bench.assets import MARKER, cache_root

SEED = 0  # the weights: the same folder on every machine, whatever the run's seed


def folder(model_cfg, auto_class, cache_dir: str | None = None):
    """The preset's random-weight folder, built on first use (a few seconds per billion parameters). An
    encoder's folder holds the bare encoder (AutoModel): its task head is made fresh at load, as from a
    pre-trained checkpoint."""
    from filelock import FileLock  # a dependency of huggingface_hub, so always present

    arch = OmegaConf.to_container(model_cfg.config, resolve=True)
    key = hashlib.sha256(json.dumps([arch, auto_class.__name__, SEED], sort_keys=True).encode()).hexdigest()[:12]
    out = cache_root(cache_dir) / "random" / f"{model_cfg.name}-{key}"
    if (out / MARKER).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):  # parallel runs of one preset: one builds, the others wait and reuse
        if (out / MARKER).is_file():
            return out
        config = AutoConfig.for_model(arch.pop("model_type"), **arch)
        torch.manual_seed(SEED)
        model = (AutoModel if auto_class.__name__.endswith("SequenceClassification") else auto_class).from_config(
            config, dtype=torch.bfloat16
        )
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted build
        model.save_pretrained(tmp)
        (tmp / MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out
