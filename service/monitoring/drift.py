"""The monitor's embedding drift: the pooled backbone features of a version's captured
images over a window, tested against the validation features its bundle carries
(``models.drift``). Computed when the monitor is asked, with the loaded version's
own feature pass (``Bundle.pooled_features``, built once per loaded version), never
through the prediction queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Literal

import numpy as np
from pydantic import Field

from models import drift
from models.capture.review import Captured
from models.errors import UserError
from models.ids import id_time
from service.protocols.bodies import ResponseModel
from service.serving.predictor import ImageUpload, Predictor


class Drift(ResponseModel):
    """A two-sample test of live features against the bundle's reference."""

    test: Literal["mmd"] = Field(
        description="Maximum mean discrepancy, Gaussian kernel of median width, "
        "permutation p-value (monitoring.md)"
    )
    score: float = Field(description="The squared MMD between live and reference features")
    p_value: float
    drifted: bool = Field(description=f"p_value under {drift.SIGNIFICANCE}")
    images: int = Field(description="Captured images of the window tested (the newest)")
    reference_rows: int = Field(description="Validation images in the bundle's reference")


def window_images(images: Sequence[Captured], version: int, since: datetime) -> list[Captured]:
    """Of a model's captured ``images`` (``captured``), those of ``version`` made at or
    after ``since``, the newest ``MAX_IMAGES`` of them."""
    found = [
        item
        for item in images
        if item.record.get("version") == version and id_time(item.id) >= since
    ]
    return found[-drift.MAX_IMAGES :]  # ids sort by time


def _pixels(predictor: Predictor, images: Sequence[Captured]) -> np.ndarray:
    """The images decoded as the service decodes a request; unreadable ones left out
    (a capture pruned while being read, say)."""
    rows = []
    for item in images:
        try:
            upload = ImageUpload(item.image.read_bytes(), label=item.image.name)
            rows.append(predictor.preprocess([upload])[0])
        except (OSError, UserError):
            continue
    return np.stack(rows) if rows else np.zeros((0, 0, 0, 3), np.uint8)


def version_drift(
    images: Sequence[Captured], version: int, since: datetime, predictor: Predictor
) -> tuple[Drift | None, str | None]:
    """The test of one version over the window, of a model's captured ``images``, or
    None and why there is none."""
    reference = predictor.bundle.drift_reference()
    if reference is None:
        return None, (
            "the version has no drift reference (published before ktl saved one, or multi-label)"
        )
    pixels = _pixels(predictor, window_images(images, version, since))
    if len(pixels) < drift.MIN_IMAGES:
        return None, (
            f"{len(pixels)} captured images in the window; the test needs {drift.MIN_IMAGES} "
            "(KTL_CAPTURE keeps images: sample:R, below:C, abstained)"
        )
    live = predictor.bundle.pooled_features(pixels)
    found = drift.mmd_test(reference, live)
    return Drift(test="mmd", **asdict(found)), None
