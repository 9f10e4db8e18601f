"""The whole path through a bucket, against moto's S3 server on 127.0.0.1: ``ktl
train --store s3://...`` publishes there, a 2-worker service serves it and follows a
new version, label moves and a rollback under wrk's load with no failed request,
and a minute of polling with nothing changed loads nothing again (/metrics)."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
import requests

from models.store import open_store
from models.store.releases import rollback, set_label
from tests.support.cli import ktl
from tests.support.load import load
from tests.support.s3 import s3_server
from tests.support.server import Gunicorn
from tests.support.trained import CLI_FLAGS, NAME

pytestmark = pytest.mark.slow

QUIET_S = 60  # the bar: no spurious reload over a minute of polling


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


def loads(base: str) -> int:
    """Model loads over both workers, as the service reports them (/metrics)."""
    text = requests.get(f"{base}/metrics", timeout=30).text
    counted = re.findall(
        r'^ktl_model_loads_total\{[^}]*outcome="loaded"[^}]*\} ([\d.e+]+)$', text, re.M
    )
    return int(sum(float(n) for n in counted))


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
            predict = f"{server.base}/v1/models/{NAME}/predict"
            with load(predict, image, tmp_path / "load") as traffic:
                assert store.publish(staging, NAME, metadata) == 2
                wait_for(server.base, image, 2)
                set_label(store, NAME, "stable", 1)
                wait_for(server.base, image, 1)
                set_label(store, NAME, "stable", 2)
                wait_for(server.base, image, 2)
                rollback(store, NAME)
                wait_for(server.base, image, 1)
            # no request failed across the moves
            assert traffic.requests > 0 and traffic.failed == 0, traffic.output
            print(f"{traffic.tool}: {traffic.requests} requests, {traffic.failed} failed")
            settled = loads(server.base)
            assert settled == 4  # each worker loaded version 1 and version 2, once
            time.sleep(QUIET_S)  # 200 polls per worker with nothing changed
            assert served_versions(server.base, image) == {1}
            assert loads(server.base) == settled
            assert log.read_text().count("Loaded model") == settled
