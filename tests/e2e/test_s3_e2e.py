"""The whole path through a bucket, against moto's S3 server on 127.0.0.1: ``ktl
train --store s3://...`` publishes there, a 2-worker service serves it and follows a
new version, label moves and a rollback with no failed request, and polling with
nothing changed loads nothing again."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from models.store import open_store
from models.store.releases import rollback, set_label
from tests.support.cli import ktl
from tests.support.s3 import s3_server
from tests.support.server import Gunicorn
from tests.support.trained import CLI_FLAGS, NAME

pytestmark = pytest.mark.slow


def served_versions(base: str, image: bytes, tries: int = 12) -> set[int]:
    """The versions ``tries`` default predictions came from (both workers answer)."""
    seen = set()
    with requests.Session() as session:
        for _ in range(tries):
            reply = session.post(
                f"{base}/v1/models/{NAME}/predict",
                data=image,
                headers={"Content-Type": "image/png"},
                timeout=30,
            )
            assert reply.status_code == 200, reply.text
            seen.add(reply.json()["version"])
    return seen


def wait_for(base: str, image: bytes, version: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while served_versions(base, image) != {version}:
        assert time.monotonic() < deadline, f"the workers never all served version {version}"
        time.sleep(0.3)


@contextmanager
def steady_traffic(base: str, image: bytes) -> Iterator[list[int]]:
    """Requests sent one after another from a thread meanwhile: their statuses."""
    statuses: list[int] = []
    stop = threading.Event()

    def send() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                url = f"{base}/v1/models/{NAME}/predict"
                headers = {"Content-Type": "image/png"}
                statuses.append(
                    session.post(url, data=image, headers=headers, timeout=30).status_code
                )

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        yield statuses
    finally:
        stop.set()
        sender.join(60)


def loads(log: Path) -> int:
    return log.read_text().count("Loaded model")


def test_train_publishes_to_a_bucket_and_two_workers_follow_it(
    trained_store, tmp_path, monkeypatch
):
    image = next(trained_store.data.rglob("*.png")).read_bytes()
    with s3_server() as s3:
        for key, value in s3.env.items():
            monkeypatch.setenv(key, value)  # this process publishes and labels too
        url = s3.bucket()
        env = {**s3.env, "KTL_CACHE_DIR": str(tmp_path / "train-cache")}
        argv = ["train", str(trained_store.data), "--name", NAME, "--store", url, *CLI_FLAGS]
        trained = ktl(*argv, env=env)
        assert trained.returncode == 0, trained.stderr[-3000:]
        assert not list(Path.cwd().glob("s3:*")), "the URL became a local folder"
        store = open_store(url, tmp_path / "cache")
        assert store.versions(NAME) == [1]
        server_env = {**s3.env, "KTL_CACHE_DIR": str(tmp_path / "serve-cache")}
        log = tmp_path / "server.log"
        with Gunicorn(url, workers=2, reload_interval=0.3, env=server_env, log_path=log) as server:
            assert served_versions(server.base, image) == {1}
            staging = store.staging_dir(NAME)
            shutil.copytree(store.local_copy(NAME, 1), staging, dirs_exist_ok=True)
            metadata = store.read_metadata(NAME, 1).model_dump(mode="json")
            with steady_traffic(server.base, image) as statuses:
                assert store.publish(staging, NAME, metadata) == 2
                wait_for(server.base, image, 2)
                set_label(store, NAME, "stable", 1)
                wait_for(server.base, image, 1)
                set_label(store, NAME, "stable", 2)
                wait_for(server.base, image, 2)
                rollback(store, NAME)
                wait_for(server.base, image, 1)
            assert statuses and set(statuses) == {200}  # no request failed across the moves
            settled = loads(log)
            assert settled == 4  # each worker loaded version 1 and version 2, once
            time.sleep(3)  # ten polls with nothing changed
            assert served_versions(server.base, image) == {1}
            assert loads(log) == settled
