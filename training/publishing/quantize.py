"""The INT8 engine of ``ktl train --int8`` and ``ktl quantize``: the model is quantized
to INT8 with images of the training split, and its answers are compared with the
float model's on the validation and test images (see :mod:`models.engines.int8`). This module
only makes the engine; ``training.publishing.publish`` publishes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from models.bundle import Bundle
from models.decision import threshold_of
from models.engines import int8
from models.errors import ConfigError
from models.metadata import Engine
from training.evaluation.evaluate import Validation
from training.evaluation.scoring import decoded_split, listed
from training.jobs.state import Log

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


def predict_rows(runner: int8.Int8Runner, validation: Validation) -> np.ndarray:
    """The INT8 probabilities of a split's images, in the split's row order."""
    out = []
    for start in range(0, len(validation.rows), _CHUNK):
        rows = validation.rows[start : start + _CHUNK]
        out.append(runner.predict(np.stack([validation.pixels[int(r)] for r in rows])))
    width = validation.probabilities.shape[1]
    return np.concatenate(out) if out else np.zeros((0, width), np.float32)


def engine_for_version(
    bundle: Bundle, data: str | Path, folder: Path, log: Log
) -> tuple[dict[str, Path], Engine]:
    """``ktl quantize``'s engine: ``bundle`` quantized into ``folder``, calibrated on
    DATA's train split and checked on its validation and test splits (as the version's
    own settings draw them). Returns what ``int8_engine`` returns; publishing it, as a
    new version, is ``training.publishing.publish.publish_quantized``'s."""
    if bundle.metadata.task == "multilabel":
        raise ConfigError(
            f"{bundle.name} version {bundle.version} is multi-label: INT8 engines, and their "
            "agreement gate, are for single-label versions yet (docs/multilabel.md)"
        )
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
    threshold = threshold_of(bundle.metadata.decision)
    calibration_rows = np.arange(len(train.pixels))
    image_size = bundle.image_size
    return int8_engine(
        bundle.model, image_size, train.pixels, calibration_rows, checked, threshold, folder, log
    )
