"""Validation metrics: accuracy, top-k accuracy, per-class precision, recall and
F1, the confusion matrix, and the training history as CSV."""

from __future__ import annotations

import csv
import io

import numpy as np


def evaluate(probabilities: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict:
    """Figures for ``probabilities`` (n, classes) against true label indices."""
    n_classes = len(labels)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (targets, predicted), 1)
    k = min(5, max(1, n_classes - 1))
    top_k = np.argsort(-probabilities, axis=1)[:, :k]
    picked = probabilities[np.arange(len(targets)), targets]
    per_class = {}
    for i, label in enumerate(labels):
        tp = int(confusion[i, i])
        predicted_i = int(confusion[:, i].sum())
        actual_i = int(confusion[i, :].sum())
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / actual_i if actual_i else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": round(precision, 6),
            "recall": round(recall, 6),
            "f1": round(f1, 6),
            "support": actual_i,
        }
    return {
        "val_images": int(len(targets)),
        "accuracy": round(float((predicted == targets).mean()), 6),
        "top_k": k,
        "top_k_accuracy": round(float((top_k == targets[:, None]).any(axis=1).mean()), 6),
        "loss": round(float(-np.log(np.clip(picked, 1e-7, 1.0)).mean()), 6) + 0.0,  # not -0.0
        "macro_f1": round(float(np.mean([c["f1"] for c in per_class.values()])), 6),
        "per_class": per_class,
        "confusion_matrix": {"labels": labels, "matrix": confusion.tolist()},
    }


def history_csv(rows: list[dict]) -> str:
    """One row per epoch of every phase."""
    columns = ["phase", "epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
