"""Launching one run: validate, skip or claim its id, record not_applicable, or run it (in a fresh process
by default, bench/runner.py), then print its summary.

`launch` runs in the Hydra process; `execute` runs in a fresh child process by default
(`process=fresh`), so a run's memory and crashes stay its own, and the child's record is the
one that lands. If the child dies without writing one, the parent records the failure.

The launcher imports none of torch, transformers or peft (they take seconds, and a skipped run or a
fresh process needs none of them here), except to check that a model can do gradient checkpointing
when a run asks for it, and to run inline (`process=inline`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench import record
from bench.compose import to_container
from bench.errors import CONFIG_ERROR, ConfigError
from bench.validate import validate


def launch(cfg: DictConfig, concurrent_jobs: int | None = 1) -> record.Record | None:
    """Validate (raises ConfigError), then skip, record not_applicable, or run (which refuses a job that
    would not fit, bench/fit.py); None when the same run is running in another process (which will
    write its record).
    `concurrent_jobs` other than 1 says the launcher runs other jobs beside this one (None: how
    many is unknown); such runs' timings are marked as shared."""
    reason = validate(cfg)
    config = to_container(cfg)
    path = record.path_for(config)
    try:
        with record.claim(path) as lock:  # one writer per run id
            return _launch(config, path, reason, lock, concurrent_jobs)
    except record.RunningElsewhere as e:
        print(f"running elsewhere: {e}; nothing recorded here")
        return None


def _launch(config: dict, path: Path, reason: str | None, lock: int, concurrent_jobs: int | None) -> record.Record:
    existing = record.read(path)
    if record.should_skip(existing, config["force"], config["retry_failed"]):
        print(
            f"skip: {path} exists (status {existing.status}); force=true reruns it"
            + (", retry_failed=true retries failed runs" if existing.status in record.RETRYABLE else "")
        )
        return existing
    if config["train"]["gradient_checkpointing"] and not reason:
        # a model that cannot is a config error, stopped here like any other (this builds it on the meta
        # device, so torch is imported in the launcher for such a run)
        from bench import fit  # deferred: torch, for such a run only

        cfg = OmegaConf.create(config)
        try:
            model = fit.meta_model(cfg)
        except Exception:  # noqa: BLE001 - not buildable here: the run's own estimate records why
            model = None
        if model is not None:
            fit.check_checkpointing(cfg, model)
    if reason:
        rec = record.new(
            config, "not_applicable", error={"type": "NotApplicable", "message": reason}, started=record.now()
        )
        record.keep(path, rec)
    elif config["process"] == "fresh":
        rec = _in_fresh_process(config, path, lock, concurrent_jobs)
    else:
        from bench.runner import execute  # deferred: torch and the engine, which a fresh-process launch never needs

        rec = execute(config, concurrent_jobs=concurrent_jobs)
    print(summary(rec, path))
    return rec


MAX_REPORT = 65_536  # a pipe's buffer: the child's report fits it, so the child never blocks writing it


def _in_fresh_process(config: dict, path: Path, lock: int, concurrent_jobs: int | None) -> record.Record:
    attempt = uuid.uuid4().hex
    started = record.now()
    # the config goes through a pipe, so no temporary file outlives a killed parent; the child shares
    # the run's lock, so a killed parent leaves the lock held while the child runs; a ConfigError it
    # meets (its data too small for a split) comes back through `report`
    report, report_end = os.pipe()
    try:
        try:
            code = subprocess.run(
                [sys.executable, "-m", "bench.runner", attempt, json.dumps(concurrent_jobs), str(report_end)],
                input=json.dumps(config),
                text=True,
                pass_fds=(lock, report_end),
                check=False,
            ).returncode
        finally:
            os.close(report_end)
        told = os.read(report, MAX_REPORT) if code == CONFIG_ERROR else b""  # written whole before it exited
    finally:
        os.close(report)
    if told:
        raise ConfigError(**json.loads(told))
    rec = record.read(path)
    if rec is not None and rec.attempt == attempt:
        return rec
    how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    hint = " (the system may have run out of memory)" if code == -signal.SIGKILL else ""
    message = f"run process {how}{hint} before writing its record"
    if code == 0:  # it ran to the end, and writing failed: it printed the record in full with the reason
        message = "the run finished but its record could not be written; the run process printed it in full above"
    rec = record.new(
        config,
        "failed",
        error={"type": "WorkerDied", "message": message},
        attempt=attempt,
        started=started,
        ended=record.now(),
    )
    record.keep(path, rec)
    return rec


def summary(rec: record.Record, path: Path) -> str:
    c = rec.config
    lines = [
        f"run {rec.run_id}: {rec.status}",
        f"  model {c['model']['name']}"
        + (" (random weights: a speed check, its scores mean nothing)" if c["model"].get("weights") == "random" else "")
        + f"  task {c['task']['name']}  method {c['method']['name']}",
    ]
    if rec.status != "ok":
        lines.append(f"  {rec.error.type}: {rec.error.message}")
    else:
        p, mt, mem = rec.params, rec.metrics, rec.memory
        lines += [
            f"  trainable {p.trainable:,} of {p.total:,} ({p.trainable_pct:.3f}%): "
            f"method {p.method:,}, head {p.head:,}",
            f"  test ({mt.size} examples): "
            + ", ".join(f"{k} {v:.4f}" for k, v in mt.model_dump().items() if k not in ("split", "size", "loss")),
            _training(rec.time) + _utilisation(rec.utilisation),
            (
                f"  peak memory {_mib(mem.peak_bytes)} ({mem.measure})"
                if mem.peak_bytes is not None
                else "  peak memory: not measured"
            )
            + f"; process peak resident {_mib(mem.process_peak_rss_bytes)} ({mem.process_peak_rss_of})",
            _stored(rec.size) + "; " + _latency(rec.latency),
            _inference(rec.inference),
        ]
    if rec.time and rec.time.stages:
        lines.append(_stages(rec.time.stages))
    lines.append(f"  record {path}")
    if (rec.tracking or {}).get("dir"):
        lines.append(f"  W&B ({rec.tracking['mode']}) {rec.tracking['dir']}")
    return "\n".join(lines)


def _training(tm: record.Time) -> str:
    if not tm.steps:
        return "  no training"
    return f"  training {tm.train_seconds:.1f} s over {tm.steps} steps, median step " + (
        f"{tm.median_step_seconds * 1000:.0f} ms, {tm.tokens_per_second:.0f} tokens/s"
        if tm.steps_timed
        else "not timed (the only step was the memory-profiled one)"
    )


def _utilisation(u: record.Utilisation | None) -> str:
    if not u or u.fraction is None:
        return ""
    return (
        f"; {u.flops_per_token:.3g} FLOP/token, {u.achieved_flops_per_second:.3g} FLOP/s, "
        f"{100 * u.fraction:.1f}% of peak ({u.peak_from})"
    )


def _stages(stages: record.Stages) -> str:
    wall = stages.wall_seconds
    parts = sorted(stages.seconds.items(), key=lambda kv: -kv[1])
    return (
        f"  wall {wall:.1f} s: "
        + ", ".join(f"{name} {100 * s / wall:.0f}%" for name, s in parts)
        + f", untimed {100 * stages.untimed_seconds / wall:.0f}%"
    )


def _stored(size: record.Size) -> str:
    if size.bytes is None:
        return f"  stored size not measured ({size.error})"
    return f"  stored per task {_mib(size.bytes)}" + (f" (kept in {size.folder})" if size.folder else "")


def _inference(cost: record.Inference | None) -> str:
    if cost is None or cost.queries is None:
        return "  answering: not measured"
    return (
        f"  answering a test query: {cost.prompt_tokens:.0f} prompt tokens, {cost.read_tokens:.0f} read, "
        f"{cost.flops:.3g} FLOPs, {1000 * cost.seconds:.1f} ms (in eval batches)"
    )


def _latency(latency: record.Latency | None) -> str:
    if latency is None or latency.median_ms is None:
        return "latency not measured"
    merged = f" ({latency.merged['median_ms']:.1f} ms merged)" if latency.merged else ""
    return f"batch-1 latency {latency.median_ms:.1f} ms{merged}"


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
