"""The "train a model" page (/train) in a real browser: Debian's chromium driven by
Playwright against a live gunicorn with training open (KTL_TRAINING=open, its job
runner beside it), on a phone (390 px) and a desktop (1280 px) screen.

As in test_browser.py the tests wait on what the page shows (each section's
``data-state``, the job's ``data-job-state``), never on time. The pages run under
their own Content-Security-Policy here (no bypass): whatever the policy refuses
fails the test."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import requests

from service.jobs_api.jobs import ENABLE_HINT, TrainingOff
from tests.support.browser import (
    BAD_IMAGES,
    CHROMIUM,
    CHROMIUM_ARGS,
    LEGACY,
    OVERFLOW,
    SCREENS,
    WAIT_MS,
    playwright,
)
from tests.support.data import make_colour_dataset
from tests.support.server import Gunicorn

pytestmark = pytest.mark.slow

sync_api = playwright()
expect = sync_api.expect
TRAIN_MS = 480_000  # a job: the runner's child imports TensorFlow, trains, publishes
# The widths of the thumbnails once each has loaded or failed (0).
THUMBNAIL_WIDTHS = """(imgs) => Promise.all(imgs.map((img) => img.complete ? img.naturalWidth :
  new Promise((done) => {
    img.addEventListener("load", () => done(img.naturalWidth));
    img.addEventListener("error", () => done(0));
  })))"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A store with one model (the service is ready only with one), training open, and
    a generated dataset: 3 colours x 12 images of 32 px, as a folder and as a zip."""
    work = tmp_path_factory.mktemp("train-page")
    shutil.copytree(LEGACY, work / "store" / "legacy")
    data = make_colour_dataset(work / "colours", per_class=12, size=32)
    archive = Path(shutil.make_archive(str(work / "colours"), "zip", data))
    env = {"KTL_TRAINING": "open", "KTL_JOB_THREADS": "1"}
    with Gunicorn(
        work / "store", reload_interval=1, env=env, log_path=work / "server.log"
    ) as server:
        yield {"base": server.base, "data": data, "zip": archive, "work": work, "server": server}


@pytest.fixture(scope="module")
def browser():
    expect.set_options(timeout=WAIT_MS)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def new_page(browser, screen):
    """A page of its own context, collecting what the page policy refuses."""
    context = browser.new_context(**SCREENS[screen])
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.refused = []
    page.on(
        "console",
        lambda m: page.refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.on("filechooser", lambda chooser: None)  # see test_browser.py's page fixture
    return page


@pytest.fixture(scope="module", params=list(SCREENS))
def page(request, browser):
    page = new_page(browser, request.param)
    page.screen = request.param
    yield page
    page.context.close()


@pytest.fixture
def desktop(browser):
    page = new_page(browser, "desktop")
    yield page
    page.context.close()


@pytest.fixture(autouse=True)
def _nothing_refused(request):
    """Every test's pages kept to their Content-Security-Policy."""
    pages = [request.getfixturevalue(n) for n in ("page", "desktop") if n in request.fixturenames]
    yield
    for page in pages:
        refused, page.refused[:] = list(page.refused), []
        assert refused == []


def open_train_page(served, page, query=""):
    page.goto(served["base"] + "/train" + query)
    expect(page.locator("#setup")).to_have_attribute("data-state", "ready")


def fill_options(page, name, epochs=2):
    page.fill("#name", name)
    page.select_option("#backbone", "smallcnn")
    page.fill("#image-size", "32")
    page.fill("#epochs", str(epochs))


def job_of(served, page):
    expect(page.locator("#job")).to_have_attribute("data-id", re.compile(r"\d{8}-\d{6}-\w+"))
    job_id = page.get_attribute("#job", "data-id")
    return requests.get(f"{served['base']}/v1/jobs/{job_id}", timeout=30).json()


# --- before anything is sent ------------------------------------------------------------


def test_with_training_off_the_page_says_how_to_enable_it(served, page):
    body = json.dumps({"error": ENABLE_HINT, "code": TrainingOff.code})
    page.route(
        "**/v1/jobs",
        lambda route: route.fulfill(status=403, body=body, content_type="application/json"),
    )
    try:
        page.goto(served["base"] + "/train")
        expect(page.locator("#setup")).to_have_attribute("data-state", "error")
    finally:
        page.unroute("**/v1/jobs")
    shown = page.inner_text("#setup-error")
    assert "KTL_TRAIN_KEYS" in shown and "KTL_TRAINING=open" in shown
    assert page.is_visible("#setup-error")
    # Nothing to fill in or start while it is off; Start says why. The key stays usable.
    for control in ("#start", "#name", "#choose-folder", "#choose-zip", "#backbone", "#epochs"):
        expect(page.locator(control)).to_be_disabled()
    assert "Training is off" in page.inner_text("#job-status")
    expect(page.locator("#api-key")).to_be_enabled()


def test_a_folder_shows_each_class_with_its_count_and_thumbnails(served, page):
    open_train_page(served, page)
    page.set_input_files("#folder", str(served["data"]))
    expect(page.locator("#data")).to_have_attribute("data-state", "ready")
    classes = page.locator("#classes .class")
    expect(classes).to_have_count(3)
    assert [c.get_attribute("data-class") for c in classes.all()] == ["blue", "green", "red"]
    assert [c.get_attribute("data-count") for c in classes.all()] == ["12"] * 3
    assert "3 classes, 36 images" in page.inner_text("#data-status")
    assert page.input_value("#name") == "colours"  # the folder's name, as a model name
    widths = page.eval_on_selector_all(".thumbnails img", THUMBNAIL_WIDTHS)
    assert len(widths) == 3 * 4 and all(w == 32 for w in widths)
    assert page.evaluate(BAD_IMAGES) == []
    assert page.evaluate(OVERFLOW) <= 0

    page.focus("[aria-label='Remove class green']")  # by keyboard
    page.keyboard.press("Enter")
    expect(classes).to_have_count(2)
    assert "green" not in page.inner_text("#classes")
    expect(page.locator("[aria-label='Remove class blue']")).to_be_focused()


def test_a_train_val_test_folder_is_zipped_with_its_splits(served, page):
    split = served["work"] / "split-colours"
    if not split.exists():
        for name, count in (("train", 6), ("val", 3), ("test", 2)):
            make_colour_dataset(split / name, per_class=count, size=16)
    open_train_page(served, page)
    page.set_input_files("#folder", str(split))
    expect(page.locator("#data")).to_have_attribute("data-layout", "splits")
    expect(page.locator("#classes .class")).to_have_count(3)
    assert [c.get_attribute("data-count") for c in page.locator("#classes .class").all()] == [
        "11"
    ] * 3
    assert "train 18, val 9, test 6" in page.inner_text("#data-status")
    assert page.input_value("#name") == "split-colours"
    assert page.is_hidden("#data-error")

    sent = []  # the upload, caught before it reaches the service

    def catch(route):
        if route.request.method != "POST":
            route.continue_()
            return
        sent.append(route.request.post_data_buffer)
        route.fulfill(status=400, json={"error": "caught by the test", "code": "bad_request"})

    page.route("**/v1/jobs", catch)
    try:
        fill_options(page, "split-colours")
        page.click("#start")
        expect(page.locator("#job")).to_have_attribute("data-state", "error")
    finally:
        page.unroute("**/v1/jobs")
    body = sent[0]
    archive = body[body.index(b"PK\x03\x04") : body.rindex(b"PK\x05\x06") + 22]
    names = zipfile.ZipFile(io.BytesIO(archive)).namelist()
    assert len(names) == 33 and {n.split("/")[0] for n in names} == {"train", "val", "test"}
    assert "val/red/red_000.png" in names and "test/blue/blue_001.png" in names


def test_failures_speak_of_the_pages_choices_without_tensorflows_log(served, page):
    open_train_page(served, page)
    message = (
        "Training failed: ImageNet weights for mobilenetv3small could not be obtained (no "
        "network). Or use --backbone efficientnet_lite0 ... --weights none trains from random"
    )
    log = [
        "2026-12-07 10:00:00.123456: I tensorflow/core/util/port.cc:153] oneDNN custom "
        "operations are on.",
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1733 4242 cpu_feature_guard.cc:210] This TensorFlow binary is optimized",
        "Job 1: training 'x'",
    ]
    page.evaluate("([message, log]) => failed(message, log)", [message, log])
    shown = page.inner_text("#job-error-text")
    assert "--" not in shown and "marked “offline”" in shown and "mobilenetv3small" in shown
    assert page.inner_text("#log").strip() == "Job 1: training 'x'"
    lite = page.locator("#backbone option[value='efficientnet_lite0']")
    expect(lite).to_have_attribute("data-offline", "true")  # its weights ship with ktl
    assert page.input_value("#backbone") == "efficientnet_lite0"  # the default
    assert "(offline)" in lite.inner_text()


def test_an_archive_is_sent_as_it_is(served, page):
    open_train_page(served, page)
    page.set_input_files("#folder", str(served["data"]))
    expect(page.locator("#classes .class")).to_have_count(3)
    page.set_input_files("#zip", str(served["zip"]))
    expect(page.locator("#archive")).to_be_visible()
    assert "colours.zip" in page.inner_text("#archive")
    assert page.get_attribute("#archive", "data-size") == str(served["zip"].stat().st_size)
    expect(page.locator("#classes .class")).to_have_count(0)  # the archive replaced them
    assert page.get_attribute("#data", "data-state") == "ready"


def test_start_names_what_is_missing_and_sends_nothing(served, page):
    open_train_page(served, page)
    posted = []

    def listen(request):
        if request.method == "POST":
            posted.append(request.url)

    page.on("request", listen)
    page.fill("#name", "Colours")
    page.click("#start")
    assert "did you mean “colours”" in page.inner_text("#name-error")
    expect(page.locator("#name")).to_be_focused()
    assert page.get_attribute("#name", "aria-invalid") == "true"

    page.fill("#name", "colours")
    page.click("#start")
    assert page.is_hidden("#name-error")
    assert "Add the classes first" in page.inner_text("#job-status")
    page.remove_listener("request", listen)
    assert posted == [] and page.get_attribute("#job", "data-state") == "idle"


def test_the_servers_refusal_of_an_upload_is_shown(served, page):
    fake = served["work"] / "not-a-zip.zip"
    fake.write_text("these are not images")
    open_train_page(served, page)
    page.fill("#name", "refused")
    page.set_input_files("#zip", str(fake))
    page.click("#start")
    expect(page.locator("#job")).to_have_attribute("data-state", "error")
    said = page.inner_text("#job-error-text").removeprefix("The service did not start the job: ")
    assert said != page.inner_text("#job-error-text")  # the prefix was there
    assert said and "[object Object]" not in said
    expect(page.locator("#start")).to_be_enabled()


def test_the_zip_made_in_the_page_is_one_python_reads(served, page):
    open_train_page(served, page)
    made = page.evaluate(
        """async () => {
          const files = [["red/a.png", new File(["red bytes"], "a.png", { lastModified: 1.7e12 })],
            ["rød/sub/å.png", new File([new Uint8Array(70000).fill(7)], "å.png")],
            ["empty/x.png", new File([], "x.png", { lastModified: 0 })]];
          const blob = await storeZip(files);
          const bytes = new Uint8Array(await blob.arrayBuffer());
          let text = "";
          for (const b of bytes) text += String.fromCharCode(b);
          return btoa(text);
        }"""
    )
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(made)))
    assert archive.testzip() is None  # every CRC right
    assert archive.namelist() == ["red/a.png", "rød/sub/å.png", "empty/x.png"]
    assert archive.read("red/a.png") == b"red bytes"
    assert archive.read("rød/sub/å.png") == bytes([7]) * 70000
    assert archive.read("empty/x.png") == b""
    assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())
    assert archive.getinfo("empty/x.png").date_time[0] == 1980


def test_events_are_read_however_the_stream_cuts_them(served, page):
    open_train_page(served, page)
    events = page.evaluate(
        """async () => {
          const chunks = ["retry: 2000\\n\\nid: 1\\nevent: ep", "och\\ndata: {\\"epoch\\": 1}\\n",
            "\\n: keep-alive\\n\\nid: 2\\r\\nevent: state\\r\\ndata: {\\"state\\":",
            "\\r\\ndata: \\"done\\"}\\r\\n\\r\\n"];
          const body = new ReadableStream({ start(c) {
            for (const chunk of chunks) c.enqueue(new TextEncoder().encode(chunk));
            c.close();
          } });
          const seen = [];
          await readEvents(body, (type, data, id) => { seen.push([type, data, id]); });
          return seen;
        }"""
    )
    assert events == [["epoch", '{"epoch": 1}', "1"], ["state", '{"state":\n"done"}', "2"]]


# --- a job, from the page to the try-it page --------------------------------------------


def test_a_model_trained_on_the_page_is_the_one_to_try(served, page):
    """The phone sends the zip it was given; the desktop, a folder it zips itself."""
    name = f"colours-{page.screen}"
    open_train_page(served, page)
    if page.screen == "phone":
        page.set_input_files("#zip", str(served["zip"]))
        expect(page.locator("#archive")).to_be_visible()
    else:
        page.set_input_files("#folder", str(served["data"]))
        expect(page.locator("#classes .class")).to_have_count(3)
    fill_options(page, name)
    page.click("#start")
    expect(page.locator("#job")).to_have_attribute("data-state", re.compile("running|done"))
    expect(page.locator("#job")).to_have_attribute("data-state", "done", timeout=TRAIN_MS)

    job = job_of(served, page)
    assert job["state"] == "succeeded" and job["options"]["image_size"] == 32
    assert page.get_attribute("#job", "data-job-state") == "succeeded"
    assert int(page.get_attribute("#loss-chart", "data-points")) == len(job["epochs"]) >= 2
    assert int(page.get_attribute("#accuracy-chart", "data-points")) == len(job["epochs"])
    assert page.locator("#loss-chart polyline.train").count() == 1
    status = page.inner_text("#job-status")
    metrics = requests.get(f"{served['base']}/v1/models/{name}/versions/1", timeout=30).json()
    split = metrics["metrics"]["split"]
    assert status.startswith(f"Done: version 1 of {name} is published, {split} accuracy ")
    accuracy = float(page.get_attribute("#job-status", "data-accuracy"))
    assert accuracy == pytest.approx(metrics["metrics"]["accuracy"])
    assert page.get_attribute("#report-link", "href") == f"/models/{name}/versions/1/report"
    assert page.is_hidden("#cancel") and page.is_enabled("#start")
    assert page.evaluate(OVERFLOW) <= 0

    # Its address follows the job alone, the form folded away until asked for.
    page.goto(served["base"] + "/train?job=" + job["id"])
    expect(page.locator("#job")).to_have_attribute("data-state", "done")
    assert page.is_hidden("#data") and page.is_hidden("#options") and page.is_hidden("#start")
    assert "Done: version 1" in page.inner_text("#job-status")
    page.click("#new-job")
    expect(page.locator("#data")).to_be_visible()
    assert "job=" not in page.url

    page.click("#try-link")
    expect(page.locator("#about")).to_have_attribute("data-state", "ready")
    assert page.input_value("#model") == name
    expect(page.locator("#model-info")).to_have_attribute("data-version", "1")
    page.set_input_files("#file", str(served["data"] / "red" / "red_000.png"))
    expect(page.locator("#result")).to_have_attribute("data-state", "ready")
    assert page.get_attribute("#result", "data-version") == "1"


def test_a_failed_job_shows_its_error_and_the_end_of_its_log(served, desktop):
    fakes = served["work"] / "fakes"  # named as images, yet none is one: the job fails
    for label in ("cats", "dogs"):
        (fakes / label).mkdir(parents=True)
        for i in range(3):
            (fakes / label / f"{i}.png").write_text("not an image")
    open_train_page(served, desktop)
    desktop.set_input_files("#folder", str(fakes))
    expect(desktop.locator("#classes .class")).to_have_count(2)
    assert desktop.eval_on_selector_all(".thumbnails img", THUMBNAIL_WIDTHS) == [0] * 6
    assert desktop.evaluate(BAD_IMAGES) == []  # thumbnails that cannot be drawn are not
    fill_options(desktop, "fakes")
    desktop.click("#start")
    expect(desktop.locator("#job")).to_have_attribute("data-state", "error", timeout=TRAIN_MS)
    job = job_of(served, desktop)
    assert job["state"] == "failed"
    shown = desktop.inner_text("#job-error-text")
    assert shown.startswith("Training failed: ") and job["error"].splitlines()[0] in shown
    expect(desktop.locator("#log-box")).to_be_visible()
    assert desktop.inner_text("#log").strip()


def test_cancel_stops_a_running_job_and_publishes_nothing(served, desktop):
    open_train_page(served, desktop)
    desktop.set_input_files("#folder", str(served["data"]))
    fill_options(desktop, "cancelled", epochs=500)
    desktop.click("#start")
    expect(desktop.locator("#job")).to_have_attribute("data-job-state", "running", timeout=TRAIN_MS)
    expect(desktop.locator("#cancel")).to_be_visible()
    desktop.click("#cancel")
    expect(desktop.locator("#job")).to_have_attribute(
        "data-job-state", "cancelled", timeout=TRAIN_MS
    )
    # the job's state shows first; the page settles once it has fetched the whole record
    expect(desktop.locator("#job")).to_have_attribute("data-state", "idle", timeout=TRAIN_MS)
    assert "nothing was published" in desktop.inner_text("#job-status")
    assert job_of(served, desktop)["version"] is None
    models = requests.get(f"{served['base']}/v1/models", timeout=30).json()["models"]
    assert "cancelled" not in [m["name"] for m in models]
