"""The GPU check (bench/tools/device_check.py), dry-run on CPU: its jobs (the real encoder's correctness point,
then random-weight models) run through the ordinary runner in bf16-mixed and its table reads their records; and
what travels to the GPU (bench/tools/gpu_bundle.py) is prepared, installable for the GPU's Python, and small enough."""

import json
import subprocess
import sys

import pytest

from bench.tools import device_check, gpu_bundle


@pytest.mark.slow  # three runs of a MiniLM-shaped model
def test_the_device_check_runs_its_jobs_and_tabulates_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PEFT_BENCH_CACHE", str(tmp_path / "cache"))  # the random weights are built here
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
            "qlora",
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
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| minilm-l6")]
    assert [r[0] for r in rows] == ["| minilm-l6 real weights lora", "| minilm-l6 lora", "| minilm-l6 qlora"]
    assert all(r[1] == "ok" and r[10] != "-" for r in rows)  # every job measured its peak against its estimate
    records = {
        json.loads(p.read_text())["config"]["model"]["weights"]
        + " "
        + json.loads(p.read_text())["config"]["model"]["quantize"]
        for p in (tmp_path / "device_check").glob("*.json")
    }
    assert records == {"pretrained none", "random none", "random nf4"}
    assert list((tmp_path / "cache" / "random").glob("minilm-l6-*/model.safetensors"))
    assert table in capsys.readouterr().out


def test_a_bad_argument_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        device_check.main(["--models", "gpt3-175b", f"results_dir={tmp_path}"])
    assert not (tmp_path / "device_check").exists()


@pytest.mark.slow  # downloads about 50 MB of wheels from the registry
def test_the_bundle_fits_what_may_travel_and_installs_for_the_gpus_python(tmp_path, capsys):
    assert gpu_bundle.main(["--out", str(tmp_path / "bundle")]) == 0
    assert "of the 64 MiB that may travel" in capsys.readouterr().out
    wheels = sorted((tmp_path / "bundle" / "wheels").glob("*.whl"))
    names = {w.name.split("-")[0].lower().replace("_", "-") for w in wheels}
    assert names == set(gpu_bundle.WHEELS)
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(site)]
    subprocess.run([*pip, "--only-binary=:all:", *gpu_bundle.PLATFORM, *map(str, wheels)], check=True)
    libraries = {p.name for p in (site / "bitsandbytes").glob("*.so")}
    assert libraries == {"libbitsandbytes_cpu.so", f"libbitsandbytes_cuda{gpu_bundle.CUDA}.so"}
    assert (tmp_path / "bundle" / "models" / "minilm-l6" / "model.safetensors").stat().st_size < 50e6  # bfloat16
    assert {p.name for p in (tmp_path / "bundle" / "tokenizers").iterdir()} == set(gpu_bundle.TOKENIZERS)
