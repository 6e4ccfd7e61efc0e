"""Count mode: trainable and total parameters of any preset under any method, without weights.

    python -m bench mode=count model=gpt3-175b method=lora method.r=1

builds the preset's architecture from its `config` (conf/model/*.yaml) on the meta device, where
tensors have shapes and no storage, applies the method the way a run does, and counts unique
parameters with the method's `count` (`measure.count_params` but for diff pruning). Nothing is downloaded, loaded or allocated, so every
preset, 175B included, counts in seconds. The record goes to
<results_dir>/<sweep_name>/count/<run_id>.json, apart from run records (analysis reads
<results_dir>/<sweep>/*.json only).

Tied embeddings: the model is built by its own constructor under `torch.device("meta")`, which ties
the output layer to the input embedding as a real load does (GPT-2's lm_head is its wte), and
named_parameters yields a tied tensor once. accelerate's `init_empty_weights` is not used: it
leaves tied embeddings untied, and GPT-2 would count 163,037,184 parameters instead of 124,439,808
(tests/test_count.py checks both).

What differs from a run: an encoder's classification head is sized for the task's label count, or
for 2 labels when the task's data cannot be read here (the head is reported apart either way); no
tokenizer is loaded, so a prompt initialised from text is counted with a random initialisation,
which has the same parameters.
"""

from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig
from transformers.utils import logging

from bench import measure, models, record, tasks
from bench.config import to_container, validate
from bench.families import FAMILIES, Family
from bench.methods import METHODS

DEFAULT_LABELS = 2


def path_for(config: dict) -> Path:
    return Path(config["results_dir"]) / config["sweep_name"] / "count" / f"{record.run_id(config)}.json"


def hf_config(model_cfg, num_labels: int | None = None):
    """The preset's Hugging Face config: its inline `config`, else the config.json of its package
    copy or its hub id (which needs the package installed or the hub reachable)."""
    extra = {"num_labels": num_labels} if num_labels is not None else {}
    if model_cfg.config is None:
        return AutoConfig.from_pretrained(models.source(model_cfg), **extra)
    fields = OmegaConf.to_container(model_cfg.config, resolve=True)
    return AutoConfig.for_model(fields.pop("model_type"), **fields, **extra)


def build(model_cfg, family: Family, num_labels: int | None = None) -> torch.nn.Module:
    """The preset's architecture on the meta device, with the head a run would use."""
    config = hf_config(model_cfg, num_labels)
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


def countable(method_cfg) -> tuple[DictConfig, list[str]]:
    """The method config as counted, with what was changed to count without a tokenizer."""
    if method_cfg.get("init") == "text":
        method_cfg = copy.deepcopy(method_cfg)
        method_cfg.init = "random"
        return method_cfg, ["prompt initialised at random (count mode loads no tokenizer): same parameters as from text"]
    return method_cfg, []


def meta_model(cfg, model_cfg, num_labels: int | None) -> tuple[torch.nn.Module, str, list[str]]:
    """The architecture of `model_cfg` on the meta device with the method of `cfg` applied; the
    architecture's class name; what was changed to build it without a tokenizer."""
    family = FAMILIES[cfg.model.family]
    method_cfg, notes = countable(cfg.method)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            # peft warns that meta-device modules cannot be checked for a few things; nothing to act on
            warnings.simplefilter("ignore", UserWarning)
            model = build(model_cfg, family, num_labels)
            architecture = type(model).__name__
            model = METHODS[cfg.method.name].apply(model, method_cfg, family, tokenizer=None)  # no method reads it at random init
    finally:
        logging.set_verbosity(verbosity)
    return model, architecture, notes


def count(cfg) -> dict:
    """The record fields of one count: params (as in a run record), how they were counted, and the
    estimate of a training job's memory (bench/fit.py)."""
    # imported here, not above: fit builds its meta models with this module
    from bench import fit

    family = FAMILIES[cfg.model.family]
    num_labels, labels_from = label_count(cfg, family)
    start = time.perf_counter()
    model, architecture, notes = meta_model(cfg, cfg.model, num_labels)
    params = METHODS[cfg.method.name].count(model, countable(cfg.method)[0], family)
    seconds = time.perf_counter() - start
    return {
        "params": params,
        "estimate": fit.estimate(cfg, model),
        "count": {
            "device": "meta",
            "seconds": seconds,
            "architecture": architecture,
            "num_labels": num_labels,
            "num_labels_from": labels_from,
            "notes": notes,
            "peak_rss_bytes": measure.process_peak_rss(shared_process=False)["process_peak_rss_bytes"],
        },
        "environment": measure.environment("cpu"),
    }


def launch(cfg: DictConfig) -> dict:
    """Validate (raises ConfigError), count, write the count record, print a one-line summary."""
    reason = validate(cfg)
    config = to_container(cfg)
    path = path_for(config)
    started = record.now()
    fields: dict = {}
    if reason:
        status, error = "not_applicable", {"type": "NotApplicable", "message": reason}
    else:
        try:
            fields = count(cfg)
            status, error = "ok", None
        except Exception as e:  # noqa: BLE001 - a failed count is recorded, like a failed run
            status, error = "failed", record.error_of(e)
    rec = record.new(config, status, error=error, started=started, ended=record.now(), **fields)
    record.write(path, rec)
    print(summary(rec))
    print(f"  record {path}")
    return rec


def summary(rec: dict) -> str:
    from bench import fit

    c = rec["config"]
    what = f"count {c['model']['name']} {c['method']['name']}"
    if rec["status"] != "ok":
        return f"{what}: {rec['status']}: {rec['error']['type']}: {rec['error']['message']}"
    p, e = rec["params"], rec["estimate"]
    return (f"{what}: trainable {p['trainable']:,} of {p['total']:,} ({p['trainable_pct']:.4g}%): "
            f"method {p['method']:,}, head {p['head']:,}; {rec['count']['seconds']:.2f} s on meta\n"
            f"  memory on {e['device']}: {fit.describe(e)}; {'fits' if e['fits'] else 'does not fit'} "
            f"the {e['limit_bytes'] / fit.GIB:,.1f} GiB of {e['limit_of']}")
