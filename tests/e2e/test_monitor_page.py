"""The live monitor page in Chromium at 390 px and 1280 px, against a real gunicorn
with capture on: reached from the report, it gives each version's figures over the
window as the API does and draws them over time, without reaching past the screen."""

from __future__ import annotations

import pytest
import requests

from tests.support.browser import (
    CUT,
    OVERFLOW,
    SCREENS,
    playwright,
    screen_page,
)
from tests.support.server import Gunicorn
from tests.support.trained import NAME

pytestmark = pytest.mark.slow

sync_api = playwright()
expect = sync_api.expect


@pytest.fixture(scope="module")
def served(trained_store, tmp_path_factory):
    """The session's version served with capture on, after 30 predictions and feedback
    on 10 of them."""
    work = tmp_path_factory.mktemp("monitor-page")
    store = trained_store.copy_to(work / "store")
    env = {"KTL_CAPTURE_DIR": str(work / "capture"), "KTL_CAPTURE": "sample:0.2"}
    with Gunicorn(store, env=env, log_path=work / "server.log") as server:
        images = sorted(trained_store.data.glob("*/*.png"))[::4][:30]
        ids = []
        for path in images:
            reply = requests.post(
                f"{server.base}/v1/models/{NAME}/predict",
                files={"image": (path.name, path.read_bytes(), "image/png")},
                timeout=30,
            )
            assert reply.status_code == 200, reply.text
            ids.append(reply.json()["predictions"][0]["id"])
        truth = [{"id": i, "label": p.parent.name} for i, p in zip(ids, images, strict=True)]
        sent = requests.post(
            f"{server.base}/v1/models/{NAME}/feedback", json=truth[:10], timeout=30
        )
        assert sent.status_code == 200, sent.text
        yield server.base


@pytest.mark.parametrize("screen", list(SCREENS))
def test_the_monitor_page_shows_the_apis_figures_and_draws_them(served, screen):
    monitor = requests.get(f"{served}/v1/models/{NAME}/monitor?window=86400", timeout=30).json()
    [version] = monitor["versions"]
    assert version["requests"] == 30
    with screen_page(sync_api, screen) as page:
        page.goto(f"{served}/models/{NAME}/versions/1/report")
        expect(page.locator("#report")).to_have_attribute("data-state", "ready")
        page.click("#monitor-link")
        expect(page.locator("#monitor")).to_have_attribute("data-state", "ready")
        assert page.url.endswith(f"/models/{NAME}/monitor")
        cells = [c.inner_text() for c in page.query_selector_all("#versions tbody tr td")]
        assert cells[0] == "30"  # requests
        assert "10 labels" in cells[4]  # feedback accuracy with its count
        # about 6 of the 30 images captured (sample:0.2): too few for the drift test
        assert version["drift"] is None and cells[6] == f"— {version['drift_unavailable']}"
        assert page.inner_text("#legend") == "version 1"
        # every chart drew version 1: its requests' bar, the estimate's mark, feedback's ring
        assert page.locator("#requests-chart rect.bar-mark").count() >= 1
        assert page.locator("#accuracy-chart circle.mark").count() >= 1
        assert page.locator("#accuracy-chart circle.dot").count() >= 1
        assert page.locator("#abstain-chart circle.mark").count() >= 1
        assert page.evaluate(OVERFLOW) <= 0
        assert page.evaluate(CUT, True) == []
        page.select_option("#window", "3600")
        expect(page.locator("#monitor")).to_have_attribute("data-state", "ready")
        assert page.query_selector_all("#versions tbody tr td")[0].inner_text() == "30"
