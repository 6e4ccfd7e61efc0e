"""The import rules of pyproject.toml ([tool.importlinter]): layers, analysis above bench, no cycles."""

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
