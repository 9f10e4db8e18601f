"""``ktl train --int8``: after calibration, the model is quantized to INT8 with
images of the training split, and its answers are compared with the float
model's on the validation and test images (see :mod:`models.int8`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from models import int8
from models.bundle import MODEL_FILE, REPORTS_DIR, Bundle, save_bundle
from models.decision import threshold_of
from models.errors import ConfigError
from models.metadata import Engine, Lineage
from models.store import ModelStore
from training.distributed import Validation
from training.publish import utc_now
from training.scoring import decoded_split, listed
from training.state import Log

if TYPE_CHECKING:
    from models.metadata import BundleMetadata
    from training.config import TrainConfig
    from training.data import Prepared
    from training.final import Outcome

_CHUNK = 64  # images run through the INT8 session at a time


def int8_engine(
    model: keras.Model,
    image_size: tuple[int, int],
    pixels: np.ndarray,
    train_rows: np.ndarray,
    checked: dict[str, Validation],
    threshold: float,
    folder: Path,
    log: Log,
) -> tuple[dict[str, Path], Engine]:
    """Quantize ``model`` into ``folder``; returns the bundle artifacts to add and
    the ``engines.int8`` entry with the agreement on each split in ``checked``
    (decisions compared at the version's ``threshold``)."""
    chosen = train_rows[int8.calibration_rows(len(train_rows))]
    calibration = np.stack([pixels[int(row)] for row in chosen])
    log(f"Quantizing to INT8, activation ranges from {len(calibration)} training images")
    path = folder / int8.INT8_FILE
    made = int8.quantize(model, image_size, calibration, path)
    runner = int8.Int8Runner(path)
    agreement = {}
    for split, validation in checked.items():
        quantized = predict_rows(runner, validation)
        agreement[split] = figures = int8.agreement(
            validation.probabilities, quantized, validation.targets, threshold
        )
        log(
            f"  INT8 vs float on {split} ({figures['images']} images): top-1 agreement "
            f"{figures['top1_agreement']:.1%}, same decision {figures['decision_agreement']:.1%},"
            f" max probability difference {figures['max_abs_diff']:.4f}, accuracy "
            f"{figures['accuracy_int8']:.1%} (float {figures['accuracy_float']:.1%})"
        )
    engine: dict[str, Any] = {**made, "agreement": agreement}
    return {int8.INT8_FILE: path}, Engine.model_validate(engine)


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
    """``save_bundle`` of a job, with an INT8 engine when ``--int8`` asks for one."""
    if not config.int8:
        return save_bundle(store, model, metadata, reports)
    with tempfile.TemporaryDirectory(prefix="ktl-int8-") as tmp:
        artifacts, engine = int8_engine(
            model, config.resolved_image_size(), prepared.pixels, prepared.train,
            outcome.checked, outcome.decision["threshold"], Path(tmp), log,
        )  # fmt: skip
        metadata = metadata.replace(engines={"int8": engine.model_dump()})
        return save_bundle(store, model, metadata, reports, artifacts)


def predict_rows(runner: int8.Int8Runner, validation: Validation) -> np.ndarray:
    """The INT8 probabilities of a split's images, in the split's row order."""
    out = []
    for start in range(0, len(validation.rows), _CHUNK):
        rows = validation.rows[start : start + _CHUNK]
        out.append(runner.predict(np.stack([validation.pixels[int(r)] for r in rows])))
    width = validation.probabilities.shape[1]
    return np.concatenate(out) if out else np.zeros((0, width), np.float32)


def quantize_version(
    bundle: Bundle, data: str | Path, store: ModelStore, log: Log
) -> tuple[int, Path, Engine]:
    """``ktl quantize``: a new version of ``bundle`` with an INT8 engine, calibrated on
    DATA's train split and checked on its validation and test splits (as the version's
    own settings draw them). Published versions are immutable, so the engine comes
    as a new version whose lineage names the original."""
    if bundle.metadata.engines and "int8" in bundle.metadata.engines:
        raise ConfigError(f"{bundle.name} version {bundle.version} already has an INT8 engine")
    source = listed(data)  # listed and hashed once for the three splits
    train = decoded_split(bundle, source, "train", log, at_most=int8.CALIBRATION_IMAGES)
    checked: dict[str, Validation] = {}
    for split, name in (("val", "validation"), ("test", "test")):
        try:
            part = decoded_split(bundle, source, split, log)
        except ConfigError as exc:  # no test split under the version's settings
            log(f"  not checked on {split}: {exc}")
            continue
        rows = np.arange(len(part.pixels))
        probabilities = bundle.classifier.predict(part.pixels)
        checked[name] = Validation(probabilities, part.targets, [], part.pixels, rows)
    with tempfile.TemporaryDirectory(prefix="ktl-int8-") as tmp:
        artifacts, engine = int8_engine(
            bundle.model, bundle.image_size, train.pixels, np.arange(len(train.pixels)),
            checked, threshold_of(bundle.metadata.decision), Path(tmp), log,
        )  # fmt: skip
        lineage = Lineage(
            kind="quantized",
            name=bundle.name,
            version=bundle.version,
            model_sha256=bundle.metadata.files[MODEL_FILE],
        )
        metadata = bundle.metadata.replace(
            version=None, files={}, created_at=utc_now(), lineage=lineage.model_dump(),
            engines={**(bundle.metadata.engines or {}), "int8": engine.model_dump()},
        )  # fmt: skip
        reports = {
            path.relative_to(bundle.path / REPORTS_DIR).as_posix(): path.read_bytes()
            for path in sorted((bundle.path / REPORTS_DIR).rglob("*"))
            if path.is_file()
        }
        version, path = save_bundle(store, bundle.model, metadata, reports, artifacts)
    return version, path, engine
