"""A multi-label version in the web pages, in Debian's chromium at 390 px and 1280
px (issue 31): the try-it page's answer is the set the API gives, each bar carries
its label's threshold mark, the model info gives mAP and micro F1; the report shows
each label's figures and its precision-recall curve, no wider than the screen."""

from __future__ import annotations

import csv
import re

import pytest
import requests

from tests.support.browser import SCREENS, playwright, screen_page
from tests.support.server import Gunicorn

pytestmark = pytest.mark.slow

sync_api = playwright()
expect = sync_api.expect


@pytest.fixture(scope="module")
def served(multilabel_store, tmp_path_factory):
    work = tmp_path_factory.mktemp("multilabel-browser")
    store = multilabel_store.copy_to(work / "store")
    with Gunicorn(store, log_path=work / "server.log") as server:
        yield server.base


@pytest.mark.parametrize("screen", list(SCREENS))
def test_the_try_page_shows_the_set_and_each_threshold(served, multilabel_store, screen):
    with open(multilabel_store.data, newline="") as f:
        first = next(csv.DictReader(f))
    image = multilabel_store.data.parent / first["path"]
    api = requests.post(
        f"{served}/v1/models/shapes/predict?top_k=5",
        files={"image": (image.name, image.read_bytes(), "image/png")},
        timeout=30,
    ).json()["predictions"][0]
    with screen_page(sync_api, screen) as page:
        page.goto(f"{served}/?model=shapes")
        expect(page.locator("#about")).to_have_attribute("data-state", "ready")
        assert re.search(r"mAP \d\.\d{3}, micro F1 \d\.\d{3}", page.inner_text("#model-info"))
        page.set_input_files("#file", str(image))
        expect(page.locator("#result")).to_have_attribute("data-state", "ready")
        answer = page.inner_text("#answer")
        labels = api["decision"]["labels"]
        assert answer.startswith(", ".join(labels) if labels else "None of these"), answer
        bars = page.query_selector_all("#bars .bar")
        marks = {
            b.get_attribute("data-label"): float(b.get_attribute("data-threshold")) for b in bars
        }
        assert marks == pytest.approx(api["decision"]["thresholds"])
        page.goto(f"{served}/models/shapes/versions/1/report")
        expect(page.locator("#report")).to_have_attribute("data-state", "ready")
        rows = page.query_selector_all("#multilabel-labels tbody tr")
        assert [r.query_selector("th").inner_text() for r in rows] == [
            "circle",
            "square",
            "triangle",
        ]
        assert page.is_hidden("#classes-section") and page.is_visible("#labels-section")
        loaded = "(img) => img.complete && img.naturalWidth > 0"
        assert page.eval_on_selector("#pr-curves", loaded)
        assert (
            page.evaluate("() => document.documentElement.scrollWidth")
            <= SCREENS[screen]["viewport"]["width"]
        )
