"""Multi-label figures at each label's threshold: per label precision, recall, F1
and average precision with 95 % intervals; micro and macro F1, mAP, the exact-match
ratio, Hamming loss, and how often an image with no label is answered "none"."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.decision import chosen
from training.evaluation.evaluate import wilson
from training.multilabel.decisions import binary_nll

BOOTSTRAP = 200  # resamples of the AP interval (seeded: the same figures every run)


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float | None:
    """The mean of the precision at each positive's rank (None: no positive)."""
    positives = float(targets.sum())
    if positives == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    y = targets[order]
    precision = np.cumsum(y) / np.arange(1, len(y) + 1)
    return float((precision * y).sum() / positives)


def _ap_interval(scores: np.ndarray, targets: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    drawn = [
        average_precision(scores[rows], targets[rows])
        for rows in rng.integers(0, len(scores), (BOOTSTRAP, len(scores)))
    ]
    values = [v for v in drawn if v is not None]
    low, high = np.percentile(values, [2.5, 97.5])
    return round(float(low), 6), round(float(high), 6)


def _f1(true: float, answered: float, actual: float) -> float:
    return 2 * true / (answered + actual) if answered + actual else 0.0


def _label(scores: np.ndarray, targets: np.ndarray, picked: np.ndarray) -> dict[str, Any]:
    true, answered, actual = int((picked * targets).sum()), int(picked.sum()), int(targets.sum())
    ap = average_precision(scores, targets)
    return {
        "precision": round(true / answered, 6) if answered else 0.0,
        "recall": round(true / actual, 6) if actual else 0.0,
        "f1": round(_f1(true, answered, actual), 6),
        "ap": None if ap is None else round(ap, 6),
        "support": actual,
        "precision_interval": tuple(round(v, 6) for v in wilson(true, answered)),
        "recall_interval": tuple(round(v, 6) for v in wilson(true, actual)),
        "ap_interval": _ap_interval(scores, targets) if ap is not None else None,
    }


def multilabel_figures(
    probabilities: np.ndarray, targets: np.ndarray, labels: list[str], thresholds: np.ndarray
) -> dict[str, Any]:
    """One split's figures (``models.metadata.MultilabelFigures``)."""
    picked = chosen(probabilities, thresholds).astype(np.float32)
    per_label = {
        label: _label(probabilities[:, k], targets[:, k], picked[:, k])
        for k, label in enumerate(labels)
    }
    true, answered, actual = (picked * targets).sum(), picked.sum(), targets.sum()
    present = [v["ap"] for v in per_label.values() if v["ap"] is not None]
    empty = targets.sum(axis=1) == 0
    return {
        "images": len(targets),
        "micro_f1": round(_f1(float(true), float(answered), float(actual)), 6),
        "macro_f1": round(float(np.mean([v["f1"] for v in per_label.values()])), 6),
        "map": round(float(np.mean(present)), 6) if present else 0.0,
        "exact_match": round(float((picked == targets).all(axis=1).mean()), 6),
        "hamming_loss": round(float((picked != targets).mean()), 6),
        "loss": round(binary_nll(probabilities, targets), 6),
        "none_images": int(empty.sum()),
        "none_answered_empty": (
            round(float((picked[empty].sum(axis=1) == 0).mean()), 6) if empty.any() else None
        ),
        "per_label": per_label,
    }
