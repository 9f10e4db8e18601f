"""How the workers of a multi-worker job agree: on the settings and the files
before anything is decoded, on the classes once each has decoded its shard, on
the validation predictions at the end, and on the version the chief published.

``Workers`` is the ``training.distribution.Distribution`` of a job that trains
through ``tf.distribute``; a job on one device never gets here (``Local``). With
several workers each function makes the same collective calls in the same order
on every worker (see ``training.multiworker.cluster.Cluster``); a worker that
cannot go on tells the others why instead of leaving them waiting. With one
(``--strategy mirrored``: the GPUs of one machine) each is the plain call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import keras
import numpy as np

from models.errors import ConfigError
from models.preprocessing import load_image
from models.store import PublishError
from training.config import TrainConfig
from training.dataset.data import DataError, Listing, Prepared
from training.dataset.health import merge_reports
from training.distribution import MakeBatches, checked, listing_of
from training.evaluation.evaluate import Validation
from training.jobs.state import JobState, Log, prepared_data
from training.multiworker.cluster import Cluster, shard

# Settings that may differ between workers: where each one reads and writes.
_PER_WORKER = ("data", "store", "cache_dir", "resume", "exclude", "relabel")


def on_every_worker(cluster: Cluster, work: Callable[[], tuple[Any, Any]]) -> tuple[Any, list]:
    """``work()`` returns a result and what to share with the other workers; returns
    the result and every worker's share. A ``DataError`` on any worker is raised on
    all of them, naming the workers: the others would otherwise wait for it."""
    try:
        result, share = work()
    except DataError as exc:
        result, share = None, {"error": str(exc)}
    shares = cluster.allgather_json(share)
    errors = [f"worker {i}: {s['error']}" for i, s in enumerate(shares) if "error" in s]
    if errors:
        raise DataError("; ".join(errors))
    return result, shares


def list_dataset(cluster: Cluster, config: TrainConfig, log: Log) -> Listing:
    """This worker's files of DATA: all of them with one worker; with several, its
    shard, once every worker has checked that they run the same job."""
    if cluster.workers == 1:
        return checked(listing_of(config), log)
    if config.add_reviewed:  # the reviewed images lie in one machine's capture folder
        raise ConfigError("--add-reviewed is not available with more than one worker yet")
    listing = checked(_agree_on_the_job(cluster, config), log)
    total = len(listing.samples)
    # each refused file is reported by one worker, as each listed one is read by one
    listing = dataclasses.replace(
        listing,
        samples=shard(listing.samples, cluster),
        refused=shard(listing.refused, cluster),
        withheld=shard(listing.withheld, cluster),
    )
    log(f"This worker's shard: {len(listing.samples):,} of {total:,} files")
    return listing


def _agree_on_the_job(cluster: Cluster, config: TrainConfig) -> Listing:
    """The listing of DATA, once the workers have checked they run the same job:
    workers started with other settings, or seeing other files, would train
    different steps and wait for each other forever, so every worker stops instead."""
    settings = {k: v for k, v in config.to_dict().items() if k not in _PER_WORKER}

    def listing_and_share() -> tuple[Listing, dict]:
        listing = listing_of(config)
        base = Path(config.data)
        base = base.parent if base.is_file() else base
        files = hashlib.sha256(
            "".join(
                f"{os.path.relpath(s.path, base)}\0{s.label}\n" for s in listing.samples
            ).encode()
        ).hexdigest()
        return listing, {"settings": settings, "files": files, "count": len(listing.samples)}

    listing, shares = on_every_worker(cluster, listing_and_share)
    differ = sorted({k for s in shares for k, v in s["settings"].items() if v != settings[k]})
    if differ:
        raise ConfigError(
            f"the workers were started with different settings ({', '.join(differ)}); "
            "start every worker with the same ktl train command"
        )
    if len({s["files"] for s in shares}) > 1:
        counts = ", ".join(f"worker {i}: {s['count']:,} files" for i, s in enumerate(shares))
        raise DataError(
            f"the workers see different files in DATA ({counts}); every worker needs the same "
            "dataset (a shared volume or identical copies)"
        )
    return listing


def prepared_shards(
    cluster: Cluster,
    state: JobState,
    listing: Listing,
    size: tuple[int, int],
    config: TrainConfig,
    log: Log,
) -> tuple[Prepared, bool]:
    """``state.prepared_data`` on every worker, which then agree on the classes and
    share their health reports (one merged report, and class weights, for all)."""
    if cluster.workers == 1:
        return prepared_data(state, listing, size, config, log)

    def prepared_and_share() -> tuple[tuple[Prepared, bool], dict]:
        prepared, reused = prepared_data(state, listing, size, config, log)
        return (prepared, reused), {"labels": prepared.labels, "report": prepared.report}

    (prepared, reused), shares = on_every_worker(cluster, prepared_and_share)
    if any(s["labels"] != prepared.labels for s in shares):
        found = "; ".join(f"worker {i}: {', '.join(s['labels'])}" for i, s in enumerate(shares))
        raise DataError(
            f"the workers' shards hold different classes ({found}): with {cluster.workers} "
            f"workers every class needs at least {2 * cluster.workers} readable images"
        )
    merged = merge_reports([s["report"] for s in shares])
    return dataclasses.replace(prepared, report=merged), reused


def gather_validation(cluster: Cluster, local: Validation, size: tuple[int, int]) -> Validation:
    """Every worker validated its shard; the chief reports on all of them."""
    if cluster.workers == 1:
        return local
    files = [file for part in cluster.allgather_json(local.files) for file in part]
    return Validation(
        np.concatenate(cluster.allgather_array(local.probabilities)),
        np.concatenate(cluster.allgather_array(local.targets)),
        files,
        DecodeOnRead(files, size),
        np.arange(len(files)),
    )


def publish_on_chief(cluster: Cluster, save: Callable[[], tuple[int, Path]]) -> tuple[int, Path]:
    """The chief runs ``save`` and tells the other workers the outcome either way;
    the others wait for it. Returns the published ``(version, path)``."""
    if not cluster.is_chief:
        outcome = cluster.allgather_json(None)[0]
        cluster.farewell()
        if "error" in outcome:
            raise PublishError(f"the chief worker could not publish: {outcome['error']}")
        return outcome["version"], Path(outcome["path"])
    try:
        version, path = save()
    except Exception as exc:
        if cluster.workers > 1:
            cluster.allgather_json({"error": str(exc)})
        raise
    if cluster.workers > 1:
        cluster.allgather_json({"version": version, "path": str(path)})
        cluster.farewell()
    return version, path


class DecodeOnRead:
    """Validation images by position, decoded when read: the chief holds the pixels
    of its own shard only, and the report shows a few images of any shard."""

    def __init__(self, files: list[str], size: tuple[int, int]):
        self.files, self.size = files, size

    def __getitem__(self, index: int) -> np.ndarray:
        return load_image(Path(self.files[int(index)]), self.size)


class Workers:
    """The ``Distribution`` of a job trained through ``tf.distribute``: its cluster's
    strategy scopes and batches per replica, and the agreement of its workers."""

    one_device = False

    def __init__(self, cluster: Cluster):
        assert cluster.strategy is not None, "one device is training.distribution.Local"
        self.cluster = cluster

    @property
    def workers(self) -> int:
        return self.cluster.workers

    @property
    def index(self) -> int:
        return self.cluster.index

    @property
    def is_chief(self) -> bool:
        return self.cluster.is_chief

    @property
    def model_class(self) -> type[keras.Model]:
        return self.cluster.model_class

    def failures(self) -> AbstractContextManager[None]:
        return self.cluster.failures()

    def scope(self) -> AbstractContextManager[Any]:
        return self.cluster.scope()

    def fit_scope(self) -> AbstractContextManager[Any]:
        return self.cluster.fit_scope()

    def per_replica_batch(self, batch_size: int) -> int:
        return self.cluster.per_replica_batch(batch_size)

    def distribute(
        self, make: MakeBatches, count: int, batch_size: int
    ) -> tuple[object, int | None]:
        return self.cluster.distribute(make, count, batch_size)

    def mean(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self.cluster.mean(arrays) if self.workers > 1 else arrays

    def describe(self, batch_size: int) -> list[str]:
        """Where the job trains, and a note when each replica's batch is small."""
        lines = [f"Training on {self.cluster.describe()}"]
        per_replica, replicas = self.per_replica_batch(batch_size), self.cluster.replicas
        if per_replica < 4:
            lines.append(
                f"  note: each of the {replicas} replicas trains on {per_replica} "
                "image(s) a step; BatchNorm statistics of so few are noisy: raise --batch-size"
            )
        return lines

    def details(self, batch_size: int) -> dict[str, Any] | None:
        """``metadata.json``'s ``training.distribution``."""
        replicas = self.cluster.replicas
        return {
            "kind": "multiworker" if self.workers > 1 else "mirrored",
            "workers": self.workers,
            "replicas": replicas,
            "global_batch_size": -(-batch_size // replicas) * replicas,
        }

    def list_dataset(self, config: TrainConfig, log: Log) -> Listing:
        return list_dataset(self.cluster, config, log)

    def prepared_data(
        self, state: JobState, listing: Listing, config: TrainConfig, log: Log
    ) -> tuple[Prepared, bool]:
        size = config.resolved_image_size()
        return prepared_shards(self.cluster, state, listing, size, config, log)

    def gather(self, local: Validation, size: tuple[int, int]) -> Validation:
        return gather_validation(self.cluster, local, size)

    def joined(self, items: list[str]) -> list[str]:
        """Every worker's ``items``, in worker order."""
        if self.workers == 1:
            return items
        return [item for part in self.cluster.allgather_json(items) for item in part]

    def publish(self, save: Callable[[], tuple[int, Path]]) -> tuple[int, Path]:
        return publish_on_chief(self.cluster, save)
