"""What goes live changes under load: label moves, a canary, a promotion, a rollback
and deletions made with the real ``ktl`` command line (``cli.main``, in this process:
they touch only the store) reach a real gunicorn within its reload interval, while 16
clients send predictions and none of them fails."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest
import requests

from tests.support.cli import ktl_here
from tests.support.data import encode_image
from tests.support.server import Gunicorn
from tests.support.tiny import publish_tiny

pytestmark = pytest.mark.slow

CLIENTS = 16


class Load:
    """``CLIENTS`` threads posting predictions; every answer's status and version."""

    def __init__(self, base: str):
        self.url = f"{base}/v1/models/tiny/predict"
        self.answers: list[tuple[int, str | None]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._send, daemon=True) for _ in range(CLIENTS)]

    def _send(self) -> None:
        data = encode_image()
        with requests.Session() as session:
            while not self.stop.is_set():
                try:
                    response = session.post(
                        self.url, data=data, headers={"Content-Type": "image/png"}, timeout=60
                    )
                    self.answers.append(
                        (response.status_code, response.headers.get("X-Model-Version"))
                    )
                except requests.RequestException as exc:
                    self.answers.append((0, repr(exc)))

    def wait_for(self, wanted: Callable[[set[str]], bool], what: str) -> None:
        """Until the versions of 40 answers in a row (all sent after now) satisfy ``wanted``."""
        deadline, start = time.monotonic() + 30, len(self.answers)
        while True:
            recent = self.answers[max(start, len(self.answers) - 40) :]
            if len(recent) == 40 and wanted({version for _, version in recent if version}):
                return
            assert time.monotonic() < deadline, f"{what}: answered by {recent[-10:]}"
            time.sleep(0.1)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def test_labels_canary_promotion_rollback_and_deletion_under_load(tmp_path):
    store = tmp_path / "store"
    for seed in (1, 2, 3):
        publish_tiny(store, seed=seed)

    def run(*args: str) -> dict:
        done = ktl_here(*args, "--store", str(store), "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    with (
        Gunicorn(store, workers=2, threads=8, reload_interval=0.5) as server,
        Load(server.base) as load,
    ):
        load.wait_for(lambda seen: seen == {"3"}, "the highest version serves at first")
        assert run("label", "tiny", "stable", "2")["default_version"] == 2
        load.wait_for(lambda seen: seen == {"2"}, "stable moved to 2")
        run("label", "tiny", "canary", "3", "--weight", "0.5")
        load.wait_for(lambda seen: seen == {"2", "3"}, "the canary takes a share")
        run("label", "tiny", "canary", "--remove")
        load.wait_for(lambda seen: seen == {"2"}, "the canary ended")
        run("label", "tiny", "stable", "3")  # a promotion
        load.wait_for(lambda seen: seen == {"3"}, "3 promoted")
        assert run("rollback", "tiny")["default_version"] == 2
        load.wait_for(lambda seen: seen == {"2"}, "rolled back to 2")
        run("delete", "tiny", "--version", "3")
        refused = ktl_here("delete", "tiny", "--version", "2", "--store", str(store))
        assert refused.returncode == 2 and "--force" in refused.stderr
        assert run("delete", "tiny", "--version", "2", "--force")["default_version"] == 1
        load.wait_for(lambda seen: seen == {"1"}, "the served version deleted: 1 serves")
        (listing,) = requests.get(f"{server.base}/v1/models", timeout=30).json()["models"]
        versions = run("versions", "tiny")
    failed = [answer for answer in load.answers if answer[0] != 200]
    assert not failed, f"{len(failed)} of {len(load.answers)} requests failed: {failed[:5]}"
    assert listing["versions"] == [1] and listing["version_labels"] == {}
    assert [row["version"] for row in versions["versions"]] == [1]
    assert [move["action"] for move in versions["history"]] == [
        "set", "set", "remove", "set", "rollback", "delete",
    ]  # fmt: skip
    print(f"{len(load.answers)} answers, none failed")
