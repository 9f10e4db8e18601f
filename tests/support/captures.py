"""Captured predictions written straight into a capture folder, as the service's
writer lays them out, for tests of what reads them (review, retraining)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image

from models.capture.folder import CaptureFolder
from models.ids import new_id


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def write_capture(
    folder: CaptureFolder,
    model: str,
    data: bytes,
    *,
    labels: Sequence[str],
    top: str,
    confidence: float,
    abstained: bool = False,
    version: int = 1,
) -> str:
    """A captured prediction of ``model`` (its image ``data``, a PNG) whose top label
    ``top`` had ``confidence``, the rest shared by the other labels; its id."""
    identifier = new_id()
    rest = (1 - confidence) / max(1, len(labels) - 1)
    record = {
        "id": identifier,
        "time": "2026-12-08T00:00:00Z",
        "model": model,
        "version": version,
        "engine": "keras",
        "top": top,
        "label": None if abstained else top,
        "confidence": confidence,
        "probabilities": {label: confidence if label == top else rest for label in labels},
    }
    folder.write_capture(model, record, data, "png")
    return identifier


def write_captures(
    folder: CaptureFolder,
    model: str,
    plan: dict[str, tuple[Image.Image, float, bool]],
    *,
    labels: Sequence[str],
    top: str,
) -> dict[str, str]:
    """``write_capture`` of each ``name: (picture, confidence, abstained)`` in order,
    the picture as a PNG; the ids by name."""
    return {
        name: write_capture(
            folder, model, png(picture), labels=labels, top=top, confidence=p, abstained=a
        )
        for name, (picture, p, a) in plan.items()
    }
