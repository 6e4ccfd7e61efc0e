"""The results store: what a file at a run's path may be, and how records are written."""

import json
import os
import stat

import pytest

from bench import record


@pytest.mark.parametrize("content", [b'{"run_id": "x", "status": "o', b"", b"   \n", b"[1, 2]", b'{"no": "status"}',
                                     b'{"status": "weird"}', b"\xff\xfe binary"])
def test_a_file_that_is_not_a_record_is_moved_aside_and_counts_as_none(tmp_path, content):
    path = tmp_path / "run.json"
    path.write_bytes(content)
    with pytest.warns(UserWarning, match=rf"{path} is .*: moved aside to run\.json\.corrupt-\d+T\d+ and treated as no record"):
        assert record.read(path) is None
    assert not path.exists()
    [aside] = tmp_path.glob("run.json.corrupt-*")
    assert aside.read_bytes() == content  # kept, never deleted


def test_records_are_readable_by_the_group_and_strict_json(tmp_path):
    path = tmp_path / "sweep" / "run.json"
    old = os.umask(0o022)
    try:
        record.write(path, {"status": "ok", "loss": float("nan"), "curve": [1.0, float("inf")]})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert json.loads(path.read_text()) == {"status": "ok", "loss": None, "curve": [1.0, None]}
    assert record.read(path)["status"] == "ok"
