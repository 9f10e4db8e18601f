"""The one seam between a training job and where it trains: a ``Distribution``, chosen
once per job by :func:`choose`.

``Local`` is one device in one process: every step is the plain call, and nothing of
``training.multiworker`` runs after the choice. With several local GPUs or the
workers of ``TF_CONFIG`` the job gets ``training.multiworker.distributed.Workers``,
which wraps ``tf.distribute`` (strategy scopes, batches per replica) and makes the
workers agree (the files, the classes, the validation predictions, the published
version). The job, the recipe and the final steps only ever talk to this protocol.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np

from models.errors import ConfigError
from training.config import TrainConfig
from training.dataset.corrections import corrected_listing
from training.dataset.corrections import describe as describe_corrections
from training.dataset.data import Listing, Prepared, check_classes
from training.dataset.reviewed import with_reviewed
from training.evaluation.evaluate import Validation
from training.jobs.state import JobState, Log, prepared_data

# make(batch, pad_to): a worker's dataset of its items, padded to pad_to (None: not).
MakeBatches = Callable[[int, int | None], Any]


class Distribution(Protocol):
    """Where a job trains and how its workers agree; ``Local`` or ``Workers``."""

    @property
    def workers(self) -> int: ...
    @property
    def index(self) -> int: ...
    @property
    def is_chief(self) -> bool: ...
    @property
    def one_device(self) -> bool: ...
    @property
    def model_class(self) -> type[keras.Model]: ...

    def failures(self) -> AbstractContextManager[None]: ...
    def scope(self) -> AbstractContextManager[Any]: ...
    def fit_scope(self) -> AbstractContextManager[Any]: ...
    def per_replica_batch(self, batch_size: int) -> int: ...
    def distribute(
        self, make: MakeBatches, count: int, batch_size: int
    ) -> tuple[object, int | None]: ...
    def mean(self, arrays: list[np.ndarray]) -> list[np.ndarray]: ...
    def describe(self, batch_size: int) -> list[str]: ...
    def details(self, batch_size: int) -> dict[str, Any] | None: ...
    def list_dataset(self, config: TrainConfig, log: Log) -> Listing: ...
    def prepared_data(
        self, state: JobState, listing: Listing, config: TrainConfig, log: Log
    ) -> tuple[Prepared, bool]: ...
    def gather(self, local: Validation, size: tuple[int, int]) -> Validation: ...
    def joined(self, items: list[str]) -> list[str]: ...
    def publish(self, save: Callable[[], tuple[int, Path]]) -> tuple[int, Path]: ...


class Local:
    """One device, one worker: each step is the plain call."""

    workers, index, is_chief, one_device = 1, 0, True, True
    model_class = keras.Model

    def failures(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def scope(self) -> AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def fit_scope(self) -> AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def per_replica_batch(self, batch_size: int) -> int:
        return batch_size

    def distribute(
        self, make: MakeBatches, count: int, batch_size: int
    ) -> tuple[object, int | None]:
        return make(batch_size, None), None  # fit counts an epoch's steps itself

    def mean(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return arrays

    def describe(self, batch_size: int) -> list[str]:
        return []

    def details(self, batch_size: int) -> dict[str, Any] | None:
        return None

    def list_dataset(self, config: TrainConfig, log: Log) -> Listing:
        return checked(listing_of(config), log)

    def prepared_data(
        self, state: JobState, listing: Listing, config: TrainConfig, log: Log
    ) -> tuple[Prepared, bool]:
        return prepared_data(state, listing, config.resolved_image_size(), config, log)

    def gather(self, local: Validation, size: tuple[int, int]) -> Validation:
        return local

    def joined(self, items: list[str]) -> list[str]:
        return items

    def publish(self, save: Callable[[], tuple[int, Path]]) -> tuple[int, Path]:
        return save()


def listing_of(config: TrainConfig) -> Listing:
    """DATA's files with ``--exclude``/``--relabel`` applied, and the reviewed captures
    of ``--add-reviewed`` added."""
    listing = corrected_listing(
        config.data, config.exclude, config.relabel, confine=config.confine_to_data
    )
    if config.add_reviewed:
        return with_reviewed(listing, config.add_reviewed, config.capture_dir)
    return listing


def checked(listing: Listing, log: Log) -> Listing:
    """``listing``, its corrections said in the log, once it has enough of each class."""
    for line in describe_corrections(listing.corrections):
        log(line)
    check_classes(Counter(sample.label for sample in listing.samples), "image files")
    return listing


def choose(config: TrainConfig, log: Log, environ: Mapping[str, str] = os.environ) -> Distribution:
    """The job's distribution, from ``--strategy`` and ``TF_CONFIG``; call before any
    other TensorFlow work (several workers wait here until every one has started)."""
    from training.multiworker.cluster import connect, plan

    kind, workers, _ = plan(config.strategy, environ)
    if kind == "one":
        return Local()
    if config.resume and workers > 1:
        raise ConfigError(
            "--resume is not available with more than one worker; run the job again to restart it"
        )
    from training.multiworker.distributed import Workers

    return Workers(connect(config.strategy, environ, log=log))
