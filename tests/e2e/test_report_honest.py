"""The report page of a version trained with ``--exclude``, in a real browser: the
accuracy on the original test images beside the new one, what the CSV changed in
the test split, and every copy of a training image kept out (identical or near)."""

from __future__ import annotations

import re

import pytest
import requests
from PIL import Image

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, SCREENS, WAIT_MS, playwright
from tests.support.data import make_colour_dataset
from tests.support.server import Gunicorn
from training.config import build_config
from training.dataset.data import list_samples, prepare
from training.job import run_job

pytestmark = pytest.mark.slow

sync_api = playwright()
expect = sync_api.expect


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A model trained with a CSV that excludes three test images, and near-copies
    (resized) of a few images planted in the data, served."""
    work = tmp_path_factory.mktemp("honest")
    data = make_colour_dataset(work / "data", per_class=45, size=16)
    for n in range(6):
        picture = Image.open(data / "red" / f"red_{n:03d}.png")
        picture.resize((12, 12)).save(data / "red" / f"copy_{n}.png")
    listing = list_samples(data)
    prepared = prepare(listing, (16, 16), val_split=0.2, test_split=None, seed=3, log=print)
    test = [listing.samples[i].path.relative_to(data) for i in prepared.test[:3]]
    csv = work / "suspects.csv"
    rows = [f"{path},{path.parent},{path.parent},label_issue,0.9,exclude\n" for path in test]
    csv.write_text("path,given_label,suggested_label,kind,score,action\n" + "".join(rows))
    flags = {"data": str(data), "name": "colours", "store": str(work / "store")}
    flags.update(backbone="smallcnn", weights="none", image_size=16, epochs=2, batch_size=16)
    flags.update(seed=3, exclude=str(csv))
    run_job(build_config({}, flags), log=lambda message: None)
    with Gunicorn(work / "store", log_path=work / "server.log") as server:
        yield server.base


@pytest.fixture(scope="module")
def page():
    expect.set_options(timeout=WAIT_MS)
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(**SCREENS["phone"])
        yield context.new_page()
        browser.close()


def test_the_report_gives_the_original_test_figures_and_what_the_csv_changed(served, page):
    meta = requests.get(f"{served}/v1/models/colours/versions/1", timeout=30).json()
    original, changes = meta["evaluation"]["original_test"], meta["dataset"]["original_test"]
    assert (
        changes["excluded"] == 3 and original["images"] == meta["evaluation"]["test"]["images"] + 3
    )
    page.goto(f"{served}/models/colours/versions/1/report")
    expect(page.locator("#report")).to_have_attribute("data-state", re.compile("ready|error"))
    summary = page.inner_text("#summary")
    assert "Accuracy (original test)" in summary
    assert f"{original['images']} original test images" in summary
    note = page.inner_text("#split-note")
    assert f"changed 3 of the {original['images']} original test images (3 excluded" in note
    rows = [r.inner_text() for r in page.query_selector_all("#splits tbody tr")]
    assert [r.split("\t")[0] for r in rows] == ["validation", "test", "original test"]
    dataset = meta["dataset"]
    copies = len(dataset["removed_from_val"]) + len(dataset["removed_near_copies"])
    assert dataset["removed_near_copies"], "the planted near-copies are found"
    assert f"{copies} copies of training images kept out" in page.inner_text("#dataset-notes")
