"""Validation metrics: a split's scored images (``Validation``), accuracy, top-k
accuracy, per-class precision, recall and F1, the confusion matrix, and the training
history as CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.intervals import wilson
from models.metadata import Baseline, ClassFigures, ConfusionMatrix, Figures


@dataclass(frozen=True)
class Validation:
    """A split's images scored by the model (validation, test; on every shard of a
    multi-worker job): row ``i`` of ``probabilities`` is ``files[i]``, whose pixels
    are ``pixels[rows[i]]``."""

    probabilities: np.ndarray
    targets: np.ndarray
    files: list[str]
    pixels: Any  # an array or DecodeOnRead: indexed by position
    rows: np.ndarray


def evaluate(probabilities: np.ndarray, targets: np.ndarray, labels: list[str]) -> Figures:
    """Figures for ``probabilities`` (n, classes) against true label indices."""
    n_classes = len(labels)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (targets, predicted), 1)
    k = min(5, max(1, n_classes - 1))
    top_k = np.argsort(-probabilities, axis=1)[:, :k]
    per_class = {}
    for i, label in enumerate(labels):
        tp = int(confusion[i, i])
        predicted_i = int(confusion[:, i].sum())
        actual_i = int(confusion[i, :].sum())
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / actual_i if actual_i else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = ClassFigures(
            precision=round(precision, 6),
            recall=round(recall, 6),
            f1=round(f1, 6),
            support=actual_i,
        )
    right = int((predicted == targets).sum())
    low, high = wilson(right, len(targets))
    return Figures(
        images=int(len(targets)),
        accuracy=round(right / len(targets), 6),
        accuracy_interval=(round(low, 6), round(high, 6)),
        top_k=k,
        top_k_accuracy=round(float((top_k == targets[:, None]).any(axis=1).mean()), 6),
        loss=round(log_loss(probabilities, targets), 6) + 0.0,  # not -0.0
        macro_f1=round(float(np.mean([c.f1 for c in per_class.values()])), 6),
        per_class=per_class,
        confusion_matrix=ConfusionMatrix(
            labels=tuple(labels), matrix=tuple(map(tuple, confusion.tolist()))
        ),
    )


def baseline(train_counts: dict[str, int], targets: np.ndarray, labels: list[str]) -> Baseline:
    """What a model must beat: always answering the largest class of the training
    split (scored on these targets), and guessing at random."""
    majority = max(labels, key=lambda label: train_counts.get(label, 0))
    share = float((targets == labels.index(majority)).mean()) if len(targets) else 0.0
    return Baseline(
        majority_class=majority, majority_accuracy=round(share, 6), chance=round(1 / len(labels), 6)
    )


def quality_warnings(metrics: Figures) -> list[str]:
    """Plain words when a model is no better than a baseline that learns nothing."""
    base = metrics.baseline
    if base is None or metrics.accuracy is None:
        return []
    accuracy, majority = metrics.accuracy, base.majority_accuracy
    if accuracy <= majority:
        return [
            f"accuracy {accuracy:.3f} is no better than always answering "
            f"{base.majority_class!r} ({majority:.3f}): this model has not learnt to tell "
            "the classes apart. More epochs, more images, or pretrained weights (--weights) "
            "may help; see docs/training.md"
        ]
    if accuracy < majority + 0.05:
        return [
            f"accuracy {accuracy:.3f} is barely above always answering "
            f"{base.majority_class!r} ({majority:.3f}): treat this model with caution"
        ]
    return []


def log_loss(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Mean cross-entropy of the true classes (probabilities clipped at 1e-7, as Keras)."""
    picked = probabilities[np.arange(len(targets)), targets]
    return float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())


def history_csv(rows: list[dict]) -> str:
    """One row per epoch of every phase; ``kept`` is 1 for the epoch whose weights
    the phase kept (the lowest validation loss)."""
    columns = ["phase", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "kept"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
