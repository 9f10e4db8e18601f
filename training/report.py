"""The training report's pictures, written into a bundle's ``reports/``: loss and
accuracy curves of both phases, the confusion matrix, and thumbnails of the
validation images the model got most wrong (matplotlib without a display)."""

from __future__ import annotations

import io
import json

import matplotlib

matplotlib.use("Agg")  # no display: a training job runs on servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

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


def confusion_png(labels: list[str], matrix: list[list[int]]) -> bytes:
    """Rows: true class; columns: predicted class; each cell shows its count."""
    counts = np.array(matrix)
    side = max(3.0, 0.6 * len(labels) + 1.5)
    figure, axis = plt.subplots(figsize=(side, side))
    axis.imshow(counts, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    threshold = counts.max() / 2 if counts.size else 0
    for (row, column), count in np.ndenumerate(counts):
        axis.text(
            column,
            row,
            str(count),
            ha="center",
            va="center",
            color="white" if count > threshold else "black",
        )
    axis.set_title("confusion matrix (validation)")
    return _png(figure)


def worst_predictions(
    pixels: np.ndarray,
    indices: np.ndarray,
    probabilities: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    files: list[str],
) -> dict[str, bytes]:
    """``worst.json`` and ``worst/NN.png``: the validation images with the lowest
    probability on their true class. Row ``i`` of ``probabilities`` belongs to
    ``pixels[indices[i]]`` (only the few shown are read from the cache)."""
    true_probability = probabilities[np.arange(len(targets)), targets]
    order = np.argsort(true_probability, kind="stable")[:WORST_COUNT]
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
