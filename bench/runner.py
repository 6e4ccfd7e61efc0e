"""One run, start to finish: validate, skip or launch, execute the stages, record.

`launch` runs in the Hydra process; `execute` runs in a fresh child process by default
(`process=fresh`), so a run's memory and crashes stay its own, and the child's record is the
one that lands. If the child dies without writing one, the parent records the failure.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from bench import batching, measure, models, record, tasks
from bench.config import device_of, to_container, validate
from bench.families import FAMILIES
from bench.methods import METHODS
from bench.metrics import compute
from bench.tracking import Tracker
from bench.train import predict, train


def launch(cfg: DictConfig, concurrent_jobs: int | None = 1) -> dict:
    """Validate (raises ConfigError), then skip, record not_applicable, or run.
    `concurrent_jobs` other than 1 says the launcher runs other jobs beside this one (None: how
    many is unknown); such runs' timings are marked as shared."""
    reason = validate(cfg)
    config = to_container(cfg)
    path = record.path_for(config)
    existing = record.read(path)
    if record.should_skip(existing, config["force"], config["retry_failed"]):
        print(f"skip: {path} exists (status {existing['status']}); force=true reruns it"
              + (", retry_failed=true retries failed runs" if existing["status"] in record.RETRYABLE else ""))
        return existing
    if reason:
        rec = record.new(config, "not_applicable", error={"type": "NotApplicable", "message": reason}, started=record.now())
        record.write(path, rec)
    elif config["process"] == "fresh":
        rec = _in_fresh_process(config, path, concurrent_jobs)
    else:
        rec = execute(config, concurrent_jobs=concurrent_jobs)
    print(summary(rec, path))
    return rec


def _in_fresh_process(config: dict, path: Path, concurrent_jobs: int | None) -> dict:
    attempt = uuid.uuid4().hex
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    started = record.now()
    try:
        code = subprocess.call([sys.executable, "-m", "bench.runner", f.name, attempt, json.dumps(concurrent_jobs)])
    finally:
        os.unlink(f.name)
    rec = record.read(path)
    if rec is not None and rec.get("attempt") == attempt:
        return rec
    how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    hint = " (the system may have run out of memory)" if code == -signal.SIGKILL else ""
    rec = record.new(
        config, "failed", error={"type": "WorkerDied", "message": f"run process {how}{hint} before writing its record"},
        attempt=attempt, started=started, ended=record.now(),
    )
    record.write(path, rec)
    return rec


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def build(cfg):
    """Task data, then the model with the method applied (on CPU, before any training)."""
    task = tasks.load(cfg.task)
    family = FAMILIES[cfg.model.family]
    method = METHODS[cfg.method.name]
    model, tokenizer, source = models.load(cfg.model, len(task.labels))
    model = method.apply(model, cfg.method, family, tokenizer)
    return task, family, method, model, tokenizer, source


def execute(config: dict, attempt: str | None = None, concurrent_jobs: int | None = 1) -> dict:
    """Run the stages and write the record; every exception becomes a failed (or oom) record."""
    run_id = record.run_id(config)
    path = record.path_for(config)
    cfg = OmegaConf.create(config)
    device = device_of(cfg)
    started = record.now()
    tracker = Tracker(config, run_id, str(path.parent))
    fields: dict = {}
    try:
        seed_everything(cfg.seed)
        t, m, tc = cfg.task, cfg.method, cfg.train
        task, family, method, model, tokenizer, fields["model_source"] = build(cfg)
        fields["params"] = measure.count_params(model, family)
        model.to(device)
        fields["data"] = {"task_version": t.version, "split_seed": t.split_seed, **task.describe()}

        train_loader = batching.loader(task.train, tokenizer, t.max_length, tc.batch_size, shuffle=True, seed=cfg.seed)
        val_loader = batching.loader(task.validation, tokenizer, t.max_length, tc.eval_batch_size, shuffle=False)
        test_loader = batching.loader(task.test, tokenizer, t.max_length, tc.eval_batch_size, shuffle=False)

        def evaluate_validation():
            predictions, targets, loss = predict(model, val_loader, device)
            return {"loss": loss, **compute(task.metrics, predictions, targets)}

        result = train(model, train_loader, tc, m.lr, device, evaluate_validation, tracker.log, tc.profile_memory)

        predictions, targets, loss = predict(model, test_loader, device)
        fields["metrics"] = {"split": "test", "size": len(targets), "loss": loss, **compute(task.metrics, predictions, targets)}
        final = evaluate_validation()
        tracker.log({f"validation/{k}": v for k, v in final.items()}, result.steps)
        fields["validation"] = result.evaluations + [{"step": result.steps, **final}]
        fields["time"] = {
            **result.timing(tc.timing_warmup),
            # timings of runs that shared a process or the machine with other runs are not clean
            "shared_process": cfg.process == "inline",
            "concurrent_jobs": concurrent_jobs,
            "shared_machine": concurrent_jobs != 1,
        }
        fields["memory"] = {**result.memory, "analytic_bytes": measure.analytic_bytes(model, fields["params"])}
        fields["losses"] = result.losses
        fields["size"] = measure.stored_bytes(method.save, model)
        one = next(iter(batching.loader(task.test[:1], tokenizer, t.max_length, 1, shuffle=False)))
        one = {k: v.to(device) for k, v in one.items() if k != "labels"}
        fields["latency"] = measure.serving_latency(model, one, tc.latency_samples)
        status, error = "ok", None
    except torch.OutOfMemoryError as e:
        status, error = "oom", record.error_of(e)
    except Exception as e:  # noqa: BLE001 - a failed run is recorded, never lost
        status, error = "failed", record.error_of(e)
    fields["environment"] = measure.environment(device)
    rec = record.new(config, status, error=error, attempt=attempt, started=started, ended=record.now(),
                     tracking=tracker.info, **fields)
    record.write(path, rec)  # before W&B's finish, so that a hang there cannot lose the record
    if not tracker.finish(rec):
        rec["tracking"] = tracker.info
        record.write(path, rec)
    return rec


def summary(rec: dict, path: Path) -> str:
    c = rec["config"]
    lines = [f"run {rec['run_id']}: {rec['status']}",
             f"  model {c['model']['name']}  task {c['task']['name']}  method {c['method']['name']}"]
    if rec["status"] != "ok":
        lines.append(f"  {rec['error']['type']}: {rec['error']['message']}")
    else:
        p, mt, tm, mem = rec["params"], rec["metrics"], rec["time"], rec["memory"]
        lines += [
            f"  trainable {p['trainable']:,} of {p['total']:,} ({p['trainable_pct']:.3f}%): method {p['method']:,}, head {p['head']:,}",
            f"  test ({mt['size']} examples): " + ", ".join(f"{k} {v:.4f}" for k, v in mt.items() if k not in ("split", "size", "loss")),
            f"  training {tm['train_seconds']:.1f} s over {tm['steps']} steps, median step "
            + (f"{tm['median_step_seconds'] * 1000:.0f} ms, {tm['tokens_per_second']:.0f} tokens/s"
               if tm["steps_timed"] else "not timed (the only step was the memory-profiled one)"),
            f"  peak memory {_mib(mem['peak_bytes'])} ({mem['measure']})" if "peak_bytes" in mem else "  peak memory: not measured",
            f"  stored per task {_mib(rec['size']['bytes'])}; " + _latency(rec["latency"]),
        ]
    lines.append(f"  record {path}")
    if rec.get("tracking", {}).get("dir"):
        lines.append(f"  W&B ({rec['tracking']['mode']}) {rec['tracking']['dir']}")
    return "\n".join(lines)


def _latency(latency: dict) -> str:
    if not latency:
        return "latency not measured"
    merged = f" ({latency['merged']['median_ms']:.1f} ms merged)" if "merged" in latency else ""
    return f"batch-1 latency {latency['median_ms']:.1f} ms{merged}"


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


if __name__ == "__main__":  # the fresh process: python -m bench.runner CONFIG.json ATTEMPT CONCURRENT_JOBS
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    execute(cfg, attempt=sys.argv[2], concurrent_jobs=json.loads(sys.argv[3]))
