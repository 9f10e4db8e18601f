"""``from ktl import load_bundle``: the Python API under a name that a user's own
``models.py`` in the working folder cannot shadow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # after the working folder, as installed
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_users_models_py_does_not_hide_the_api(tmp_path):
    (tmp_path / "models.py").write_text("raise SystemExit('the user models.py was imported')\n")
    assert "the user models.py" in run("from models import load_bundle", tmp_path).stderr
    done = run(
        "import sys; from ktl import load_bundle; import models; "
        "print(load_bundle.__module__, models.__file__, 'tensorflow' in sys.modules)",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["models", str(ROOT / "models" / "__init__.py"), "False"]


def test_a_models_imported_before_ktl_is_named(tmp_path):
    (tmp_path / "models.py").write_text("")
    done = run("import models, ktl", tmp_path)
    assert done.returncode == 1
    assert "a module named 'models'" in done.stderr and "hides ktl's own" in done.stderr
