"""One multi-label training job, from the CSV to the published bundle: list and
split, decode, train (``recipe``), calibrate and choose each label's threshold on
validation (``decisions``), then decode and score the test split once, last."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import keras
import numpy as np

from models.engines import int8
from models.metadata import BundleMetadata, InputSpec, Metrics, Multilabel
from models.networks.backbones import get_backbone
from models.networks.classifier import build_backbone, build_classifier, resolve_weights
from models.preprocessing import RESIZE_POLICY, decode_images
from models.store import ModelStore
from models.timestamps import utc_now
from training.config import TrainConfig
from training.dataset.corrections import data_root, excluded
from training.dataset.data import DataError
from training.dataset.splits import SPLITS, content_hashes
from training.evaluation.evaluate import history_csv
from training.fitting.phases import plan_phases
from training.jobs.state import Log
from training.multilabel import decisions, recipe
from training.multilabel.data import MultiListing, drawn_parts, list_multilabel
from training.multilabel.figures import multilabel_figures
from training.multilabel.plots import pr_curves_png
from training.publishing.publish import save_multilabel
from training.publishing.report import curves_png

Split = tuple[np.ndarray, np.ndarray, list[str]]  # pixels, 0/1 targets, files


def decode_rows(listing: MultiListing, rows: list[int], size: tuple[int, int], log: Log) -> Split:
    """The images at ``rows``, decoded; those that cannot be are skipped and said."""
    paths = [listing.samples[i].path for i in rows]
    pixels, kept = [], []
    for image in decode_images(paths, size, lambda bad: log(f"  skipped {bad.reason}")):
        pixels.append(image.pixels)
        kept.append(rows[image.position])
    targets = listing.targets()[kept] if kept else np.zeros((0, len(listing.labels)), np.float32)
    stacked = np.stack(pixels) if pixels else np.zeros((0, *size, 3), np.uint8)
    return stacked, targets, [str(listing.samples[i].path) for i in kept]


def _parts(config: TrainConfig, listing: MultiListing, log: Log) -> tuple[dict, dict]:
    """Each split's rows (copies of a training image left out of validation and
    test) and the dataset's report."""
    hashes, unreadable = content_hashes(cast(Any, listing.samples))
    parts, drawn = drawn_parts(
        listing, hashes, val_split=config.val_split, test_split=config.test_split, seed=config.seed
    )
    corrections = _exclude(config, listing, parts, log) if config.exclude else {}
    if not parts["val"]:
        raise DataError("no validation images are left after removing copies of training images")
    targets = listing.targets()
    missing = [lb for k, lb in enumerate(listing.labels) if not targets[parts["train"], k].any()]
    if missing:
        raise DataError(f"labels with no training image: {', '.join(missing)}; add images")
    for item in listing.refused + unreadable:
        log(f"  skipped {item['reason']}")
    for line in drawn.notes:
        log(f"  note: {line}")
    report = {
        "task": "multilabel",
        "labels": {
            label: {name: int(targets[parts[name], k].sum()) for name in SPLITS}
            for k, label in enumerate(listing.labels)
        },
        "none": {name: int((targets[parts[name]].sum(axis=1) == 0).sum()) for name in SPLITS},
        **{f"{name}_images": len(parts[name]) for name in ("train", "val", "test")},
        "test_split": drawn.test_split,
        **({"corrections": corrections} if corrections else {}),
        "skipped": listing.refused + unreadable,
        "warnings": drawn.notes,
        "seen": sorted({str(hashes[i]) for i in parts["train"] + parts["val"]}),
    }
    return parts, report


def _exclude(config: TrainConfig, listing: MultiListing, parts: dict, log: Log) -> dict:
    """``--exclude CSV`` (a ``ktl doctor`` suspects.csv): the files of its ``exclude``
    rows leave train and validation, drawn before; the test split stays DATA's own,
    its excluded images kept and counted, so its figures compare with a version
    trained without the CSV."""
    by_path = {sample.path.resolve(): k for k, sample in enumerate(listing.samples)}
    dropped, record = excluded(data_root(config.data), by_path, str(config.exclude))
    before = len(parts["train"]) + len(parts["val"])
    for name in ("train", "val"):
        parts[name] = [i for i in parts[name] if i not in dropped]
    record["excluded"] = before - len(parts["train"]) - len(parts["val"])
    record["kept_in_test"] = sum(i in dropped for i in parts["test"])
    log(
        f"--exclude {config.exclude}: {record['excluded']} files left out of train and "
        f"validation, {record['kept_in_test']} test images kept (the test split stays DATA's)"
    )
    return {"exclude": record}


def _model(config: TrainConfig, labels: int) -> tuple[keras.Model, keras.Model]:
    spec = get_backbone(config.backbone)
    keras.utils.set_random_seed(config.seed)
    assert config.weights is not None, "a validated config has its weights"
    with contextlib.redirect_stdout(sys.stderr):  # Keras reports downloads on stdout
        backbone = build_backbone(
            spec,
            config.resolved_image_size(),
            resolve_weights(spec, config.weights),
            via=config.via,
        )
    model = build_classifier(
        spec, backbone, labels, dropout=config.dropout, pooling=config.pooling, activation="sigmoid"
    )
    return model, backbone


def _decide(
    config: TrainConfig, model: keras.Model, val: Split, labels: list[str], log: Log
) -> tuple[Multilabel, np.ndarray]:
    """Temperatures and thresholds on validation; validation's calibrated outputs."""
    raw = recipe.probabilities(model, val[0], config.batch_size)
    temps = decisions.temperatures(raw, val[1]) if config.calibrate else np.ones(len(labels))
    recipe.fold_temperatures(model, temps)
    calibrated = recipe.probabilities(model, val[0], config.batch_size)
    chosen = decisions.choose_thresholds(calibrated, val[1], labels, temps, config.min_precision)
    for label, choice in chosen.items():
        log(
            f"  {label}: threshold {choice.threshold:.3f}, temperature {choice.temperature:.3f}"
            + (f" ({choice.note})" if choice.note else "")
        )
    how = "per label, fitted on validation, kept where it lowered the NLL of the other half"
    settings = Multilabel(
        rule=decisions.rule(config.min_precision),
        labels=chosen,
        calibration=how if config.calibrate else None,
    )
    return settings, calibrated


def int8_engine(
    model: keras.Model,
    size: tuple[int, int],
    train: np.ndarray,
    checked: dict[str, tuple[np.ndarray, np.ndarray]],
    thresholds: np.ndarray,
    folder: Path,
    log: Log,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """``--int8``: the model quantized, its activation ranges from training images,
    and on each checked split (pixels, the float model's probabilities) how many of
    the label decisions (image by label) the INT8 engine makes alike: the gate."""
    calibration = train[int8.calibration_rows(len(train))]
    log(f"Quantizing to INT8, activation ranges from {len(calibration)} training images")
    path = folder / int8.INT8_FILE
    made = int8.quantize(model, size, calibration, path)
    runner = int8.Int8Runner(path)
    agreement = {}
    for split, (pixels, reference) in checked.items():
        candidate = runner.predict(pixels)
        agreement[split] = int8.agreement(reference, candidate, thresholds=thresholds)
        log(
            f"  INT8 vs float on {split}: same label decisions "
            f"{agreement[split]['decision_agreement']:.2%}"
        )
    return {int8.INT8_FILE: path}, {**made, "agreement": agreement}


def _reports(
    history: list[dict],
    details: dict[str, Any],
    evaluation: dict[str, Any],
    labels: list[str],
    thresholds: np.ndarray,
    scored: tuple,
) -> dict[str, bytes]:
    """``reports/``: the figures, the history with each phase's kept epoch, the loss
    curves and each label's precision-recall curve on the split shown."""
    kept = {(phase["name"], phase["kept_epoch"]) for phase in details["phases"]}
    history = [{**row, "kept": int((row["phase"], row["epoch"]) in kept)} for row in history]
    return {
        "metrics.json": json.dumps(evaluation, indent=2).encode(),
        "history.csv": history_csv(history).encode(),
        "curves.png": curves_png(history),
        "pr_curves.png": pr_curves_png(scored[3], scored[1], labels, thresholds),
    }


Scored = tuple[np.ndarray, np.ndarray, list[str], np.ndarray]  # Split + probabilities


def _evaluate(
    config: TrainConfig,
    model: keras.Model,
    listing: MultiListing,
    parts: dict[str, list[int]],
    val: Split,
    log: Log,
) -> tuple[Multilabel, dict[str, Any], dict[str, Scored]]:
    """Thresholds and temperatures on validation, then the test split decoded and
    scored once, last: the decisions, each split's figures, and what was scored."""
    labels = listing.labels
    settings, calibrated = _decide(config, model, val, labels, log)
    thresholds = np.array(settings.thresholds(labels))
    scored: dict[str, Scored] = {"validation": (*val, calibrated)}
    if parts["test"]:
        log("Scoring the test split: its images are read now, for the first time")
        pixels, targets, files = decode_rows(listing, parts["test"], val[0].shape[1:3], log)
        tested = recipe.probabilities(model, pixels, config.batch_size)
        scored["test"] = (pixels, targets, files, tested)
    evaluation = {
        split: multilabel_figures(probabilities, targets, labels, thresholds)
        for split, (_, targets, _, probabilities) in scored.items()
    }
    settings = Multilabel.model_validate({**settings.model_dump(), "evaluation": evaluation})
    return settings, evaluation, scored


def _publish(
    config: TrainConfig,
    model: keras.Model,
    metadata: BundleMetadata,
    reports: dict[str, bytes],
    seen: list[str],
    train: np.ndarray,
    scored: dict[str, Scored],
    log: Log,
) -> tuple[int, Path]:
    """The bundle, with its INT8 engine when ``--int8`` asks for one."""
    assert metadata.multilabel is not None
    thresholds = np.array(metadata.multilabel.thresholds(metadata.labels))
    with tempfile.TemporaryDirectory(prefix="ktl-int8-") as folder:
        artifacts: dict[str, Path] = {}
        if config.int8:
            checked = {split: (s[0], s[3]) for split, s in scored.items()}
            size = config.resolved_image_size()
            artifacts, engine = int8_engine(
                model, size, train, checked, thresholds, Path(folder), log
            )
            metadata = metadata.replace(engines={"int8": engine})
        store = ModelStore(config.store)
        return save_multilabel(store, model, metadata, reports, seen, artifacts)


@dataclass(frozen=True)
class MultilabelResult:
    """What a multi-label job did, as ``training.job.JobResult`` answers it: the version it
    published, and ``ktl train --json``'s object (its figures are ``Multilabel``'s)."""

    summary: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.summary["name"])

    @property
    def version(self) -> int:
        return int(self.summary["version"])

    @property
    def path(self) -> Path:
        return Path(self.summary["path"])

    def to_json(self) -> dict[str, Any]:
        return self.summary


def run_multilabel(config: TrainConfig, log: Log) -> dict[str, Any]:
    """Train, evaluate and publish a multi-label version; the summary of ``ktl train``."""
    started = time.monotonic()
    recipe.refuse_unsupported(config)
    listing = list_multilabel(config.data, confine=config.confine_to_data)
    labels, size = listing.labels, config.resolved_image_size()
    parts, report = _parts(config, listing, log)
    log(f"Decoding {len(parts['train']) + len(parts['val']):,} training and validation images")
    train, val = (decode_rows(listing, parts[name], size, log) for name in ("train", "val"))
    model, backbone = _model(config, len(labels))
    phases = plan_phases(config, get_backbone(config.backbone))
    inputs = {"train": train[:2], "val": val[:2]}
    history, details = recipe.train(config, model, backbone, phases, inputs, log)
    settings, evaluation, scored = _evaluate(config, model, listing, parts, val, log)
    split = "test" if "test" in evaluation else "validation"
    shown = {k: v for k, v in evaluation[split].items() if k != "per_label"}
    metadata = BundleMetadata(
        name=config.name,
        labels=tuple(labels),
        backbone=config.backbone,
        image_size=size,
        input=InputSpec(shape=(*size, 3)),
        resize=RESIZE_POLICY,
        created_at=utc_now(),
        metrics=Metrics.model_validate({**shown, "split": split}),
        task="multilabel",
        multilabel=settings,
        training={**config.to_dict(), **details},
        dataset={k: v for k, v in report.items() if k not in ("warnings", "seen")},
    )
    thresholds = np.array(settings.thresholds(labels))
    reports = _reports(history, details, evaluation, labels, thresholds, scored[split])
    version, path = _publish(
        config, model, metadata, reports, report["seen"], train[0], scored, log
    )
    return {
        "name": config.name,
        "version": version,
        "path": str(path),
        "task": "multilabel",
        "metrics": {**shown, "split": split},
        "evaluation": evaluation,
        "multilabel": {k: v for k, v in settings.model_dump().items() if k != "evaluation"},
        "dataset": {k: v for k, v in report.items() if k != "seen"},
        "training": details,
        "history": history,
        "warnings": report["warnings"],
        "seconds": round(time.monotonic() - started, 1),
    }
