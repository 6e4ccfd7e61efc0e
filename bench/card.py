"""The model card of a kept folder: README.md in the Hugging Face hub's format (YAML metadata, then Markdown), so
that `huggingface-cli upload` or `push_to_hub` would publish the folder as it is. The harness never uploads.

The run writes it beside what it kept, in place of the template peft's save leaves there, with what the run
knows: the base, the method's settings, the task and its test split's fingerprint, the test score, the trainable
parameters, and the command that reproduces it. `python -m analysis` adds the setting's score over seeds with
its interval, which only the sweep knows (`over_seeds`).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml  # omegaconf's dependency

from bench.compose import compose, to_container
from bench.record import NOT_IDENTITY, Record

PIPELINES = {"classify": "text-classification", "generate": "text-generation"}
DERIVED = {"task.template_sha256", "task.content_sha256"}  # digests the run adds: no override sets them
REPORTED = {"sweep_name"}  # where the record goes: kept, so a rerun lands beside the others


def reproduce(config: dict) -> str:
    """`python -m bench` with the groups the run used and every key it set otherwise (a key its groups do not
    have is added with `+`)."""
    groups = [f"{group}={config[group]['name']}" for group in ("model", "task", "method")]
    defaults = to_container(compose(groups))
    skip = (NOT_IDENTITY - REPORTED) | DERIVED
    return " ".join(["python -m bench", *groups, *_overrides(config, defaults, "", skip)])


def _overrides(config: dict, defaults: dict | None, prefix: str, skip: set) -> list[str]:
    out = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if path in skip:
            continue
        known = isinstance(defaults, dict) and key in defaults
        if isinstance(value, dict) and value and known and isinstance(defaults[key], dict):
            out += _overrides(value, defaults[key], f"{path}.", skip)
        elif not known or defaults[key] != value:
            out.append(f"{'' if known else '+'}{path}={_value(value)}")
    return out


def _value(value) -> str:
    """A value in Hydra's override grammar (JSON's lists and maps read as Hydra's), quoted for a shell."""
    text = json.dumps(value).replace('"', "") if not isinstance(value, str) else value
    return f"'{text}'" if any(c in text for c in " []{},:'\"") else text


def text(rec: Record, over_seeds: str | None = None) -> str:
    """The card of a finished run's kept folder."""
    c = rec.config
    model, method, task = c["model"], c["method"], c["task"]
    metric, value = next((k, v) for k, v in rec.metrics.model_dump().items() if k not in ("split", "size", "loss"))
    base = model.get("hub_id") or model["name"]
    kind = (rec.data or {}).get("kind")
    random = model.get("weights") == "random"
    quantized = f" ({model['quantize']} base)" if model.get("quantize", "none") != "none" else ""
    steps = f"{c['train']['optimizer']}, lr {method.get('lr')}, {rec.time.steps} steps of {c['train']['batch_size']}"
    meta = {
        "base_model": base,
        "library_name": "peft" if (rec.size.files or {}).get("adapter_config.json") else None,
        "pipeline_tag": PIPELINES.get(kind) if model.get("family") not in ("t5",) else "text2text-generation",
        "tags": ["peft-bench", method["name"], task["name"]] + (["random-weights"] if random else []),
        "model-index": [
            {
                "name": rec.run_id,
                "results": [
                    {
                        "task": {"type": PIPELINES.get(kind, "other")},
                        "dataset": {"name": task["name"], "type": task["name"], "split": "test"},
                        "metrics": [{"type": metric, "value": round(value, 4)}],
                    }
                ],
            }
        ],
    }
    settings = {k: v for k, v in method.items() if k not in ("name", "lr_grid")}
    fingerprint = (rec.per_example or {}).get("fingerprint", "-")
    rows = [
        ("base model", f"`{base}`{quantized}"),
        ("weights", "random: its scores mean nothing" if random else "pre-trained"),
        ("method", f"`{method['name']}` " + ", ".join(f"{k}={v}" for k, v in settings.items())),
        ("task", f"`{task['name']}` (version {task.get('version', '-')}, test split fingerprint `{fingerprint}`)"),
        ("test", f"{metric} {value:.4f} on {rec.metrics.size} examples (seed {c['seed']})"),
        *([("over seeds", over_seeds)] if over_seeds else []),
        ("trainable parameters", f"{rec.params.trainable:,} of {rec.params.total:,} ({rec.params.trainable_pct:.3f}%)"),
        ("stored", f"{rec.size.bytes:,} bytes" if rec.size.bytes is not None else "-"),
        ("training", steps),
    ]
    lines = [
        "---",
        yaml.safe_dump({k: v for k, v in meta.items() if v is not None}, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {rec.run_id}",
        "",
        f"{method['name']} on `{task['name']}`, trained and scored by peft-bench; the run's whole record is "
        f"`{rec.run_id}.json` beside this folder.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
        "## Reproduce",
        "",
        "```bash",
        reproduce(c),
        "```",
        "",
    ]
    return "\n".join(lines)


def write(folder: Path, rec: Record, over_seeds: str | None = None) -> Path:
    path = folder / "README.md"
    path.write_text(text(rec, over_seeds))
    return path
