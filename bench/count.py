"""Count mode: trainable and total parameters of any preset under any method, without weights.

    python -m bench mode=count model=gpt3-175b method=lora method.r=1

builds the preset's architecture from its `config` (conf/model/*.yaml) on the meta device (bench/meta.py),
where tensors have shapes and no storage, applies the method the way a run does, and counts unique
parameters with the method's `count` (`measure.count_params` but for diff pruning). Nothing is downloaded,
loaded or allocated, so every preset, 175B included, counts in seconds. The record goes to
<results_dir>/<sweep_name>/count/<run_id>.json, apart from run records (analysis reads
<results_dir>/<sweep>/*.json only).

What differs from a run: an encoder's classification head is sized for the task's label count, or
for 2 labels when the task's data cannot be read here (the head is reported apart either way); no
tokenizer is loaded, so what a method reads from one is changed to what counts the same (the method's
`countable`: a prompt initialised from text is counted with a random initialisation).
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from bench import fit, measure, meta, record
from bench.compose import to_container
from bench.families import FAMILIES
from bench.methods import METHODS
from bench.validate import validate


def path_for(config: dict) -> Path:
    return Path(config["results_dir"]) / config["sweep_name"] / "count" / f"{record.run_id(config)}.json"


def count(cfg) -> dict:
    """The record fields of one count: params (as in a run record), how they were counted, and the
    estimate of a training job's memory (bench/fit.py)."""
    family, method = FAMILIES[cfg.model.family], METHODS[cfg.method.name]
    num_labels, labels_from = meta.label_count(cfg, family)
    start = time.perf_counter()
    model, architecture, notes = meta.meta_model(cfg, cfg.model, num_labels)
    params = method.count(model, method.countable(cfg.method)[0], family)
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


def launch(cfg: DictConfig) -> record.Record:
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


def summary(rec: record.Record) -> str:
    c = rec.config
    what = f"count {c['model']['name']} {c['method']['name']}"
    if rec.status != "ok":
        return f"{what}: {rec.status}: {rec.error.type}: {rec.error.message}"
    p, e = rec.params, rec.estimate
    return (
        f"{what}: trainable {p.trainable:,} of {p.total:,} ({p.trainable_pct:.4g}%): "
        f"method {p.method:,}, head {p.head:,}; {rec.count['seconds']:.2f} s on meta\n"
        f"  memory on {e['device']}: {fit.describe(e)}; {'fits' if e['fits'] else 'does not fit'} "
        f"the {e['limit_bytes'] / fit.GIB:,.1f} GiB of {e['limit_of']}"
    )
