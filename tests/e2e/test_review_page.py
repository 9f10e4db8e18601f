"""The review page in Chromium at 390 px and 1280 px, against a real gunicorn with
capture on and a training key: reached from the try page, it shows the captured image
with the Grad-CAM of the answer, three images are labelled with the keyboard (a
number, Enter, a number), and the labels are in the capture folder's reviews, given by
the page, without the page reaching past the screen."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
import requests

from models.capture.folder import CaptureFolder
from models.capture.review import reviews
from tests.support.browser import BAD_IMAGES, OVERFLOW, SCREENS, playwright, screen_page
from tests.support.captures import png
from tests.support.cli import ktl_here
from tests.support.patterns import scene
from tests.support.server import Gunicorn
from tests.support.trained import NAME

pytestmark = pytest.mark.slow

sync_api = playwright()
expect = sync_api.expect
KEY = "reviewer-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def served(trained_store, tmp_path_factory):
    """The session's version served with every prediction captured, after 8 distinct
    pictures were predicted; the capture folder."""
    work = tmp_path_factory.mktemp("review-page")
    store = trained_store.copy_to(work / "store")
    folder = CaptureFolder(work / "capture")
    env = {
        "KTL_CAPTURE_DIR": str(folder.root),
        "KTL_CAPTURE": "sample:1",
        "KTL_TRAIN_KEYS": KEY,
    }
    rng = np.random.default_rng(29)
    with Gunicorn(store, env=env, log_path=work / "server.log") as server:
        for n in range(8):
            reply = requests.post(
                f"{server.base}/v1/models/{NAME}/predict",
                files={"image": (f"{n}.png", png(scene(64, rng)), "image/png")},
                timeout=30,
            )
            assert reply.status_code == 200, reply.text
        queue = _queue(server.base)
        deadline = time.monotonic() + 30  # captures are written off the request path
        while queue["left"] < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
            queue = _queue(server.base)
        assert queue["left"] >= 6, queue
        yield server.base, folder


def _queue(base: str) -> dict:
    reply = requests.get(f"{base}/v1/models/{NAME}/review?limit=1", headers=AUTH, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.parametrize("screen", list(SCREENS))
def test_three_images_are_labelled_with_the_keyboard(served, screen):
    base, folder = served
    before = set(reviews(folder, NAME))
    with screen_page(sync_api, screen) as page:
        page.goto(f"{base}/")
        page.click("#review-link")
        expect(page.locator("#review")).to_have_attribute("data-state", "error")  # no key
        assert "training key" in page.inner_text("#error")
        page.fill("#api-key", KEY)
        page.press("#api-key", "Tab")  # change: the key is kept, the queue loads
        review = page.locator("#review")
        expect(review).to_have_attribute("data-state", "ready")
        assert page.input_value("#model") == NAME
        given = {}
        for key in ("1", "Enter", "2"):
            expect(page.locator("#heatmap")).to_have_attribute("src", re.compile("^blob:"))
            shown = page.get_attribute("#item", "data-id")
            left = int(review.get_attribute("data-left"))
            assert f"{left} left" in page.inner_text("#progress")
            predicted = page.get_attribute("#choices .predicted", "data-label")
            labels = [b.get_attribute("data-label") for b in page.query_selector_all(".choice")]
            assert page.evaluate(OVERFLOW) <= 0 and page.evaluate(BAD_IMAGES) == []
            page.keyboard.press(key)
            given[shown] = predicted if key == "Enter" else labels[int(key) - 1]
            expect(page.locator("#item")).not_to_have_attribute("data-id", shown)
            expect(review).to_have_attribute("data-state", "ready")
            assert int(review.get_attribute("data-left")) < left
    stored = {i: r for i, r in reviews(folder, NAME).items() if i not in before}
    for identifier, label in given.items():
        assert stored[identifier]["label"] == label and stored[identifier]["by"] == "page"
    # and ktl review sees them: labelled items, with the labels the page gave
    listed = ktl_here("review", NAME, "--capture-dir", str(folder.root), "--all", "--json")
    assert listed.returncode == 0, listed.stderr
    seen = {item["id"]: item["reviewed"] for item in json.loads(listed.stdout)["items"]}
    assert {i: seen[i] for i in given} == given
