"""What `python -m bench` imports before it runs anything: a --help, a config error or a skipped run
answers without torch, transformers, peft, pandas or scikit-learn, which take seconds to import."""

import subprocess
import sys
from pathlib import Path

import pytest

from bench import record
from bench.compose import to_container
from tests.conftest import FAST

HEAVY = {"torch", "transformers", "peft", "pandas", "sklearn"}
ROOT = Path(__file__).resolve().parents[1]


def _bench(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `python -m bench ARGS`; the heavy packages it imported (from -X importtime's report)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    return done, imported & HEAVY


@pytest.mark.parametrize(
    ("args", "rc", "says"),
    [
        (["--help"], 0, "peft-bench"),
        (["train.batch_size=0"], 1, "train.batch_size=0 is not valid"),
        (["method=prefix_tuning", "method.num_virtual_tokens=0"], 1, "method.num_virtual_tokens=0 is not valid"),
        (["method=nosuch"], 1, "nosuch"),
    ],
)
def test_help_and_config_errors_import_nothing_heavy(tmp_path, args, rc, says):
    done, heavy = _bench(*args, f"results_dir={tmp_path}/results")
    assert done.returncode == rc and says in done.stdout + done.stderr, done.stderr[-2000:]
    assert not heavy


def test_skipped_run_imports_nothing_heavy(make_config, tmp_path):
    config = to_container(make_config())
    record.write(record.path_for(config), record.new(config, "ok"))  # a finished run of that config
    done, heavy = _bench(*FAST, f"results_dir={tmp_path}/results")
    assert done.returncode == 0 and "skip:" in done.stdout, done.stderr[-2000:]
    assert not heavy
