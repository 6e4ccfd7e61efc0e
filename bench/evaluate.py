"""Kept runs scored on another task, without training: robustness to domain shift (Lester et al. 2021, Table 2).

    python -m bench.evaluate [--results results] --sweep NAME --task TASK [TASK OVERRIDES, e.g. task.test_size=500]

Every finished run of the sweep that kept what it trained (its record's size.folder) is loaded again and scored
on TASK's test split. The two tasks' label words must overlap: the model answers among the labels both share (a
three-way tweet model scored on two-way movie reviews picks negative or positive), and only test examples whose
label the run was trained on are scored. Each result is written beside the sweep's records, to
evaluated/<run_id>-on-<task>.json, naming the run, its folder, both tasks and the shared labels, with the test
scores and per-example results that `python -m analysis.domain_shift` turns into intervals.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

from omegaconf import OmegaConf

from bench import metrics, precision, record, results, runner, tasks
from bench.compose import compose, typed
from bench.errors import ConfigError
from bench.families import FAMILIES
from bench.machine import device_of
from bench.methods import METHODS
from bench.predict import predict

FOLDER = "evaluated"  # beside a sweep's records; no run id is this name


def relabelled(source_labels: list[str], target: tasks.TaskData) -> tuple[list[tasks.Example], list[int]]:
    """The target's test examples whose label word the source was trained on, labelled by the source's index
    of that word; and the source's indices of the labels the two tasks share."""
    shared = [source_labels.index(word) for word in target.labels if word in source_labels]
    if not shared or target.kind != "classify":
        raise ConfigError("--task", target.labels, f"a classification task with label words among {source_labels}")
    examples = [
        replace(e, label=source_labels.index(target.labels[e.label]))
        for e in target.test
        if target.labels[e.label] in source_labels
    ]
    return examples, sorted(shared)


def among(outputs: list[list[float]], shared: list[int]) -> list[list[float]]:
    """Each example's scores with the labels outside `shared` ruled out: the model answers among the shared ones."""
    return [[s if i in shared else -math.inf for i, s in enumerate(row)] for row in outputs]


def evaluate(rec: dict, path: Path, folder: Path, target_cfg) -> dict:
    """The kept run of `rec` (the record at `path`) scored on the task of `target_cfg` (a composed task config)."""
    cfg = typed(rec["config"])
    method, family = METHODS[cfg.method.name], FAMILIES[cfg.model.family]
    source = runner.task_data(cfg)  # the labels, in the order the run's head or label scoring learned them
    target = tasks.load(target_cfg, method.form(family))
    examples, shared = relabelled(source.labels, target)
    built = runner.build(cfg, kept=folder, task=source)
    device = device_of(cfg)
    built.model.to(device)
    with precision.autocast(cfg.train.precision, device):
        outputs, _ = predict(
            built.model,
            built.tokenizer,
            source,
            examples,
            built.architecture,
            target_cfg,
            cfg.train.eval_batch_size,
            device,
        )
    outputs = among(outputs, shared)
    return {
        "run_id": rec["run_id"],
        "record": str(path),
        "folder": str(folder),
        "model": cfg.model.name,
        "method": cfg.method.name,
        "seed": cfg.seed,
        "trained_on": cfg.task.name,
        "evaluated_on": target_cfg.name,
        "task": OmegaConf.to_container(target_cfg, resolve=True),
        "labels": {
            "trained": source.labels,
            "evaluated": target.labels,
            "shared": [source.labels[i] for i in shared],
        },
        "left_out": len(target.test) - len(examples),  # test examples of a label the run never learned
        "metrics": {"split": "test", "size": len(examples), **metrics.compute(source.metrics, examples, outputs)},
        "per_example": metrics.per_example(source.kind, source.metrics, examples, outputs),
        "in_domain": rec["metrics"],
        "ended": record.now(),
    }


def path_for(results: Path, sweep: str, run_id: str, task: str) -> Path:
    return results / sweep / FOLDER / f"{run_id}-on-{task}.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--sweep", required=True)
    parser.add_argument("--task", required=True, help="the task to score on (a conf/task name)")
    parser.add_argument("overrides", nargs="*", help="overrides of that task's config, e.g. task.test_size=500")
    args = parser.parse_args(argv)
    if any(not o.startswith("task.") for o in args.overrides):
        parser.error(f"overrides must be of the task's keys (task.KEY=VALUE): {args.overrides}")
    target_cfg = compose([f"task={args.task}", *args.overrides]).task
    runs = results.load(args.results)
    kept = results.kept_folders(runs[runs.sweep == args.sweep], args.results) if len(runs) else []
    if not kept:
        parser.error(f"{args.results / args.sweep}: no finished run kept what it trained (size.folder)")
    for k in kept:
        rec = k["record"]
        path = args.results / args.sweep / f"{rec['run_id']}.json"
        out = path_for(args.results, args.sweep, rec["run_id"], args.task)
        result = evaluate(rec, path, k["folder"], target_cfg)
        record.write_text(out, json.dumps(result, indent=1))
        m = result["metrics"]
        print(
            f"{rec['run_id']}: trained on {result['trained_on']} {rec['metrics']['accuracy']:.4f}, "
            f"on {args.task} {m['accuracy']:.4f} ({m['size']} examples, {result['left_out']} left out) -> {out}"
        )


if __name__ == "__main__":
    main()
