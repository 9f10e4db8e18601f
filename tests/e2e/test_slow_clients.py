"""Forty clients that send half a request and wait: straight to gunicorn they make
the service deaf (each gthread thread blocks reading its client); through the
shipped nginx configuration, /healthz and a prediction are still answered."""

from __future__ import annotations

import pytest
import requests

from tests.support.data import encode_image
from tests.support.proxy import NGINX, Nginx, stalled_clients
from tests.support.server import Gunicorn
from tests.support.tiny import make_tiny_store

pytestmark = pytest.mark.slow

GENEROUS = 20  # seconds: an answer at all, not a latency


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = make_tiny_store(tmp_path_factory.mktemp("slow") / "store")
    with Gunicorn(store, workers=1, threads=4) as running:
        yield running


def answers(base: str) -> tuple[int, int]:
    health = requests.get(f"{base}/healthz", timeout=GENEROUS)
    predict = requests.post(
        f"{base}/v1/models/tiny/predict",
        data=encode_image(),
        headers={"Content-Type": "image/png"},
        timeout=GENEROUS,
    )
    return health.status_code, predict.status_code


def test_stalled_clients_straight_to_gunicorn_make_it_deaf(server):
    """What the proxy is for; the test below means something only while this holds."""
    with stalled_clients(server.port):
        with pytest.raises(requests.Timeout):
            requests.get(f"{server.base}/healthz", timeout=3)
    assert answers(server.base) == (200, 200)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx)")
def test_through_the_shipped_proxy_health_and_predictions_are_answered(server, tmp_path):
    with Nginx(tmp_path / "nginx", upstream=f"127.0.0.1:{server.port}") as proxy:
        with stalled_clients(proxy.port):
            assert answers(proxy.base) == (200, 200)
            response = requests.get(f"{proxy.base}/v1/models", timeout=GENEROUS)
            assert response.status_code == 200
            assert response.json()["models"][0]["name"] == "tiny"
        # A body over KTL_MAX_UPLOAD_MB (20): the proxy refuses it as ktl would.
        large = requests.post(
            f"{proxy.base}/v1/models/tiny/predict",
            data=b"\0" * (21 * 1024 * 1024),
            headers={"Content-Type": "image/png"},
            timeout=GENEROUS,
        )
        assert large.status_code == 413 and large.json()["code"] == "payload_too_large"
        assert "KTL_MAX_UPLOAD_MB" in large.json()["error"]
