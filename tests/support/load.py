"""Load on a live server while a test changes something under it: wrk (the C load
generator, ``apt-get install wrk``) where it is installed, so the load does not eat
the cores the server needs, else requests sent one after another from a thread.
Either way the load runs until the block ends and then says what it saw."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

# wrk sends the file KTL_LOAD_BODY as each request's body, as an image/png POST.
_SCRIPT = """local f = io.open(os.getenv("KTL_LOAD_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "image/png"
"""


@dataclass
class Load:
    """What the load saw: ``tool`` (wrk or thread), requests answered, and those that
    failed (a status other than 2xx/3xx, or a socket error or timeout)."""

    tool: str
    requests: int = 0
    failed: int = 0
    output: str = ""
    statuses: list[int] = field(default_factory=list)


@contextmanager
def load(url: str, body: bytes, work: Path, connections: int = 4) -> Iterator[Load]:
    """POST ``body`` to ``url`` until the block ends (at most 10 minutes)."""
    if shutil.which("wrk") is None:
        # (the suite turns warnings into errors, so this is said on stderr)
        print("wrk is not installed (apt-get install wrk): loading from a thread", file=sys.stderr)
        with _thread_load(url, body) as seen:
            yield seen
        return
    work.mkdir(parents=True, exist_ok=True)
    (work / "body.png").write_bytes(body)
    (work / "load.lua").write_text(_SCRIPT)
    command = ["wrk", "-t1", f"-c{connections}", "-d600s", "--timeout", "30s"]
    process = subprocess.Popen(
        [*command, "-s", str(work / "load.lua"), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"KTL_LOAD_BODY": str(work / "body.png"), "PATH": "/usr/bin:/bin"},
    )
    seen = Load("wrk")
    try:
        yield seen
    finally:
        process.send_signal(signal.SIGINT)  # wrk stops and prints its figures
        seen.output = process.communicate(timeout=60)[0]
    seen.requests, seen.failed = _wrk_counts(seen.output)


def _wrk_counts(output: str) -> tuple[int, int]:
    """Requests and failures from wrk's report."""
    answered = re.search(r"(\d+) requests in", output)
    assert answered, f"wrk printed no figures:\n{output}"
    failed = 0
    bad_status = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    if bad_status:
        failed += int(bad_status.group(1))
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if errors:
        failed += sum(int(n) for n in errors.groups())
    return int(answered.group(1)), failed


@contextmanager
def _thread_load(url: str, body: bytes) -> Iterator[Load]:
    seen = Load("thread")
    stop = threading.Event()

    def send() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    reply = session.post(
                        url, data=body, headers={"Content-Type": "image/png"}, timeout=30
                    )
                    seen.statuses.append(reply.status_code)
                except requests.RequestException:
                    seen.statuses.append(0)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        yield seen
    finally:
        stop.set()
        sender.join(60)
        seen.requests = len(seen.statuses)
        seen.failed = sum(1 for status in seen.statuses if not 200 <= status < 400)
