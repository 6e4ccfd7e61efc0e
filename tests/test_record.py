"""The results store: what a file at a run's path may be, and how records are written."""

import json
import os
import stat

import pytest
from pydantic import ValidationError

from bench import record, results

CONFIG = {"model": {"name": "m"}, "task": {"name": "t"}, "method": {"name": "lora", "r": 8}, "seed": 0}


@pytest.mark.parametrize(
    "content",
    [
        b'{"run_id": "x", "status": "o',
        b"",
        b"   \n",
        b"[1, 2]",
        b'{"no": "status"}',
        b'{"status": "weird"}',
        b"\xff\xfe binary",
    ],
)
def test_a_file_that_is_not_a_record_is_moved_aside_and_counts_as_none(tmp_path, content):
    path = tmp_path / "run.json"
    path.write_bytes(content)
    with pytest.warns(
        UserWarning, match=rf"{path} is .*: moved aside to run\.json\.corrupt-\d+T\d+ and treated as no record"
    ):
        assert record.read(path) is None
    assert not path.exists()
    [aside] = tmp_path.glob("run.json.corrupt-*")
    assert aside.read_bytes() == content  # kept, never deleted


def test_records_are_readable_by_the_group_and_strict_json(tmp_path):
    path = tmp_path / "sweep" / f"{record.run_id(CONFIG)}.json"
    old = os.umask(0o022)
    try:
        record.write(
            path, record.new(CONFIG, "ok", metrics={"loss": float("nan")}, losses=[[1, 1.0], [2, float("inf")]])
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    written = json.loads(path.read_text())
    assert written["metrics"] == {"loss": None} and written["losses"] == [[1, 1.0], [2, None]]
    assert written["schema_version"] == record.SCHEMA_VERSION
    assert record.read(path).status == "ok"


def test_a_record_holds_no_nan_or_infinity_made_or_read():
    # made: as null, as the written record has it; read: a record file with one is damaged (bench/record.py)
    assert record.new(CONFIG, "ok", metrics={"loss": float("inf"), "accuracy": 0.5}).metrics.loss is None
    with pytest.raises(ValidationError, match="finite number"):
        record.parse({**record.new(CONFIG, "ok").dump(), "time": {"train_seconds": float("nan")}})


def test_a_killed_writes_temporary_file_is_removed_when_the_run_is_next_claimed(tmp_path):
    path = tmp_path / f"{record.run_id(CONFIG)}.json"
    left = tmp_path / f".{path.stem}.ab_12cd3.tmp"  # what mkstemp names a write that a SIGKILL stopped
    other = tmp_path / f".{path.stem}-other.ab_12cd3.tmp"  # another run's: that run's claim removes it
    left.write_bytes(b"")
    other.write_bytes(b"")
    with record.claim(path):
        assert not left.exists() and other.exists()


def test_a_version_1_record_in_the_store_still_loads(tmp_path):
    # the fields of a version-1 record as the runner wrote them (written twice per run, same fields)
    path = tmp_path / "sweep" / "m-t-lora-0123456789.json"
    path.parent.mkdir()
    v1 = {
        "run_id": "m-t-lora-0123456789",
        "schema_version": 1,
        "status": "ok",
        "error": None,
        "config": CONFIG,
        "params": {"total": 100, "trainable": 10, "trainable_pct": 10.0, "method": 4, "head": 6},
        "metrics": {"split": "test", "size": 2, "loss": 0.5, "accuracy": 0.5, "macro_f1": 0.25},
        "time": {
            "train_seconds": 1.5,
            "steps": 2,
            "stages": {"wall_seconds": 3.0, "seconds": {"training": 1.5}, "untimed_seconds": 0.1},
        },
    }
    path.write_text(json.dumps(v1))
    rec = record.read(path)
    assert rec.schema_version == record.SCHEMA_VERSION == 2
    assert rec.metrics.accuracy == 0.5 and rec.params.trainable == 10 and rec.time.stages.seconds == {"training": 1.5}
    frame = results.load(tmp_path)
    assert list(frame.accuracy) == [0.5] and list(frame.trainable) == [10]


def test_a_section_the_declaration_lacks_is_an_error_where_the_record_is_made():
    with pytest.raises(ValidationError, match="metricz"):
        record.new(CONFIG, "ok", metricz={"accuracy": 1.0})
    with pytest.raises(ValidationError, match="trainable"):
        record.new(
            CONFIG, "ok", params={"total": 1, "trainable": "all", "trainable_pct": 100.0, "method": 1, "head": 0}
        )


def test_a_fifo_or_a_folder_at_a_record_path_is_moved_aside_without_blocking(tmp_path):
    fifo, folder = tmp_path / "fifo.json", tmp_path / "folder.json"
    os.mkfifo(fifo)
    folder.mkdir()
    for path, kind in ((fifo, "a FIFO"), (folder, "a folder")):
        with pytest.warns(UserWarning, match=f"{path} is {kind}, not a regular file: moved aside"):
            assert record.read(path) is None
        assert not path.exists()


def test_another_runs_record_at_this_runs_path_is_not_this_run(tmp_path):
    rec = record.new(CONFIG, "ok")
    path = tmp_path / "m-t-lora-0000000000.json"
    record.write(path, rec)
    with pytest.warns(UserWarning, match=f"the record of run {rec.run_id}, not of m-t-lora-0000000000"):
        assert record.read(path) is None
    record.write(tmp_path / f"{rec.run_id}.json", rec)
    assert record.read(tmp_path / f"{rec.run_id}.json") == rec


def test_a_record_of_an_unknown_schema_version_is_not_read_as_this_one(tmp_path):
    data = {**record.new(CONFIG, "ok").dump(), "schema_version": 99}
    with pytest.raises(ValidationError, match="schema version 2"):
        record.parse(data)


def test_analysis_skips_a_fifo_in_a_sweep_folder(tmp_path):
    (tmp_path / "sweep").mkdir()
    os.mkfifo(tmp_path / "sweep" / "x.json")
    with pytest.warns(UserWarning, match="x.json: not a run record, skipped .*a FIFO, not a regular file"):
        assert len(results.load(tmp_path)) == 0
