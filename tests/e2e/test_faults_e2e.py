"""Faults a real deployment meets, each bounded in time: a worker killed under
load, a corrupt bundle appearing while serving (then a good one), and a training
job interrupted by SIGINT or SIGTERM and resumed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from models.store import ModelStore
from tests import corpus
from tests.support.cli import KTL
from tests.support.data import make_colour_dataset
from tests.support.server import Gunicorn
from tests.support.tiny import make_tiny_store

pytestmark = pytest.mark.slow

PNG = corpus.image_files()[0].data


@dataclass
class Sent:
    start: float
    end: float
    status: int | None  # None: no HTTP answer (connection reset ...)
    version: int | None = None
    error: str | None = None


class Load:
    """``clients`` threads posting a PNG until stopped; every request is recorded."""

    def __init__(self, url: str, clients: int, *, keep_alive: bool):
        self.url, self.clients, self.keep_alive = url, clients, keep_alive
        self.sent: list[Sent] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(clients)]

    def _client(self) -> None:
        session = requests.Session() if self.keep_alive else None
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                # Without keep-alive every request is a new connection, so a request
                # sent after a worker died can only reach a live worker.
                post = session.post if session else requests.post
                response = post(
                    self.url, data=PNG, headers={"Content-Type": "image/png"}, timeout=30
                )
                version = response.json().get("version") if response.ok else None
                self.sent.append(Sent(start, time.monotonic(), response.status_code, version))
            except requests.RequestException as exc:
                self.sent.append(Sent(start, time.monotonic(), None, error=type(exc).__name__))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.sent) < count:
            assert time.monotonic() < deadline, f"only {len(self.sent)} requests answered"
            time.sleep(0.05)


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_killed_worker_is_replaced_and_only_its_in_flight_requests_fail(tmp_path):
    store = make_tiny_store(tmp_path / "store")
    clients = 6
    with Gunicorn(store, workers=2, threads=4, log_path=tmp_path / "server.log") as server:
        workers = wait_until(lambda: len(server.workers()) == 2 and server.workers(), 60, "2")

        def answered_by(pids) -> set[int]:
            return {
                e["pid"] for e in server.access_log() if e["status"] == 200 and e["pid"] in pids
            }

        with Load(f"{server.base}/v1/models/tiny/predict", clients, keep_alive=False) as load:
            wait_until(lambda: answered_by(workers) == set(workers), 120, "both workers serving")
            victim = workers[0]
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            replacement = wait_until(
                lambda: [p for p in server.workers() if p not in workers], 60, "a new worker"
            )[0]
            wait_until(lambda: answered_by({replacement}), 120, "the new worker serving")
            replaced_at = time.monotonic()
            sent_before_stop = len(load.sent)
            load.wait_for(sent_before_stop + 10)

        assert requests.get(f"{server.base}/readyz", timeout=10).status_code == 200
        assert sorted(server.workers()) == sorted([workers[1], replacement])

    failed = [s for s in load.sent if s.status != 200]
    assert all(s.status is None for s in failed), failed  # no 4xx or 5xx answer, ever
    assert all(s.start < killed_at for s in failed), "a request sent after the kill failed"
    assert len(failed) <= clients, f"{len(failed)} failures: more than were in flight"
    served_meanwhile = [
        s for s in load.sent if s.status == 200 and killed_at < s.start and s.end < replaced_at
    ]
    assert served_meanwhile, "the surviving worker did not answer while the new one booted"
    assert f"pid:{victim}" in server.log()


def _write_half_copied_version(store: Path, version: int) -> None:
    """What ``cp -r`` caught halfway leaves: a truncated model.keras next to a
    metadata.json whose sha256 is that of the whole file."""
    source, target = store / "tiny" / "1", store / "tiny" / str(version)
    target.mkdir()
    model = (source / "model.keras").read_bytes()
    (target / "model.keras").write_bytes(model[: len(model) // 2])
    metadata = json.loads((source / "metadata.json").read_text())
    (target / "metadata.json").write_text(json.dumps({**metadata, "version": version}))


def test_a_corrupt_version_never_serves_and_a_good_one_takes_over_without_a_failure(tmp_path):
    from models.bundle import save_bundle
    from tests.support.tiny import tiny_metadata, tiny_model

    store = make_tiny_store(tmp_path / "store")
    with Gunicorn(
        store, threads=8, reload_interval=0.3, log_path=tmp_path / "server.log"
    ) as server:
        base = server.base
        with Load(f"{base}/v1/models/tiny/predict", 6, keep_alive=True) as load:
            load.wait_for(10)
            _write_half_copied_version(store, 2)

            def listed() -> dict | None:
                [model] = requests.get(f"{base}/v1/models", timeout=10).json()["models"]
                return model if model["unavailable_versions"] else None

            model = wait_until(listed, 30, "version 2 listed as unavailable")
            assert model["default_version"] == 1 and model["status"] == "available"
            [failure] = model["unavailable_versions"]
            assert failure["version"] == 2 and "sha256" in failure["reason"]
            assert str(store) not in failure["reason"], "server paths are not for clients"
            response = requests.post(
                f"{base}/v1/models/tiny/versions/2/predict",
                data=PNG,
                headers={"Content-Type": "image/png"},
                timeout=10,
            )
            assert (response.status_code, response.json()["code"]) == (503, "model_unavailable")
            assert requests.get(f"{base}/readyz", timeout=10).status_code == 200
            load.wait_for(len(load.sent) + 20)

            version, _ = save_bundle(ModelStore(store), tiny_model(3), tiny_metadata())
            assert version == 3
            wait_until(lambda: load.sent[-1].version == 3, 30, "version 3 served")
            load.wait_for(len(load.sent) + 20)

    assert [s for s in load.sent if s.status != 200] == []
    versions = [s.version for s in sorted(load.sent, key=lambda s: s.start)]
    assert 2 not in versions
    first_three = versions.index(3)
    assert set(versions[:first_three]) == {1}
    # in-flight requests that resolved version 1 just before the swap may end after it
    assert versions[first_three:].count(1) <= 6


def _ktl_command(*args: str) -> list[str]:
    return [sys.executable, "-c", KTL, *args]


def _interrupt(args: tuple[str, ...], epochs_begun: int, signum: int, store: Path) -> tuple:
    """``ktl ARGS...`` sent ``signum`` once ``epochs_begun`` epochs of this run have begun
    (so one finished and its backup is on disk): (exit code, stdout, stderr, whether
    the model's folder ever appeared in the store while it trained)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    seen_in_store, lines = False, []
    process = subprocess.Popen(
        _ktl_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
        reader.start()
        deadline = time.monotonic() + 180
        while sum(line.startswith("Epoch ") for line in lines) < epochs_begun:
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            seen_in_store = seen_in_store or (store / "colours").exists()
            time.sleep(0.05)
        process.send_signal(signum)
        returncode = process.wait(120)
        reader.join(10)
        stdout = process.stdout.read()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        process.stdout.close()
        process.stderr.close()
    return returncode, stdout, "".join(lines), seen_in_store


def test_an_interrupted_training_job_publishes_nothing_and_resume_publishes_once(tmp_path):
    """SIGINT (Ctrl-C) in the first run, SIGTERM (a container stopped) in the resumed
    one: each exits 130 having published nothing and kept the job's state, and the
    second --resume finishes the job once, every epoch in its history once."""
    data = make_colour_dataset(tmp_path / "data", per_class=40, size=16)
    store = tmp_path / "store"
    epochs = "12"  # each run is stopped in its second epoch: ten are left to spare
    args = (
        "train", str(data), "--name", "colours", "--store", str(store), "--backbone", "smallcnn",
        "--weights", "none", "--image-size", "16", "--epochs", epochs, "--patience", epochs,
        "--batch-size", "8", "--no-augment", "--json",
    )  # fmt: skip
    for run, signum in ((args, signal.SIGINT), ((*args, "--resume"), signal.SIGTERM)):
        # The second epoch of this run has begun: the one before finished and is backed up.
        returncode, stdout, stderr, seen_in_store = _interrupt(run, 2, signum, store)
        assert returncode == 130, (signum, returncode, stdout[-500:], stderr[-4000:])
        assert "interrupted; nothing was published" in stderr
        assert "Traceback" not in stderr
        assert stdout == ""
        assert not seen_in_store and not (store / "colours").exists()
        assert ModelStore(store).names() == []
        assert not any((store / ".staging").glob("*")) if (store / ".staging").exists() else True
        assert (store / ".jobs" / "colours" / "config.json").is_file(), "the job state is kept"
    assert "Reusing the decoded images of the interrupted job" in stderr  # the resumed run's

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    resumed = subprocess.run(
        _ktl_command(*args, "--resume"), capture_output=True, text=True, env=env, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Reusing the decoded images of the interrupted job" in resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["version"] == 1
    assert ModelStore(store).versions("colours") == [1]
    assert not (store / ".jobs" / "colours").exists()
    assert sorted(p.name for p in (store / "colours").iterdir()) == ["1"]
    history = (Path(summary["path"]) / "reports" / "history.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in history[1:]] == [str(e) for e in range(1, 13)]
    shutil.rmtree(tmp_path / "data")
