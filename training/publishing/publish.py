"""Publishing, the one place training does it: a finished job's bundle (its metadata,
its ``reports/`` and, with ``--int8``, its INT8 engine) and ``ktl quantize``'s new
version; ``training.publishing.quantize`` only makes the engine."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

from models import drift
from models.bundle import MODEL_FILE, REPORTS_DIR, SEEN_FILE, Bundle, save_bundle, seen_file
from models.insight.explain import activation_layers
from models.metadata import BundleMetadata, DriftReference, Engine, InputSpec, Lineage, Monitoring
from models.networks.backbones import BackboneSpec
from models.networks.classifier import POOL_LAYER
from models.preprocessing import RESIZE_POLICY
from models.store import ModelStore
from models.timestamps import utc_now
from training.config import TrainConfig
from training.dataset.data import Prepared
from training.evaluation.evaluate import history_csv
from training.evaluation.final import Outcome
from training.fitting import finetune
from training.jobs.state import Log
from training.publishing import report
from training.publishing.quantize import engine_for_version, int8_engine


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
        metrics=outcome.metrics,
        evaluation=outcome.evaluation,
        calibration=outcome.calibration,
        decision=outcome.decision,
        tta=outcome.tta,
        monitoring=outcome.monitoring,
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
    assert metrics.confusion_matrix is not None and metrics.split is not None, "evaluated"
    lr_found = training.get("lr_find", {})
    figures = metrics.model_dump(mode="json", exclude_unset=True)
    return {
        "metrics.json": json.dumps(figures, indent=2).encode(),
        "history.csv": history_csv(history).encode(),
        "curves.png": report.curves_png(history),
        "confusion_matrix.png": report.confusion_png(
            labels, metrics.confusion_matrix.matrix, metrics.split
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


def save_published(
    store: ModelStore,
    model: keras.Model,
    metadata: BundleMetadata,
    reports: dict[str, bytes],
    config: TrainConfig,
    prepared: Prepared,
    outcome: Outcome,
    log: Log,
) -> tuple[int, Path]:
    """``save_bundle`` of a job, with an INT8 engine when ``--int8`` asks for one, the
    hashes of the images it learnt from (``seen.txt``, for ``ktl evaluate``) and the
    drift monitor's reference (:func:`drift_reference`)."""
    seen: dict[str, Path | bytes] = {SEEN_FILE: seen_file(prepared.report.get("seen", []))}
    reference = drift_reference(model, prepared, config)
    if reference is not None:
        data, described = reference
        seen[drift.REFERENCE_FILE] = data
        monitoring = metadata.monitoring or Monitoring()
        metadata = metadata.replace(
            monitoring=monitoring.model_copy(update={"drift_reference": described}).model_dump()
        )
    if not config.int8:
        return save_bundle(store, model, metadata, reports, seen)
    with tempfile.TemporaryDirectory(prefix="ktl-int8-") as tmp:
        size, threshold = config.resolved_image_size(), outcome.decision.threshold
        artifacts, engine = int8_engine(
            model, size, prepared.pixels, prepared.train, outcome.checked, threshold, Path(tmp), log
        )
        metadata = metadata.replace(engines={"int8": engine.model_dump()})
        return save_bundle(store, model, metadata, reports, {**artifacts, **seen})


def drift_reference(
    model: keras.Model, prepared: Prepared, config: TrainConfig
) -> tuple[bytes, DriftReference] | None:
    """The sample of validation features the monitor tests live images against
    (``models.drift``): the pooled backbone features of up to ``REFERENCE_ROWS``
    validation images (a seeded sample), as the recipe computes the head phase's cached
    features, but with the finished model: fine-tuning moved the backbone since
    (and a job from scratch caches none). None without validation images."""
    rows = drift.reference_sample(np.asarray(prepared.val), drift.REFERENCE_ROWS, config.seed)
    if not len(rows):
        return None
    batches = finetune.batches(
        prepared.pixels, prepared.targets, rows, config.batch_size, shuffle=False, seed=0
    )
    features = finetune.pooled_features(model, batches)
    described = DriftReference(
        file=drift.REFERENCE_FILE, rows=len(features), width=features.shape[1], layer=POOL_LAYER
    )
    return drift.reference_bytes(features), described


def publish_quantized(
    bundle: Bundle, data: str | Path, store: ModelStore, log: Log
) -> tuple[int, Path, Engine]:
    """``ktl quantize``: a new version of ``bundle`` with an INT8 engine calibrated and
    checked on DATA (``training.publishing.quantize.engine_for_version``). Published versions are
    immutable, so the engine comes as a new version whose lineage names the original."""
    with tempfile.TemporaryDirectory(prefix="ktl-int8-") as tmp:
        artifacts, engine = engine_for_version(bundle, data, Path(tmp), log)
        lineage = Lineage(
            kind="quantized",
            name=bundle.name,
            version=bundle.version,
            model_sha256=bundle.metadata.files[MODEL_FILE],
        )
        metadata = bundle.metadata.replace(
            version=None,
            files={},
            created_at=utc_now(),
            lineage=lineage.model_dump(),
            engines={**(bundle.metadata.engines or {}), "int8": engine.model_dump()},
        )
        reports = {
            path.relative_to(bundle.path / REPORTS_DIR).as_posix(): path.read_bytes()
            for path in sorted((bundle.path / REPORTS_DIR).rglob("*"))
            if path.is_file()
        }
        for kept in (SEEN_FILE, drift.REFERENCE_FILE):  # the same images as the original's
            if (bundle.path / kept).is_file():
                artifacts[kept] = bundle.path / kept
        version, path = save_bundle(store, bundle.model, metadata, reports, artifacts)
    return version, path, engine


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


def save_multilabel(
    store: ModelStore,
    model: keras.Model,
    metadata: BundleMetadata,
    reports: dict[str, bytes],
    seen: list[str],
    artifacts: dict[str, Path],
) -> tuple[int, Path]:
    """A multi-label job's bundle (``training.multilabel``), with its INT8 engine
    when it has one, and the hashes of the images it learnt from (``seen.txt``)."""
    return save_bundle(store, model, metadata, reports, {**artifacts, SEEN_FILE: seen_file(seen)})
