"""The web pages in a real browser: Debian's chromium driven by Playwright, against
a live gunicorn on 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from tests.support.data import make_colour_dataset
from tests.support.server import Gunicorn
from training.config import build_config
from training.job import run_job

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(
        "chromium is not installed (apt-get install chromium; make test does it where it can)",
        allow_module_level=True,
    )

# What a root CI machine with no network needs: no sandbox, no background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("browser")
    data = make_colour_dataset(work / "data", per_class=12, size=24)
    flags = {
        "data": str(data), "name": "colours", "store": str(work / "store"), "backbone": "smallcnn",
        "weights": "none", "image_size": 24, "epochs": 12, "batch_size": 8,
    }  # fmt: skip
    run_job(build_config({}, flags), log=lambda message: None)
    with Gunicorn(work / "store", log_path=work / "server.log") as server:
        yield {"base": server.base, "data": data, "work": work}


@pytest.fixture(scope="module")
def page(served):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        # bypass_csp: Playwright polls its waits with eval, which the page policy forbids.
        context = browser.new_context(
            viewport={"width": 390, "height": 844}, bypass_csp=True
        )  # a phone
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def test_upload_shows_the_same_answer_as_the_api(served, page):
    image = served["data"] / "green" / "green_003.png"
    page.goto(served["base"] + "/")
    page.wait_for_selector("#model option[value=colours]", state="attached")
    page.wait_for_selector("#model-info dd")
    assert "smallcnn" in page.inner_text("#model-info")
    page.set_input_files("#file", str(image))
    page.wait_for_selector("#bars .bar")
    bars = page.query_selector_all("#bars .bar")
    shown = [
        (bar.get_attribute("data-label"), float(bar.get_attribute("data-probability")))
        for bar in bars
    ]

    api = requests.post(
        f"{served['base']}/v1/models/colours/versions/1/predict?top_k=5",
        files={"image": (image.name, image.read_bytes(), "image/png")},
        timeout=30,
    ).json()["predictions"][0]["top"]
    assert [label for label, _ in shown] == [t["label"] for t in api]
    assert [p for _, p in shown] == pytest.approx([t["probability"] for t in api], abs=1e-9)
    assert shown[0][0] == "green"
    assert "%" in bars[0].inner_text()
    assert page.is_hidden("#error")


def test_a_rejected_file_shows_the_servers_message(served, page):
    fake = served["work"] / "fake.jpg"
    fake.write_text("<html>not an image</html>")
    page.goto(served["base"] + "/")
    page.wait_for_selector("#model-info dd")
    page.set_input_files("#file", str(fake))
    page.wait_for_selector("#error:not([hidden])")
    message = page.inner_text("#error")
    assert "rejected" in message and "not an image" in message
    assert page.query_selector_all("#bars .bar") == []


def test_the_drop_zone_is_reachable_by_keyboard(served, page):
    page.goto(served["base"] + "/")
    page.wait_for_selector("#model-info dd")
    page.focus("#drop")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    assert chooser.value is not None


def test_report_page_renders_curves_confusion_matrix_and_tables(served, page):
    page.goto(served["base"] + "/models/colours/versions/1/report")
    page.wait_for_function("document.querySelector('#curves').naturalWidth > 0")
    page.wait_for_function("document.querySelector('#confusion').naturalWidth > 0")
    assert page.eval_on_selector("#curves", "img => img.naturalWidth") > 200
    rows = page.query_selector_all("#classes tbody tr")
    assert [row.query_selector("td").inner_text() for row in rows] == ["blue", "green", "red"]
    assert len(page.query_selector_all("#dataset tbody tr")) == 3
    page.wait_for_function("document.querySelectorAll('#worst img').length > 0")
    assert "true " in page.inner_text("#worst")
    assert '"backbone": "smallcnn"' in page.inner_text("#config")
    assert page.is_hidden("#error")
