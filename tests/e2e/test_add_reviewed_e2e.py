"""The real ``ktl train DATA --add-reviewed NAME --promote-if-better`` over a capture
folder with reviewed captures of version 1 (``KTL_CAPTURE_DIR``): the reviewed
images join DATA by their hash, a near-copy of a training image stays out of test,
the bundle and the summary record how many came from review and from which version,
and the promotion compares both versions on DATA's test images only."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
from PIL import Image

from models.bundle import load_bundle
from models.capture.folder import CaptureFolder
from models.capture.review import record_review
from tests.support.browser import playwright, screen_page
from tests.support.captures import png, write_capture
from tests.support.cli import ktl
from tests.support.data import COLOURS, colour_image
from tests.support.server import Gunicorn
from tests.support.trained import CLI_FLAGS, NAME
from training.dataset.data import list_samples, prepare
from training.dataset.splits import drawn_alike

pytestmark = pytest.mark.slow


def _review(folder: CaptureFolder, image: Image.Image, label: str) -> str:
    identifier = write_capture(
        folder, NAME, png(image), labels=list(COLOURS), top=label, confidence=0.5
    )
    record_review(folder, NAME, identifier, label, by="cli")
    return identifier


def _near_copy_drawn_into_test(image: Image.Image, test_share: float) -> Image.Image:
    """A resized copy of ``image`` whose content hash draws it into test (seed 42)."""
    for size in range(21, 90):
        variant = image.resize((size, size), Image.Resampling.BICUBIC)
        if drawn_alike(hashlib.sha256(png(variant)).hexdigest(), 42, 0.2, test_share) == "test":
            return variant
    raise AssertionError("no resized copy falls in test")


def test_retraining_from_the_review(trained_store, tmp_path):
    store = trained_store.copy_to(tmp_path / "store")
    data = trained_store.data
    listing = list_samples(data)  # DATA's split, as the job draws it (seed 42, val 0.2)
    drawn = prepare(listing, (16, 16), val_split=0.2, seed=42, test_split=None, log=print)
    source = listing.samples[int(drawn.train[0])]
    folder = CaptureFolder(tmp_path / "capture")
    rng = np.random.default_rng(29)
    for label in list(COLOURS) * 8:  # 24 new images, labelled in review
        _review(folder, colour_image(COLOURS[label], 20, rng), label)
    near = _near_copy_drawn_into_test(Image.open(source.path), drawn.report["test_split"])
    _review(folder, near, source.label)

    result = ktl(
        "train", str(data), "--name", NAME, "--store", str(store), *CLI_FLAGS,
        "--min-steps", "0", "--add-reviewed", NAME, "--promote-if-better",
        env={"KTL_CAPTURE_DIR": str(folder.root)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    new = load_bundle(store / NAME / "2").metadata
    reviewed = new.dataset["reviewed"]
    assert reviewed["model"] == NAME and reviewed["added"] == 25
    assert reviewed["images"] == 24 and reviewed["by_version"] == {"1": 24}
    removed = new.dataset["removed_near_copies"]
    assert any(path.startswith(str(folder.root)) for path in removed)  # the near-copy
    split = reviewed["by_split"]
    assert sum(split.values()) == 24 and split["train"] > 0
    test_images = new.evaluation.test.images
    assert test_images == len(drawn.test) + split["test"]
    assert (
        f"  reviewed    24 reviewed images of {NAME} (predictions of versions 1: 24): "
        f"{split['train']} train, {split['val']} validation, {split['test']} test; "
        "1 left out (copies of training images, or unreadable)"
    ) in result.stdout
    # --promote-if-better: both versions on DATA's own test images, none of the review
    old = load_bundle(store / NAME / "1").metadata
    assert old.evaluation.test.images == len(drawn.test)
    assert f"on the same {len(drawn.test)} images" in result.stdout, result.stdout
    # the report page says where the images came from
    sync_api = playwright()
    with (
        Gunicorn(store, log_path=tmp_path / "server.log") as server,
        screen_page(sync_api, "desktop") as page,
    ):
        page.goto(f"{server.base}/models/{NAME}/versions/2/report")
        ready = re.compile("ready|error")
        sync_api.expect(page.locator("#report")).to_have_attribute("data-state", ready)
        notes = page.inner_text("#dataset-notes")
    assert (
        f"24 images from the review of {NAME} (predictions of versions 1: 24): "
        f"{split['train']} train, {split['val']} validation, {split['test']} test."
    ) in notes
