"""The import rules of pyproject.toml's ``[tool.importlinter]``, run as ``make lint`` runs
them: the real tree keeps them, and a copy of it with a forbidden import breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ktl", "models", "training", "service", "cli")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` in ``cwd``: it reads cwd's pyproject.toml and imports from cwd."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def copy_of_the_tree(to: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", to)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, to / package, ignore=shutil.ignore_patterns("__pycache__"))
    return to


def test_the_tree_keeps_the_import_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "refusal"),
    [
        ("models/errors.py", "import training.config", "models is not allowed to import training"),
        (
            "models/store/versions.py",
            "from service import config",
            "models is not allowed to import service",
        ),
        ("service/config.py", "import training.job", "service is not allowed to import training"),
        (
            "training/config.py",
            "from service.config import ServiceConfig",
            "training is not allowed to import service",
        ),
        ("service/app.py", "import cli", "service is not allowed to import cli"),
        # The one exception is training/__main__.py's, not training's.
        ("training/job.py", "from cli import main", "training is not allowed to import cli"),
        # Imports inside functions count: deferring one does not hide it.
        (
            "models/bundle.py",
            "def _later():\n    import service.app",
            "models is not allowed to import service",
        ),
    ],
)
def test_a_forbidden_import_breaks_the_contracts(tmp_path, module, line, refusal):
    tree = copy_of_the_tree(tmp_path)
    path = tree / module
    path.write_text(f"{path.read_text()}\n\n{line}\n")
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert refusal in result.stdout
    assert f"{module.removesuffix('.py').replace('/', '.')} ->" in result.stdout


def test_make_lint_runs_the_import_contracts():
    lint = (ROOT / "Makefile").read_text().split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "lint-imports" in lint
