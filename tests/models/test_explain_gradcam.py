"""Grad-CAM looks where the evidence is: a small network trained from scratch to
tell noisy images with a bright square from those without; the heatmap must
follow the square to whichever half it is in.

(With labels that say *which half* holds the square, smallcnn at 32 px
reaches 100 % too, but Grad-CAM then shows its evidence in the empty half:
its last features see the whole image, and "left" is told by the border.)"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.insight.explain import gradcam
from models.networks.backbones import get_backbone
from models.networks.classifier import build_backbone, build_classifier

pytestmark = pytest.mark.slow

SIZE = 32
LABELS = ("none", "square")


def squares(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Noisy grey images, every other one with a bright square in its left or right
    half. Returns pixels, labels and each square's (top, left, side) or None."""
    rng = np.random.default_rng(seed)
    pixels = rng.normal(110, 30, (count, SIZE, SIZE, 3))
    labels = np.arange(count) % len(LABELS)
    boxes = []
    for image, label in zip(pixels, labels, strict=True):
        if label == 0:
            boxes.append(None)
            continue
        side = int(rng.integers(6, 10))
        top = int(rng.integers(0, SIZE - side))
        right = rng.random() < 0.5
        left = int(rng.integers(0, SIZE // 2 - side)) + (SIZE // 2 if right else 0)
        image[top : top + side, left : left + side] = rng.uniform(220, 255)
        boxes.append((top, left, side))
    return np.clip(pixels, 0, 255).astype(np.float32), labels, boxes


@pytest.fixture(scope="module")
def trained() -> keras.Model:
    keras.utils.set_random_seed(1)
    spec = get_backbone("smallcnn")
    model = build_classifier(spec, build_backbone(spec, (SIZE, SIZE), None), len(LABELS))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    pixels, labels, _ = squares(384, seed=0)
    model.fit(pixels, labels, epochs=6, batch_size=32, verbose=0)
    # BatchNorm's moving statistics lag weights that moved fast: recalibrate them.
    for start in range(0, len(pixels), 64):
        for _ in range(3):
            model(pixels[start : start + 64], training=True)
    return model


def test_the_network_learned_where_the_square_is(trained):
    pixels, labels, _ = squares(60, seed=1)
    accuracy = (trained.predict(pixels, verbose=0).argmax(axis=1) == labels).mean()
    assert accuracy >= 0.9


def test_the_heatmap_lies_on_the_square(trained):
    pixels, labels, boxes = squares(30, seed=2)
    hits = 0
    shown = 0
    for image, label, box in zip(pixels, labels, boxes, strict=True):
        if box is None:
            continue
        heatmap = gradcam(trained, image, class_index=int(label))
        assert heatmap.shape == (8, 8)
        assert heatmap.min() >= 0 and heatmap.max() == pytest.approx(1.0)
        half = heatmap.shape[1] // 2
        top, left, side = box
        in_half = heatmap[:, half:] if left >= SIZE // 2 else heatmap[:, :half]
        # The peak cell (each covers 4x4 pixels) touches the square.
        row, column = np.unravel_index(heatmap.argmax(), heatmap.shape)
        touches = top - 4 < row * 4 + 4 and row * 4 < top + side + 4
        touches &= left - 4 < column * 4 + 4 and column * 4 < left + side + 4
        shown += 1
        hits += bool(in_half.sum() / heatmap.sum() > 0.7 and touches)
    assert hits >= 0.9 * shown
