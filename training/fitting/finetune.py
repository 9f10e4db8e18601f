"""The fine-tuning recipe: a new head on the frozen backbone, then the top block
unfrozen at a low learning rate with BatchNorm kept in inference mode; or, with
no pretrained weights, the whole network trained from the start."""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models.errors import ConfigError
from models.networks.classifier import POOL_LAYER, pooled_model
from training.fitting.callbacks import AtomicBackup, ResumableEarlyStopping
from training.fitting.phases import Phase
from training.fitting.regime import Regime, loss_and_metric, optimizer, soften

_BATCHNORM = keras.layers.BatchNormalization


def augmentation(seed: int) -> keras.Sequential:
    """Flip, small rotation, zoom and contrast: active in training only, never saved."""
    layers = keras.layers
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.05, seed=seed + 1),
            layers.RandomZoom(0.1, seed=seed + 2),
            layers.RandomContrast(0.1, seed=seed + 3),
        ],
        name="augmentation",
    )


def training_model(
    model: keras.Model,
    augment: bool,
    seed: int,
    build: Callable = keras.Model,
    randaugment: bool = False,
) -> keras.Model:
    """The model ``fit`` trains: ``model``, with augmentation in front of it when
    ``augment`` (and Keras' RandAugment, two random operations per image, with
    ``randaugment``); shares its weights. Augmentation acts in training only and is
    never saved. ``build(inputs, outputs, name=...)`` makes it."""
    inputs = keras.Input(model.input_shape[1:], name="image")
    x = augmentation(seed)(inputs) if augment else inputs
    if randaugment:
        x = keras.layers.RandAugment(value_range=(0, 255), seed=seed + 4, name="randaugment")(x)
    return build(inputs, model(x), name="training")


def batches(
    inputs: np.ndarray,
    targets: np.ndarray,
    indices: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int | tuple[int, ...],
    class_weight: dict[int, float] | None = None,
    pad_to: int | None = None,
    first_epoch: int = 0,
    soft: tuple[int, Regime] | None = None,
) -> tf.data.Dataset:
    """Batches of ``(inputs, label index)`` drawn by index from a cache: the decoded
    uint8 pixels, or the backbone's pooled features.

    Reading by index keeps a memory-mapped cache on disk instead of copying it
    into TensorFlow; each epoch's order comes from ``seed`` and the epoch's number
    alone (counted from ``first_epoch``), so a resumed run shuffles as the whole one.
    ``pad_to`` repeats the epoch's first items up to that length, so workers with
    shards of different sizes run the same number of steps. With ``class_weight``
    or ``pad_to``, each batch carries a third element, the items' weights: their
    class weight (or 1), and 0 for the padding, which so counts in no loss or metric.
    ``soft`` = ``(classes, regime)`` gives targets as distributions: one-hot, and when
    shuffled (training) smoothed and mixed as the regime says (``training.fitting.regime``),
    from the epoch's own random stream.
    """
    seeds = (seed,) if isinstance(seed, int) else tuple(seed)
    epochs = itertools.count(first_epoch)
    indices = np.asarray(indices)
    length = pad_to or len(indices)
    weighted = class_weight is not None or pad_to is not None
    if class_weight is not None:
        per_class = np.array([class_weight[k] for k in range(len(class_weight))], np.float32)

    def generate():
        epoch = next(epochs)
        order = np.random.default_rng([*seeds, epoch]).permutation(indices) if shuffle else indices
        order = np.resize(order, length)  # repeats from the start when padding
        mixing = np.random.default_rng([*seeds, epoch, 1])  # a stream of its own
        for start in range(0, length, batch_size):
            chunk = order[start : start + batch_size]
            x, y = inputs[chunk], targets[chunk]
            if soft is not None:
                x, y = soften(x, y, soft[0], soft[1], mixing, training=shuffle)
                x = x.astype(dtype)
            if not weighted:
                yield x, y
                continue
            weights = per_class[targets[chunk]] if class_weight is not None else 1.0
            real = np.arange(start, start + len(chunk)) < len(indices)
            yield x, y, (weights * real).astype(np.float32)

    mixes = soft is not None and shuffle and (soft[1].mixup or soft[1].cutmix)
    dtype = np.dtype(np.float32) if mixes else inputs.dtype  # mixed pixels are not whole
    signature = _signature(inputs.shape[1:], dtype, soft[0] if soft else None, weighted)
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    steps = -(-length // batch_size)
    return dataset.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(tf.data.AUTOTUNE)


def _signature(
    shape: tuple[int, ...], dtype: np.dtype, classes: int | None, weighted: bool
) -> tuple[tf.TensorSpec, ...]:
    """What ``batches`` yields: inputs, targets (indices, or distributions over
    ``classes``) and, when ``weighted``, each item's weight."""
    targets = (
        tf.TensorSpec((None, classes), tf.float32)
        if classes is not None
        else tf.TensorSpec((None,), tf.int32)
    )
    signature = (tf.TensorSpec((None, *shape), tf.as_dtype(dtype)), targets)
    return signature + ((tf.TensorSpec((None,), tf.float32),) if weighted else ())


def freeze_for_head(backbone: keras.Model) -> None:
    backbone.trainable = False


def unfreeze_index(backbone: keras.Model, unfreeze_from: str) -> int:
    """The index of layer ``unfreeze_from`` in ``backbone``; a ``ConfigError`` naming its
    last layers when there is none (checked before the first phase trains)."""
    names = [layer.name for layer in backbone.layers]
    if unfreeze_from not in names:
        raise ConfigError(
            f"--unfreeze-from {unfreeze_from!r} is not a layer of {backbone.name}; "
            f"its last layers are: {', '.join(names[-8:])} (ktl inspect lists all)"
        )
    return names.index(unfreeze_from)


def unfreeze_top(backbone: keras.Model, unfreeze_from: str) -> int:
    """Train layers from ``unfreeze_from`` on, except BatchNorm; returns how many."""
    start = unfreeze_index(backbone, unfreeze_from)
    backbone.trainable = True
    trainable = 0
    for position, layer in enumerate(backbone.layers):
        layer.trainable = position >= start and not isinstance(layer, _BATCHNORM)
        trainable += int(layer.trainable and bool(layer.weights))
    return trainable


def progress_verbosity() -> int:
    """A progress bar on a terminal, one line per epoch in logs."""
    return 1 if sys.stderr.isatty() else 2


def run_phase(
    fit_model: keras.Model,
    phase: Phase,
    train: tf.data.Dataset,
    train_steps: int | None,
    val: tf.data.Dataset | None,
    val_steps: int | None,
    *,
    patience: int,
    backup_dir: Path | None,
    earlier: list[dict] | None = None,
    on_epoch: Callable[[list[dict]], None] | None = None,
    jit: bool = False,
    first_callbacks: list[keras.callbacks.Callback] | None = None,
    regime: Regime | None = None,
) -> list[dict]:
    """Fit one phase with early stopping (best weights restored) and a per-epoch
    backup that ``--resume`` continues from (none when ``backup_dir`` is None).
    Progress goes to stderr. Class weights come with the training batches. The
    steps are None for datasets that end with the epoch, else the steps of one.
    Without ``val``, one of ``first_callbacks`` (they run before the others) puts
    ``val_loss`` into each epoch's logs.

    Returns one history row per epoch; ``earlier`` holds the rows of epochs run
    before an interruption, and ``on_epoch`` gets the rows after every epoch so
    they can be kept for a resume."""
    rows = list(earlier or [])
    record = _recorder(phase, rows, on_epoch)

    regime = regime or Regime()
    steps = train_steps or int(train.cardinality())
    assert not isinstance(phase.lr, str), "a rate of auto is chosen before the phase runs"
    _compile(fit_model, phase.lr, regime, phase.epochs * max(1, steps), jit)
    best_file = backup_dir.with_name(f"best_{phase.name}.weights.h5") if backup_dir else None
    callbacks = [
        *(first_callbacks or []),
        ResumableEarlyStopping(patience, list(rows), best_file),  # before the backup restores
        *([AtomicBackup(str(backup_dir))] if backup_dir else []),
        keras.callbacks.LambdaCallback(on_epoch_end=record),  # after the backup it describes
    ]
    print(
        f"Phase {phase.name}: up to {phase.epochs} epochs at lr {phase.lr:g} ({regime.schedule})",
        file=sys.stderr,
    )
    with contextlib.redirect_stdout(sys.stderr):
        fit_model.fit(
            train,
            validation_data=val,
            epochs=phase.epochs,
            steps_per_epoch=train_steps,
            validation_steps=val_steps,
            shuffle=False,  # the dataset reshuffles itself every epoch
            callbacks=callbacks,
            verbose=progress_verbosity(),
        )
    return rows


def _recorder(
    phase: Phase, rows: list[dict], on_epoch: Callable[[list[dict]], None] | None
) -> Callable[[int, dict], None]:
    """An epoch-end hook that keeps one history row per epoch in ``rows``."""

    def record(epoch: int, logs: dict) -> None:
        rows[:] = [r for r in rows if r["epoch"] < epoch + 1]
        rows.append(
            {"phase": phase.name, "epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
        )
        if on_epoch is not None:
            on_epoch(rows)

    return record


def _compile(
    fit_model: keras.Model, lr: float, regime: Regime, total_steps: int, jit: bool
) -> None:
    loss, metric = loss_and_metric(regime)
    fit_model.compile(
        optimizer=optimizer(regime, lr, total_steps),
        loss=loss,
        metrics=[metric],
        jit_compile=jit,
    )
    fit_model.optimizer.build(fit_model.trainable_variables)  # now, not inside a replica's step


def recalibrate_batchnorm(model: keras.Model, backbone: keras.Model, data: tf.data.Dataset) -> bool:
    """Set BatchNorm moving statistics to the exact mean over the training data.

    Training from scratch moves the weights faster than BatchNorm's moving
    averages follow (momentum 0.99), so inference-mode validation would judge
    stale statistics. A cumulative average over one pass fixes that. Returns
    whether there was any BatchNorm to recalibrate.
    """
    norms = _batchnorms(backbone)
    if not norms:
        return False
    saved = [layer.momentum for layer in norms]
    preprocess = model.get_layer("preprocess")
    try:
        for step, (pixels, _) in enumerate(data, start=1):
            for layer in norms:
                layer.momentum = (step - 1) / step
            backbone(preprocess(tf.cast(pixels, tf.float32)), training=True)
    finally:
        for layer, momentum in zip(norms, saved, strict=True):
            layer.momentum = momentum
    return True


def _batchnorms(backbone: keras.Model) -> list:
    return [layer for layer in backbone.layers if isinstance(layer, _BATCHNORM)]


def batchnorm_statistics(backbone: keras.Model) -> list:
    """The moving means and variances of the backbone's BatchNorm layers."""
    return [
        v for layer in _batchnorms(backbone) for v in (layer.moving_mean, layer.moving_variance)
    ]


def inference(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """``model``'s inference-mode forward pass, traced once for batches of any size."""
    return tf.function(
        lambda x: model(tf.cast(x, tf.float32), training=False),
        autograph=False,
        reduce_retracing=True,
    )


def predict_probabilities(
    model: keras.Model | Callable[[tf.Tensor], tf.Tensor], data: tf.data.Dataset
) -> np.ndarray:
    """Inference-mode outputs of ``model`` (or of its ``inference`` function, to
    trace it once for many calls) for every batch of ``data``."""
    forward = inference(model) if isinstance(model, keras.Model) else model
    return np.concatenate([forward(pixels).numpy() for pixels, _ in data])


def pooled_features(model: keras.Model, data: tf.data.Dataset) -> np.ndarray:
    """The backbone's pooled features (the head's input) for every batch."""
    return predict_probabilities(pooled_model(model), data).astype(np.float32)


def head_model(model: keras.Model, build: Callable = keras.Model) -> keras.Model:
    """Dropout and softmax of ``model`` on pooled features; shares their weights.

    With the backbone frozen and no augmentation, the backbone computes the same
    features every epoch, so phase 1 computes them once and trains this instead.
    """
    width = model.get_layer(POOL_LAYER).output.shape[-1]
    inputs = keras.Input((width,), name="features")
    outputs = model.get_layer("predictions")(model.get_layer("dropout")(inputs))
    return build(inputs, outputs, name="head")
