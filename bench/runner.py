"""One run, executed: its stages in order (fit check, build, train, evaluate, measure, finish), each a
function over the `Run` they fill in, and the record written once at the end.

bench/launch.py starts it: in a fresh process by default (`python -m bench.runner`, the config on
standard input), so that a run's memory and crashes stay its own. This module imports torch and the
engine; the launcher imports it only to run inline.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from pydantic import ValidationError

from bench import batching, card, fit, forgetting, measure, models, precision, record, tasks, utilisation
from bench.compose import typed
from bench.errors import CONFIG_ERROR, ConfigError
from bench.families import FAMILIES, Family
from bench.machine import device_of
from bench.measure import Stages
from bench.methods import METHODS, Method
from bench.metrics import chosen, compute, per_example
from bench.predict import predict, scored_rows
from bench.tasks import TaskData
from bench.tracking import Tracker
from bench.train import Diverged


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass
class Built:
    """What `build` makes of a config: the task's data as the method reads it, and the model with the method applied."""

    task: TaskData
    family: Family
    method: Method
    model: torch.nn.Module
    tokenizer: Any
    source: str  # where the weights came from (a package folder, the hub id)
    architecture: str  # the shape of batches: "encoder" (a classification head) or the family's text-to-text one

    def train_loader(self, cfg, batch_size: int | None = None):
        """The run's shuffled, seeded training batches (bench/batching.py), of the run's batch size unless given."""
        return batching.train_loader(
            self.task,
            self.tokenizer,
            self.architecture,
            cfg.task,
            batch_size or cfg.train.batch_size,
            cfg.seed,
            cfg.train.group_by_length,
        )


def task_data(cfg, stages: Stages | None = None) -> TaskData:
    """The task's data in the form the method reads. Splits the data is too small for are a ConfigError."""
    method = METHODS[cfg.method.name]
    with (stages or measure.Stages(fresh_process=False))("data"):
        return method.prepare(tasks.load(cfg.task, method.form(FAMILIES[cfg.model.family])), cfg.method, cfg.seed)


def build(
    cfg, kept: Path | None = None, before_apply=None, stages: Stages | None = None, task: TaskData | None = None
) -> Built:
    """Task data in the form the method reads (`task`, when read already), then the model with the method
    applied (on CPU, before any training); or, given the folder a finished run kept (its record's
    `size.folder`), that run's trained model again. `before_apply(model, tokenizer, architecture)` sees the
    model as loaded, before the method changes it. `stages` times data, model load and `before_apply`
    (a measurement)."""
    stages = stages or measure.Stages(fresh_process=False)
    family = FAMILIES[cfg.model.family]
    method = METHODS[cfg.method.name]
    form = method.form(family)
    task = task or task_data(cfg, stages)
    with stages("model_load"):
        model, tokenizer, source = models.load(
            cfg.model, family, len(task.labels), precision.load_dtype(cfg.train.precision)
        )
        if cfg.train.gradient_checkpointing:
            # on the base model, so that its layers recompute under peft's wrapper and the project's own
            # methods alike (transformers 5 renamed gradient_checkpointing_enable); non-reentrant, which
            # works whatever requires gradients
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    architecture = "encoder" if form == "encoder" else family.architecture
    if before_apply:
        with stages("measurement"):
            before_apply(model, tokenizer, architecture)
    with stages("model_load"):
        if kept:
            model = method.load(model, cfg.method, family, tokenizer, kept)
        else:
            model = method.apply(model, cfg.method, family, tokenizer)
        precision.keep_trained_in_float32(model)
    return Built(task, family, method, model, tokenizer, source, architecture)


@dataclass
class Run:
    """One run as its stages see it: its config, where its record goes, its stage clock, and the
    record's sections as the stages fill them in."""

    config: dict
    attempt: str | None
    concurrent_jobs: int | None
    stages: Stages
    cfg: DictConfig = field(init=False)
    path: Path = field(init=False)
    device: str = field(init=False)
    started: str = field(default_factory=record.now)
    sections: dict = field(default_factory=dict)

    def __post_init__(self):
        self.cfg = typed(self.config)
        self.path = record.path_for(self.config)
        self.device = device_of(self.cfg)

    def in_precision(self):
        """Evaluation and measurements compute as training does."""
        return precision.autocast(self.cfg.train.precision, self.device)


def execute(config: dict, attempt: str | None = None, concurrent_jobs: int | None = 1) -> record.Record:
    """Run the stages and write the record once, at the end; every exception becomes a failed (oom,
    diverged) record."""
    # its start: the process's, imports included
    run = Run(config, attempt, concurrent_jobs, measure.Stages(fresh_process=config["process"] == "fresh"))
    estimate = fit_check(run)
    if estimate["fits"] is False:
        return refuse(run, estimate)
    task = task_data(run.cfg, run.stages)  # before W&B starts: a split the data cannot fill is a ConfigError
    with run.stages("tracking"):
        tracker = Tracker(config, record.run_id(config), str(run.path.parent))
    try:
        seed_everything(run.cfg.seed)
        built, base_loss = build_model(run, task)
        loader, result = train_model(run, built, tracker)
        evaluate_model(run, built, result, tracker, base_loss)
        measure_run(run, built, loader, result)
        status, error = "ok", None
    except torch.OutOfMemoryError as e:
        status, error = "oom", record.error_of(e)
    except Diverged as e:
        status, error = "diverged", {**record.error_of(e), "step": e.step}
    except Exception as e:  # noqa: BLE001 - a failed run is recorded, never lost
        status, error = "failed", record.error_of(e)
    return finish(run, status, error, tracker)


def fit_check(run: Run) -> dict:
    """Will it fit: on the meta device, before anything loads or W&B starts (here, not in the launcher,
    which then needs no torch); a model that cannot checkpoint was refused by the launcher already."""
    with run.stages("measurement"):
        estimate = fit.checked(run.cfg)
    run.sections["estimate"] = estimate  # beside what the run measures
    return estimate


def build_model(run: Run, task: TaskData) -> tuple[Built, dict]:
    """The data and the model with the method applied, on the run's device; and the base model's loss on
    general text, scored before the method changes it (text-to-text models only), for forgetting."""
    base: dict = {}

    def score_base(model, tokenizer, architecture):  # on the run's device, as the tuned model will be
        if architecture != "encoder" and METHODS[run.cfg.method.name].trains:
            with run.in_precision():
                base.update(forgetting.mean_token_loss(model.to(run.device), tokenizer, architecture, run.device))

    built = build(run.cfg, before_apply=score_base, stages=run.stages, task=task)
    run.sections["model_source"] = built.source
    with run.stages("model_load"):
        run.sections["params"] = built.method.count(built.model, run.cfg.method, built.family)
        built.model.to(run.device)
    return built, base


def _evaluate(run: Run, built: Built, examples) -> tuple[list, dict]:
    t = run.cfg
    with run.in_precision():
        outputs, loss = predict(
            built.model,
            built.tokenizer,
            built.task,
            examples,
            built.architecture,
            t.task,
            t.train.eval_batch_size,
            run.device,
        )
    return outputs, {"loss": loss, **compute(built.task.metrics, examples, outputs)}


def train_model(run: Run, built: Built, tracker: Tracker):
    """The method's training (or a baseline's fitting), validating on the way; its time split into stages."""
    cfg, task = run.cfg, built.task
    with run.stages("data"):
        run.sections["data"] = {
            "task_version": cfg.task.version,
            "split_seed": cfg.task.split_seed,
            "kind": task.kind,
            "majority_label": _majority(task),
            **task.describe(),
        }
        loader = built.train_loader(cfg)
    if cfg.train.profile_memory and run.device == "cpu":
        # the profiled step traces the Python calls of every thread (with_stack, which its memory timeline
        # needs): W&B's start, still importing beside the loading, cost 14 s and 1 GB there (experiments/)
        with run.stages("tracking"):
            tracker.ready()
    fit_start = time.perf_counter()
    result = built.method.fit(
        built.model,
        loader,
        cfg.method,
        cfg.train,
        run.device,
        lambda: _evaluate(run, built, task.validation)[1],
        tracker.log,
        monitor=task.metrics[0],
    )
    run.stages.add("evaluation", result.eval_seconds)
    run.stages.add("measurement", result.profile_seconds)
    run.stages.add("data", result.data_seconds)
    run.stages.add(
        "training", time.perf_counter() - fit_start - result.eval_seconds - result.profile_seconds - result.data_seconds
    )
    run.sections["losses"] = result.losses
    return loader, result


def evaluate_model(run: Run, built: Built, result, tracker: Tracker, base_loss: dict) -> None:
    """Test scores with per-example results, the final validation, and forgetting against the base's loss."""
    task, s = built.task, run.sections
    with run.stages("evaluation"):
        s["params"] = built.method.count(built.model, run.cfg.method, built.family)  # what training kept (diff pruning)
        start = time.perf_counter()
        outputs, scores = _evaluate(run, built, task.test)
        s["inference"] = inference_cost(run, built, task.test, time.perf_counter() - start)
        s["metrics"] = {"split": "test", "size": len(task.test), **scores}
        s["per_example"] = per_example(task.kind, task.metrics, task.test, outputs, task.given_test)
        s["predictions"] = _sample(task, outputs)
        final = _evaluate(run, built, task.validation)[1]
    if not built.method.trains:  # prompting, a probe: the model answering is the base model, unchanged
        s["forgetting"] = {"score": 0.0, "reason": "nothing trains: the base model is unchanged (not measured)"}
    else:
        with run.stages("measurement"), run.in_precision():
            s["forgetting"] = forgetting.score(
                base_loss or None,
                forgetting.mean_token_loss(built.model, built.tokenizer, built.architecture, run.device)
                if base_loss
                else None,
                reason="a run in the encoder form (a classification head) has no language-model head to score text "
                "with",
            )
    with run.stages("tracking"):
        tracker.log({f"validation/{k}": v for k, v in final.items()}, result.steps)
    # the weights scored on test: the last step's, or early stopping's best
    s["validation"] = result.evaluations + [{"step": result.best_step or result.steps, "final": True, **final}]


def inference_cost(run: Run, built: Built, examples, seconds: float) -> dict:
    """Per query: its prompt tokens, the tokens the model reads to answer it, their analytic forward FLOPs (an
    adapter as served merged: LoRA's and IA3's extra work is not counted), and the measured `seconds` of
    answering them all, shared out."""
    cfg, tokenizer = run.cfg, built.tokenizer
    rows = scored_rows(tokenizer, built.task, examples, built.architecture, cfg.task)
    inputs, targets = utilisation.lengths_of(rows, built.architecture)
    virtual = built.method.virtual_tokens(cfg.method)
    # a probe answers with a frozen model (its .model) and a fitted classifier: the forward is the cost
    model = built.model if hasattr(built.model, "config") else built.model.model
    per_token = utilisation.flops_per_token(
        model,
        built.family,
        built.architecture,
        inputs,
        targets,
        cfg.train.eval_batch_size,
        virtual,
        built.method.prefix_tokens(cfg.method),
        inference=True,
    )
    if built.architecture == "encoder":
        prompts = [row["attention_mask"].count(1) for row in rows]
    else:
        prompts = [len(batching.prompt_ids(tokenizer, e.prompt or e.text, cfg.task.max_length)) for e in examples]
    n = len(examples)
    return {
        "queries": n,
        "prompt_tokens": sum(prompts) / n + virtual,
        "read_tokens": (sum(inputs) + sum(targets or []) + virtual * len(rows)) / n,
        "flops": per_token * sum(inputs) / n,
        "seconds": seconds / n,
    }


def measure_run(run: Run, built: Built, loader, result) -> None:
    """Time, utilisation, memory, stored bytes and serving latency of the trained model."""
    cfg, tc, task, method, s = run.cfg, run.cfg.train, built.task, built.method, run.sections
    timing = result.timing(tc.timing_warmup)
    s["time"] = {
        **timing,
        "epochs": result.examples_seen / len(task.train) if task.train else None,
        # timings of runs that shared a process or the machine with other runs are not clean
        "shared_process": cfg.process == "inline",
        "concurrent_jobs": run.concurrent_jobs,
        "shared_machine": run.concurrent_jobs != 1 or timing["machine"].get("busy", False),
    }
    with run.stages("measurement"):
        if method.trains:  # the baselines' passes (prompting, a probe's features) are not training steps
            # the rows read (grouped by length, also the rest of the last group: a random sample of the same rows)
            lengths = utilisation.lengths_of(loader.dataset.read(), built.architecture)
            s["utilisation"] = utilisation.utilisation(
                utilisation.flops_per_token(
                    built.model,
                    built.family,
                    built.architecture,
                    *lengths,
                    tc.batch_size,
                    method.virtual_tokens(cfg.method),
                    method.prefix_tokens(cfg.method),
                ),
                timing["tokens_per_second"],
                utilisation.peak_flops(run.device, tc.precision),
            )
        s["memory"] = {
            **result.memory,
            "analytic_bytes": measure.analytic_bytes(
                built.model,
                method.optimizer or tc.optimizer,
                tc.optimizer_args,
                method_state=method.state_elements(built.model, cfg.method),
            ),
        }
        kept = run.path.with_suffix("") if cfg.keep_full_copies or not method.full_copy else None  # beside the record
        s["size"] = measure.stored_bytes(method.save, built.model, kept)
        one = batching.training_rows(
            task, task.test[:1], built.tokenizer, built.architecture, cfg.task.max_length, cfg.task.max_new_tokens
        )
        one = {k: v.to(run.device) for k, v in batching.pad(one, built.tokenizer.pad_token_id).items()}
        if (
            built.architecture == "encoder"
        ):  # a served classifier is not handed the answer; T5 needs it as decoder input
            del one["labels"]
        with run.in_precision():
            s["latency"] = measure.serving_latency(built.model, one, tc.latency_samples)


def finish(run: Run, status: str, error: dict | None, tracker: Tracker) -> record.Record:
    """The record, written once; then W&B's summary and finish, after the record so that a hang there cannot
    lose it (its time is the only part of the run the record's stages leave out)."""
    with run.stages("measurement"):
        run.sections["environment"] = measure.environment(run.device)
        # the peak of the whole run
        run.sections.setdefault("memory", {}).update(measure.process_peak_rss(run.cfg.process == "inline"))
    with run.stages("tracking"):
        info = tracker.info
    run.sections.setdefault("time", {})["stages"] = run.stages.record()
    ids = {"attempt": run.attempt, "started": run.started, "ended": record.now(), "tracking": info}
    try:
        rec = record.new(run.config, status, error=error, **ids, **run.sections)
    except ValidationError as e:  # a section the declaration does not take: the numbers printed whole, the run failed
        print(
            f"error: the run's record does not fit its declaration; its sections, in full:\n"
            f"{json.dumps(run.sections, default=str, indent=2)}",
            file=sys.stderr,
        )
        message = (
            f"the record does not fit bench/record.py ({record.mismatch(e, run.sections)}); its sections are printed"
        )
        rec = record.new(run.config, "failed", error={"type": "InvalidRecord", "message": message}, **ids)
    record.keep(run.path, rec)  # a record that could not be written is printed in full
    if rec.status == "ok" and rec.size and rec.size.folder:
        try:
            card.write(Path(rec.size.folder), rec)
        except Exception as e:  # noqa: BLE001 - the card describes the run: it must not fail it
            warnings.warn(f"the kept folder's model card was not written: {type(e).__name__}: {e}", stacklevel=1)
    tracker.finish(rec)
    return rec


def refuse(run: Run, estimate: dict) -> record.Record:
    """The record of a run estimated not to fit, stopped before it loaded anything."""
    rec = record.new(
        run.config,
        "refused",
        error={"type": "WontFit", "message": fit.refusal(estimate, run.config["train"])},
        estimate=estimate,
        attempt=run.attempt,
        started=run.started,
        ended=record.now(),
        time={"stages": run.stages.record()},
    )
    record.keep(run.path, rec)
    return rec


def _majority(task) -> int | None:
    """The most frequent training label (the majority-class baseline), for tasks with one label set."""
    if task.kind != "classify" or not task.labels or not task.train or task.train[0].choices is not None:
        return None
    counts = Counter(e.label for e in task.train)
    return max(range(len(task.labels)), key=lambda label: counts[label])  # the lowest of tied labels


def _sample(task, outputs, n: int = 20) -> list[dict]:
    """The first test examples with what the model answered, for a reader to check the metric by eye."""
    rows = []
    for e, out in zip(task.test[:n], outputs):
        if task.kind == "generate":
            rows.append({"prompt": e.prompt or e.text, "target": e.target, "output": out})
        else:
            choices = task.choices(e)
            rows.append({"input": e.prompt or e.text, "gold": choices[e.label], "predicted": choices[chosen([out])[0]]})
    return rows


def main(attempt: str, concurrent_jobs: str, report: str) -> None:
    """The fresh process: a ConfigError (the data too small for a split) goes to the launcher through the
    `report` pipe, as key, value and what is accepted, and no record is written: it is the launcher's to raise."""
    os.set_inheritable(int(report), False)  # its own, not the processes it starts (W&B's service)
    try:
        execute(json.load(sys.stdin), attempt=attempt, concurrent_jobs=json.loads(concurrent_jobs))
    except ConfigError as e:
        with os.fdopen(int(report), "w") as f:
            json.dump({"key": e.key, "value": e.value, "accepted": e.accepted}, f, default=str)
        sys.exit(CONFIG_ERROR)


if __name__ == "__main__":  # python -m bench.runner ATTEMPT CONCURRENT_JOBS REPORT_FD < CONFIG_JSON
    main(*sys.argv[1:])
