"""The probe (``training.diagnosis.probe``): stratified folds, out-of-sample probabilities
of a linear probe on features computed once, and whether they beat guessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.networks.backbones import get_backbone
from models.networks.classifier import build_backbone
from tests.support.patterns import make_pattern_dataset
from training.diagnosis.probe import (
    assign_folds,
    backbone_features,
    linear_probe,
    probe_accuracy,
    probe_features,
)

BACKBONE = Path(__file__).resolve().parents[1] / "fixtures" / "smallcnn_patterns.h5"


def test_folds_spread_every_class():
    targets = np.array([0] * 23 + [1] * 7 + [2] * 2)
    folds = assign_folds(targets, 5, seed=1)
    for label in (0, 1):
        counts = np.bincount(folds[targets == label], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert len(set(folds[targets == 2])) == 2


def test_the_probe_is_out_of_sample_and_knows_when_it_guesses():
    rng = np.random.default_rng(4)
    targets = np.repeat([0, 1], 100)
    folds = assign_folds(targets, 5, seed=0)
    useful = rng.normal(0, 1, (200, 8)) + targets[:, None] * 3
    result = probe_accuracy(linear_probe(useful, targets, 2, folds), targets)
    assert result["accuracy"] > 0.95 and result["useful"]
    # Noise the size of the dataset: a model scoring what it trained on would be right.
    noise = rng.normal(0, 1, (200, 400))
    result = probe_accuracy(linear_probe(noise, targets, 2, folds), targets)
    assert result["accuracy"] < 0.65 and not result["useful"]
    assert result["majority_baseline"] == 0.5


def test_the_majority_baseline_is_the_largest_class():
    targets = np.array([0] * 80 + [1] * 20)
    always_zero = np.tile([0.9, 0.1], (100, 1))
    result = probe_accuracy(always_zero, targets)
    assert result["accuracy"] == result["majority_baseline"] == 0.8
    assert result["skill"] == 0.0 and not result["useful"]


def test_features_of_a_pretrained_backbone_probe_well(tmp_path):
    """What ``ktl compare`` does per backbone: features once, then the k-fold probe."""
    from PIL import Image

    data = make_pattern_dataset(tmp_path, ("circle", "stripes"), 30, 32, seed=77)
    files = sorted(data.glob("*/*.png"))
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    targets = np.array([f.parent.name == "stripes" for f in files], np.int64)
    spec = get_backbone("smallcnn")
    features = backbone_features(spec, build_backbone(spec, (32, 32), str(BACKBONE)), pixels)
    assert features.shape[0] == len(files) and features.ndim == 2
    again = backbone_features(spec, build_backbone(spec, (32, 32), str(BACKBONE)), pixels[::-1])
    np.testing.assert_allclose(again[::-1], features, rtol=1e-4, atol=1e-5)  # in order
    result = probe_features(features, targets, 2, assign_folds(targets, 5, 0), "smallcnn")
    assert result.probabilities.shape == (60, 2)
    np.testing.assert_allclose(result.probabilities.sum(1), 1, atol=1e-6)
    assert result.quality["accuracy"] >= 0.9 and result.quality["useful"]
    assert result.method == "linear_probe" and "5-fold" in result.description
