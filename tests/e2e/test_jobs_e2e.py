"""Training through the service, end to end: a real gunicorn whose master starts the
job runner (KTL_TRAINING=open), a zip of generated images posted to /v1/jobs, its
events followed to the end, and the new model classifying through the predict
route, with predictions answered all along, though the service is killed in the
middle of the job and started again: it finishes with exactly one published version."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.support.archives import zip_folder
from tests.support.data import colour_image, encode_image, make_colour_dataset
from tests.support.server import Gunicorn
from tests.support.tiny import make_tiny_store

pytestmark = pytest.mark.slow

OPTIONS = {"backbone": "smallcnn", "image_size": 32, "batch_size": 8, "seed": 1}


def post_job(base: str, archive: bytes, options: dict) -> dict:
    response = requests.post(
        f"{base}/v1/jobs",
        files={"dataset": ("data.zip", archive, "application/zip")},
        data={"options": json.dumps(options)},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    return response.json()


def events(base: str, job_id: str, timeout: float) -> Iterator[tuple[str, dict]]:
    """(event, data) of a job's stream until the job ends, reconnecting with
    Last-Event-ID as a browser would."""
    deadline, last_id = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        with requests.get(
            f"{base}/v1/jobs/{job_id}/events", headers=headers, stream=True, timeout=60
        ) as response:
            assert response.status_code == 200, response.text
            kind, data = None, None
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("id: "):
                    last_id = line[4:]
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and kind is not None:
                    yield kind, data
                    if kind == "state" and data["state"] in ("succeeded", "failed", "cancelled"):
                        return
                    kind = None
    raise AssertionError(f"job {job_id} did not end in {timeout:g} s")


class Predictions(threading.Thread):
    """Predict requests against the served model, one after another, while a job runs."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.base, self.statuses, self.stop = base, [], threading.Event()
        self.image = encode_image(size=(32, 32))

    def run(self) -> None:
        while not self.stop.is_set():
            response = requests.post(
                f"{self.base}/v1/models/tiny/predict",
                files={"image": ("x.png", self.image, "image/png")},
                timeout=30,
            )
            self.statuses.append(response.status_code)
            time.sleep(0.2)


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    return make_colour_dataset(tmp_path_factory.mktemp("colours"), per_class=16, size=32)


def test_a_job_over_http_survives_a_killed_service_and_its_model_classifies(tmp_path, colours):
    """One job through the service, killed in the middle: predictions are answered
    while it trains, the restarted service finishes it (attempt 2) with each epoch
    once and exactly one published version, and that version classifies."""
    store = make_tiny_store(tmp_path / "store")
    env = {"KTL_TRAINING": "open", "KTL_MAX_EVENT_STREAMS": "1"}
    options = {"name": "colours", "epochs": 12, "patience": 12, **OPTIONS}
    seen, statuses = [], []
    with Gunicorn(store, threads=4, reload_interval=1, env=env) as server:
        load = Predictions(server.base)
        load.start()
        job = post_job(server.base, zip_folder(colours), options)
        for kind, data in events(server.base, job["id"], timeout=600):
            seen.append((kind, data))
            if kind == "epoch":
                break  # one epoch finished: kill everything now
        load.stop.set()
        load.join(30)
        statuses += load.statuses
        os.killpg(server.pid, signal.SIGKILL)
        server.process.wait(30)
    record = json.loads((store / ".queue" / job["id"] / "job.json").read_text())
    assert record["state"] == "running", record["state"]  # killed in the middle
    _wait_no_training_process(store)
    with Gunicorn(store, threads=4, reload_interval=1, env=env) as server:
        load = Predictions(server.base)
        load.start()
        seen += events(server.base, job["id"], timeout=600)
        load.stop.set()
        load.join(30)
        statuses += load.statuses
        kinds = [kind for kind, _ in seen]
        final = seen[-1][1]
        assert final["state"] == "succeeded" and final["attempts"] == 2, requests.get(
            f"{server.base}/v1/jobs/{job['id']}"
        ).text
        assert kinds.count("epoch") >= 3 and kinds[-1] == "state"
        assert {"queued", "running"} & {data["state"] for kind, data in seen if kind == "state"}
        # predictions answered throughout the job, before the kill and after the restart
        assert len(statuses) >= 10 and set(statuses) == {200}, statuses
        version = final["version"]
        assert version == 1 and final["links"]["try"] == "/?model=colours&version=1"
        green = io.BytesIO()
        colour_image((20, 200, 20), 32, np.random.default_rng(7)).save(green, "PNG")
        answer = _predict_when_loaded(server.base, "colours", green.getvalue())
        assert answer["predictions"][0]["top"][0]["label"] == "green", answer
        assert not (store / ".queue" / job["id"] / "dataset").exists()
    # the epochs of both runs, each once, in order
    epochs = [row["epoch"] for row in final["epochs"]]
    assert {row["phase"] for row in final["epochs"]} == {"scratch"}
    assert epochs == list(range(1, len(epochs) + 1)), epochs
    assert sorted(p.name for p in (store / "colours").iterdir() if p.name.isdigit()) == ["1"]
    log = (store / ".queue" / job["id"] / "log.txt").read_text()
    assert "Resuming the interrupted job" in log


def _predict_when_loaded(base: str, name: str, image: bytes) -> dict:
    """Predict with a model the hot reload is about to load."""
    deadline = time.monotonic() + 60
    while True:
        response = requests.post(
            f"{base}/v1/models/{name}/predict",
            files={"image": ("x.png", image, "image/png")},
            timeout=30,
        )
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            return response.json()
        time.sleep(0.5)


def _wait_no_training_process(store: Path) -> None:
    """The runner and its child die with the master (PDEATHSIG); give them a moment."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alive = [
            pid
            for pid in os.listdir("/proc")
            if pid.isdigit()
            and _cmdline(pid).count("training.jobs.runner")
            and str(store) in _cmdline(pid)
        ]
        if not alive:
            return
        time.sleep(0.5)
    raise AssertionError(f"training processes outlived the killed service: {alive}")


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_open_event_streams_leave_threads_for_predictions(tmp_path, colours):
    """Five open /train pages on a worker of 4 threads: two streams are served, three
    are told to come back (503), and predictions are answered at once all along."""
    store = make_tiny_store(tmp_path / "store")
    env = {"KTL_TRAINING": "open", "KTL_JOB_RUNNER": "none"}  # the job stays queued
    with Gunicorn(store, threads=4, env=env) as server:
        job = post_job(server.base, zip_folder(colours), {"name": "colours", **OPTIONS})
        url = f"{server.base}/v1/jobs/{job['id']}/events"
        streams = [requests.get(url, stream=True, timeout=30) for _ in range(5)]
        try:
            statuses = sorted(response.status_code for response in streams)
            assert statuses == [200, 200, 503, 503, 503], statuses
            image = encode_image(size=(32, 32))
            for _ in range(5):
                started = time.monotonic()
                response = requests.post(
                    f"{server.base}/v1/models/tiny/predict",
                    files={"image": ("x.png", image, "image/png")},
                    timeout=10,
                )
                assert response.status_code == 200
                assert time.monotonic() - started < 5
        finally:
            for response in streams:
                response.close()
