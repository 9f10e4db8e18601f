"""Hostile job requests against a real gunicorn with training open (issue 26's done-when):
the tar headers that stall an unpatched ``tarfile`` (CVE-2024-6232) leave /healthz and
predictions answering, and a JSON body over KTL_MAX_UPLOAD_MB is refused unread.

The 1 s bound is no speed measurement: unguarded, the 150,000-digit header holds the
worker's GIL for 15 s or more on this virtualenv's Python 3.11.7 (the probe's prediction
then times out), the 600,000-digit one past gunicorn's 120 s timeout, while a prediction
of the 32x32 fixture model takes milliseconds."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support.archives import MB, pax_digits
from tests.support.server import Gunicorn, reset_peak_rss, rss_kib

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

ANSWER_WITHIN = 1.0  # seconds, for every /healthz and prediction while archives are posted
FEW_MB = 5 * 1024  # KiB a refused 25 MB body may cost the worker, at its peak


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Training open, no runner (nothing here should ever be trained), one worker,
    serving the checked-in bundle ``legacy`` (32x32; no TensorFlow in this process)."""
    store = tmp_path_factory.mktemp("hostile") / "store"
    shutil.copytree(FIXTURES / "store_v1", store)
    env = {"KTL_TRAINING": "open", "KTL_JOB_RUNNER": "none"}
    with Gunicorn(store, threads=4, env=env) as running:
        yield running


class Probe(threading.Thread):
    """/healthz and a prediction, one after the other, each timed, until stopped."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.base, self.stop, self.rounds = base, threading.Event(), 0
        self.slow: list[str] = []  # what answered late, wrongly or not at all
        self.image = (FIXTURES / "red.png").read_bytes()

    def run(self) -> None:
        with requests.Session() as session:
            while not self.stop.is_set():
                self._timed("GET /healthz", lambda: session.get(f"{self.base}/healthz", timeout=10))
                self._timed(
                    "predict",
                    lambda: session.post(
                        f"{self.base}/v1/models/legacy/predict",
                        data=self.image,
                        headers={"Content-Type": "image/png"},
                        timeout=10,
                    ),
                )
                self.rounds += 1

    def _timed(self, what: str, send) -> None:
        started = time.monotonic()
        try:
            status = send().status_code
        except requests.RequestException as exc:
            status = repr(exc)
        took = time.monotonic() - started
        if status != 200 or took >= ANSWER_WITHIN:
            self.slow.append(f"{what}: {status} after {took:.2f} s")

    def wait_rounds(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.rounds < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.rounds >= count


def post_archive(base: str, archive: bytes) -> tuple[int | str, dict | str]:
    """The status and JSON body of a job posted with ``archive``, or what went wrong."""
    try:
        response = requests.post(
            f"{base}/v1/jobs",
            files={"dataset": ("data.tar.gz", archive, "application/gzip")},
            data={"options": json.dumps({"name": "hostile"})},
            timeout=10,
        )
        return response.status_code, response.json()
    except (requests.RequestException, ValueError) as exc:
        return repr(exc), ""


def test_pax_headers_of_digits_leave_health_and_predictions_answering(server):
    archives = {digits: pax_digits(digits) for digits in (150_000, 600_000)}
    probe = Probe(server.base)
    probe.start()
    answers = []
    try:
        assert probe.wait_rounds(2, timeout=30), probe.slow  # warm: a first prediction compiles
        probe.slow.clear()
        deadline = time.monotonic() + 2  # post them over and over, so probes overlap
        while time.monotonic() < deadline:
            answers += [(digits, *post_archive(server.base, a)) for digits, a in archives.items()]
        probe.wait_rounds(probe.rounds + 1, timeout=10)  # a round after the last post too
    finally:
        probe.stop.set()
        probe.join(30)
    assert not probe.slow, probe.slow
    assert probe.rounds >= 5, probe.rounds
    assert {digits for digits, *_ in answers} == set(archives)
    for digits, status, body in answers:
        assert isinstance(status, int) and 400 <= status < 500, (digits, status, body)
        assert body["code"] and "CVE-2024-6232" in body["error"], body
    queue = server.store / ".queue"
    assert not queue.exists() or not any(queue.iterdir()), "a refused archive left a folder"


def test_a_25_mb_json_job_is_413_without_the_worker_reading_it(server):
    """Its Content-Length says it is over the limit: no byte of it is read into memory
    (a chunked body is read up to the limit, as any body under the limit would be)."""
    [worker] = server.workers()
    small = requests.post(f"{server.base}/v1/jobs", json={"data": "x", "options": {}}, timeout=30)
    assert small.status_code == 400, small.text  # the route's code is loaded: no first-use cost
    before = rss_kib(worker)
    reset_peak_rss(worker)
    body = b'{"data": "' + b"a" * (25 * MB) + b'", "options": {"name": "big"}}'
    response = requests.post(
        f"{server.base}/v1/jobs",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    after, peak = rss_kib(worker), rss_kib(worker, "VmHWM")
    assert response.status_code == 413, response.text
    assert response.json()["code"] and "KTL_MAX_UPLOAD_MB" in response.json()["error"]
    assert server.workers() == [worker], "the worker was replaced"
    assert before is not None and after is not None and peak is not None
    assert after - before < FEW_MB, f"VmRSS {before} -> {after} KiB"
    assert peak - before < FEW_MB, f"VmHWM {peak} KiB over VmRSS {before} KiB before the body"
