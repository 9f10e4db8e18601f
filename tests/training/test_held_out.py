"""``--exclude`` and ``--relabel`` never move an image from one split to another:
the split is drawn on DATA as it is, and what the CSVs did to the test split is
counted (``training.dataset.held_out``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from models.metadata import BundleMetadata
from tests.support.data import make_colour_dataset
from training.dataset.corrections import corrected_listing
from training.dataset.data import list_samples, prepare, split_listing
from training.dataset.held_out import describe
from training.evaluation.scoring import listed, rows_scored, shared_rows

SIZE = (8, 8)
HEADER = "path,given_label,suggested_label,kind,score,action\n"


def _prepare(listing, test_split):
    return prepare(listing, SIZE, val_split=0.2, test_split=test_split, seed=3, log=lambda m: None)


def _splits(listing, prepared) -> dict[str, str]:
    rows = {"train": prepared.train, "val": prepared.val, "test": prepared.test}
    return {
        f"{listing.samples[i].path.parent.name}/{listing.samples[i].path.name}": name
        for name, indices in rows.items()
        for i in indices
    }


def _csv(path: Path, rows: list[tuple[str, str, str]]) -> str:
    """A doctor CSV: (path, suggested label, action) rows."""
    lines = [f"{f},{f.split('/')[0]},{s},label_issue,0.9,{a}" for f, s, a in rows]
    path.write_text(HEADER + "\n".join(lines) + "\n")
    return str(path)


def test_excluding_images_moves_no_other_image_and_keeps_the_test_split(tmp_path):
    # 40 images a class: just enough for --test-split auto to hold out a test split.
    # Excluding three red images would leave red 37 and, drawn on the corrected
    # listing, no test split at all; drawn on DATA, the test split stays.
    data = make_colour_dataset(tmp_path / "data", per_class=40, size=8)
    plain = list_samples(data)
    before = _splits(plain, _prepare(plain, None))
    test = sorted(f for f, split in before.items() if split == "test")
    red_test = [f for f in test if f.startswith("red/")]
    red_train = [f for f, split in before.items() if split == "train" and f.startswith("red/")]
    dropped = [red_test[0], red_train[0], red_train[1]]
    csv = _csv(tmp_path / "s.csv", [(f, "green", "exclude") for f in dropped])
    listing = corrected_listing(str(data), csv, None)
    prepared = _prepare(listing, None)
    after = _splits(listing, prepared)
    assert after == {f: s for f, s in before.items() if f not in dropped}
    original = prepared.report["original_test"]
    assert original["images"] == len(test)
    assert original["excluded"] == 1 and original["relabelled"] == 0
    assert original["excluded_by_split"] == {"train": 2, "val": 0, "test": 1}
    assert [Path(x["path"]).name for x in original["excluded_files"]] == [Path(red_test[0]).name]
    assert original["excluded_files"][0]["label"] == "red"
    assert describe(original).startswith(
        f"1 of the {len(test)} original test images changed by the CSVs (1 excluded, 0 relabelled)"
    )
    assert "also 2 excluded in train" in describe(original)


def test_a_relabelled_test_image_stays_in_test_and_keeps_its_original_label_on_record(tmp_path):
    data = make_colour_dataset(tmp_path / "data", per_class=12, size=8)
    plain = list_samples(data)
    before = _splits(plain, _prepare(plain, 0.3))
    moved = sorted(f for f, split in before.items() if split == "test" and f.startswith("blue/"))
    csv = _csv(tmp_path / "s.csv", [(f, "green", "relabel") for f in moved])
    listing = corrected_listing(str(data), None, csv)
    prepared = _prepare(listing, 0.3)
    assert _splits(listing, prepared) == before
    original = prepared.report["original_test"]
    assert original["relabelled"] == len(moved) and original["excluded"] == 0
    assert sorted(x["label"] for x in original["relabelled_files"]) == ["blue"] * len(moved)
    assert {x["now"] for x in original["relabelled_files"]} == {"green"}


def test_without_csvs_nothing_is_recorded(colour_dataset):
    prepared = _prepare(list_samples(colour_dataset), 0.3)
    assert "original_test" not in prepared.report


def _version(seed: int, removed: tuple[str, ...] = ()) -> SimpleNamespace:
    """What ``training.evaluation.scoring`` reads of a published version: its split settings and
    the copies of training images it left out of validation and test."""
    metadata = BundleMetadata(
        name="colours",
        version=seed,
        labels=("blue", "green", "red"),
        image_size=(8, 8),
        training={"val_split": 0.2, "seed": seed},
        dataset={"test_split": 0.3, "removed_near_copies": list(removed)},
    )
    return SimpleNamespace(name="colours", version=seed, metadata=metadata)


def test_two_versions_are_compared_only_on_images_both_were_tested_on(colour_dataset):
    source = listed(colour_dataset)
    listing, hashes = source.listing, source.hashes
    paths = [str(s.path) for s in listing.samples]
    first = [i for i in range(len(paths)) if _assigned(listing, hashes, 3)[i] == "test"]
    copies = [paths[i] for i in first[:2]]  # left out of its test split as near-copies
    old, new = _version(3, tuple(copies)), _version(3)
    # Same settings: exactly the images the version with copies was tested on (the
    # "same 169 images" of a 165-image test split is what this prevents)
    assert shared_rows((new, old), listing, hashes, "test", first) == first[2:]
    other = _version(4)
    theirs = {i for i, s in enumerate(_assigned(listing, hashes, 4)) if s == "test"}
    both = shared_rows((old, other), listing, hashes, "test", first)
    assert both == sorted(set(first[2:]) & theirs)
    assert len(both) < len(first)


def test_its_own_test_split_is_scored_as_it_was_tested_without_the_copies_it_left_out(
    colour_dataset,
):
    source = listed(colour_dataset)
    listing, hashes = source.listing, source.hashes
    first = [i for i in range(len(listing.samples)) if _assigned(listing, hashes, 3)[i] == "test"]
    copies = tuple(str(listing.samples[i].path) for i in first[:2])
    version = _version(3, copies)
    assert rows_scored(version, listing, hashes, "test") == first[2:]
    # Any other split, or a split drawn by another version's settings, is scored whole.
    assert rows_scored(version, listing, hashes, "test", drawn_by=_version(3)) == first
    everything = rows_scored(version, listing, hashes, "all")
    assert set(first) <= set(everything)


def _assigned(listing, hashes, seed):
    return split_listing(listing, hashes, val_split=0.2, test_split=0.3, seed=seed).splits


def _scored_test(files: list[str], targets: list[int], answers: list[int]):
    from training.evaluation.evaluate import Validation

    probabilities = np.eye(3, dtype=np.float32)[answers] * 0.8 + 0.2 / 3
    return Validation(
        probabilities, np.array(targets, np.int32), files, None, np.arange(len(files))
    )


def test_the_original_test_figures_use_datas_labels_and_score_the_excluded_images(tmp_path):
    import tensorflow as tf

    from training.config import build_config
    from training.dataset.data import Prepared
    from training.distribution import Local
    from training.evaluation.final import _original_test

    data = make_colour_dataset(tmp_path / "data", per_class=2, size=8)
    files = [str(data / "red" / "red_000.png"), str(data / "blue" / "blue_000.png")]
    # the model answers red, blue; the CSV relabelled the blue image green (wrongly)
    test = _scored_test(files, [2, 1], [2, 0])
    entry = {
        "excluded": 0,
        "relabelled": 1,
        "excluded_files": [],
        "relabelled_files": [{"path": files[1], "label": "blue", "now": "green"}],
    }
    labels = ["blue", "green", "red"]
    prepared = Prepared(
        labels,
        np.zeros((0, 8, 8, 3), np.uint8),
        np.zeros(0, np.int32),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        {"original_test": entry},
    )
    config = build_config(
        {},
        {
            "data": str(data),
            "name": "c",
            "backbone": "smallcnn",
            "image_size": 8,
            "weights": "none",
        },
    )
    counts = {label: 2 for label in labels}

    def red(pixels):  # answers red for every image
        return tf.one_hot(tf.fill([tf.shape(pixels)[0]], 2), 3)

    figures = _original_test(Local(), red, prepared, test, config, counts, lambda m: None)
    assert figures.images == 2 and figures.accuracy == 1.0  # blue, as DATA says
    assert figures.relabelled == 1 and figures.unknown == 0
    excluded = [{"path": str(data / "green" / "green_000.png"), "label": "green"}]
    entry.update(excluded=1, excluded_files=excluded)
    figures = _original_test(Local(), red, prepared, test, config, counts, lambda m: None)
    assert figures.images == 3 and figures.accuracy == pytest.approx(2 / 3)
    assert figures.excluded == 1
