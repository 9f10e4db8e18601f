"""The web pages in a real browser: Debian's chromium driven by Playwright, against
a live gunicorn on 127.0.0.1, on a phone (390 px) and a desktop (1280 px) screen.

The tests wait on what the pages show, never on time: each page section says what
it holds in ``data-state`` (loading, ready, error, ...), and the long timeouts are
only a safety net for a loaded machine."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import requests

from models.store import ModelStore
from models.store.releases import set_label
from tests.support.browser import (
    BAD_IMAGES,
    CHROMIUM,
    CHROMIUM_ARGS,
    CUT,
    LEGACY,
    OVERFLOW,
    SCREENS,
    SCROLL_WIDTH,
    WAIT_MS,
    playwright,
)
from tests.support.data import make_colour_dataset
from tests.support.server import Gunicorn
from training.config import build_config
from training.job import run_job

pytestmark = pytest.mark.slow
PROBE = Path(__file__).resolve().parents[1] / "fixtures" / "smallcnn_patterns.h5"  # the doctor's

sync_api = playwright()
expect = sync_api.expect

IN_VIEW = """(selector) => {
  const box = document.querySelector(selector).getBoundingClientRect();
  const height = Math.min(window.innerHeight, document.documentElement.clientHeight);
  return box.top >= 0 && box.bottom <= height;
}"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two versions of a small model with a test split (45 images a class), and a
    version written by ktl 0.1 (``legacy``: validation figures only), served."""
    work = tmp_path_factory.mktemp("browser")
    data = make_colour_dataset(work / "data", per_class=45, size=16)
    flags = {
        "data": str(data), "name": "colours", "store": str(work / "store"), "backbone": "smallcnn",
        "weights": "none", "image_size": 16, "epochs": 4, "batch_size": 16,
    }  # fmt: skip
    run_job(build_config({}, flags), log=lambda message: None)
    run_job(build_config({}, {**flags, "epochs": 2}), log=lambda message: None)
    set_label(ModelStore(work / "store"), "colours", "stable", 2)  # still the default
    set_label(ModelStore(work / "store"), "colours", "canary", 1, weight=0.0)
    shutil.copytree(LEGACY, work / "store" / "legacy")
    with Gunicorn(work / "store", log_path=work / "server.log") as server:
        yield {"base": server.base, "data": data, "work": work}


@pytest.fixture(scope="module")
def browser():
    expect.set_options(timeout=WAIT_MS)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module", params=list(SCREENS))
def page(request, browser):
    # bypass_csp: Playwright polls wait_for_function with eval, which the page policy
    # forbids (test_the_pages_keep_to_their_content_security_policy runs without it).
    context = browser.new_context(**SCREENS[request.param], bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    # Playwright starts intercepting file choosers when the first listener comes, by a
    # message it does not wait on: a key pressed just after expect_file_chooser() could
    # open the chooser before that, and the test waited for ever on a loaded machine.
    # Listening from the start, interception is on long before any key is pressed.
    page.on("filechooser", lambda chooser: None)
    yield page
    context.close()


def metadata(served, version):
    response = requests.get(f"{served['base']}/v1/models/colours/versions/{version}", timeout=30)
    return response.json()


def open_try_page(served, page, query=""):
    page.goto(served["base"] + "/" + query)
    expect(page.locator("#about")).to_have_attribute("data-state", "ready")


def upload(page, path):
    page.set_input_files("#file", str(path))
    expect(page.locator("#result")).to_have_attribute("data-state", re.compile("ready|error"))


def open_report(served, page, version, model="colours"):
    page.goto(f"{served['base']}/models/{model}/versions/{version}/report")
    expect(page.locator("#report")).to_have_attribute("data-state", re.compile("ready|error"))


# --- the try-a-model page ----------------------------------------------------------


def test_upload_shows_the_same_answer_as_the_api(served, page):
    image = served["data"] / "green" / "green_003.png"
    open_try_page(served, page)
    assert "smallcnn" in page.inner_text("#model-info")
    upload(page, image)
    bars = page.query_selector_all("#bars .bar")
    shown = [
        (bar.get_attribute("data-label"), float(bar.get_attribute("data-probability")))
        for bar in bars
    ]

    api = requests.post(
        f"{served['base']}/v1/models/colours/versions/2/predict?top_k=5",
        files={"image": (image.name, image.read_bytes(), "image/png")},
        timeout=30,
    ).json()["predictions"][0]
    assert [label for label, _ in shown] == [t["label"] for t in api["top"]]
    assert [p for _, p in shown] == pytest.approx([t["probability"] for t in api["top"]], abs=1e-9)
    assert shown[0][0] == "green"
    assert "%" in bars[0].inner_text()
    assert page.is_hidden("#error")

    # The decision, in words, above the bars.
    answer = page.inner_text("#answer")
    if api["decision"]["label"] is None:
        assert answer.startswith("Not sure") and "none of the classes reached" in answer
    else:
        assert answer.startswith(api["decision"]["label"]) and "sure" in answer
    above = page.evaluate(
        "() => document.querySelector('#answer').getBoundingClientRect().bottom"
        " <= document.querySelector('#bars').getBoundingClientRect().top"
    )
    assert above


def test_the_model_info_gives_the_test_accuracy_with_its_interval(served, page):
    open_try_page(served, page)
    metrics = metadata(served, 2)["metrics"]
    assert metrics["split"] == "test"
    accuracy = page.inner_text("#model-info")
    assert re.search(
        r"\d+\s?% \(\d+–\d+\s?%, " + str(metrics["images"]) + " test images\\)", accuracy
    )


# The selected option's text against the room its select has for it (less its arrow).
SELECT_TEXT = """(id) => {
  const select = document.getElementById(id);
  const style = getComputedStyle(select);
  const context = document.createElement("canvas").getContext("2d");
  context.font = style.font;
  const padding = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
  const room = select.clientWidth - padding - 20;
  return [context.measureText(select.selectedOptions[0].textContent).width, room];
}"""


def test_the_version_list_gives_each_versions_accuracy_labels_and_the_default(served, page):
    open_try_page(served, page)
    listed = requests.get(f"{served['base']}/v1/models", timeout=30).json()["models"]
    model = next(m for m in listed if m["name"] == "colours")
    options = page.eval_on_selector_all(
        "#version option", "options => options.map((o) => [o.value, o.textContent])"
    )
    assert [int(value) for value, _ in options] == [d["version"] for d in model["version_details"]]
    labels = {version: label for label, version in model["version_labels"].items()}
    assert labels == {2: "stable", 1: "canary"}
    for (_, text), details in zip(options, model["version_details"], strict=True):
        assert re.search(r"\d+\s?% " + details["accuracy_split"], text), text
        assert labels[details["version"]] in text, text
        assert ("default" in text) == (details["version"] == model["default_version"]), text
    assert page.input_value("#version") == str(model["default_version"])
    note = page.inner_text("#version-note")  # the rest, under the select
    default = next(d for d in model["version_details"] if d["version"] == model["default_version"])
    assert default["created_at"][:4] in note and "labelled stable" in note, note
    width, room = page.evaluate(SELECT_TEXT, "version")
    assert width <= room, f"the chosen version's text is cut: {width:.0f} px in {room:.0f}"
    assert page.evaluate(SCROLL_WIDTH) <= 0

    open_try_page(served, page, "?model=colours&version=1")  # the report's link back
    assert page.input_value("#version") == "1"
    expect(page.locator("#model-info")).to_have_attribute("data-version", "1")


def test_switching_version_shows_loading_and_never_the_other_versions_figures(served, page):
    open_try_page(served, page)
    expect(page.locator("#model-info")).to_have_attribute("data-version", "2")
    upload(page, served["data"] / "red" / "red_001.png")
    expect(page.locator("#result")).to_have_attribute("data-version", "2")

    held = []  # version 1's metadata answers only when the test lets it
    page.route("**/v1/models/colours/versions/1", lambda route: held.append(route))
    try:
        with page.expect_request("**/v1/models/colours/versions/1") as asked:
            page.select_option("#version", "1")
        expect(page.locator("#about")).to_have_attribute("data-state", "loading")
        assert page.query_selector_all("#model-info dd") == []
        assert page.get_attribute("#model-info", "data-version") is None
        assert page.get_attribute("#result", "data-version") != "2"  # asked again, of version 1
        expect(page.locator("#result")).to_have_attribute("data-version", "1")

        page.select_option("#version", "2")  # before version 1's figures arrived
        expect(page.locator("#about")).to_have_attribute("data-state", "ready")
        expect(page.locator("#model-info")).to_have_attribute("data-version", "2")
        expect(page.locator("#result")).to_have_attribute("data-version", "2")
    finally:
        page.unroute("**/v1/models/colours/versions/1")
        for route in held:  # version 1's figures, late
            try:
                route.continue_()
            except sync_api.Error:
                pass  # the page had given that request up already
    asked.value.response()  # its answer has come, or it failed
    page.evaluate("() => fetch('/v1/models').then(() => null)")  # and the page had its turn
    expect(page.locator("#model-info")).to_have_attribute("data-version", "2")
    assert page.get_attribute("#about", "data-state") == "ready"


def test_the_answer_is_brought_into_view_after_an_upload(served, page):
    open_try_page(served, page)
    page.evaluate("() => window.scrollTo(0, 0)")
    upload(page, served["data"] / "blue" / "blue_002.png")
    page.wait_for_function(IN_VIEW, arg="#result")
    assert page.evaluate(IN_VIEW, "#answer")


def test_no_image_is_drawn_without_a_source(served, page):
    open_try_page(served, page)
    assert page.evaluate(BAD_IMAGES) == []
    upload(page, served["data"] / "green" / "green_004.png")
    expect(page.locator("#preview")).to_be_visible()
    assert page.is_hidden("#overlay")  # not asked for: no empty frame, no alt text
    assert page.evaluate(BAD_IMAGES) == []
    page.check("#gradcam")
    expect(page.locator("#figure")).to_have_attribute("data-overlay", "ready")
    assert page.eval_on_selector("#overlay", "img => img.naturalWidth") > 0
    assert page.evaluate(BAD_IMAGES) == []


def test_a_rejected_file_shows_the_servers_message_and_clears_the_photo(served, page):
    fake = served["work"] / "fake.jpg"
    fake.write_text("<html>not an image</html>")
    open_try_page(served, page)
    upload(page, served["data"] / "green" / "green_005.png")
    page.check("#gradcam")
    expect(page.locator("#figure")).to_have_attribute("data-overlay", "ready")

    upload(page, fake)
    expect(page.locator("#result")).to_have_attribute("data-state", "error")
    message = page.inner_text("#error")
    assert "rejected" in message and "not an image" in message
    assert "Pillow" not in message  # the service's own words wait behind "What the service said"
    assert page.query_selector_all("#bars .bar") == []
    assert page.is_hidden("#figure") and page.is_hidden("#preview") and page.is_hidden("#overlay")
    assert not page.is_checked("#gradcam")
    assert page.evaluate(BAD_IMAGES) == []


def test_the_drop_zone_is_reachable_by_keyboard(served, page):
    open_try_page(served, page)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    for _ in range(30):  # Tab through the page until the drop zone has the focus
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "drop":
            break
    expect(page.locator("#drop")).to_be_focused()
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    assert chooser.value is not None


def test_the_try_page_fits_the_screen_and_the_photo_shows_under_the_heatmap(served, page):
    open_try_page(served, page)
    upload(page, served["data"] / "red" / "red_002.png")
    page.check("#gradcam")
    expect(page.locator("#figure")).to_have_attribute("data-overlay", "ready")
    assert page.evaluate(OVERFLOW) <= 0
    opacity = "img => Number(getComputedStyle(img).opacity)"
    assert 0.2 <= page.eval_on_selector("#overlay", opacity) <= 0.6  # the photo shows through
    expect(page.locator("#blend")).to_be_visible()
    page.fill("#blend", "80")
    assert page.eval_on_selector("#overlay", opacity) == pytest.approx(0.8)


def test_tiny_probabilities_are_not_rounded_up_to_a_figure(served, page):
    open_try_page(served, page)
    shown = page.evaluate("() => [7.7e-30, 0.99999999, 0.0004, 0.973].map((p) => ktl.percent(p))")
    assert shown == ["< 0.001\u00a0%", "> 99.999\u00a0%", "0.04\u00a0%", "97.3\u00a0%"]


# --- the report page ---------------------------------------------------------------


def test_report_page_renders_curves_confusion_matrix_and_tables(served, page):
    open_report(served, page, 1)
    page.wait_for_function("document.querySelector('#curves').naturalWidth > 0")
    page.wait_for_function("document.querySelector('#confusion').naturalWidth > 0")
    assert page.eval_on_selector("#curves", "img => img.naturalWidth") > 200
    rows = page.query_selector_all("#classes tbody tr")
    assert [row.query_selector("td").inner_text() for row in rows] == ["blue", "green", "red"]
    assert len(page.query_selector_all("#dataset tbody tr")) == 3
    assert '"backbone": "smallcnn"' in page.inner_text("#config")
    assert page.is_hidden("#error")

    # Most wrong: the misclassified images of the split the figures come from, or a
    # sentence saying there were none.
    worst = requests.get(
        f"{served['base']}/v1/models/colours/versions/1/reports/worst.json", timeout=30
    ).json()
    assert "test" in page.inner_text("#worst-heading")
    wrong = [w for w in worst if w["true"] != w["predicted"]]
    assert len(page.query_selector_all("#worst img")) == len(wrong)
    if wrong:
        assert "true " in page.inner_text("#worst")
    else:
        assert "no misclassified images" in page.inner_text("#worst-section").lower()


def test_report_shows_the_kept_epochs_the_figures_calibration_and_decision(served, page):
    meta = metadata(served, 1)
    open_report(served, page, 1)
    for phase in meta["training"]["phases"]:
        assert f"kept the weights of epoch {phase['kept_epoch']}" in page.inner_text("#phases")
    assert len(page.query_selector_all("#history tr.kept")) == len(meta["training"]["phases"])

    splits = page.inner_text("#splits")
    for split in ("validation", "test"):
        images = meta["evaluation"][split]["images"]
        assert re.search(rf"{split}\s+{images}\s+\d+\s?%\s+\d+–\d+\s?%", splits), splits
    baseline = meta["metrics"]["baseline"]
    assert f"always “{baseline['majority_class']}”" in page.inner_text("#summary")
    assert page.is_hidden("#split-note")  # the figures come from the test split

    calibration = page.inner_text("#calibration-section")
    assert f"{meta['calibration']['temperature']:.3f}" in calibration and "ECE" in calibration
    decision = page.inner_text("#decision-section")
    assert "Threshold" in decision and f"answered {meta['decision']['answered']} of" in decision
    assert "not measured" in decision  # no images of none of the classes were given
    for plot in ("#reliability", "#risk", "#curves", "#confusion"):
        page.wait_for_function(f"document.querySelector('{plot}').naturalWidth > 0")
    assert page.evaluate(BAD_IMAGES) == []

    config = page.inner_text("#config")  # a scratch run: no fine-tuning settings
    assert "fine_tune" not in config and "unfreeze_from" not in config
    assert "fine_tune_epochs" in page.inner_text("#config-note")


def test_the_report_says_how_far_it_moved_from_the_version_before(served, page):
    first, second = (metadata(served, v)["metrics"] for v in (1, 2))
    points = (second["accuracy"] - first["accuracy"]) * 100
    open_report(served, page, 2)
    previous = page.locator("#previous")
    expect(previous).to_be_visible()
    assert "Against version 1: " in previous.inner_text()
    assert f"{abs(points):.1f} points of test accuracy" in previous.inner_text()
    assert float(previous.get_attribute("data-points")) == pytest.approx(points)
    assert previous.locator("a").get_attribute("href") == "/models/colours/versions/1/report"
    open_report(served, page, 1)  # the first version has none before it
    assert page.is_hidden("#previous")


def wait_for_no_cut(page, served=True):
    """What is wider than its card scrolls inside it and says so (watched as it lays out)."""
    try:
        page.wait_for_function(f"(served) => ({CUT})(served).length === 0", arg=served)
    except sync_api.TimeoutError:
        pass
    assert page.evaluate(CUT, served) == []


def test_the_report_fits_the_screen_and_its_plots_stay_readable(served, page):
    open_report(served, page, 2)
    page.wait_for_function("document.querySelector('#curves').naturalWidth > 0")
    page.click("#history-box summary")  # every epoch's table too
    assert page.evaluate(OVERFLOW) <= 0 and page.evaluate(SCROLL_WIDTH) <= 0
    wait_for_no_cut(page)
    width = page.eval_on_selector("#curves", "img => img.getBoundingClientRect().width")
    assert width >= 500  # a narrow screen scrolls the curves inside their card instead


def test_an_unknown_models_report_shows_only_the_error(served, page):
    page.goto(f"{served['base']}/models/nothing/versions/1/report")
    expect(page.locator("#report")).to_have_attribute("data-state", "error")
    assert "nothing" in page.inner_text("#error")
    shown = page.eval_on_selector_all(
        "#report section",
        "sections => sections.filter((s) => s.checkVisibility()).map((s) => s.id)",
    )
    assert shown == []
    assert page.evaluate(BAD_IMAGES) == []
    assert page.evaluate(OVERFLOW) <= 0


@pytest.fixture(scope="module")
def doctor_page(served, tmp_path_factory):
    """report.html of ktl doctor on the served images, in a folder with a long name."""
    from training.diagnosis.doctor import run_doctor
    from training.diagnosis.doctor_report import write_outputs

    out = tmp_path_factory.mktemp("doctor")
    data = out / "holiday-photos-sorted-by-colour-for-the-classifier-2026-12-07-final"
    shutil.copytree(served["data"], data)
    config = build_config(
        {}, {"data": str(data), "name": "doctor", "backbone": "smallcnn", "weights": str(PROBE)}
    )
    return Path(write_outputs(run_doctor(config, log=lambda message: None), out / "report")["html"])


def test_the_doctors_report_fits_the_screen(doctor_page, page):
    """Opened from disk, as its user does (470 px wide at 390 px before)."""
    page.goto(doctor_page.as_uri())
    assert page.evaluate(OVERFLOW) <= 0 and page.evaluate(SCROLL_WIDTH) <= 0
    assert page.evaluate(CUT, False) == []
    assert page.query_selector_all(".scroll table")  # the balance table scrolls if it must


# --- a version published by ktl 0.1 (format 1) ------------------------------------


def test_a_format_1_version_says_its_figures_are_from_validation(served, page):
    open_try_page(served, page, "?model=legacy")
    info = page.inner_text("#model-info")
    assert re.search(r"67\s?% \(6 validation images; no test split", info), info
    assert "always" in info  # no threshold: it always answers
    upload(page, served["data"] / "red" / "red_003.png")
    assert page.inner_text("#answer").startswith(page.get_attribute("#bars .bar", "data-label"))

    open_report(served, page, 1, model="legacy")
    assert page.get_attribute("#report", "data-state") == "ready"
    assert "validation images only" in page.inner_text("#split-note")
    assert "validation" in page.inner_text("#worst-heading")
    assert "Not calibrated" in page.inner_text("#calibration-section")
    assert "always answers" in page.inner_text("#decision-section")
    assert page.is_visible("#reliability-missing") and page.is_visible("#risk-missing")
    assert "2 epochs" in page.inner_text("#phases")
    assert "fine_tune" not in page.inner_text("#config")
    page.wait_for_function(
        "[...document.querySelectorAll('#worst img')].every((i) => i.naturalWidth > 0)"
    )
    assert len(page.query_selector_all("#worst img")) > 0
    assert page.evaluate(BAD_IMAGES) == []
    assert page.evaluate(OVERFLOW) <= 0


# --- both pages, as served ---------------------------------------------------------


def test_the_pages_keep_to_their_content_security_policy(served, browser):
    """Without bypass_csp: nothing the pages do is refused by their own policy."""
    context = browser.new_context(**SCREENS["desktop"])
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    refused = []
    page.on(
        "console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None
    )
    try:
        open_try_page(served, page)
        page.set_input_files("#file", str(served["data"] / "green" / "green_006.png"))
        expect(page.locator("#result")).to_have_attribute("data-state", "ready")
        page.check("#gradcam")
        expect(page.locator("#figure")).to_have_attribute("data-overlay", "ready")
        open_report(served, page, 2)
        assert page.get_attribute("#report", "data-state") == "ready"
    finally:
        context.close()
    assert refused == []
