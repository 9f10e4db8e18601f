"""The two-phase recipe for a multi-label model: a sigmoid head with binary
cross-entropy, each label's positives weighted up when the label is rare; the head
on the frozen backbone's features computed once, then the top block fine-tuned on
pixels (or the whole network from scratch without pretrained weights)."""

from __future__ import annotations

import contextlib
import math
import sys
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from models.errors import ConfigError
from training.config import TrainConfig
from training.fitting import finetune
from training.fitting.phases import FINE_TUNE, HEAD, Phase
from training.jobs.state import Log

MAX_POSITIVE_WEIGHT = 10.0
_NOT_YET: dict[str, Any] = {  # what the multi-label job does not run yet, and how asked
    "--strategy": lambda c: c.strategy != "auto",
    "--resume": lambda c: c.resume,
    "--tta": lambda c: c.tta,
    "--ood": lambda c: c.ood,
    "--relabel": lambda c: c.relabel,
    "--add-reviewed": lambda c: c.add_reviewed,  # a review gives one label per image
    "--weights model:NAME": lambda c: (c.weights or "").startswith("model:"),
}


def refuse_unsupported(config: TrainConfig) -> None:
    """The options a multi-label job cannot honour yet, refused before any work."""
    for flag, value in (("mixup", config.mixup), ("cutmix", config.cutmix)):
        if value:
            raise ConfigError(
                f"--{flag} is not available with --task multilabel: mixing two images "
                "would need their label vectors mixed, which ktl does not do yet; leave "
                f"--{flag} at 0"
            )
    for flag in ("lr", "fine_tune_lr"):
        if getattr(config, flag) == "auto":
            raise ConfigError(
                f"--{flag.replace('_', '-')} auto is not available with --task multilabel: "
                "give a number (the defaults are 1e-3 and 1e-5)"
            )
    asked = [flag for flag, on in _NOT_YET.items() if on(config)]
    if asked:
        raise ConfigError(
            f"{', '.join(asked)}: not available with --task multilabel yet (docs/multilabel.md)"
        )


def positive_weights(targets: np.ndarray) -> np.ndarray:
    """Each label's weight on its positives: sqrt(negatives / positives), between 1
    (common labels keep plain binary cross-entropy) and 10."""
    positives = targets.sum(axis=0)
    ratio = (len(targets) - positives) / np.maximum(positives, 1)
    return np.clip(np.sqrt(ratio), 1.0, MAX_POSITIVE_WEIGHT).astype(np.float32)


def weighted_binary_crossentropy(weights: np.ndarray) -> Any:
    w = tf.constant(weights)

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        p = tf.clip_by_value(y_pred, 1e-7, 1 - 1e-7)
        per_label = w * y_true * tf.math.log(p) + (1 - y_true) * tf.math.log(1 - p)
        return -tf.reduce_mean(per_label, axis=-1)

    return loss


def _data(x: np.ndarray, y: np.ndarray, batch: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch).prefetch(tf.data.AUTOTUNE)


def train(
    config: TrainConfig,
    model: keras.Model,
    backbone: keras.Model,
    phases: list[Phase],
    inputs: dict[str, tuple[np.ndarray, np.ndarray]],
    log: Log,
) -> tuple[list[dict], dict[str, Any]]:
    """Run every phase; ``inputs`` holds the train and val pixels with their 0/1
    targets. Returns the history rows and what was run."""
    (x_train, y_train), (x_val, y_val) = inputs["train"], inputs["val"]
    weights = positive_weights(y_train)
    smoothing = config.label_smoothing
    soft = y_train * (1 - smoothing) + smoothing / 2
    history: list[dict] = []
    details: dict[str, Any] = {
        "task": "multilabel",
        "positive_weights": [round(float(w), 4) for w in weights],
        "phases": [],
    }
    for phase in phases:
        if phase.name == HEAD:
            finetune.freeze_for_head(backbone)
            fit_model = finetune.head_model(model)
            features = {
                name: finetune.pooled_features(model, _data(x, y, config.batch_size, False, 0))
                for name, (x, y) in (("train", inputs["train"]), ("val", inputs["val"]))
            }
            train_x, val_x = features["train"], features["val"]
        else:
            if phase.name == FINE_TUNE:
                assert phase.unfreeze_from is not None
                finetune.unfreeze_top(backbone, phase.unfreeze_from)
            else:
                backbone.trainable = True
            fit_model = finetune.training_model(model, config.augment, config.seed)
            train_x, val_x = x_train, x_val
        rows = _fit(config, fit_model, phase, weights, (train_x, soft), (val_x, y_val), log)
        history += rows
        losses = [row["val_loss"] for row in rows]
        details["phases"].append(
            {"name": phase.name, "epochs": len(rows), "kept_epoch": int(np.argmin(losses)) + 1}
        )
    return history, details


def _fit(
    config: TrainConfig,
    fit_model: keras.Model,
    phase: Phase,
    weights: np.ndarray,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    log: Log,
) -> list[dict]:
    steps = math.ceil(len(train[0]) / config.batch_size)
    epochs = phase.epochs
    if phase.name != FINE_TUNE:  # the head phase runs at least --min-steps steps
        epochs = max(epochs, math.ceil(config.min_steps / steps))
    assert phase.lr != "auto", "refused before (refuse_unsupported)"
    fit_model.compile(
        optimizer=keras.optimizers.Adam(float(phase.lr)),
        loss=weighted_binary_crossentropy(weights),
    )
    log(f"Phase {phase.name}: up to {epochs} epochs at learning rate {phase.lr:g}")
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.patience or epochs, restore_best_weights=True
    )
    with contextlib.redirect_stdout(sys.stderr):  # Keras' progress: stdout is the summary's
        fitted = fit_model.fit(
            _data(*train, config.batch_size, True, config.seed),
            validation_data=_data(*val, config.batch_size, False, 0),
            epochs=epochs,
            callbacks=[stop],
            verbose=finetune.progress_verbosity(),
        )
    keys = list(fitted.history)
    return [
        {"phase": phase.name, "epoch": e + 1, **{k: float(fitted.history[k][e]) for k in keys}}
        for e in range(len(fitted.history["loss"]))
    ]


def probabilities(model: keras.Model, pixels: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's sigmoid outputs, inference mode, as it serves them."""
    if not len(pixels):
        return np.zeros((0, model.output_shape[-1]), np.float32)
    dummy = np.zeros((len(pixels), 1), np.float32)
    return finetune.predict_probabilities(model, _data(pixels, dummy, batch_size, False, 0))


def fold_temperatures(model: keras.Model, temperatures: np.ndarray) -> None:
    """Divide each label's logit by its temperature, in the last Dense layer."""
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel / temperatures[None, :], bias / temperatures])
