"""A run end to end: the record, skipping, failures, the fresh process, W&B."""

import json
import threading
import time
from pathlib import Path

import pytest

from bench import record
from bench.compose import to_container
from bench.errors import ConfigError
from bench.launch import launch
from tests.conftest import tiny_bert

RECORD_FIELDS = {
    "run_id",
    "schema_version",
    "status",
    "error",
    "started",
    "ended",
    "config",
    "params",
    "metrics",
    "memory",
    "time",
    "size",
    "latency",
    "environment",
    "data",
    "validation",
}


def _records(tmp_path):
    return sorted((tmp_path / "results" / "default").glob("*.json"))


@pytest.mark.slow  # a full run of the default model, profiled
def test_inline_run_writes_a_complete_record(make_config, tmp_path, capsys):
    rec = launch(make_config("train.profile_memory=true", "train.eval_every=1"))
    assert rec.status == "ok", rec.error
    assert RECORD_FIELDS <= set(rec.dump())
    [path] = _records(tmp_path)
    assert json.loads(path.read_text()) == json.loads(record.dumps(rec))
    assert path.stem == rec.run_id
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temporary file

    assert rec.metrics.split == "test" and rec.metrics.size == 32
    assert 0 <= rec.metrics.accuracy <= 1 and "macro_f1" in rec.metrics.model_extra
    assert [v["step"] for v in rec.validation] == [1, 2]
    assert rec.data["train"]["size"] == 64 and rec.data["task_version"] == "1"
    assert rec.time.steps == 2 and rec.time.steps_timed == 1  # the profiled step is not timed
    assert rec.memory.peak_bytes > rec.memory.analytic_bytes["weights"]
    assert "profiler" in rec.memory.measure
    assert rec.memory.analytic_bytes["optimizer_state"] == 2 * 4 * rec.params.trainable
    # the process holds the interpreter, libraries and allocator slack beside the tensors
    assert rec.memory.process_peak_rss_bytes > rec.memory.peak_bytes
    assert rec.memory.process_peak_rss_of == "this and earlier runs of a shared process"  # process=inline
    assert rec.size.bytes > 4 * rec.params.trainable  # the float32 adapter file (its JSON config not counted)
    assert "adapter_model.safetensors" in rec.size.files
    assert rec.latency.median_ms > 0 and rec.latency.merged["median_ms"] > 0
    assert rec.environment["cpu_count"] >= 1 and rec.environment["torch"]
    # per-example test results, enough to recompute the metric and to pair runs
    results = rec.per_example
    assert len(results["gold"]) == len(results["predicted"]) == 32 and len(results["fingerprint"]) == 16
    assert sum(g == p for g, p in zip(results["gold"], results["predicted"])) / 32 == rec.metrics.accuracy
    train_labels = rec.data["train"]["labels"]
    assert ["negative", "neutral", "positive"][rec.data["majority_label"]] == max(train_labels, key=train_labels.get)
    assert rec.time.examples_seen == 2 * 8 and rec.time.epochs == 16 / 64 and rec.time.tokens_seen > 16
    out = capsys.readouterr().out
    assert f"run {rec.run_id}: ok" in out and "trainable 222,723 of" in out


@pytest.mark.slow  # full runs of the default model
def test_rerun_skips_unless_forced(make_config, tmp_path, capsys):
    cfg = make_config()
    first = launch(cfg)
    again = launch(cfg)
    assert again == first
    assert "skip:" in capsys.readouterr().out
    forced = launch(make_config("force=true"))
    assert forced.run_id == first.run_id and "skip:" not in capsys.readouterr().out


@pytest.mark.slow  # full runs of the default model
def test_same_config_same_result(make_config, tmp_path):
    a = launch(make_config())
    b = launch(make_config("force=true"))
    assert a.metrics == b.metrics and a.losses == b.losses


def test_run_id_ignores_paths_logging_and_tracking(make_config):
    base = to_container(make_config())
    same = to_container(make_config("results_dir=/elsewhere", "tracking=wandb", "train.log_every=5", "process=fresh"))
    other = to_container(make_config("method.r=4"))
    assert record.run_id(base) == record.run_id(same) != record.run_id(other)


def test_keys_added_later_keep_earlier_run_ids_at_their_default(make_config):
    # the default run's id from before task.max_new_tokens, train.lr_schedule, train.early_stopping_patience
    # and method.lr_grid existed, at its learning rate of then (experiments/methods cites it)
    default = to_container(make_config("method.lr=1e-3", fast=False))
    assert record.run_id(default) == "minilm-l6-tweets-lora-01f8496c42"
    for changed in (
        "task.max_new_tokens=32",
        "train.lr_schedule=constant",
        "train.early_stopping_patience=2",
        "train.precision=bf16-mixed",
        "train.gradient_checkpointing=true",
        "model.quantize=nf4",
        "method.use_dora=true",
        "method.use_rslora=true",
        "method.init=olora",
    ):
        assert record.run_id(to_container(make_config("method.lr=1e-3", changed, fast=False))) != record.run_id(default)
    # the search's grid is where a search looks, not what a run computes
    assert record.run_id(
        to_container(make_config("method.lr=1e-3", "method.lr_grid=[1e-2]", fast=False))
    ) == record.run_id(default)
    # nor is the memory a job is checked against
    assert record.run_id(
        to_container(make_config("method.lr=1e-3", "train.memory_limit_gib=8", fast=False))
    ) == record.run_id(default)


def test_unchanged_task_templates_keep_the_ids_records_have():
    from bench.tasks import TASKS

    # the tasks whose records predate templates in the id; a task added since has its template in every id
    for name, sha in record.TEMPLATES_ADDED.items():
        # if this fails, task NAME's template changed: its runs now get new ids, as they should;
        # leave record.TEMPLATES_ADDED as it is (it names the template the old records were made with)
        assert TASKS[name].template_sha256() == sha, name


def test_an_edited_prompt_template_is_a_new_run_id(make_config, monkeypatch):
    from bench.tasks import Example, tweets

    before = record.run_id(to_container(make_config("method.lr=1e-3", fast=False)))
    assert before == "minilm-l6-tweets-lora-01f8496c42"  # as before templates were part of the id
    monkeypatch.setattr(
        tweets,
        "example",
        lambda text, sentiment: Example(
            text=text, label=tweets.LABELS.index(sentiment), prompt=f"Tweet: {text}\nThe sentiment is"
        ),
    )
    after = to_container(make_config("method.lr=1e-3", fast=False))
    assert record.run_id(after) != before and after["task"]["version"] == "1"  # the version was not bumped
    monkeypatch.setattr(tweets, "INSTRUCTION", "Label the tweet.")
    assert record.run_id(to_container(make_config("method.lr=1e-3", fast=False))) not in (before, record.run_id(after))


def test_failed_run_is_recorded_and_retried_only_when_asked(make_config, tmp_path, capsys):
    bad = ["model.source=hub", "model.hub_id=peft-bench/no-such-model"]
    rec = launch(make_config(*bad))
    assert rec.status == "failed"
    assert rec.error.type == "OSError" and "no-such-model" in rec.error.message
    assert json.loads(_records(tmp_path)[0].read_text())["status"] == "failed"
    launch(make_config(*bad))
    assert "retry_failed=true retries" in capsys.readouterr().out
    assert launch(make_config(*bad, "retry_failed=true")).status == "failed"
    assert "skip:" not in capsys.readouterr().out


@pytest.mark.slow  # full runs of the default model
def test_a_failure_leaves_other_records_intact(make_config, tmp_path):
    ok = launch(make_config())
    launch(make_config("model.source=hub", "model.hub_id=peft-bench/no-such-model"))
    records = {json.loads(p.read_text())["status"] for p in _records(tmp_path)}
    assert records == {"ok", "failed"}
    assert (
        json.loads((tmp_path / "results" / "default" / f"{ok.run_id}.json").read_text())["metrics"]
        == ok.dump()["metrics"]
    )


@pytest.mark.slow
def test_fresh_process_run_and_real_wandb_offline_run(make_config, tmp_path):
    rec = launch(make_config("process=fresh", "tracking=wandb", "method=ia3"))
    assert rec.status == "ok", rec.error
    assert rec.attempt and rec.environment["pid"]
    import os

    assert rec.environment["pid"] != os.getpid()
    assert rec.memory.process_peak_rss_of == "this run's process"
    run_dir = rec.tracking["dir"]
    assert "offline-run-" in run_dir
    [log] = list((tmp_path / "results" / "default" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert log.stat().st_size > 1000
    assert rec.run_id.encode() in log.read_bytes()  # the run is named after the record
    # the kept adapter went to W&B as a model artifact, its files staged beside the run for `wandb sync`
    kept = {p.read_bytes() for p in Path(rec.size.folder).iterdir()}
    staged = {
        p.read_bytes() for p in (tmp_path / "results" / "default" / "wandb" / "artifacts").rglob("*") if p.is_file()
    }
    assert kept <= staged and b"adapter_model.safetensors" in log.read_bytes()
    card = (Path(rec.size.folder) / "README.md").read_text()  # its model card, in the hub's format
    assert card.startswith("---\nbase_model: sentence-transformers/all-MiniLM-L6-v2\nlibrary_name: peft\n")
    assert "python -m bench model=minilm-l6 task=tweets method=ia3" in card
    # where the run's time went: every stage timed, and together they are the wall time within a few percent
    stages = rec.time.stages
    assert set(stages["seconds"]) == {
        "start",
        "data",
        "model_load",
        "training",
        "evaluation",
        "measurement",
        "tracking",
    }
    assert all(s > 0 for s in stages["seconds"].values())
    assert abs(stages["untimed_seconds"]) < 0.03 * stages["wall_seconds"], stages


@pytest.mark.slow  # a real W&B offline start
def test_the_profiled_step_never_traces_wandbs_start(make_config, tiny_models, monkeypatch):
    # the profiler traces every thread's Python calls: W&B importing and starting beside it took 14 s and
    # 1 GB of the run (experiments/wandb_profiler.md); the run waits for it before training instead
    from bench import tracking, train

    slow_start, starting_while_profiled = tracking.Tracker._start, []

    def _start(self, *args):  # the thread is named after its target: "Thread-N (_start)"
        time.sleep(3)  # a start slower than the tiny model's loading
        slow_start(self, *args)

    def profile(out):
        starting_while_profiled.append(any("(_start)" in t.name for t in threading.enumerate()))
        return measure_profile(out)

    measure_profile = train.cpu_step_profile
    monkeypatch.setattr(tracking.Tracker, "_start", _start)
    monkeypatch.setattr(train, "cpu_step_profile", profile)
    rec = launch(
        make_config(*tiny_bert(tiny_models), "tracking=wandb", "train.max_steps=1", "train.profile_memory=true")
    )
    assert rec.status == "ok", rec.error
    assert starting_while_profiled == [False] and rec.time.stages["seconds"]["tracking"] > 1


@pytest.mark.slow  # full runs of the default model
def test_wandb_failure_never_fails_the_run(make_config, monkeypatch):
    import wandb

    def broken(*args, **kwargs):
        raise RuntimeError("W&B is down")

    monkeypatch.setattr(wandb, "init", broken)
    with pytest.warns(UserWarning, match="W&B init failed"):
        rec = launch(make_config("tracking=wandb"))
    assert rec.status == "ok"
    assert rec.tracking["error"] == "init: RuntimeError: W&B is down"


@pytest.mark.slow  # full runs of the default model
def test_one_step_run_is_profiled_not_timed(make_config, capsys):
    rec = launch(make_config("train.max_steps=1", "train.profile_memory=true"))
    assert rec.status == "ok" and rec.time.steps_timed == 0 and rec.time.median_step_seconds is None
    assert rec.memory.peak_bytes > 0
    assert "not timed (the only step was the memory-profiled one)" in capsys.readouterr().out


def test_divergence_is_recorded_as_such_in_strict_json(make_config, tiny_models, tmp_path):
    rec = launch(make_config(*tiny_bert(tiny_models), "method.lr=1e30", "train.max_grad_norm=0", "train.max_steps=5"))
    assert rec.status == "diverged" and rec.error.type == "Diverged"
    assert 1 <= rec.error.step <= 5 and f"at step {rec.error.step}" in rec.error.message

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    [path] = _records(tmp_path)
    assert json.loads(path.read_text(), parse_constant=refuse)["status"] == "diverged"


@pytest.mark.parametrize("process", ["inline", "fresh"])
def test_splits_the_data_cannot_fill_are_a_config_error_with_no_record(make_config, tmp_path, process):
    # found once the data is read (before the model loads, and before W&B starts), in the run's own
    # process or told by it to its launcher: no failed record, the key named
    cfg = make_config("task.val_size=100000", "task.train_size=null", f"process={process}")
    with pytest.raises(ConfigError, match=r"task.val_size=100000 is not valid: expected test_size \+ val_size below"):
        launch(cfg)
    assert not list((tmp_path / "results").rglob("*.json"))


def test_a_run_that_runs_elsewhere_is_left_alone(make_config, tmp_path, capsys):
    cfg = make_config()
    path = record.path_for(to_container(cfg))
    with record.claim(path):  # another process running the same experiment holds its lock
        assert launch(cfg) is None
    assert "running elsewhere:" in capsys.readouterr().out
    assert not path.exists()


@pytest.mark.slow
def test_two_launchers_of_one_run_leave_one_good_record(tmp_path):
    import subprocess
    import sys

    args = [
        sys.executable,
        "-m",
        "bench",
        "train.max_steps=3",
        "train.batch_size=8",
        "task.train_size=64",
        "task.val_size=32",
        "task.test_size=32",
        "tracking=none",
        f"results_dir={tmp_path}",
        "sweep_name=c",
    ]
    both = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in both]
    assert sum("running elsewhere:" in out for out in outputs) == 1
    assert sorted(p.returncode for p in both) == [0, 1]  # the one that ran succeeded
    [path] = (tmp_path / "c").glob("*.json")
    assert json.loads(path.read_text())["status"] == "ok"


@pytest.mark.slow  # full runs of the default model
def test_a_size_that_cannot_be_measured_keeps_the_run_and_its_scores(make_config, monkeypatch):
    from bench.methods import METHODS

    def disk_full(model, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(METHODS["lora"], "save", disk_full)
    rec = launch(make_config())
    assert rec.status == "ok" and "accuracy" in rec.metrics
    assert dict(rec.size.items()) == {"bytes": None, "error": "OSError: [Errno 28] No space left on device"}


def test_a_record_that_cannot_be_written_is_printed_whole(make_config, tiny_models, monkeypatch, capsys):
    def disk_full(path, rec):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(record, "write", disk_full)
    rec = launch(make_config(*tiny_bert(tiny_models)))
    assert rec.status == "ok"
    err = capsys.readouterr().err
    assert "could not write the record" in err and "No space left on device" in err
    printed = json.loads(err.split("the record, in full:\n", 1)[1])
    assert printed["metrics"] == rec.dump()["metrics"] and printed["run_id"] == rec.run_id


@pytest.mark.slow  # a full run of the default model
def test_a_section_that_does_not_fit_the_declaration_fails_the_run_and_prints_it(make_config, monkeypatch, capsys):
    from bench import measure

    monkeypatch.setattr(measure, "stored_bytes", lambda save, model, folder: {"bytes": "a lot"})
    rec = launch(make_config())
    assert rec.status == "failed" and rec.error.type == "InvalidRecord" and "size.bytes='a lot'" in rec.error.message
    printed = capsys.readouterr().err
    assert '"bytes": "a lot"' in printed and '"accuracy"' in printed  # the scores are not lost
