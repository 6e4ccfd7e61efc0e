"""The prepared GPU check (bench/tools/device_check.py), dry-run on CPU: its jobs run through the ordinary
runner in bf16-mixed and its table reads their records."""

import pytest

from bench.tools import device_check


@pytest.mark.slow  # two runs of the real MiniLM
def test_the_device_check_runs_its_jobs_and_tabulates_them(tmp_path, capsys):
    code = device_check.main(
        [
            "--device",
            "cpu",
            "--steps",
            "2",
            "--models",
            "minilm-l6",
            "--methods",
            "lora",
            "ia3",
            # small: bfloat16 is slow on a CPU without it
            "process=inline",
            "train.batch_size=2",
            "task.train_size=16",
            "task.val_size=8",
            "task.test_size=8",
            "task.max_length=16",
            "train.eval_batch_size=8",
            "train.latency_samples=1",
            f"results_dir={tmp_path}",
        ]
    )
    assert code == 0
    table = (tmp_path / "device_check" / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| minilm-l6")]
    assert [r.split(" | ")[1] for r in rows] == ["lora", "ia3"] and all(" | ok | " in r for r in rows)
    records = sorted((tmp_path / "device_check").glob("*.json"))
    assert len(records) == 2 and '"precision": "bf16-mixed"' in records[0].read_text()
    assert table in capsys.readouterr().out


def test_a_bad_argument_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        device_check.main(["--models", "gpt3-175b", f"results_dir={tmp_path}"])
    assert not (tmp_path / "device_check").exists()
