"""The doctor's rules: confident learning on out-of-sample probabilities, the
near-duplicate rows and odd images."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from models.near_duplicates import look_at_pixels
from tests.support.patterns import scene
from training.diagnosis.suspects import duplicate_rows, label_issue_rows, odd_rows, outliers


def _look(picture: Image.Image, size: tuple[int, int] | None = None):
    width, height = size or picture.size
    return look_at_pixels(np.asarray(picture.convert("RGB").resize((32, 32))), width, height)


def test_label_issues_are_the_contradicted_labels_most_suspect_first():
    rng = np.random.default_rng(0)
    targets = np.repeat([0, 1, 2], 60)
    probabilities = np.full((180, 3), 0.05)
    probabilities[np.arange(180), targets] = 0.9
    flipped = rng.choice(180, 12, replace=False)
    given = targets.copy()
    given[flipped] = (targets[flipped] + 1) % 3
    rows = label_issue_rows(probabilities, given, ["a", "b", "c"])
    assert {row["index"] for row in rows} == set(flipped.tolist())
    row = rows[0]
    assert row["kind"] == "label_issue" and row["action"] == "exclude"
    assert row["suggested_label"] == "abc"[targets[row["index"]]] != row["given_label"]
    assert row["score"] == 0.95


def test_duplicate_rows_keep_the_largest_and_say_which_splits():
    picture = scene(64, np.random.default_rng(1))
    looks = [_look(picture, (64, 64)), _look(picture, (200, 200)), _look(picture, (32, 32))]
    rows, groups = duplicate_rows([[0, 1, 2]], looks, ["x", "x", "y"], ["train", "val", "test"])
    assert [row["action"] for row in rows] == ["exclude", "keep", "exclude"]
    assert all(row["kind"] == "near_duplicate" and row["score"] == 1.0 for row in rows)
    assert groups[0]["across_splits"] and groups[0]["labels"] == ["x", "y"]
    _, groups = duplicate_rows([[0, 1]], looks, ["x", "x", "y"], ["val", "test", None])
    assert not groups[0]["across_splits"]  # no training image in it: nothing leaks


def _same_brightness_circle() -> Image.Image:
    """A red disc on a green of the same luminance (ITU-R 601: both about 60)."""
    picture = Image.new("RGB", (64, 64), (0, 102, 0))
    ImageDraw.Draw(picture).ellipse((12, 12, 52, 52), fill=(200, 0, 0))
    return picture


def test_odd_images_tiny_long_flat_grey_and_outlying():
    rng = np.random.default_rng(2)
    normal = [_look(scene(64, rng)) for _ in range(30)]
    grey = scene(64, rng).convert("L")
    looks = normal + [
        _look(scene(64, rng), (12, 12)),
        _look(scene(64, rng), (400, 100)),
        _look(Image.new("RGB", (64, 64), (90, 90, 200))),
        _look(grey),
        _look(_same_brightness_circle()),  # flat luminance, but plainly a picture
    ]
    features = rng.normal(0, 0.05, (len(looks), 16)) + 1
    features[5] = -1  # far from every other image
    rows = odd_rows(looks, ["a"] * len(looks), features, (32, 32))
    reasons = {row["index"]: row["reason"] for row in rows}
    assert reasons[30].startswith("tiny (12x12")
    assert reasons[31].startswith("extreme aspect ratio (4.0:1)")
    assert reasons[32].startswith("nearly uniform")
    assert "grayscale in a colour set" in reasons[33]
    assert "outlier in feature space" in reasons[5]
    assert set(reasons) == {5, 30, 31, 32, 33}
    actions = {row["index"]: row["action"] for row in rows}
    assert actions[32] == "exclude" and actions[30] == "keep"


def test_no_outliers_among_alike_images():
    features = np.random.default_rng(3).normal(0, 1, (300, 32)) + 3
    assert outliers(features) == {}


def _placeholder() -> Image.Image:
    """Like the "WE'RE SORRY, THIS IMAGE COULD NOT BE FOUND" picture of a photo
    site: dark grey words and a thin frame on a flat light grey."""
    picture = Image.new("RGB", (300, 300), (238, 238, 238))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((8, 8, 291, 291), outline=(200, 200, 200))
    draw.text((40, 110), "WE'RE SORRY,", fill=(60, 60, 60), font=ImageFont.load_default(36))
    font = ImageFont.load_default(18)
    draw.text((40, 160), "THIS IMAGE COULD NOT", fill=(110, 110, 110), font=font)
    draw.text((90, 185), "BE FOUND.", fill=(110, 110, 110), font=font)
    return picture


def _object_on_white() -> Image.Image:
    """A coloured thing photographed on white: mostly background, but not grey."""
    picture = Image.new("RGB", (300, 300), (255, 255, 255))
    ImageDraw.Draw(picture).ellipse((90, 110, 210, 190), fill=(190, 70, 20))
    return picture


def test_a_placeholder_picture_is_called_one_and_excluded_not_grey_in_a_colour_set():
    rng = np.random.default_rng(4)
    photos = [_look(scene(64, rng)) for _ in range(20)]
    looks = [
        *photos,
        _look(_placeholder()),
        _look(scene(64, rng).convert("L")),
        _look(_object_on_white()),
    ]
    rows = {row["index"]: row for row in odd_rows(looks, ["a"] * len(looks), None, (32, 32))}
    placeholder = rows[20]
    assert placeholder["reason"].startswith("placeholder or 'image not found' picture")
    assert "grayscale" not in placeholder["reason"] and placeholder["action"] == "exclude"
    assert rows[21]["reason"] == "grayscale in a colour set" and rows[21]["action"] == "keep"
    assert 22 not in rows  # an object on white is a photo


def test_a_weak_probe_pre_fills_review_instead_of_exclude():
    targets = np.repeat([0, 1], 30)
    probabilities = np.full((60, 2), 0.1)
    probabilities[np.arange(60), 1 - targets] = 0.9  # every label contradicted
    rows = label_issue_rows(probabilities, targets, ["a", "b"], strong=False)
    assert rows and {row["action"] for row in rows} == {"review"}
