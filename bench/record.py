"""The run record and the results store: one JSON file per run under <results_dir>/<sweep_name>/.

`Record` declares the record once: the runner, mode=count and mode=serve build one, `write` writes it
(atomically, once, at the end of a run) and `read` and analysis parse files back through it, so a field
that one side names and the other does not is an error where it is made, not a blank in a table. The
sections that analysis reads are typed to the key; those that tools produce for people (the estimate,
the environment, the data's description) are objects of their own module's making.

The run id hashes only the fields that define the experiment, so the same experiment finds its
record again whatever the paths, logging or process settings were.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import stat
import sys
import tempfile
import traceback
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
)

from bench.names import check_component

# 2: the record is declared by `Record` and written once per run; version 1 records have the same fields
SCHEMA_VERSION = 2
# refused: estimated not to fit the memory available (bench/fit.py), so stopped before loading anything
STATUSES = ("ok", "failed", "oom", "diverged", "not_applicable", "refused")
Status = Literal["ok", "failed", "oom", "diverged", "not_applicable", "refused"]
# JSON numbers, or null where a value was NaN or infinite (strict JSON has neither); a string or a boolean
# where a number belongs is an error, and so is an integer no float can hold (a 400-digit "accuracy")
Number = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63)] | Annotated[float, Strict(), AllowInfNan(False)] | None
# every score the harness computes (bench/metrics.py) is a fraction: -7.5 or 1e999 as an accuracy is a damaged record
Fraction = Annotated[int, Strict(), Field(ge=0, le=1)] | Annotated[float, Strict(), Field(ge=0, le=1)] | None


class Section(BaseModel):
    """A part of the record: its declared keys typed, and further keys a producer adds kept as they are. Read
    as an object (`rec.metrics.accuracy`) or as a mapping of the keys it holds (`rec.metrics["accuracy/add"]`:
    a task's per-category metrics are named with a slash)."""

    model_config = ConfigDict(extra="allow", strict=True)

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: str) -> bool:
        return key in self.model_fields_set or key in (self.model_extra or {})

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def items(self):
        return self.model_dump(exclude_unset=True).items()


class Numbers(Section):
    """A section whose further keys are numbers (a task's metrics, a device's memory counters)."""

    __pydantic_extra__: dict[str, Number]


class Error(Section):
    type: str
    message: str
    traceback: str | None = None
    step: StrictInt | None = None  # diverged: the step whose loss was not finite


class Params(Numbers):
    total: StrictInt
    trainable: StrictInt
    trainable_pct: Number
    method: StrictInt
    head: StrictInt


class Metrics(Section):
    """A split's scores, by metric (and metric/category: `accuracy/add`), beside the loss."""

    __pydantic_extra__: dict[str, Fraction]
    split: str | None = None
    size: StrictInt | None = None
    loss: Number = None


class Stages(Section):
    wall_seconds: Number
    seconds: dict[str, Number]
    untimed_seconds: Number


class Time(Numbers):
    train_seconds: Number = None
    steps: StrictInt | None = None
    steps_timed: StrictInt | None = None
    median_step_seconds: Number = None
    tokens_per_second: Number = None
    eval_seconds: Number = None
    examples_seen: StrictInt | None = None
    tokens_seen: StrictInt | None = None
    best_step: StrictInt | None = None
    epochs: Number = None
    shared_process: StrictBool | None = None
    concurrent_jobs: StrictInt | None = None
    shared_machine: StrictBool | None = None
    machine: dict[str, Any] | None = None
    stages: Stages | None = None


class Memory(Numbers):
    measure: str | None = None
    peak_bytes: StrictInt | None = None
    peak_reserved_bytes: StrictInt | None = None  # CUDA: what the caching allocator held
    breakdown_at_peak: dict[str, Number] | None = None
    analytic_bytes: dict[str, Number] | None = None
    process_peak_rss_bytes: StrictInt | None = None
    process_peak_rss_of: str | None = None


class Utilisation(Section):
    flops_per_token: Number = None
    achieved_flops_per_second: Number = None
    peak_flops_per_second: Number = None
    peak_from: str | None = None
    fraction: Number = None


class Size(Section):
    bytes: StrictInt | None = None
    files: dict[str, StrictInt] | None = None
    folder: str | None = None
    error: str | None = None


class Latency(Numbers):
    batch_size: StrictInt | None = None
    tokens: StrictInt | None = None
    samples: StrictInt | None = None
    median_ms: Number = None
    p90_ms: Number = None
    merged: dict[str, Number] | None = None  # a LoRA or IA3 model with its update merged into the weights


class Inference(Numbers):
    """Per test query: what answering it costs (bench/runner.py, `inference_cost`)."""

    queries: StrictInt | None = None
    prompt_tokens: Number = None  # mean prompt tokens (few-shot: demonstrations included; soft prompts counted)
    read_tokens: Number = None  # mean tokens the model reads to answer: a row per choice when ranking
    flops: Number = None  # analytic forward FLOPs to answer (bench/utilisation.py)
    seconds: Number = None  # measured: the test evaluation's wall time over its queries, in eval batches


class Forgetting(Numbers):
    score: Number = None
    reason: str | None = None
    sample: str | None = None


class Record(BaseModel):
    """One run's record (also a count's and a serving measurement's, which fill other sections)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    run_id: str
    schema_version: StrictInt = SCHEMA_VERSION
    status: Status
    error: Error | None = None
    attempt: str | None = None  # which launch of the run wrote it (the parent reads its child's record by it)
    started: str | None = None
    ended: str | None = None
    tracking: dict[str, Any] | None = None  # bench/tracking.py: backend, mode, the W&B run folder, any error
    estimate: dict[str, Any] | None = None  # bench/fit.py: the memory estimated before loading
    model_source: str | None = None
    params: Params | None = None
    data: dict[str, Any] | None = None  # the task's splits and labels as read
    metrics: Metrics | None = None  # on the test split
    per_example: dict[str, Any] | None = None  # what intervals and paired tests are computed from
    predictions: list[dict[str, Any]] | None = None  # the first test examples with the model's answers
    forgetting: Forgetting | None = None
    validation: list[dict[str, Any]] | None = None  # every validation during training, then the final one
    time: Time | None = None
    losses: list[list[Number]] | None = None  # [step, training loss] as logged
    utilisation: Utilisation | None = None
    memory: Memory | None = None
    size: Size | None = None
    latency: Latency | None = None
    inference: Inference | None = None
    environment: dict[str, Any] | None = None
    count: dict[str, Any] | None = None  # mode=count: how the parameters were counted (bench/count.py)
    serve: dict[str, Any] | None = None  # mode=serve: the serving measurement (bench/serve.py)
    config: dict[str, Any]

    @field_validator("schema_version")
    @classmethod
    def _known(cls, version: int) -> int:
        if version != SCHEMA_VERSION:  # version 1 is migrated by `parse` before this
            raise ValueError(f"schema version {SCHEMA_VERSION} (a record of another version of peft-bench)")
        return version

    @field_validator("config")
    @classmethod
    def _names(cls, config: dict) -> dict:
        if not all(
            isinstance(config.get(g), dict) and isinstance(config[g].get("name"), str)
            for g in ("model", "task", "method")
        ):
            raise ValueError("a config with model, task and method names")
        return config

    def dump(self) -> dict:
        """The record as JSON data: the fields that were set, so a failed run's record holds no empty sections."""
        return self.model_dump(exclude_unset=True)


def parse(data: Any) -> Record:
    """A parsed JSON value as a record, of this version or an earlier one (raises ValidationError)."""
    if isinstance(data, dict) and data.get("schema_version") == 1:
        data = {**data, "schema_version": SCHEMA_VERSION}  # version 1 had the same fields, written twice per run
    return Record.model_validate(data)


RETRYABLE = ("failed", "oom")  # rerun by retry_failed=true

# config keys that change where or how a run is reported or measured, never what it computes
NOT_IDENTITY = {
    "results_dir",
    "sweep_name",
    "process",
    "force",
    "retry_failed",
    "keep_full_copies",
    "tracking",
    "model.source",
    "model.package",
    "model.package_dir",
    "model.asset",
    "model.config",  # the architecture as written for mode=count; the weights define it in a run
    "method.lr_grid",  # where the learning-rate search looks; each run's own lr is its identity
    "mode",  # count records live apart from run records
    "serve",  # settings of mode=serve (bench/serve.py), whose records have their own ids
    "task.data_dir",
    "task.hub_id",  # where the same data is read from
    "train.log_every",
    "train.profile_memory",
    "train.latency_samples",
    "train.timing_warmup",
    "train.eval_batch_size",
    "train.memory_limit_gib",  # what the fit check compares with before loading
}


# keys added after records existed: at these values (their defaults) they leave a run id as it was,
# so earlier results keep being found (and skipped) by the same command
ADDED_LATER = {
    "model.quantize": "none",
    "model.double_quant": True,
    "model.compute_dtype": "float32",
    "model.weights": "pretrained",
    "model.tokenizer": None,
    "method.use_dora": False,
    "method.use_rslora": False,
    "method.init": "default",
    "method.lr_ratio": 1.0,
    "method.adalora": False,
    "method.init_r": None,
    "task.max_new_tokens": 16,
    "train.lr_schedule": "linear",
    "train.early_stopping_patience": 0,
    "train.optimizer": "adamw",
    "train.optimizer_args": {},
    "train.precision": "fp32",
    "train.gradient_checkpointing": False,
    "train.group_by_length": False,
}
# each task's prompt-template digest (task.template_sha256) when it joined the run id: runs of a task
# whose template is still this one keep their ids; an edited template gives new ones
TEMPLATES_ADDED = {
    "arithmetic": "dd11c882d2aadb7c",
    "imdb": "a106df2895114657",
    "sst2": "1e09ad32b7df0612",
    "boolq": "add16ca76fe91f6a",
    "cb": "c486d15b7475f7d3",
    "rte": "0f84b7319a202ca0",
    "wic": "6668f4a99a8ec8c3",
    "wsc": "0804b9bb115a9e88",
    "copa": "d8d9ae7a37231f0a",
    "multirc": "7330297d1ec629a7",
    "record": "85fa8a5cdddc25e0",
    "tweets": "f1d48b2931fd6cf4",
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
    return id_without(config, "seed", "method.lr")


def id_without(config: dict, *keys: str) -> str:
    """The experiment without the (dotted) `keys`: runs that differ there alone share it."""
    return _digest(_identity(config, without=frozenset(keys)))


def path_for(config: dict) -> Path:
    """Where the record of `config` goes; a model or sweep name that is not one plain path component is a
    ConfigError here too, so that no caller (a sweep recording a bad config) can write outside the store."""
    check_component("model.name", config["model"]["name"])
    check_component("sweep_name", config["sweep_name"])
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
        _remove_leftovers(path)
        yield fd
    finally:
        os.close(fd)


def _remove_leftovers(path: Path) -> None:
    """The temporary files of writes to `path` that a killed process left (`write`'s): with the run's lock
    held, no write of it is under way."""
    left = re.compile(rf"\.{re.escape(path.stem)}\.[a-z0-9_]{{8}}\.tmp")  # mkstemp's names, as `write` asks
    for f in path.parent.iterdir():
        if left.fullmatch(f.name):
            f.unlink(missing_ok=True)


# no record comes near this (a run's per-example results for 100,000 test examples are about 2 MB)
MAX_RECORD_BYTES = 256 * 2**20


class NotARecordFile(ValueError):
    """A path in the store that is no regular file (a folder, a FIFO, a device) or larger than any record."""


def read_bytes(path: Path) -> bytes:
    """A file of the store, read only when it is a regular file, and never more than MAX_RECORD_BYTES: a FIFO
    opened for reading would block forever, a device never end. FileNotFoundError where there is none."""
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a special file"
        raise NotARecordFile(f"{kind}, not a regular file")
    with open(path, "rb") as f:
        data = f.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise NotARecordFile(f"larger than {MAX_RECORD_BYTES:,} bytes, more than any record")
    return data


def read(path: Path) -> Record | None:
    """The record at `path`, or None. A file there that is not a record (truncated, empty, another
    program's, a folder or a FIFO) is moved aside, kept under a new name, with a warning naming both; it
    counts as no record."""
    try:
        data = read_bytes(path)
        parsed = json.loads(data)
        rec = parse(parsed)
        if rec.run_id == path.stem:
            return rec
        problem = f"the record of run {rec.run_id}, not of {path.stem} (copied or renamed)"
    except FileNotFoundError:
        return None
    except NotARecordFile as e:
        problem = str(e)
    except ValidationError as e:
        problem = f"JSON but not a run record ({mismatch(e, parsed)})"
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        problem = f"not JSON ({e})" if data.strip() else "empty"
    aside = path.with_name(f"{path.name}.corrupt-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}")
    os.replace(path, aside)
    warnings.warn(f"{path} is {problem}: moved aside to {aside.name} and treated as no record", stacklevel=2)
    return None


def mismatch(e: ValidationError, data: Any) -> str:
    """The first mismatch pydantic found, as `key.path=value: what was expected`. Of a union's answers for one
    value, the member of the right type says why (-7.5 as an accuracy: "greater than or equal to 0", not "a number")."""
    errors = [(_located(error["loc"], data), error) for error in e.errors()]
    (path, value), first = errors[0]
    error = next(
        (x for (p, _), x in errors if p == path and not x["type"].endswith("_type") and x["type"] != "none_required"),
        first,
    )
    expected = "a number" if error["type"] in ("int_type", "float_type") else error["msg"].lower()
    return f"{'.'.join(path) or 'the record'}={_short(value)} is not valid: {expected}"


def _located(loc: tuple, data: Any) -> tuple[list[str], Any]:
    """The keys of `loc` down the data as far as it goes (the rest name union members), and the value there."""
    path, value = [], data
    for key in loc:
        if (
            isinstance(value, dict)
            and key in value
            or isinstance(value, list)
            and isinstance(key, int)
            and key < len(value)
        ):
            path.append(str(key))
            value = value[key]
        else:
            break
    return path, value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def write(path: Path, record: Record) -> None:
    """Temporary file in the same folder, then rename: a reader sees the old record or the new one."""
    write_text(path, dumps(record))


def write_text(path: Path, text: str) -> None:
    """A file of the store (a record, a scoring beside them), written as `write` writes records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide records from a shared results folder
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def keep(path: Path, rec: Record) -> bool:
    """Write the record; where that fails (a full disk, a folder gone), print it whole with the
    reason, so that a finished run's numbers are never lost. False when it could not be written."""
    try:
        write(path, rec)
    except OSError as e:
        print(f"error: could not write the record {path}: {e}\nthe record, in full:\n{dumps(rec)}", file=sys.stderr)
        return False
    return True


def dumps(record: Record) -> str:
    """The record as strict JSON."""
    return json.dumps(_finite(record.dump()), indent=2, allow_nan=False)


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


def new(config: dict, status: str, **fields) -> Record:
    """The record of `config` ending with `status`, its sections given as JSON-like data (numpy numbers and
    tuples as JSON has them); a section or key the declaration does not have is an error here."""
    fields = json.loads(
        json.dumps(
            {
                "run_id": run_id(config),
                "schema_version": SCHEMA_VERSION,
                "status": status,
                "error": None,
                **fields,
                "config": config,
            },
            default=_plain,
        )
    )
    return Record.model_validate(_finite(fields))  # NaN and infinity as the written record holds them


def _plain(value):
    """JSON for what records hold beside JSON's own types (numpy scalars, paths)."""
    if hasattr(value, "item"):  # numpy and torch scalars
        return value.item()
    return str(value)  # a path, or anything else, as its text: a record is never lost to a value JSON lacks


def error_of(exc: BaseException) -> dict:
    return {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}


def should_skip(existing: Record | None, force: bool, retry_failed: bool) -> bool:
    # a refused job is estimated again: the memory it was refused for is not part of its run id
    if existing is None or force or existing.status == "refused":
        return False
    return not (retry_failed and existing.status in RETRYABLE)
