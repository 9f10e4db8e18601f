"""A real gunicorn running the service, for end-to-end tests: 127.0.0.1 only, a
free port, stopped by the test that started it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

import service

CONF = Path(service.__file__).resolve().parent / "gunicorn.conf.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (gunicorn's graceful stop), then SIGKILL to the whole group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@contextlib.contextmanager
def gunicorn(store: Path, work: Path, **variables: str) -> Iterator[dict]:
    """gunicorn with service/gunicorn.conf.py, started from ``work`` (outside the repo),
    serving ``store``; yields ``base`` (URL), ``process`` and ``log`` (its output)."""
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("KTL_") and key != "PYTHONPATH"
    }
    env.update(
        KTL_MODEL_STORE=str(store),
        KTL_HOST="127.0.0.1",
        KTL_PORT=str(port),
        KTL_RELOAD_INTERVAL="0.5",
        KTL_THREADS="4",
        TF_CPP_MIN_LOG_LEVEL="2",
        **variables,
    )
    log_path = work / f"server-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(CONF), "service.app:create_app()"],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so workers can be killed too
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"gunicorn exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"not ready in time:\n{log_path.read_text()}"
            try:
                if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass  # not listening yet, or the worker is still loading
            time.sleep(0.2)
        yield {"base": base, "process": process, "log": log_path, "store": store}
    finally:
        stop(process)
