from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.preprocessing import load_image
from tests.support.data import COLOURS, colour_image, make_colour_dataset
from tests.support.patterns import scene
from training.dataset.data import DataError, list_samples, prepare
from training.fitting import finetune

SIZE = (16, 16)


def _prepare(data, **kwargs):
    kwargs.setdefault("val_split", 0.25)
    kwargs.setdefault("seed", 1)
    return prepare(list_samples(data), SIZE, log=lambda message: None, **kwargs)


def test_class_folders_are_split_by_content_and_repeatably(colour_dataset):
    first = _prepare(colour_dataset)
    second = _prepare(colour_dataset)
    assert first.labels == ["blue", "green", "red"]
    assert first.report["layout"] == "folders"
    for counts in first.report["classes"].values():
        assert counts["train"] >= 1 and counts["val"] >= 1 and counts["test"] == 0
    assert 4 <= first.report["val_images"] <= 15, "about 25 % of 36 (drawn by hash)"
    np.testing.assert_array_equal(first.train, second.train)
    np.testing.assert_array_equal(first.val, second.val)
    assert not set(first.train) & set(first.val)
    other_seed = _prepare(colour_dataset, seed=2)
    assert not np.array_equal(first.val, other_seed.val)


def test_train_val_layout_is_kept_as_given(tmp_path):
    make_colour_dataset(tmp_path / "d" / "train", per_class=5)
    make_colour_dataset(tmp_path / "d" / "val", per_class=2, seed=7)
    prepared = _prepare(tmp_path / "d")
    assert prepared.report["layout"] == "train_val"
    assert prepared.report["train_images"] == 15
    assert prepared.report["val_images"] == 6


def test_csv_paths_are_relative_to_the_csv(tmp_path, colour_dataset):
    rows = ["path,label"]
    for image in sorted(colour_dataset.rglob("*.png")):
        rows.append(f"{image.relative_to(tmp_path).as_posix()},{image.parent.name}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    prepared = _prepare(tmp_path / "labels.csv")
    assert prepared.report["layout"] == "csv"
    assert prepared.report["train_images"] + prepared.report["val_images"] == 36


def test_csv_row_with_missing_file_names_the_line(tmp_path):
    (tmp_path / "labels.csv").write_text("path,label\nnope.jpg,cat\n")
    with pytest.raises(DataError, match=r"line 2: nope.jpg does not exist"):
        list_samples(tmp_path / "labels.csv")


def test_csv_without_header_is_refused(tmp_path):
    (tmp_path / "labels.csv").write_text("a.jpg,cat\n")
    with pytest.raises(DataError, match="path,label"):
        list_samples(tmp_path / "labels.csv")


def test_non_images_are_ignored_and_bad_images_skipped_and_named(colour_dataset):
    (colour_dataset / "red" / "notes.txt").write_text("not an image")
    (colour_dataset / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (colour_dataset / "README.md").write_text("hello")
    prepared = _prepare(colour_dataset)
    assert prepared.report["ignored_files"] == 2
    assert [Path(s["path"]).name for s in prepared.report["skipped"]] == ["broken.jpg"]
    assert "broken.jpg" in prepared.report["skipped"][0]["reason"]
    assert prepared.report["train_images"] + prepared.report["val_images"] == 36


def test_a_confined_listing_opens_no_file_whose_real_path_leaves_data(tmp_path):
    data = make_colour_dataset(tmp_path / "data", per_class=4)
    outside = make_colour_dataset(tmp_path / "outside", per_class=2)
    secret = outside / "red" / "red_000.png"  # an image, so reading it would look fine
    (data / "red" / "passwd.png").symlink_to(secret)
    (data / "linked").symlink_to(outside / "green")  # a class folder that is a link
    (data / "blue" / "again.png").symlink_to(data / "green" / "green_000.png")  # inside DATA
    everything = list_samples(data)
    assert {s.path.name for s in everything.samples} >= {"passwd.png", "green_000.png"}

    listing = list_samples(data, confine=True)
    refused = sorted(Path(item["path"]).relative_to(data).as_posix() for item in listing.refused)
    assert refused == ["linked/green_000.png", "linked/green_001.png", "red/passwd.png"]
    assert all(s.path.resolve().is_relative_to(data) for s in listing.samples)
    assert "again.png" in {s.path.name for s in listing.samples}
    lines: list[str] = []
    prepared = prepare(listing, SIZE, val_split=0.25, seed=1, log=lines.append)
    [reported] = [s for s in prepared.report["skipped"] if s["path"].endswith("passwd.png")]
    assert "leaves the dataset folder" in reported["reason"]
    assert any("passwd.png" in line and "not read" in line for line in lines), lines
    assert prepared.report["train_images"] + prepared.report["val_images"] == 13


def _nothing(root: Path) -> None:
    pass


def _one_class(root: Path) -> None:
    make_colour_dataset(root, per_class=3)
    shutil.rmtree(root / "red")
    shutil.rmtree(root / "green")


def _class_with_one_image(root: Path) -> None:
    make_colour_dataset(root, per_class=3)
    for extra in sorted((root / "red").iterdir())[1:]:
        extra.unlink()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (_nothing, "no images found"),
        (_one_class, "at least 2 classes to train a classifier; found only class 'blue'"),
        (_class_with_one_image, "too few in: red"),
    ],
)
def test_unusable_datasets_get_clear_errors(tmp_path, setup, message):
    root = tmp_path / "data"
    root.mkdir()
    setup(root)
    with pytest.raises(DataError, match=message):
        _prepare(root)


def test_missing_data_path(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        list_samples(tmp_path / "nothing")


def test_duplicates_are_reported_and_kept_out_of_validation(tmp_path):
    root = make_colour_dataset(tmp_path / "d", per_class=8)
    for i in range(4):  # four copies of one red image under other names
        shutil.copy(root / "red" / "red_000.png", root / "red" / f"copy_{i}.png")
    prepared = _prepare(root, val_split=0.5)
    groups = prepared.report["duplicates"]
    assert len(groups) == 1 and len(groups[0]["files"]) == 5
    train = set(prepared.train.tolist())
    copies = [
        i
        for i in range(len(prepared.targets))
        if np.array_equal(prepared.pixels[i], prepared.pixels[int(prepared.train[0])]) or False
    ]
    sides = {}
    for i in [*prepared.train.tolist(), *prepared.val.tolist()]:
        sides.setdefault(prepared.pixels[i].tobytes(), set()).add(i in train)
    assert all(len(s) == 1 for s in sides.values()), "a copy sits on both sides"
    assert len(copies) >= 1


def test_copies_across_train_and_val_folders_leave_validation(tmp_path):
    make_colour_dataset(tmp_path / "d" / "train", per_class=4)
    make_colour_dataset(tmp_path / "d" / "val", per_class=2, seed=5)
    shutil.copy(tmp_path / "d/train/blue/blue_000.png", tmp_path / "d/val/blue/leak.png")
    prepared = _prepare(tmp_path / "d")
    assert [Path(p).name for p in prepared.report["removed_from_val"]] == ["leak.png"]
    assert prepared.report["val_images"] == 6
    assert any("copies of training images" in w for w in prepared.report["warnings"])


def test_strong_imbalance_is_reported_and_met_with_class_weights(tmp_path):
    root = make_colour_dataset(tmp_path / "d", per_class=4)
    rng = np.random.default_rng(3)
    for i in range(30):
        Image.fromarray(rng.integers(150, 255, (16, 16, 3), dtype=np.uint8)).save(
            root / "red" / f"more_{i}.png"
        )
    prepared = _prepare(root)
    weights = prepared.class_weights()
    red = prepared.labels.index("red")
    assert weights[red] < 1 < weights[prepared.labels.index("blue")]
    assert any("strong class imbalance" in w for w in prepared.report["warnings"])


def test_balanced_data_has_no_class_weights(colour_dataset):
    assert _prepare(colour_dataset).class_weights() is None


def test_training_pipeline_and_serving_path_give_the_same_tensor(colour_dataset):
    """No training/serving skew: what the model sees in training is exactly what
    the service's load_image makes of the same file's bytes."""
    listing = list_samples(colour_dataset)
    prepared = prepare(listing, SIZE, val_split=0.25, seed=1, log=lambda message: None)
    batch_pixels, batch_targets = next(
        iter(
            finetune.batches(
                prepared.pixels, prepared.targets, prepared.train[:4], 4, shuffle=False, seed=0
            )
        )
    )
    for row, index in enumerate(prepared.train[:4]):
        sample = listing.samples[index]
        served = load_image(sample.path.read_bytes(), SIZE)
        np.testing.assert_array_equal(batch_pixels.numpy()[row], served)
        assert prepared.labels[int(batch_targets[row])] == sample.label


def test_images_lying_directly_in_data_are_told_to_go_into_class_folders(tmp_path):
    folder = make_colour_dataset(tmp_path / "data", per_class=2) / "red"
    with pytest.raises(DataError, match="directly in the folder.*one sub-folder per class"):
        list_samples(folder)


@pytest.mark.parametrize(
    ("val_split", "expected"),
    [
        (0.9, ["too few training images", "smaller than validation"]),
        (0.2, ["validation images: one image moves accuracy by"]),
    ],
)
def test_a_split_too_small_to_train_or_measure_is_said_plainly(tmp_path, val_split, expected):
    listing = list_samples(make_colour_dataset(tmp_path / "data", per_class=12))
    prepared = prepare(listing, (8, 8), val_split=val_split, seed=0, log=lambda message: None)
    warnings = " | ".join(prepared.report["warnings"])
    for words in expected:
        assert words in warnings, warnings


def test_adding_images_leaves_every_old_image_in_its_split(tmp_path):
    data = make_colour_dataset(tmp_path / "data", per_class=45, size=8)
    kwargs = {"val_split": 0.2, "test_split": 0.15, "seed": 3}

    def splits() -> dict[str, str]:
        listing = list_samples(data)
        prepared = prepare(listing, (8, 8), log=lambda message: None, **kwargs)
        names = ("train", "val", "test")
        rows = (prepared.train, prepared.val, prepared.test)
        return {
            str(listing.samples[i].path): name
            for name, part in zip(names, rows, strict=True)
            for i in part
        }

    before = splits()
    assert set(before.values()) == {"train", "val", "test"}
    rng = np.random.default_rng(99)
    for label, colour in COLOURS.items():  # 20 new images per class beside the old ones
        for i in range(20):
            colour_image(colour, 8, rng).save(data / label / f"new_{i:03d}.png")
    after = splits()
    assert len(after) == len(before) + 60
    assert {path: after[path] for path in before} == before


def test_near_copies_of_training_images_leave_validation(tmp_path):
    """A resized, re-encoded copy is no new evidence either (models.near_duplicates)."""
    rng = np.random.default_rng(8)
    for split, count in (("train", 4), ("val", 2)):
        for label in ("a", "b"):
            (tmp_path / "d" / split / label).mkdir(parents=True)
            for i in range(count):
                scene(64, rng).save(tmp_path / "d" / split / label / f"{i}.png")
    original = Image.open(tmp_path / "d/train/b/1.png")
    original.resize((45, 45)).save(tmp_path / "d/val/b/near.jpg", quality=60)
    prepared = _prepare(tmp_path / "d")
    assert [Path(p).name for p in prepared.report["removed_near_copies"]] == ["near.jpg"]
    assert prepared.report["removed_from_val"] == []  # not the same file
    assert prepared.report["val_images"] == 4
    assert any("near-copies of training images" in w for w in prepared.report["warnings"])
