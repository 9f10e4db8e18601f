"""Multi-label without TensorFlow (issue 31): the CSV and the task it asks for, the
split that keeps every label in validation and test, thresholds and temperatures
per label, the figures, and the set decision."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from models.decision import chosen
from models.options import TrainOptions
from training.dataset.data import DataError
from training.dataset.demo import make_multilabel_dataset
from training.multilabel import decisions
from training.multilabel.data import (
    MultiListing,
    MultiSample,
    detect_task,
    list_multilabel,
    split_multilabel,
)
from training.multilabel.figures import average_precision, multilabel_figures


def _csv(folder: Path, rows: list[str], header: str = "path,labels") -> Path:
    for row in rows:
        (folder / row.split(",")[0]).write_bytes(b"not read here")
    path = folder / "data.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_the_task_is_multilabel_when_a_row_has_several_labels_or_none(tmp_path):
    several = _csv(tmp_path, ["a.png,cat;dog", "b.png,cat"])
    assert detect_task(several, "auto") == "multilabel"
    assert detect_task(_csv(tmp_path, ["a.png,", "b.png,cat"]), "auto") == "multilabel"
    assert detect_task(_csv(tmp_path, ["a.png,cat"], "path,label"), "auto") == "single_label"
    assert detect_task(tmp_path, "auto") == "single_label"  # folders stay single-label
    assert detect_task(several, "single_label") == "single_label"


def test_a_labels_column_of_single_labels_asks_which_task(tmp_path):
    one_each = _csv(tmp_path, ["a.png,cat", "b.png,dog"])
    with pytest.raises(DataError, match="--task multilabel"):
        detect_task(one_each, "auto")
    assert detect_task(one_each, "multilabel") == "multilabel"


def test_task_multilabel_needs_a_labels_csv(tmp_path):
    with pytest.raises(DataError, match="path,labels"):
        detect_task(tmp_path, "multilabel")
    assert "task" in TrainOptions.model_fields and "min_precision" in TrainOptions.model_fields


def test_the_csv_splits_labels_on_semicolons(tmp_path):
    listing = list_multilabel(_csv(tmp_path, ["a.png, cat ; dog;cat", "b.png,", "c.png,dog"]))
    assert listing.labels == ["cat", "dog"]
    assert [s.labels for s in listing.samples] == [("cat", "dog"), (), ("dog",)]
    assert listing.targets().tolist() == [[1, 1], [0, 0], [0, 1]]


def _listing(labels: list[tuple[str, ...]]) -> tuple[MultiListing, list[str | None]]:
    samples = [MultiSample(Path(f"{i}.png"), tags) for i, tags in enumerate(labels)]
    hashes: list[str | None] = [
        hashlib.sha256(str(i).encode()).hexdigest() for i in range(len(labels))
    ]
    return MultiListing(samples, sorted({t for tags in labels for t in tags})), hashes


def test_every_label_reaches_validation_and_test_when_it_can():
    # "rare" is on 3 images: by hash alone it would often miss val or test
    labels = [("common",)] * 200 + [("common", "rare")] * 3
    listing, hashes = _listing(labels)
    for seed in range(10):
        drawn = split_multilabel(listing, hashes, val_split=0.2, test_split=0.15, seed=seed)
        rare = [s for s, tags in zip(drawn.splits, labels, strict=True) if "rare" in tags]
        assert {"train", "val", "test"} <= set(rare), (seed, rare)
        assert not drawn.notes


def test_the_split_says_when_a_label_cannot_be_everywhere():
    listing, hashes = _listing([("common",)] * 100 + [("common", "rare")])
    drawn = split_multilabel(listing, hashes, val_split=0.2, test_split=0.15, seed=0)
    assert any("'rare'" in note for note in drawn.notes)


def test_the_split_depends_on_content_not_order():
    listing, hashes = _listing([("a",), ("b",), ("a", "b"), ()] * 50)
    first = split_multilabel(listing, hashes, val_split=0.2, test_split=0.15, seed=1).splits
    order = list(reversed(range(len(hashes))))
    backwards = MultiListing([listing.samples[i] for i in order], listing.labels)
    again = split_multilabel(
        backwards, [hashes[i] for i in order], val_split=0.2, test_split=0.15, seed=1
    ).splits
    assert [again[order.index(i)] for i in range(len(hashes))] == first


def test_the_threshold_is_the_best_f1_or_reaches_the_precision_asked():
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0], np.float32)
    best = decisions.choose_threshold(p, y, None)
    # answering the top 4 gives F1 2*3/(4+4) = 0.75, the best cut; halfway to the 5th
    assert best.threshold == pytest.approx(0.55)
    strict = decisions.choose_threshold(p, y, 1.0)
    assert strict.threshold == pytest.approx(0.75)  # the top 2: precision 1
    assert decisions.choose_threshold(p, y, 1.0).note is None
    impossible = decisions.choose_threshold(np.array([0.9, 0.1]), np.array([0.0, 1.0]), 0.99)
    assert "best F1" in (impossible.note or "")
    assert decisions.choose_threshold(p, np.zeros(8, np.float32), None).note


def test_a_temperature_is_kept_only_where_it_lowers_held_out_nll():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.02, 0.98, 400)  # each image's real chance of the label
    y = np.stack([rng.random(400) < truth, rng.random(400) < 0.5], axis=1).astype(np.float32)
    overconfident = decisions.scaled(truth, 0.25)  # label 0: logits 4 times too large
    noise = rng.uniform(0.3, 0.7, 400)  # label 1: nothing a temperature can mend
    probabilities = np.stack([overconfident, noise], axis=1)
    temps = decisions.temperatures(probabilities, y)
    assert temps[0] == pytest.approx(4, rel=0.3)
    assert temps[1] == 1.0 or decisions.binary_nll(
        decisions.scaled(noise, temps[1]), y[:, 1]
    ) < decisions.binary_nll(noise, y[:, 1])


def test_the_figures_on_a_hand_counted_case():
    p = np.array([[0.9, 0.1], [0.8, 0.7], [0.2, 0.3], [0.1, 0.9]])
    y = np.array([[1, 0], [1, 0], [0, 0], [0, 1]], np.float32)
    figures = multilabel_figures(p, y, ["a", "b"], np.array([0.5, 0.5]))
    # answered: a on rows 0,1 (both right); b on rows 1 (wrong), 3 (right)
    assert figures["per_label"]["a"]["precision"] == 1.0
    assert figures["per_label"]["b"]["precision"] == pytest.approx(0.5)
    assert figures["micro_f1"] == pytest.approx(2 * 3 / (4 + 3), abs=1e-6)
    assert figures["exact_match"] == pytest.approx(0.75)
    assert figures["hamming_loss"] == pytest.approx(1 / 8)
    assert figures["none_images"] == 1 and figures["none_answered_empty"] == 1.0
    assert figures["map"] == pytest.approx(1.0)
    low, high = figures["per_label"]["b"]["precision_interval"]
    assert low < 0.5 < high


def test_average_precision_ranks_positives():
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 0, 1])) == pytest.approx(
        (1 + 2 / 3) / 2
    )
    assert average_precision(np.array([0.5]), np.array([0])) is None


def test_the_set_decision_may_be_empty():
    rows = np.array([[0.9, 0.2, 0.6], [0.1, 0.1, 0.1]], np.float32)
    picked = chosen(rows, np.array([0.5, 0.5, 0.7]))
    assert picked.tolist() == [[True, False, False], [False, False, False]]


def test_the_demo_dataset_has_every_combination_and_empty_images(tmp_path):
    listing = list_multilabel(make_multilabel_dataset(tmp_path, images=60, size=32))
    combos = {sample.labels for sample in listing.samples}
    assert listing.labels == ["circle", "square", "triangle"]
    assert () in combos and any(len(c) >= 2 for c in combos)


def test_a_service_job_never_reads_a_file_linked_from_outside(tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"private")
    data = tmp_path / "data"
    data.mkdir()
    (data / "link.png").symlink_to(outside)
    csv_path = _csv(data, ["a.png,cat;dog", "b.png,dog"])
    (data / "data.csv").write_text(
        (data / "data.csv").read_text() + "link.png,cat\n../secret.png,dog\n"
    )
    confined = list_multilabel(csv_path, confine=True)
    assert [s.path.name for s in confined.samples] == ["a.png", "b.png"]
    assert [r["path"] for r in confined.refused] == ["link.png", "../secret.png"]
    assert len(list_multilabel(csv_path).samples) == 4  # ktl train on one's own files
