"""The tiny classifier behind the shared bundle fixture: smallcnn, 16x24 pixels, 3 classes."""

from __future__ import annotations

import keras

from models.backbones import get_backbone
from models.classifier import build_backbone, build_classifier

IMAGE_SIZE = (16, 24)
LABELS = ["daisy", "rose", "tulip"]


def make_tiny_model(classes: int = len(LABELS)) -> keras.Model:
    spec = get_backbone("smallcnn")
    keras.utils.set_random_seed(0)
    backbone = build_backbone(spec, IMAGE_SIZE, None)
    return build_classifier(spec, backbone, classes)


def tiny_metadata() -> dict:
    return {
        "labels": list(LABELS),
        "backbone": "smallcnn",
        "image_size": list(IMAGE_SIZE),
        "input": "RGB 0..255",
    }
