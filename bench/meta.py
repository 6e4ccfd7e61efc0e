"""Models on the meta device: a preset's architecture with a method applied, shapes without storage.

What mode=count counts (bench/count.py) and what the fit estimate adds up (bench/fit.py). The model is
built by its own constructor under `torch.device("meta")`, which ties the output layer to the input
embedding as a real load does (GPT-2's lm_head is its wte), and named_parameters yields a tied tensor
once. accelerate's `init_empty_weights` is not used: it leaves tied embeddings untied, and GPT-2 would
count 163,037,184 parameters instead of 124,439,808 (tests/test_count.py checks both).
"""

from __future__ import annotations

import warnings

import torch
from transformers.utils import logging

from bench import assets, models, tasks
from bench.families import FAMILIES, Family
from bench.methods import METHODS

DEFAULT_LABELS = 2


def build(model_cfg, family: Family, num_labels: int | None = None) -> torch.nn.Module:
    """The preset's architecture on the meta device, with the head a run would use."""
    config = assets.hf_config(model_cfg, num_labels)
    with torch.device("meta"):
        model = models.AUTO_CLASSES[family.architecture].from_config(config)
        if model_cfg.config is not None and model_cfg.config.get("tie_word_embeddings") is False:
            untie_output_embeddings(model)
    return model


def untie_output_embeddings(model: torch.nn.Module) -> None:
    """Give the output layer its own weight where the checkpoint has one but the constructor ties it.

    transformers 5 always ties T5's LM head to the shared embedding (T5Config forces
    tie_word_embeddings=True); T5 v1.1 and Flan-T5 checkpoints hold a separate head
    (tie_word_embeddings: false in their config.json), and from_pretrained, finding both tensors
    with different values, leaves them untied. Built from the config alone, the head would be
    counted as tied: vocabulary x width too few (16,449,536 for flan-t5-small)."""
    out, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    if out is None or out.weight is not embedding.weight:
        return
    name = next(n for n, m in model.named_modules() if m is out)
    getattr(model, "all_tied_weights_keys", {}).pop(f"{name}.weight", None)  # a later tie_weights() keeps it apart
    out.weight = torch.nn.Parameter(torch.empty_like(out.weight))


def label_count(cfg, family: Family) -> tuple[int | None, str]:
    """Labels of an encoder's classification head, and where the number came from."""
    if family.architecture != "encoder":
        return None, "no classification head: text-to-text through the language-model head"
    try:
        return len(tasks.load(cfg.task, family.form).labels), f"task {cfg.task.name}"
    except (OSError, ValueError, ImportError) as e:
        return DEFAULT_LABELS, f"default ({cfg.task.name} data not readable here: {type(e).__name__})"


def meta_model(cfg, model_cfg, num_labels: int | None) -> tuple[torch.nn.Module, str, list[str]]:
    """The architecture of `model_cfg` on the meta device with the method of `cfg` applied; the
    architecture's class name; what was changed to build it without a tokenizer."""
    family = FAMILIES[cfg.model.family]
    method = METHODS[cfg.method.name]
    method_cfg, notes = method.countable(cfg.method)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            # peft warns that meta-device modules cannot be checked for a few things; nothing to act on
            warnings.simplefilter("ignore", UserWarning)
            model = build(model_cfg, family, num_labels)
            architecture = type(model).__name__
            model = method.apply(model, method_cfg, family, tokenizer=None)  # no method reads it at random init
    finally:
        logging.set_verbosity(verbosity)
    return model, architecture, notes
