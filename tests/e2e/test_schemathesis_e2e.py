"""Schemathesis against the live service's own /openapi.json: generated and
mutated requests for every operation, every check, bounded. No answer may be a
5xx, every answer must match the document (status, content type, headers,
schema), and a request the document allows must not be refused, except for the
few refusals listed in schemathesis_hooks.py, which the document can only state
in words (an image's bytes, a tensor's element count, ...)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import Gunicorn
from tests.support.tiny import make_tiny_store

pytestmark = pytest.mark.slow

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
CONFIG = Path(__file__).with_name("schemathesis.toml")
CHECK = "positive_data_acceptance_but_what_openapi_cannot_state"


def test_no_generated_request_gets_a_5xx_breaks_the_document_or_is_wrongly_refused(tmp_path):
    store = make_tiny_store(tmp_path / "store")
    with Gunicorn(store, threads=4, log_path=tmp_path / "server.log") as server:
        result = subprocess.run(
            [
                sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG),
                "run", f"{server.base}/openapi.json",
                "--checks", "all",
                # Replaced by the hooks' version, which knows what the document cannot say.
                "--exclude-checks", "positive_data_acceptance",
                "--max-examples", "12", "--seed", "20240101",
                # One worker: with two, hypothesis' lambda descriptions run ast.parse in two
                # threads at once, and CPython 3.11.7's AST builder keeps its recursion depth
                # per interpreter, not per thread: "SystemError: AST constructor recursion
                # depth mismatch" (cpython#106905), now and then.
                "--workers", "1",
                "--phases", "examples,coverage,fuzzing", "--request-timeout", "20",
                "--report", "ndjson", "--report-ndjson-path", str(tmp_path / "events.ndjson"),
            ],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
        )  # fmt: skip
        access = server.access_log()
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert CHECK in (tmp_path / "events.ndjson").read_text(), "the hooks' check did not run"
    assert len(access) > 200, "schemathesis hardly sent anything"
    server_errors = [entry for entry in access if entry["status"] >= 500]
    assert server_errors == []
    assert "Traceback" not in (tmp_path / "server.log").read_text()
