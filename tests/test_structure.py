"""The rules of pyproject.toml for the whole tree: imports in layers with no cycles (import-linter), lint and
format (ruff)."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    """The console script beside this interpreter (the project's environment), else on PATH."""
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else shutil.which(name) or name


def test_import_contracts_are_kept():
    out = subprocess.run([_tool("lint-imports")], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_the_tree_passes_ruff_and_is_formatted():
    for args in (["check", "."], ["format", "--check", "."]):
        out = subprocess.run([_tool("ruff"), *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
