"""The results store: one JSON file per run under <results_dir>/<sweep_name>/, written atomically.

The run id hashes only the fields that define the experiment, so the same experiment finds its
record again whatever the paths, logging or process settings were.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import tempfile
import traceback
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 1
# refused: estimated not to fit the memory available (bench/fit.py), so stopped before loading anything
STATUSES = ("ok", "failed", "oom", "diverged", "not_applicable", "refused")
RETRYABLE = ("failed", "oom")  # rerun by retry_failed=true

# config keys that change where or how a run is reported or measured, never what it computes
NOT_IDENTITY = {
    "results_dir", "sweep_name", "process", "force", "retry_failed", "keep_full_copies", "tracking",
    "model.source", "model.package", "model.package_dir", "model.asset",
    "model.config",  # the architecture as written for mode=count; the weights define it in a run
    "method.lr_grid",  # where the learning-rate search looks; each run's own lr is its identity
    "mode",  # count records live apart from run records
    "serve",  # settings of mode=serve (bench/serve.py), whose records have their own ids
    "task.data_dir", "task.hub_id",  # where the same data is read from
    "train.log_every", "train.profile_memory", "train.latency_samples", "train.timing_warmup", "train.eval_batch_size",
    "train.memory_limit_gib",  # what the fit check compares with before loading
}


# keys added after records existed: at these values (their defaults) they leave a run id as it was,
# so earlier results keep being found (and skipped) by the same command
ADDED_LATER = {"task.max_new_tokens": 16, "train.lr_schedule": "linear", "train.early_stopping_patience": 0,
               "train.optimizer": "adamw", "train.optimizer_args": {},
               "train.precision": "fp32", "train.gradient_checkpointing": False, "train.group_by_length": False}
# each task's prompt-template digest (task.template_sha256) when it joined the run id: runs of a task
# whose template is still this one keep their ids; an edited template gives new ones
TEMPLATES_ADDED = {
    "arithmetic": "dd11c882d2aadb7c", "imdb": "a106df2895114657", "sst2": "1e09ad32b7df0612", "boolq": "add16ca76fe91f6a",
    "cb": "c486d15b7475f7d3", "rte": "0f84b7319a202ca0", "wic": "6668f4a99a8ec8c3", "wsc": "0804b9bb115a9e88",
    "copa": "d8d9ae7a37231f0a", "multirc": "7330297d1ec629a7", "record": "85fa8a5cdddc25e0", "tweets": "f1d48b2931fd6cf4",
}


def _identity(config: dict, without: frozenset = frozenset()) -> dict:
    task = config.get("task", {})
    added = {**ADDED_LATER, "task.template_sha256": TEMPLATES_ADDED.get(task.get("name"))}
    return _select(config, "", NOT_IDENTITY | without, added)


def _select(config: dict, prefix: str, leave_out: set, added: dict) -> dict:
    return {
        k: _select(v, f"{prefix}{k}.", leave_out, added) if isinstance(v, dict) else v
        for k, v in config.items()
        if f"{prefix}{k}" not in leave_out and added.get(f"{prefix}{k}", object()) != v
    }


def _digest(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def run_id(config: dict) -> str:
    return f"{config['model']['name']}-{config['task']['name']}-{config['method']['name']}-{_digest(_identity(config))}"


def kind_id(model: str, kind: str, identity: dict) -> str:
    """The id of a record that is not a training run (mode=serve): the model, the kind, a digest."""
    return f"{model}-{kind}-{_digest(identity)}"


def setting_id(config: dict) -> str:
    """The experiment without its seed: runs that share it are repeats, averaged in tables."""
    return _digest(_identity(config, without=frozenset({"seed"})))


def search_id(config: dict) -> str:
    """The experiment without its seed and learning rate: the runs among which the search chooses."""
    return _digest(_identity(config, without=frozenset({"seed", "method.lr"})))


def path_for(config: dict) -> Path:
    return Path(config["results_dir"]) / config["sweep_name"] / f"{run_id(config)}.json"


class RunningElsewhere(RuntimeError):
    """Another process holds the run's lock: it is running this experiment now."""


@contextmanager
def claim(path: Path):
    """Hold the lock of the run whose record is `path` (a hidden file beside it) while the run goes
    on; yields its file descriptor, which a child process may inherit to hold the lock as well.
    Raises RunningElsewhere when another process holds it. The lock goes with the last process
    holding it, however that process ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.stem}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunningElsewhere(f"{path} is being run by another process") from None
        yield fd
    finally:
        os.close(fd)


def read(path: Path) -> dict | None:
    """The record at `path`, or None. A file there that is not a record (truncated, empty, another
    program's) is moved aside, kept under a new name, with a warning naming both; it counts as no record."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        rec = json.loads(data)
        if isinstance(rec, dict) and rec.get("status") in STATUSES:
            return rec
        problem = "JSON but not a run record (an object with a known status)"
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        problem = f"not JSON ({e})" if data.strip() else "empty"
    aside = path.with_name(f"{path.name}.corrupt-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}")
    os.replace(path, aside)
    warnings.warn(f"{path} is {problem}: moved aside to {aside.name} and treated as no record", stacklevel=2)
    return None


def write(path: Path, record: dict) -> None:
    """Temporary file in the same folder, then rename: a reader sees the old record or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide records from a shared results folder
        with os.fdopen(fd, "w") as f:
            f.write(dumps(record))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dumps(record: dict) -> str:
    """The record as strict JSON."""
    return json.dumps(_finite(record), indent=2, default=str, allow_nan=False)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _finite(value):
    """The record with every NaN or infinity as null: strict JSON, which any reader accepts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new(config: dict, status: str, **fields) -> dict:
    assert status in STATUSES, status
    return {"run_id": run_id(config), "schema_version": SCHEMA_VERSION, "status": status, "error": None, **fields, "config": config}


def error_of(exc: BaseException) -> dict:
    return {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}


def should_skip(existing: dict | None, force: bool, retry_failed: bool) -> bool:
    # a refused job is estimated again: the memory it was refused for is not part of its run id
    if existing is None or force or existing.get("status") == "refused":
        return False
    return not (retry_failed and existing.get("status") in RETRYABLE)
