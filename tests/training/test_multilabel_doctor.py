"""``ktl doctor`` on a multi-label CSV: the per-label probe, the multi-label suspects
and, end to end on the generated demo, flipped labels found."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.cli import ktl_here
from training.dataset.corrections import read_rows
from training.dataset.demo import SHAPES, make_multilabel_dataset
from training.diagnosis.probe import multilabel_accuracy, multilabel_probe
from training.diagnosis.suspects import label_set, multilabel_issue_rows

LABELS = ["a", "b", "c"]


def _synthetic(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """True 0/1 targets of 240 images, confident probabilities of them, and the
    given targets with one label switched on 24 images (which)."""
    rng = np.random.default_rng(seed)
    truth = (rng.random((240, 3)) < 0.4).astype(np.float32)
    probabilities = np.where(truth == 1, 0.93, 0.04) + rng.uniform(-0.03, 0.03, truth.shape)
    given = truth.copy()
    flipped = rng.choice(240, 24, replace=False)
    for i in flipped:
        k = rng.integers(3)
        given[i, k] = 1 - given[i, k]
    return truth, probabilities, given, flipped


def test_multilabel_issues_are_the_contradicted_label_sets_with_the_probes_set():
    truth, probabilities, given, flipped = _synthetic(0)
    rows = multilabel_issue_rows(probabilities, given, LABELS)
    found = {row["index"] for row in rows}
    # confident learning is cautious: a contradiction less confident than the label's
    # typical one (p = 0.06 where most are 0.04) is not flagged
    assert found <= set(flipped.tolist()) and len(found) >= 0.8 * len(flipped)
    for row in rows:
        i = row["index"]
        assert row["kind"] == "label_issue" and row["action"] == "exclude"
        assert row["given_label"] == label_set(LABELS, given[i] == 1)
        assert row["suggested_label"] == label_set(LABELS, truth[i] == 1)
        switched = int(np.flatnonzero(truth[i] != given[i])[0])
        expected = (
            probabilities[i, switched] if given[i, switched] else 1 - probabilities[i, switched]
        )
        assert row["score"] == pytest.approx(1 - expected, abs=1e-4)
        assert f"p({LABELS[switched]})" in row["reason"]
    assert all(
        row["action"] == "review"
        for row in multilabel_issue_rows(probabilities, given, LABELS, strong=False)
    )


def test_a_label_set_is_written_as_a_labels_cell():
    assert label_set(LABELS, np.array([True, False, True])) == "a;c"
    assert label_set(LABELS, np.zeros(3, bool)) == ""


def test_where_the_probe_agrees_with_the_given_set_its_worst_label_is_switched(monkeypatch):
    # cleanlab's per-label thresholds can flag an image whose probabilities agree with
    # its given set at 0.5 (an under-confident label): the suggestion still differs
    import cleanlab.multilabel_classification.filter as cleanlab_filter

    monkeypatch.setattr(cleanlab_filter, "find_label_issues", lambda *a, **k: np.array([0]))
    probabilities = np.array([[0.9, 0.45, 0.02], [0.9, 0.1, 0.1]])
    given = np.array([[1, 0, 0], [1, 0, 0]], np.float32)
    rows = multilabel_issue_rows(probabilities, given, LABELS)
    assert [(row["index"], row["given_label"], row["suggested_label"]) for row in rows] == [
        (0, "a", "a;b")
    ]
    assert rows[0]["score"] == pytest.approx(0.45) and "p(b) = 0.45, not given" in rows[0]["reason"]


def test_the_per_label_probe_is_out_of_sample_and_its_accuracy_per_label():
    rng = np.random.default_rng(1)
    targets = (rng.random((150, 2)) < 0.5).astype(np.float32)
    features = np.concatenate(
        [targets * 3 + rng.normal(0, 1, targets.shape), rng.normal(0, 1, (150, 6))], axis=1
    )
    folds = np.arange(150) % 5
    probabilities = multilabel_probe(features, targets, folds)
    assert probabilities.shape == (150, 2)
    assert ((probabilities >= 0.5) == (targets == 1)).mean() > 0.85
    # a label one value in the other folds: that value, not a fit
    constant = np.zeros((150, 1), np.float32)
    assert multilabel_probe(features, constant, folds).max() == pytest.approx(0.0, abs=1e-9)
    quality = multilabel_accuracy(
        np.array([[0.9, 0.2], [0.8, 0.7], [0.1, 0.1], [0.6, 0.4]]),
        np.array([[1, 0], [1, 1], [0, 0], [0, 0]], np.float32),
    )
    assert quality["accuracy"] == pytest.approx(7 / 8)
    assert quality["majority_baseline"] == pytest.approx(0.625)  # (2/4 + 3/4) / 2
    assert quality["skill"] == pytest.approx((7 / 8 - 0.625) / 0.375, abs=1e-4)


def flip_one_label(data: Path, share: float, seed: int) -> tuple[Path, set[str]]:
    """A copy of the CSV ``data`` beside it with one shape added or removed on
    ``share`` of the images; and those images' paths."""
    with open(data, newline="") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(seed)
    flipped = set()
    for i in rng.choice(len(rows), round(share * len(rows)), replace=False):
        have = [label for label in rows[i]["labels"].split(";") if label]
        shape = SHAPES[rng.integers(len(SHAPES))]
        have = [x for x in have if x != shape] if shape in have else [*have, shape]
        rows[i]["labels"] = ";".join(have)
        flipped.add(rows[i]["path"])
    noisy = data.parent / "noisy.csv"
    with open(noisy, "w", newline="") as f:
        writer = csv.DictWriter(f, ["path", "labels"])
        writer.writeheader()
        writer.writerows(rows)
    return noisy, flipped


@pytest.mark.slow
def test_the_doctor_finds_flipped_labels_of_the_multilabel_demo(tmp_path):
    data = make_multilabel_dataset(tmp_path / "data", images=300, size=64, seed=0)
    noisy, flipped = flip_one_label(data, 0.1, seed=1)
    out = tmp_path / "doctor"
    started = time.monotonic()
    done = ktl_here(
        "doctor",
        str(noisy),
        "--out",
        str(out),
        "--backbone",
        "efficientnet_lite0",
        "--image-size",
        "96",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["task"] == "multilabel" and result["probe"]["strong"]
    assert set(result["balance"]["classes"]) == set(SHAPES)
    with open(out / "suspects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    issues = [row for row in rows if row["kind"] == "label_issue"]
    found = {row["path"] for row in issues}
    precision, recall = len(found & flipped) / max(1, len(found)), len(found & flipped) / 30
    print(
        f"\n{len(found)} flagged, {len(flipped)} flipped of {result['images']}: precision "
        f"{precision:.3f}, recall {recall:.3f}, {time.monotonic() - started:.1f} s; "
        f"probe {result['probe']}"
    )
    assert precision >= 0.7 and recall >= 0.5
    for row in issues:
        assert row["suggested_label"] != row["given_label"]
        assert set(filter(None, row["suggested_label"].split(";"))) <= set(SHAPES)
    excluded, _ = read_rows(out / "suspects.csv", "exclude")  # what ktl train --exclude reads
    assert {row["path"] for _, row in excluded} >= found
    page = (out / "report.html").read_text()
    assert "Label issues" in page and "per label (each label its more common answer" in page


def test_the_summary_speaks_of_labels_and_empty_sets(capsys):
    from cli.commands.doctor import print_summary

    row = {"path": "images/1.png", "given_label": "", "suggested_label": "a;c", "score": 0.9}
    print_summary(
        {
            "data": "labels.csv",
            "layout": "csv (multi-label)",
            "task": "multilabel",
            "images": 10,
            "labels": LABELS,
            "skipped": [],
            "ignored_files": 0,
            "probe": {"description": "a probe", "accuracy": 0.9, "majority_baseline": 0.6},
            "suspects": [{**row, "kind": "label_issue"}],
            "near_duplicate_groups": [],
            "balance": {"classes": {}, "class_weights": None, "imbalance_ratio": 1.0},
            "seconds": 1.0,
        }
    )
    said = capsys.readouterr().out
    assert "10 images, 3 labels" in said and "90.0% per label out of sample" in said
    assert "images/1.png: (none) -> a;c (score 0.90)" in said


def test_a_backbone_without_pretrained_weights_is_refused_on_multilabel_data(tmp_path):
    data = make_multilabel_dataset(tmp_path / "data", images=12, size=16, seed=0)
    out = tmp_path / "doctor"
    done = ktl_here(
        "doctor", str(data), "--out", str(out), "--backbone", "smallcnn", "--weights", "none"
    )
    assert done.returncode == 2
    assert "reads a pretrained backbone's features, and smallcnn has none" in done.stderr
    assert not (out / "suspects.csv").exists()


@pytest.mark.slow
def test_a_multilabel_job_leaves_the_excluded_out_of_train_and_validation_only(tmp_path):
    from tests.support.trained import MULTILABEL_FLAGS
    from training.config import build_config
    from training.dataset.splits import content_hashes
    from training.job import run_job
    from training.multilabel.data import drawn_parts, list_multilabel

    data = make_multilabel_dataset(tmp_path / "data", images=160, size=24, seed=0)
    listing = list_multilabel(data)
    hashes, _ = content_hashes(listing.samples)  # type: ignore[arg-type]
    parts, _ = drawn_parts(listing, hashes, val_split=0.2, test_split=0.2, seed=42)
    chosen = {name: parts[name][:3] for name in ("train", "val", "test")}
    suspects = tmp_path / "suspects.csv"
    with open(suspects, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "given_label", "suggested_label", "kind", "action"])
        for i in sorted(sum(chosen.values(), [])):
            writer.writerow([f"images/{i:05d}.png", "", "", "label_issue", "exclude"])
        writer.writerow([f"images/{parts['train'][5]:05d}.png", "", "", "label_issue", "review"])
    flags = {**MULTILABEL_FLAGS, "val_split": 0.2, "test_split": 0.2, "seed": 42, "int8": False}
    config = build_config(
        {},
        {
            **flags,
            "data": str(data),
            "name": "m",
            "store": str(tmp_path / "s"),
            "exclude": str(suspects),
        },
    )
    summary = run_job(config, log=lambda message: None).to_json()
    dataset = summary["dataset"]
    assert dataset["corrections"]["exclude"]["excluded"] == 6
    assert dataset["corrections"]["exclude"]["kept_in_test"] == 3
    assert dataset["train_images"] == len(parts["train"]) - 3
    assert dataset["val_images"] == len(parts["val"]) - 3
    assert dataset["test_images"] == len(parts["test"])  # the test split stays DATA's own
