"""What a finished job publishes: the bundle's metadata and its ``reports/``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras

from models.backbones import BackboneSpec
from models.explain import activation_layers
from models.metadata import (
    BundleMetadata,
    Calibration,
    Decision,
    Evaluation,
    InputSpec,
    Metrics,
    TestTimeAugmentation,
)
from models.preprocessing import RESIZE_POLICY
from training import report
from training.config import TrainConfig
from training.data import Prepared
from training.evaluate import history_csv
from training.final import Outcome


def utc_now() -> str:
    """The current time as ISO 8601 UTC, to the second: ``2026-01-31T12:00:00Z``."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def bundle_metadata(
    config: TrainConfig,
    spec: BackboneSpec,
    model: keras.Model,
    prepared: Prepared,
    outcome: Outcome,
    details: dict[str, Any],
    fingerprint: str,
) -> BundleMetadata:
    """The metadata of the bundle a job publishes (its version comes at publish)."""
    size = config.resolved_image_size()
    dataset = {k: v for k, v in prepared.report.items() if k not in ("warnings", "seen")}
    return BundleMetadata(
        name=config.name,
        labels=tuple(prepared.labels),
        backbone=spec.name,
        image_size=size,
        input=InputSpec(shape=(*size, 3)),
        resize=RESIZE_POLICY,
        created_at=utc_now(),
        metrics=Metrics.model_validate(outcome.metrics),
        evaluation=Evaluation.model_validate(outcome.evaluation),
        calibration=(
            Calibration.model_validate(outcome.calibration) if outcome.calibration else None
        ),
        decision=Decision.model_validate(outcome.decision),
        tta=TestTimeAugmentation.model_validate(outcome.tta) if outcome.tta else None,
        training={**config.to_dict(), **details},
        dataset={**dataset, "fingerprint": fingerprint},
        activation_layers=tuple(activation_layers(model)),
    )


def report_files(
    history: list[dict], training: dict[str, Any], outcome: Outcome, labels: list[str], data: str
) -> dict[str, bytes]:
    """``reports/``: figures, history (each phase's kept epoch marked), curves,
    confusion matrix, reliability diagram, risk-coverage curve, the worst images."""
    kept = {(phase["name"], phase["kept_epoch"]) for phase in training["phases"]}
    history = [{**row, "kept": int((row["phase"], row["epoch"]) in kept)} for row in history]
    metrics, validation = outcome.metrics, outcome.shown
    split = metrics["split"]
    lr_found = training.get("lr_find", {})
    return {
        "metrics.json": json.dumps(metrics, indent=2).encode(),
        "history.csv": history_csv(history).encode(),
        "curves.png": report.curves_png(history),
        "confusion_matrix.png": report.confusion_png(
            labels, metrics["confusion_matrix"]["matrix"], split
        ),
        "reliability.png": report.reliability_png(
            validation.probabilities, validation.targets, outcome.calibration
        ),
        "risk_coverage.png": report.risk_coverage_png(
            validation.probabilities, validation.targets, outcome.decision
        ),
        **{
            f"lr_find_{phase}.png": report.lr_find_png(phase, found)
            for phase, found in lr_found.items()
        },
        **report.worst_predictions(
            validation.pixels,
            validation.rows,
            validation.probabilities,
            validation.targets,
            labels,
            [dataset_relative(file, data) for file in validation.files],
        ),
    }


def dataset_relative(file: str, data: str) -> str:
    """``file`` as the report shows it: relative to the dataset (a CSV's folder), so no
    path of the machine that trained it, nor a job's deleted upload folder, is kept;
    a file outside the dataset keeps only its name."""
    base = Path(data)
    base = base.parent if base.suffix.lower() == ".csv" else base
    for path, root in ((Path(file), base), (Path(file).resolve(), base.resolve())):
        if path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return Path(file).name
