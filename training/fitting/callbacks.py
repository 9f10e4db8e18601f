"""Keras callbacks of the recipe: early stopping that survives a resume, random
streams that depend on the epoch alone, and validation figures taken with settled
BatchNorm statistics when a network trains from scratch."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from models.store import write_atomically, write_json_atomically
from training.evaluation.evaluate import log_loss


def save_weights_atomically(model: keras.Model, path: Path) -> None:
    """``model.save_weights(path)`` that a kill mid-write cannot truncate: the old
    file stays whole until the new one is complete and fsynced."""
    write_atomically(path, lambda temporary: model.save_weights(temporary))


class AtomicBackup(keras.callbacks.BackupAndRestore):
    """Keras' per-epoch backup, written so a process killed while writing it resumes
    from a consistent one. Keras writes ``latest.weights.h5`` in place and then the
    epoch in a second file; a kill in between leaves a truncated weights file (which
    no resume can open) or weights one epoch ahead of their epoch. Here each epoch's
    weights go to a file of their own, then one record naming that file and its epoch
    replaces the last one atomically; older weights are removed only after it.
    (With no record, as after a kill before the first epoch's, the phase starts over.)"""

    RECORD = "backup.json"

    def _load_model(self) -> None:
        record = Path(self.backup_dir) / self.RECORD
        if not record.is_file():
            return
        saved = json.loads(record.read_text())
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(Path(self.backup_dir) / saved["weights"])
        self.model._initial_epoch = saved["epoch"]

    def _save_model(self) -> None:
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{self._current_epoch:05d}.weights.h5"
        save_weights_atomically(self.model, folder / name)
        write_json_atomically(folder / self.RECORD, {"epoch": self._current_epoch, "weights": name})
        # older epochs, and what a writer killed mid-file left (one job writes here)
        for old in [*folder.glob("epoch-*.weights.h5"), *folder.glob(".*.tmp-*")]:
            if old.name != name:
                old.unlink(missing_ok=True)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping on ``val_loss`` that keeps its state across an interruption: the
    best value and epoch, and the patience used so far, come back from the history
    rows of the epochs run before; the best weights from a file written whenever the
    best improves. So a resumed phase stops, and keeps, what the uninterrupted one would.
    """

    def __init__(self, patience: int, earlier: list[dict], best_file: Path | None):
        super().__init__(monitor="val_loss", patience=patience, restore_best_weights=True)
        self.earlier = earlier
        self.best_file = best_file
        self._best_in_file = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        losses = [row["val_loss"] for row in self.earlier if "val_loss" in row]
        if not losses or self.best_file is None or not self.best_file.is_file():
            return
        best = int(np.argmin(losses))  # the first of equal values, as Keras keeps it
        self.best, self.best_epoch = losses[best], best
        self.wait = len(losses) - 1 - best
        self._best_in_file = True
        self.best_weights: list = []  # not None: the best epoch's weights are in the file

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        before = self.best
        super().on_epoch_end(epoch, logs)
        if self.best != before:  # improved: this epoch's weights are the ones to keep
            self._best_in_file = False
            if self.best_file is not None:
                save_weights_atomically(self.model, self.best_file)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._best_in_file:
            assert self.best_file is not None
            self.model.load_weights(self.best_file)
            return
        super().on_train_end(logs)


class EpochSeeds(keras.callbacks.Callback):
    """Every random layer (augmentation, dropout) starts each epoch from a state that
    depends on the epoch alone, so epoch N draws the same numbers whether the run
    went through or was resumed before it (Keras does not save these states)."""

    def __init__(self, model: keras.Model, stream: int = 0):
        super().__init__()
        self.stream = stream  # a phase's number: each phase draws its own numbers
        self.generators = [
            generator
            for layer in model._flatten_layers(include_self=True, recursive=True)
            for generator in getattr(layer, "_seed_generators", [])
        ]
        self.first = [int(generator.state.numpy()[0]) for generator in self.generators]

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for generator, first in zip(self.generators, self.first, strict=True):
            counter = (self.stream * 100_000 + epoch) << 32
            generator.state.assign(np.array([first, counter], generator.state.dtype))


class SettledValidation(keras.callbacks.Callback):
    """Validation for a network trained from scratch. BatchNorm's moving statistics
    lag weights that move fast, so Keras' validation judges a model that does not
    exist and early stopping quits too soon. After each epoch: BatchNorm statistics
    measured on a sample of training images, then ``val_loss`` and ``val_accuracy``
    taken with them (put into the epoch's logs for early stopping and the history).
    Training itself is unchanged: in training mode BatchNorm uses batch statistics."""

    def __init__(
        self,
        recalibrate: Callable[[], object],
        predict: Callable[[], np.ndarray],
        targets: np.ndarray,
    ):
        super().__init__()
        self.recalibrate = recalibrate
        self.predict = predict  # the validation images' probabilities
        self.targets = np.asarray(targets)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.recalibrate()
        probabilities = self.predict()
        loss = log_loss(probabilities, self.targets)
        accuracy = float((probabilities.argmax(axis=1) == self.targets).mean())
        if logs is not None:
            logs.update(val_loss=loss, val_accuracy=accuracy)
        print(
            f"  validation with settled BatchNorm: loss {loss:.4f}, accuracy {accuracy:.4f}",
            file=sys.stderr,
            flush=True,
        )


class _LearningRate(keras.callbacks.Callback):
    """Put the optimizer's current rate into each epoch's logs (and so TensorBoard's)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))


def tensorboard(config: Any, phase: str) -> list[keras.callbacks.Callback]:
    """TensorBoard logs of one phase, under ``--tensorboard DIR/<name>/<phase>``:
    losses, accuracies and the learning rate per epoch (the rate put into the logs
    first, so the second callback writes it)."""
    log_dir = Path(config.tensorboard) / config.name / phase
    return [_LearningRate(), keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False)]


def tensorboard_images(config: Any, images: dict[str, bytes]) -> None:
    """The report's pictures (confusion matrix, reliability) as TensorBoard images."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(Path(config.tensorboard) / config.name / "report"))
    with writer.as_default():
        for name, png in images.items():
            tf.summary.image(name, tf.image.decode_png(png)[None], step=0)
    writer.flush()
