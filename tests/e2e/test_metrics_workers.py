"""With several gunicorn workers, one scrape of /metrics counts the requests of all of
them, each exactly once, whichever worker answers the scrape."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.data import encode_image
from tests.support.server import Gunicorn
from tests.support.tiny import make_tiny_store

pytestmark = pytest.mark.slow


def samples(base: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = requests.get(f"{base}/metrics", timeout=30).text
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_two_workers_count_every_request_exactly_once(tmp_path):
    store = make_tiny_store(tmp_path / "store")
    metrics = tmp_path / "metrics"  # the operator's folder: emptied at start
    metrics.mkdir()
    (metrics / "counter_4242.db").write_bytes(b"figures of an earlier run")
    with Gunicorn(store, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics)}) as server:
        sent = 0
        with ThreadPoolExecutor(8) as pool:
            # New connections, several at once, until both workers have answered some.
            while len({e["pid"] for e in server.access_log() if e["path"] == "/healthz"}) < 2:
                assert sent < 800, "one worker took every connection"
                codes = pool.map(
                    lambda _: requests.get(f"{server.base}/healthz", timeout=30).status_code,
                    range(20),
                )
                assert set(codes) == {200}
                sent += 20
            instances = {"instances": [{"b64": base64.b64encode(encode_image()).decode()}]}
            predicted = [
                requests.post(
                    f"{server.base}/v1/models/tiny:predict", json=instances, timeout=30
                ).status_code
                for _ in range(10)
            ]
        assert set(predicted) == {200}
        assert not (metrics / "counter_4242.db").exists()
        key = (("method", "GET"), ("route", "/healthz"), ("status", "200"))
        by_version = (("model", "tiny"), ("version", "1"), ("via", "default"))
        for _ in range(6):  # whichever worker answers the scrape
            assert samples(server.base, "ktl_http_requests_total")[key] == sent
            assert samples(server.base, "ktl_model_requests_total")[by_version] == 10
            durations = samples(server.base, "ktl_http_request_duration_seconds_count")
            assert durations[(("method", "GET"), ("route", "/healthz"))] == sent
        scrapers = {e["pid"] for e in server.access_log() if e["path"] == "/metrics"}
    print(f"{sent} requests over workers {sorted(scrapers)}: each counted once")
