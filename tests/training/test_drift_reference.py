"""The drift reference a job publishes (issue 29): the finished model's pooled
features of a sample of validation images, listed in the bundle's checksums."""

from __future__ import annotations

import numpy as np
import pytest

from models.bundle import load_bundle
from models.drift import REFERENCE_FILE, REFERENCE_ROWS
from models.preprocessing import decode_images, image_files
from tests.support.trained import Trained

pytestmark = pytest.mark.slow


def test_the_bundle_carries_validation_features_of_the_published_model(trained_store: Trained):
    bundle = load_bundle(trained_store.bundle)  # verifies every listed file's checksum
    described = bundle.metadata.monitoring.drift_reference
    assert described.file == REFERENCE_FILE and REFERENCE_FILE in bundle.metadata.files
    assert described.layer == "pool"
    reference = bundle.drift_reference()
    validation = trained_store.summary.to_json()["dataset"]["val_images"]
    assert reference.shape == (min(validation, REFERENCE_ROWS), described.width)
    assert described.rows == len(reference)
    # Each row is the published model's features of one of DATA's images.
    files = image_files([trained_store.data])
    pixels = np.stack([image.pixels for image in decode_images(files, bundle.image_size, print)])
    features = bundle.pooled_features(pixels)
    nearest = np.abs(reference[:, None, :] - features[None, :, :]).max(axis=2).min(axis=1)
    scale = float(np.abs(features).max())
    assert np.all(nearest <= 2e-3 * scale + 1e-3), nearest.max()
    assert len({int(np.abs(features - row).max(axis=1).argmin()) for row in reference}) == len(
        reference
    )  # distinct images
