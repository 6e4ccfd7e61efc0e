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

import torch
from omegaconf import OmegaConf
from transformers import AutoModel

from bench.assets import built_once, cache_root, hf_config

SEED = 0  # the weights: the same folder on every machine, whatever the run's seed


def folder(model_cfg, auto_class, cache_dir: str | None = None):
    """The preset's random-weight folder, built on first use (a few seconds per billion parameters). An
    encoder's folder holds the bare encoder (AutoModel): its task head is made fresh at load, as from a
    pre-trained checkpoint."""
    arch = OmegaConf.to_container(model_cfg.config, resolve=True)
    key = hashlib.sha256(json.dumps([arch, auto_class.__name__, SEED], sort_keys=True).encode()).hexdigest()[:12]

    def build(out) -> None:
        config = hf_config(model_cfg)
        torch.manual_seed(SEED)
        model = (AutoModel if auto_class.__name__.endswith("SequenceClassification") else auto_class).from_config(
            config, dtype=torch.bfloat16
        )
        model.save_pretrained(out)

    return built_once(cache_root(cache_dir) / "random" / f"{model_cfg.name}-{key}", build)
