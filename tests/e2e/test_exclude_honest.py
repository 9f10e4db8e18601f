"""doctor -> --exclude -> train as a user runs them (``ktl train`` as a process, the
doctor and ``ktl evaluate`` in this process), and the three figures that keep
the published test accuracy honest: the summary names the excluded test images,
the accuracy on the original test images is published beside the new one, and
``ktl evaluate`` on DATA's test split agrees with it (``training.dataset.held_out``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from models.bundle import load_bundle
from tests.support.cli import ktl, ktl_here
from tests.support.patterns import flip_labels, make_pattern_dataset

BACKBONE = Path(__file__).resolve().parents[1] / "fixtures" / "smallcnn_patterns.h5"
PROBE = ("--backbone", "smallcnn", "--weights", str(BACKBONE))
SPLIT = ("--test-split", "0.3", "--seed", "5")

pytestmark = pytest.mark.slow  # a doctor's probe and a training


def _excluding_every_suggestion(out: Path) -> tuple[Path, int]:
    """suspects.csv with every row a person accepts set to exclude (label issues,
    whatever the doctor pre-filled, and the near-copies it excluded)."""
    with open(out / "suspects.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    for row in rows:
        if row["kind"] == "label_issue":
            row["action"] = "exclude"
    edited = out / "edited.csv"
    with open(edited, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return edited, len({r["path"] for r in rows if r["action"] == "exclude"})


def test_doctor_exclude_train_publishes_the_original_test_accuracy_evaluate_agrees(tmp_path):
    data = make_pattern_dataset(tmp_path / "data", ("star", "cross", "stripes", "dots"), 30, 64, 3)
    flip_labels(data, 0.15, 8)
    out, store = tmp_path / "doctor", tmp_path / "store"
    doctor = ktl_here("doctor", str(data), *PROBE, *SPLIT, "--out", str(out))
    assert doctor.returncode == 0, doctor.stderr
    edited, excluded = _excluding_every_suggestion(out)
    assert excluded >= 5, "the planted wrong labels are found"
    recipe = ("--epochs", "4", "--min-steps", "0", "--fine-tune-epochs", "0", "--batch-size", "16")
    store_flags = ("--name", "pats", "--store", str(store))
    train = ktl("train", str(data), *store_flags, *PROBE, *SPLIT, *recipe, "--exclude", str(edited))
    assert train.returncode == 0, train.stderr
    metadata = load_bundle(store / "pats" / "1").metadata
    original, test = metadata.evaluation.original_test, metadata.evaluation.test
    changes = metadata.dataset["original_test"]
    assert original is not None and test is not None
    # ktl evaluate --split test scores copies of training images too; these data have none
    assert not metadata.dataset["removed_near_copies"] and not metadata.dataset["removed_from_val"]
    # the excluded test images are counted and scored in the original figure only
    assert changes["excluded"] >= 1, "some excluded images lie in the test split"
    assert original.excluded == changes["excluded"]
    assert original.images == test.images + changes["excluded"] == changes["images"]
    assert sum(changes["excluded_by_split"].values()) == excluded
    # the summary states them, and gives both figures
    summary = train.stdout
    assert (
        f"{changes['excluded']} of the {changes['images']} original test images changed by "
        f"the CSVs ({changes['excluded']} excluded, 0 relabelled)" in summary
    )
    assert f"Corrections: {changes['excluded']} of the {changes['images']}" in train.stderr
    assert f"accuracy {test.accuracy:.3f} (95 % CI" in summary
    assert f"accuracy {original.accuracy:.3f} (95 % CI" in summary
    assert f"{original.images} images), " in summary.split("original")[1]
    # ktl evaluate on DATA's test split scores the same images, the same way
    evaluate = ktl_here(
        "evaluate", "pats", str(data), "--split", "test", "--store", str(store), "--json"
    )
    assert evaluate.returncode == 0, evaluate.stderr
    scored = json.loads(evaluate.stdout)["figures"]
    assert scored["images"] == original.images
    assert scored["accuracy"] == pytest.approx(original.accuracy, abs=1e-6)
