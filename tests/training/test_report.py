from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from training.publishing.report import WORST_COUNT, confusion_png, curves_png, worst_predictions


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_curves_and_confusion_matrix_are_png_images():
    history = [
        {
            "phase": "head",
            "epoch": 1,
            "loss": 1.0,
            "accuracy": 0.5,
            "val_loss": 0.9,
            "val_accuracy": 0.6,
        },
        {
            "phase": "head",
            "epoch": 2,
            "loss": 0.8,
            "accuracy": 0.6,
            "val_loss": 0.7,
            "val_accuracy": 0.7,
        },
        {
            "phase": "fine_tune",
            "epoch": 1,
            "loss": 0.5,
            "accuracy": 0.8,
            "val_loss": 0.5,
            "val_accuracy": 0.8,
        },
    ]
    curves = _image(curves_png(history))
    assert curves.format == "PNG" and curves.width > curves.height > 100
    matrix = _image(confusion_png(["a", "b", "c"], [[5, 1, 0], [0, 6, 0], [2, 0, 4]]))
    assert matrix.format == "PNG" and min(matrix.size) > 100


def test_worst_predictions_are_the_wrong_ones_lowest_true_class_probability_first():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (30, 20, 20, 3), dtype=np.uint8)
    indices = np.arange(10, 30)  # the validation rows of the cache
    probabilities = np.full((20, 2), 0.5)
    probabilities[:, 0] = np.linspace(0.05, 0.95, 20)
    probabilities[:, 1] = 1 - probabilities[:, 0]
    targets = np.zeros(20, int)  # every image is class "a": row 0 is the worst
    files = [f"img{i}.png" for i in range(20)]
    reports = worst_predictions(pixels, indices, probabilities, targets, ["a", "b"], files)
    entries = json.loads(reports["worst.json"])
    assert len(entries) == 10 < WORST_COUNT, "only the 10 misclassified images, none right"
    assert all(e["predicted"] != e["true"] for e in entries)
    assert [e["file"] for e in entries[:3]] == ["img0.png", "img1.png", "img2.png"]
    assert entries[0]["true"] == "a" and entries[0]["predicted"] == "b"
    assert entries[0]["true_probability"] == 0.05
    thumbnail = np.asarray(_image(reports[entries[0]["thumbnail"]]))
    np.testing.assert_array_equal(thumbnail, pixels[10])  # small images are not resized


def test_most_wrong_files_are_kept_relative_to_the_dataset(tmp_path, monkeypatch):
    """No path of the training machine (nor a job's upload folder, deleted after) is kept."""
    from training.publishing.publish import dataset_relative

    queue = tmp_path / "model_store" / ".queue" / "20261207-101010-abc" / "dataset"
    assert dataset_relative(str(queue / "val" / "red" / "a.png"), str(queue)) == "val/red/a.png"
    monkeypatch.chdir(tmp_path)
    relative = "model_store/.queue/20261207-101010-abc/dataset"
    assert dataset_relative(f"{relative}/red/b.png", relative) == "red/b.png"
    csv = tmp_path / "labels.csv"  # a CSV's rows are read relative to its folder, resolved
    assert dataset_relative(str(tmp_path / "img" / "c.png"), "labels.csv") == "img/c.png"
    assert dataset_relative(str(tmp_path / "img" / "c.png"), str(csv)) == "img/c.png"
    assert dataset_relative("/elsewhere/photos/d.png", str(queue)) == "d.png"
