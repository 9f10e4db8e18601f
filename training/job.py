"""One training job from dataset to published bundle, resumable after an
interruption: its state lives in ``<store>/.jobs/<name>/`` until it publishes."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np

from models.backbones import get_backbone
from models.bundle import save_bundle
from models.classifier import build_backbone, build_classifier, resolve_weights
from models.explain import activation_layers
from models.preprocessing import RESIZE_POLICY, load_image
from models.store import ModelStore, PublishError
from training import distributed, finetune, report
from training.config import ConfigError, TrainConfig
from training.data import (
    DataError,
    Listing,
    Prepared,
    fingerprint,
    list_samples,
    merge_reports,
    prepare,
)
from training.evaluate import evaluate, history_csv

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# Settings that change what a job computes: a resumed job must match them.
_RESUME_KEYS = (
    "data", "backbone", "weights", "image_size", "batch_size", "epochs", "fine_tune_epochs",
    "unfreeze_from", "lr", "fine_tune_lr", "val_split", "seed", "augment", "dropout", "pooling",
)  # fmt: skip


class JobState:
    """Files of an unfinished job: its config, decoded pixels, finished phases."""

    def __init__(self, root: Path):
        self.root = root

    def read(self, name: str) -> dict | list | None:
        try:
            return json.loads((self.root / name).read_text())
        except (OSError, ValueError):
            return None

    def write(self, name: str, data: dict | list) -> None:
        tmp = self.root / f".{name}.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.root / name)


@contextlib.contextmanager
def _job_lock(job_dir: Path) -> Iterator[None]:
    job_dir.mkdir(parents=True, exist_ok=True)
    with open(job_dir.parent / f"{job_dir.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(
                f"another training job for {job_dir.name!r} is running on this store"
            ) from None
        yield


def run_job(config: TrainConfig, log: Log = _stderr) -> dict:
    """Train, evaluate and publish; returns the summary ``ktl train --json`` prints."""
    started = time.monotonic()
    if config.resume and distributed.plan(config.strategy)[1] > 1:
        raise ConfigError(
            "--resume is not available with more than one worker; run the job again to restart it"
        )
    cluster = distributed.connect(config.strategy, log=log)  # before any other TensorFlow work
    with cluster.failures():
        return _run(config, cluster, log, started)


def _run(config: TrainConfig, cluster, log: Log, started: float) -> dict:
    if cluster.workers == 1:
        listing = list_samples(config.data)
    else:
        listing = _agree_on_the_job(cluster, config)
    spec = get_backbone(config.backbone)
    weights = resolve_weights(spec, config.weights)
    store = ModelStore(config.store)
    job_dir = store.job_dir(config.name)
    if not cluster.is_chief:  # not a model name, so it cannot clash with one
        job_dir = job_dir.with_name(f"{job_dir.name}.worker{cluster.index}")
    size = config.resolved_image_size()
    if cluster.strategy is not None:
        log(f"Training on {cluster.describe()}")
        per_replica = cluster.per_replica_batch(config.batch_size)
        if per_replica < 4:
            log(
                f"  note: each of the {cluster.replicas} replicas trains on {per_replica} "
                "image(s) a step; BatchNorm statistics of so few are noisy: raise --batch-size"
            )
    if cluster.workers > 1:
        total = len(listing.samples)
        listing = dataclasses.replace(listing, samples=distributed.shard(listing.samples, cluster))
        log(f"This worker's shard: {len(listing.samples):,} of {total:,} files")

    with _job_lock(job_dir):
        state = JobState(job_dir)
        saved = state.read("config.json")
        wanted = {key: config.to_dict()[key] for key in _RESUME_KEYS}
        if saved is not None and not config.resume:
            log(f"Discarding an interrupted job for {config.name!r} (pass --resume to continue it)")
            _clear(job_dir)
            job_dir.mkdir(parents=True)
        elif saved is not None and saved != wanted:
            changed = sorted(key for key in wanted if saved.get(key) != wanted[key])
            raise ConfigError(
                f"--resume: the interrupted job used other settings ({', '.join(changed)}); "
                "run without --resume to start over"
            )
        elif saved is None and config.resume:
            log(f"No interrupted job for {config.name!r} to resume; starting a new one")
        state.write("config.json", wanted)

        # The backbone first: missing ImageNet weights stop the job before any decoding.
        keras.utils.set_random_seed(config.seed)
        if config.mixed_precision:  # float16 compute for GPUs; the softmax stays float32
            keras.mixed_precision.set_global_policy("mixed_float16")
        with contextlib.redirect_stdout(sys.stderr), cluster.scope():  # downloads on stdout
            backbone = build_backbone(spec, size, weights)
        prepared, reused = _prepared_shards(cluster, state, listing, size, config, log)
        if not reused:  # phases finished on other data are worth nothing now
            for stale in job_dir.glob("*"):
                if stale.name not in ("config.json", "data.json", "pixels.npy"):
                    shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        with cluster.scope():
            model = build_classifier(
                spec,
                backbone,
                len(prepared.labels),
                dropout=config.dropout,
                pooling=config.pooling,
            )
        history, details = _train(config, spec, model, backbone, prepared, state, log, cluster)
        val = finetune.batches(
            prepared.pixels,
            prepared.targets,
            prepared.val,
            config.batch_size,
            shuffle=False,
            seed=0,
        )
        probabilities = finetune.predict_probabilities(model, val)
        val_targets = prepared.targets[prepared.val]
        val_files = [str(listing.samples[i].path) for i in prepared.val]
        pixels, val_rows = prepared.pixels, prepared.val
        if cluster.workers > 1:  # every worker validated its shard; the chief reports on all
            probabilities = np.concatenate(cluster.allgather_array(probabilities))
            val_targets = np.concatenate(cluster.allgather_array(val_targets))
            val_files = [file for files in cluster.allgather_json(val_files) for file in files]
            pixels, val_rows = _DecodeOnRead(val_files, size), np.arange(len(val_files))
        metrics = evaluate(probabilities, val_targets, prepared.labels)
        if cluster.is_chief:

            def save() -> tuple[int, Path]:
                dataset = {k: v for k, v in prepared.report.items() if k != "warnings"}
                metadata = {
                    "labels": prepared.labels,
                    "backbone": spec.name,
                    "image_size": list(size),
                    "input": {
                        "format": "RGB",
                        "dtype": "uint8",
                        "range": [0, 255],
                        "shape": [*size, 3],
                    },
                    "resize": RESIZE_POLICY,
                    "created_at": datetime.now(UTC)
                    .isoformat(timespec="seconds")
                    .replace("+00:00", "Z"),
                    "metrics": metrics,
                    "training": {**config.to_dict(), **details},
                    "dataset": {**dataset, "fingerprint": state.read("data.json")["fingerprint"]},
                    "activation_layers": activation_layers(model),
                }
                reports = {
                    "metrics.json": json.dumps(metrics, indent=2).encode(),
                    "history.csv": history_csv(history).encode(),
                    "curves.png": report.curves_png(history),
                    "confusion_matrix.png": report.confusion_png(
                        prepared.labels, metrics["confusion_matrix"]["matrix"]
                    ),
                    **report.worst_predictions(
                        pixels, val_rows, probabilities, val_targets, prepared.labels, val_files
                    ),
                }
                return save_bundle(store, config.name, model, metadata, reports)

            version, path = _publish(cluster, save)
        else:
            version, path = _published(cluster)
    _clear(job_dir, config)
    job_dir.parent.joinpath(f"{job_dir.name}.lock").unlink(missing_ok=True)
    return {
        "name": config.name,
        "version": version,
        "path": str(path),
        "metrics": metrics,
        "dataset": {
            "classes": prepared.report["classes"],
            "train_images": prepared.report["train_images"],
            "val_images": prepared.report["val_images"],
            "skipped": len(prepared.report["skipped"]),
            "skipped_files": prepared.report["skipped"],
            "ignored_files": prepared.report["ignored_files"],
            "warnings": prepared.report["warnings"],
        },
        "training": details,
        **(
            {"worker": {"index": cluster.index, "workers": cluster.workers}}
            if cluster.workers > 1
            else {}
        ),
        "seconds": round(time.monotonic() - started, 1),
    }


# Settings that may differ between workers: where each one reads and writes.
_PER_WORKER = ("data", "store", "cache_dir", "resume")


def _on_every_worker(cluster, work: Callable[[], tuple]) -> tuple:
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


def _agree_on_the_job(cluster, config: TrainConfig) -> Listing:
    """The listing of DATA, once the workers have checked they run the same job:
    workers started with other settings, or seeing other files, would train
    different steps and wait for each other forever, so every worker stops instead."""
    settings = {k: v for k, v in config.to_dict().items() if k not in _PER_WORKER}

    def listing_and_share() -> tuple[Listing, dict]:
        listing = list_samples(config.data)
        base = Path(config.data)
        base = base.parent if base.is_file() else base
        files = hashlib.sha256(
            "".join(
                f"{os.path.relpath(s.path, base)}\0{s.label}\n" for s in listing.samples
            ).encode()
        ).hexdigest()
        return listing, {"settings": settings, "files": files, "count": len(listing.samples)}

    listing, shares = _on_every_worker(cluster, listing_and_share)
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


def _publish(cluster, save: Callable[[], tuple[int, Path]]) -> tuple[int, Path]:
    """Run ``save``; with several workers, tell them the outcome either way."""
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


def _published(cluster) -> tuple[int, Path]:
    """On a worker other than the chief: the version the chief published."""
    outcome = cluster.allgather_json(None)[0]
    cluster.farewell()
    if "error" in outcome:
        raise PublishError(f"the chief worker could not publish: {outcome['error']}")
    return outcome["version"], Path(outcome["path"])


class _DecodeOnRead:
    """Validation images by position, decoded when read: the chief holds the pixels
    of its own shard only, and the report shows a few images of any shard."""

    def __init__(self, files: list[str], size: tuple[int, int]):
        self.files, self.size = files, size

    def __getitem__(self, index) -> np.ndarray:
        return load_image(Path(self.files[int(index)]), self.size)


def _clear(job_dir: Path, config: TrainConfig | None = None) -> None:
    """Remove a job's state, and its decoded-image cache when that lives elsewhere."""
    shutil.rmtree(job_dir, ignore_errors=True)
    if config is not None and config.cache_dir:
        _pixels_file(job_dir, config).unlink(missing_ok=True)


def _pixels_file(job_dir: Path, config: TrainConfig) -> Path:
    """The decoded-image cache: in the job's folder, or under ``--cache-dir``."""
    if config.cache_dir:
        return Path(config.cache_dir) / f"{job_dir.name}.pixels.npy"
    return job_dir / "pixels.npy"


def _prepared_shards(
    cluster, state: JobState, listing, size: tuple[int, int], config: TrainConfig, log: Log
) -> tuple[Prepared, bool]:
    """``_prepared_data`` on every worker, which then agree on the classes and
    share their health reports (one merged report, and class weights, for all)."""
    if cluster.workers == 1:
        return _prepared_data(state, listing, size, config, log)

    def prepared_and_share() -> tuple[tuple[Prepared, bool], dict]:
        prepared, reused = _prepared_data(state, listing, size, config, log)
        return (prepared, reused), {"labels": prepared.labels, "report": prepared.report}

    (prepared, reused), shares = _on_every_worker(cluster, prepared_and_share)
    if any(s["labels"] != prepared.labels for s in shares):
        found = "; ".join(f"worker {i}: {', '.join(s['labels'])}" for i, s in enumerate(shares))
        raise DataError(
            f"the workers' shards hold different classes ({found}): with {cluster.workers} "
            f"workers every class needs at least {2 * cluster.workers} readable images"
        )
    merged = merge_reports([s["report"] for s in shares])
    return dataclasses.replace(prepared, report=merged), reused


def _prepared_data(
    state: JobState, listing, size: tuple[int, int], config: TrainConfig, log: Log
) -> tuple[Prepared, bool]:
    """Decode once per job; a resumed job reuses the decoded pixels if the files
    have not changed since (then the second value is True)."""
    print_ = fingerprint(listing, size)
    saved = state.read("data.json")
    pixels_file = _pixels_file(state.root, config)
    pixels_file.parent.mkdir(parents=True, exist_ok=True)
    if saved and saved["fingerprint"] == print_ and pixels_file.is_file():
        log("Reusing the decoded images of the interrupted job")
        return (
            Prepared(
                saved["labels"],
                np.load(pixels_file, mmap_mode="r"),
                np.array(saved["targets"], np.int32),
                np.array(saved["train"], np.int64),
                np.array(saved["val"], np.int64),
                saved["report"],
            ),
            True,
        )
    if saved:
        log("The dataset changed since the interruption; starting the job over")
    prepared = prepare(
        listing,
        size,
        val_split=config.val_split,
        seed=config.seed,
        pixels_file=pixels_file,
        log=log,
    )
    prepared.pixels.flush()
    state.write(
        "data.json",
        {
            "fingerprint": print_,
            "labels": prepared.labels,
            "targets": prepared.targets.tolist(),
            "train": prepared.train.tolist(),
            "val": prepared.val.tolist(),
            "report": prepared.report,
        },
    )
    return prepared, False


def _train(config, spec, model, backbone, prepared: Prepared, state: JobState, log: Log, cluster):
    """Run the phases not yet finished; returns the history rows and what was done."""

    def pixels(indices, shuffle: bool, batch_size: int = config.batch_size):
        """This worker's batches for a forward pass of its own."""
        return finetune.batches(
            prepared.pixels,
            prepared.targets,
            indices,
            batch_size,
            shuffle=shuffle,
            seed=config.seed,
        )

    def fit_data(inputs, targets, indices, shuffle: bool):
        """``(batches, steps)`` for ``fit``, split over the replicas; class weights when
        training."""
        weights = prepared.class_weights() if shuffle else None
        return cluster.distribute(
            lambda batch, pad_to: finetune.batches(
                inputs, targets, indices, batch,
                shuffle=shuffle, seed=config.seed, class_weight=weights, pad_to=pad_to,
            ),
            len(indices),
            config.batch_size,
        )  # fmt: skip

    train = fit_data(prepared.pixels, prepared.targets, prepared.train, True)
    val = fit_data(prepared.pixels, prepared.targets, prepared.val, False)
    with cluster.fit_scope():
        fit_model = finetune.training_model(model, config.augment, config.seed, cluster.model_class)
    unfreeze_from = config.unfreeze_from or spec.unfreeze_from
    details: dict = {"recipe": "transfer" if config.transfer else "scratch"}
    if cluster.strategy is not None:
        details["distribution"] = {
            "kind": "multiworker" if cluster.workers > 1 else "mirrored",
            "workers": cluster.workers,
            "replicas": cluster.replicas,
            "global_batch_size": -(-config.batch_size // cluster.replicas) * cluster.replicas,
        }
    if config.transfer:
        phases = [finetune.Phase("head", config.epochs, config.lr)]
        if config.fine_tune_epochs:
            if unfreeze_from is None:
                raise ConfigError(f"{spec.name} has no default --unfreeze-from; name a layer")
            phases.append(finetune.Phase("fine_tune", config.fine_tune_epochs, config.fine_tune_lr))
        details["unfreeze_from"] = unfreeze_from if config.fine_tune_epochs else None
    else:
        log(
            "Training from random weights: nothing to transfer, so the whole network trains "
            "from the start (no frozen phase; --fine-tune-epochs is not used)"
        )
        phases = [finetune.Phase("scratch", config.epochs, config.lr)]

    progress = state.read("progress.json") or {"done": [], "history": []}
    for phase in phases:
        checkpoint = state.root / f"{phase.name}.weights.h5"
        if phase.name in progress["done"]:
            try:
                fit_model.load_weights(checkpoint)
            except (ValueError, OSError) as exc:  # e.g. saved by another ktl version
                log(f"Phase {phase.name}'s checkpoint does not load ({exc}); running it again")
                progress = {
                    "done": [d for d in progress["done"] if d != phase.name],
                    "history": [r for r in progress["history"] if r["phase"] != phase.name],
                }
            else:
                log(f"Phase {phase.name} finished before the interruption; loaded its weights")
                continue
        if phase.name == "head":
            finetune.freeze_for_head(backbone)
        elif phase.name == "fine_tune":
            count = finetune.unfreeze_top(backbone, unfreeze_from)
            log(f"Unfroze {count} layers from {unfreeze_from} (BatchNorm stays frozen)")
        phase_model, phase_train, phase_val = fit_model, train, val
        if phase.name == "head" and uses_cached_features(config):
            log("Computing the frozen backbone's features once; the head trains on them")
            with cluster.fit_scope():
                phase_model = finetune.head_model(model, cluster.model_class)
            phase_train, phase_val = (
                fit_data(
                    finetune.pooled_features(model, pixels(indices, False)),
                    prepared.targets[indices],
                    np.arange(len(indices)),
                    shuffle,
                )
                for indices, shuffle in ((prepared.train, True), (prepared.val, False))
            )
            details["cached_features"] = True
        with cluster.scope():
            rows = finetune.run_phase(
                phase_model,
                phase,
                *phase_train,
                *phase_val,
                patience=config.patience,
                # several workers restart together, so none resumes alone
                backup_dir=state.root / f"backup_{phase.name}" if cluster.workers == 1 else None,
                earlier=state.read(f"epochs_{phase.name}.json"),
                on_epoch=lambda rows, name=phase.name: state.write(f"epochs_{name}.json", rows),
                jit=config.jit,
            )
        fit_model.save_weights(checkpoint)
        progress = {"done": [*progress["done"], phase.name], "history": progress["history"] + rows}
        state.write("progress.json", progress)

    if not config.transfer:
        # batches of the size each replica trained on: BatchNorm learnt their statistics
        replica_batches = pixels(
            prepared.train, False, cluster.per_replica_batch(config.batch_size)
        )
        if finetune.recalibrate_batchnorm(model, backbone, replica_batches):
            log("Recalibrated BatchNorm statistics on the training images")
            if cluster.workers > 1:  # each worker measured its shard: average them
                statistics = finetune.batchnorm_statistics(backbone)
                for variable, mean in zip(
                    statistics, cluster.mean([v.numpy() for v in statistics]), strict=True
                ):
                    variable.assign(mean)
            details["batchnorm_recalibrated"] = True
    details["phases"] = [
        {"name": p, "epochs": sum(1 for r in progress["history"] if r["phase"] == p)}
        for p in progress["done"]
    ]
    details["trainable_params"] = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    details["total_params"] = int(model.count_params())
    return progress["history"], details


def uses_cached_features(config: TrainConfig) -> bool:
    """Frozen backbone, no augmentation: its features are the same every epoch, so
    phase 1 computes them once and trains the head alone on them."""
    return config.transfer and not config.augment
