"""Schemathesis against the live service's own /openapi.json: generated and
mutated requests for every operation, bounded; no answer may be a 5xx, and every
answer must match the document (status, content type, response schema).

Not checked: ``positive_data_acceptance`` (a schema-valid request must succeed).
An image is "a string, binary" to OpenAPI, so schema-valid bodies are mostly
random bytes, rightly 400; see the report for what the document could say."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.server import Gunicorn
from tests.support.tiny import make_tiny_store

pytestmark = pytest.mark.slow


def test_no_generated_request_gets_a_5xx_or_breaks_the_document(tmp_path):
    store = make_tiny_store(tmp_path / "store")
    with Gunicorn(store, threads=4, log_path=tmp_path / "server.log") as server:
        result = subprocess.run(
            [
                sys.executable, "-m", "schemathesis.cli", "run", f"{server.base}/openapi.json",
                "--max-examples", "12", "--seed", "20240101", "--workers", "2",
                "--phases", "examples,coverage,fuzzing", "--request-timeout", "20",
                "--exclude-checks", "positive_data_acceptance",
                "--report-dir", str(tmp_path / "report"),
            ],
            capture_output=True, text=True, timeout=240, cwd=tmp_path,
        )  # fmt: skip
        access = server.access_log()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert len(access) > 200, "schemathesis hardly sent anything"
    server_errors = [entry for entry in access if entry["status"] >= 500]
    assert server_errors == []
    assert "Traceback" not in (tmp_path / "server.log").read_text()
