"""The training report's pictures, written into a bundle's ``reports/``: loss and
accuracy curves of both phases, the confusion matrix, and thumbnails of the
validation images the model got most wrong (matplotlib without a display)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display: a training job runs on servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from models.metadata import Calibration, Decision  # noqa: E402

WORST_COUNT = 12
THUMBNAIL = 96


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def curves_png(history: list[dict]) -> bytes:
    """Loss and accuracy per epoch, training and validation, phases one after another;
    a star marks each phase's kept epoch (rows with ``kept``)."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = np.arange(1, len(history) + 1)
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [row.get(prefix + metric, np.nan) for row in history]
            axis.plot(
                steps,
                values,
                style,
                marker="o",
                markersize=3,
                label=f"{prefix or 'train_'}{metric}",
            )
        boundaries = [
            i + 0.5
            for i in range(1, len(history))
            if history[i]["phase"] != history[i - 1]["phase"]
        ]
        for x in boundaries:
            axis.axvline(x, color="grey", linewidth=0.8)
        kept = [i for i, row in enumerate(history) if row.get("kept")]
        axis.plot(
            steps[kept],
            [history[i].get("val_" + metric, np.nan) for i in kept],
            "*",
            color="black",
            markersize=11,
            label="kept (lowest val_loss)",
        )
        axis.set_xlabel(
            "epoch (" + " | ".join(dict.fromkeys(row["phase"] for row in history)) + ")"
        )
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return _png(figure)


def confusion_png(
    labels: list[str], matrix: Sequence[Sequence[int]], split: str = "validation"
) -> bytes:
    """Rows: true class; columns: predicted class; each cell shows its count."""
    counts = np.array(matrix)
    side = max(3.0, 0.6 * len(labels) + 1.5)
    figure, axis = plt.subplots(figsize=(side, side))
    axis.imshow(counts, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    halfway = counts.max() / 2 if counts.size else 0
    for (row, column), count in np.ndenumerate(counts):
        axis.text(
            column,
            row,
            str(count),
            ha="center",
            va="center",
            color="white" if count > halfway else "black",
        )
    axis.set_title(f"confusion matrix ({split})")
    return _png(figure)


def reliability_png(
    probabilities: np.ndarray, targets: np.ndarray, calibration: Calibration | None
) -> bytes:
    """Confidence against accuracy in 15 bins: on the diagonal, the probabilities mean
    what they say. With calibration, the uncalibrated model's curve too."""
    from training.evaluation.calibration import ECE_BINS, scale

    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    axis.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    curves = [("calibrated" if calibration else "model", probabilities)]
    if calibration:
        curves.insert(0, ("before calibration", scale(probabilities, 1 / calibration.temperature)))
    for name, p in curves:
        confidence, correct = p.max(axis=1), p.argmax(axis=1) == targets
        which = np.clip((confidence * ECE_BINS).astype(int), 0, ECE_BINS - 1)
        points = [
            (confidence[which == b].mean(), correct[which == b].mean())
            for b in range(ECE_BINS)
            if (which == b).any()
        ]
        axis.plot(*zip(*points, strict=True), "o-", markersize=4, label=name)
    axis.set_xlabel("confidence (top probability)")
    axis.set_ylabel("accuracy")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left")
    axis.set_title("reliability")
    return _png(figure)


def risk_coverage_png(probabilities: np.ndarray, targets: np.ndarray, decision: Decision) -> bytes:
    """Accuracy of the answered images against the share answered, as the threshold
    rises; the chosen threshold marked."""
    from training.evaluation.decision import risk_coverage

    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    coverage, accuracy = zip(*risk_coverage(probabilities, targets), strict=True)
    axis.plot(coverage, accuracy, "-", label="every threshold")
    if decision.selective_accuracy is not None and decision.coverage is not None:
        axis.plot(
            [decision.coverage],
            [decision.selective_accuracy],
            "*",
            color="black",
            markersize=12,
            label=f"threshold {decision.threshold:.2f}",
        )
    axis.set_xlabel("share of images answered (coverage)")
    axis.set_ylabel("accuracy of the answered")
    axis.set_xlim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower left")
    axis.set_title(f"risk and coverage ({decision.split or 'validation'})")
    return _png(figure)


def worst_predictions(
    pixels: np.ndarray,
    indices: np.ndarray,
    probabilities: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    files: list[str],
) -> dict[str, bytes]:
    """``worst.json`` and ``worst/NN.png``: the misclassified images with the lowest
    probability on their true class (none when every image is right). Row ``i`` of
    ``probabilities`` belongs to ``pixels[indices[i]]`` (only the few shown are read)."""
    true_probability = probabilities[np.arange(len(targets)), targets]
    wrong = np.nonzero(probabilities.argmax(axis=1) != targets)[0]
    order = wrong[np.argsort(true_probability[wrong], kind="stable")][:WORST_COUNT]
    entries, reports = [], {}
    for rank, i in enumerate(order):
        thumbnail = Image.fromarray(np.asarray(pixels[indices[i]]))
        thumbnail.thumbnail((THUMBNAIL, THUMBNAIL))
        buffer = io.BytesIO()
        thumbnail.save(buffer, "PNG")
        name = f"worst/{rank:02d}.png"
        reports[name] = buffer.getvalue()
        predicted = int(probabilities[i].argmax())
        entries.append(
            {
                "thumbnail": name,
                "file": files[i],
                "true": labels[int(targets[i])],
                "predicted": labels[predicted],
                "true_probability": round(float(true_probability[i]), 6),
                "predicted_probability": round(float(probabilities[i, predicted]), 6),
            }
        )
    reports["worst.json"] = json.dumps(entries, indent=2).encode()
    return reports


def lr_find_png(phase: str, found: dict) -> bytes:
    """The range test's smoothed loss against the rate (log scale), the choice marked."""
    rates, losses = zip(*found["curve"], strict=True)
    figure, axis = plt.subplots(figsize=(5.2, 3.6))
    axis.plot(rates, losses)
    axis.axvline(
        found["suggestion"],
        color="black",
        linestyle="--",
        label=f"chosen {found['suggestion']:.2g}",
    )
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("smoothed training loss")
    axis.set_title(f"learning-rate range test ({phase})")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _png(figure)
