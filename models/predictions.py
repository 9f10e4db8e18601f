"""The native prediction body, one typed model for every producer: the HTTP
native predict route, ``ktl predict --json`` and ``Bundle.predict``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.decision import ABSTAIN, chosen, decide, decided_labels, threshold_of
from models.ids import new_id
from models.preprocessing import load_array, load_image

if TYPE_CHECKING:
    from models.bundle import Bundle


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True)


class TopClass(_Body):
    label: str
    index: int = Field(ge=0)
    probability: float = Field(ge=0, le=1)


class Answer(_Body):
    """One image's decision (``models.decision``): the top label when its probability
    reaches the threshold, else null ("not sure / none of these"). The version's
    decision settings are ``models.metadata.Decision``."""

    label: str | None = Field(description="The answer, or null: not sure / none of these")
    confidence: float = Field(ge=0, le=1, description="The top label's probability")
    threshold: float = Field(
        ge=0, le=1, description="The version's threshold, or the request's min_confidence"
    )


class LabelSet(_Body):
    """A multi-label version's decision: every label whose probability reaches its
    own threshold; an empty list means "none of these"."""

    labels: list[str] = Field(description="The labels chosen, in label order; may be empty")
    thresholds: dict[str, float] = Field(
        description="Each label's threshold: the version's, or the request's min_confidence"
    )


class Prediction(_Body):
    id: str = Field(
        description="This prediction's id, unique and sortable by time (a ULID: 26 "
        "characters of Crockford base32); feedback names it"
    )
    filename: str | None = Field(description="The uploaded file's name, when it had one")
    top: list[TopClass] = Field(description="The top_k classes, most probable first")
    probabilities: dict[str, float] = Field(
        description="Every label's probability, in label order; they sum to 1 for a "
        "single-label version and are independent for a multi-label one"
    )
    decision: Answer | LabelSet


class PredictResponse(_Body):
    model: str
    version: int = Field(ge=1)
    predictions: list[Prediction] = Field(description="One per image, in upload order")


def format_prediction(
    labels: Sequence[str],
    probabilities: np.ndarray,
    top_k: int,
    filename: str | None,
    threshold: float = 0.0,
) -> Prediction:
    """One entry of a native predict response; ``top_k`` classes in ``top``, and the
    decision at ``threshold``, with a new id."""
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    best = int(order[0])
    answer = int(decide(probabilities[None, :], threshold)[0])
    return Prediction(
        id=new_id(),
        filename=filename,
        top=[
            TopClass(label=labels[i], index=int(i), probability=float(probabilities[i]))
            for i in order
        ],
        probabilities={label: float(p) for label, p in zip(labels, probabilities, strict=True)},
        decision=Answer(
            label=labels[answer] if answer != ABSTAIN else None,
            confidence=float(probabilities[best]),
            threshold=threshold,
        ),
    )


def predict_response(
    bundle: Bundle,
    rows: np.ndarray,
    filenames: Sequence[str | None],
    top_k: int,
    min_confidence: float | None = None,
) -> PredictResponse:
    """The whole native predict body for a batch of probability rows; each entry's
    decision at the version's threshold, or at ``min_confidence``."""
    top_k = min(top_k, len(bundle.labels))
    if bundle.metadata.multilabel is not None:
        return _multilabel_response(bundle, rows, filenames, top_k, min_confidence)
    threshold = threshold_of(bundle.metadata.decision, min_confidence)
    return PredictResponse(
        model=bundle.name,
        version=bundle.version,
        predictions=[
            format_prediction(bundle.labels, row, top_k, filename, threshold)
            for row, filename in zip(rows, filenames, strict=True)
        ],
    )


def label_sets(
    labels: Sequence[str], rows: np.ndarray, thresholds: Sequence[float]
) -> list[LabelSet]:
    """Each row's multi-label decision (``models.decision.chosen``)."""
    picks = chosen(rows, np.asarray(thresholds)) if len(rows) else np.zeros((0, len(labels)))
    shown = {label: float(t) for label, t in zip(labels, thresholds, strict=True)}
    return [
        LabelSet(
            labels=[label for label, on in zip(labels, row, strict=True) if on], thresholds=shown
        )
        for row in picks
    ]


def version_thresholds(bundle: Bundle, min_confidence: float | None = None) -> list[float]:
    """A multi-label version's threshold per label, or ``min_confidence`` for all."""
    assert bundle.metadata.multilabel is not None
    if min_confidence is not None:
        return [min_confidence] * len(bundle.labels)
    return bundle.metadata.multilabel.thresholds(bundle.labels)


def served_decisions(bundle: Bundle, rows: np.ndarray) -> list[str | None] | list[list[str]]:
    """Each row's decision at the version's own thresholds, as TF Serving and the Open
    Inference Protocol carry it: the label or None; a multi-label version's set."""
    if bundle.metadata.multilabel is None:
        return decided_labels(bundle.labels, rows, threshold_of(bundle.metadata.decision))
    return [s.labels for s in label_sets(bundle.labels, rows, version_thresholds(bundle))]


def _multilabel_response(
    bundle: Bundle,
    rows: np.ndarray,
    filenames: Sequence[str | None],
    top_k: int,
    min_confidence: float | None,
) -> PredictResponse:
    thresholds = version_thresholds(bundle, min_confidence)
    sets = label_sets(bundle.labels, rows, thresholds)
    predictions = []
    for row, filename, decided in zip(rows, filenames, sets, strict=True):
        single = format_prediction(bundle.labels, row, top_k, filename)
        predictions.append(single.model_copy(update={"decision": decided}))
    return PredictResponse(model=bundle.name, version=bundle.version, predictions=predictions)


def predict_images(
    bundle: Bundle,
    images: Sequence[str | Path | np.ndarray] | np.ndarray,
    top_k: int = 5,
    min_confidence: float | None = None,
) -> PredictResponse:
    """Classify files (by path) or RGB arrays ``(h, w, 3)`` of any size with ``bundle``.

    Both go through the preprocessing the service uses; an array is resized as a
    decoded image would be. ``filename`` is the file's name, or None for an array.
    """
    if top_k < 1:
        raise ValueError("top_k must be at least 1")
    pixels: list[np.ndarray] = []
    names: list[str | None] = []
    for image in images:
        if isinstance(image, np.ndarray):
            pixels.append(load_array(image, bundle.image_size))
            names.append(None)
        else:
            pixels.append(load_image(Path(image), bundle.image_size))
            names.append(Path(image).name)
    if not pixels:
        rows = np.zeros((0, len(bundle.labels)), np.float32)
    else:
        rows = bundle.classifier.predict(np.stack(pixels))
    return predict_response(bundle, rows, names, top_k, min_confidence)
