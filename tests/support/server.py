"""A real gunicorn serving ktl on 127.0.0.1 (a free port), in its own process group,
stopped by whoever started it; and what /proc says of its processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from service import GUNICORN_CONF


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_pids(master_pid: int) -> list[int]:
    """The gunicorn master's child processes (its workers), from /proc."""
    try:
        text = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text()
    except OSError:
        return []
    return sorted(int(pid) for pid in text.split())


def rss_kib(pid: int, field: str = "VmRSS") -> int | None:
    """VmRSS (or ``field``, e.g. VmHWM: the peak) of a process in KiB, from
    /proc/<pid>/status; None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss(pid: int) -> None:
    """Set a process's peak (VmHWM) back to its VmRSS: "5" to clear_refs, proc(5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class Gunicorn:
    """gunicorn with service/gunicorn.conf.py on 127.0.0.1, in its own process group.

    ``with Gunicorn(store, workers=2) as server:`` waits for /readyz, and stops it
    on exit: SIGTERM, a wait, then SIGKILL to the whole group.
    """

    def __init__(
        self,
        store: Path | str,
        *,
        workers: int = 1,
        threads: int = 4,
        reload_interval: float = 0,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        ready_timeout: float = 120,
    ):
        # A folder, or an object-storage URL as text (Path would make s3:// a folder).
        self.store = store if isinstance(store, str) else Path(store)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="ktl-gunicorn-", suffix=".log")[1])
        self.ready_timeout = ready_timeout
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("KTL_") and key != "PYTHONPATH"
        }
        self.env.update(
            KTL_MODEL_STORE=str(self.store),
            KTL_HOST="127.0.0.1",
            KTL_PORT=str(self.port),
            KTL_WORKERS=str(workers),
            KTL_THREADS=str(threads),
            KTL_RELOAD_INTERVAL=str(reload_interval),
            TF_CPP_MIN_LOG_LEVEL="2",
            **(env or {}),
        )
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def workers(self) -> list[int]:
        return worker_pids(self.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def access_log(self) -> list[dict]:
        """The JSON access log entries written so far."""
        entries = []
        for line in self.log().splitlines():
            if line.startswith('{"time"'):
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    pass  # a line cut short by a killed worker
        return entries

    def start(self) -> Gunicorn:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    str(GUNICORN_CONF),
                    "service.app:create_app()",
                ],
                cwd=self.log_path.parent,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.wait_ready(self.ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.process.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn not ready in {timeout:g} s:\n{self.log()[-4000:]}")
            try:
                if requests.get(f"{self.base}/readyz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass  # not listening yet, or the worker is still loading
            time.sleep(0.2)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
