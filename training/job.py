"""One training job from dataset to published bundle, as a sequence of named
steps. A job is resumable after an interruption: its state lives in
``<store>/.jobs/<name>/`` until it publishes (``training.jobs.state``)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
from pydantic import BaseModel

from models.errors import UserError
from models.metadata import Calibration, Decision, Evaluation, Metrics, TestTimeAugmentation
from models.networks.backbones import BackboneSpec, get_backbone
from models.networks.classifier import build_backbone, build_classifier, resolve_weights
from models.store import ModelStore, open_store
from training.config import TrainConfig
from training.dataset import held_out
from training.dataset.data import Prepared
from training.distribution import Distribution, Local, choose
from training.evaluation import final
from training.fitting import recipe, warm_start
from training.fitting.callbacks import tensorboard_images
from training.fitting.phases import Phase, plan_phases
from training.jobs.state import JobState, Log, open_job
from training.multilabel.data import detect_task
from training.multilabel.job import MultilabelResult, run_multilabel
from training.publishing import release
from training.publishing.publish import bundle_metadata, report_files, save_published

_BOARD_IMAGES = ("confusion_matrix.png", "reliability.png", "curves.png")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class JobResult:
    """What a job did: the version it published and the figures it published with it
    (typed as ``metadata.json`` has them); ``to_json`` is ``ktl train --json``'s object."""

    name: str
    version: int
    path: Path
    metrics: Metrics
    evaluation: Evaluation
    calibration: Calibration | None
    decision: Decision
    tta: TestTimeAugmentation | None
    dataset: dict[str, Any]  # the data's report, summarised (_dataset_summary)
    training: dict[str, Any]  # metadata.json's ``training``: the recipe and its phases
    warnings: tuple[str, ...]
    worker: tuple[int, int] | None  # (this worker, workers) of a multi-worker job
    seconds: float
    release: release.Release | None = None

    def to_json(self) -> dict[str, Any]:
        """``ktl train --json``'s object: the figures as ``metadata.json`` has them."""
        figures = ("metrics", "evaluation", "calibration", "decision")
        worker = self.worker and {"index": self.worker[0], "workers": self.worker[1]}
        return {
            "name": self.name,
            "version": self.version,
            "path": str(self.path),
            **{key: _dumped(getattr(self, key)) for key in figures},
            **({"tta": _dumped(self.tta)} if self.tta else {}),
            "dataset": self.dataset,
            "training": self.training,
            "warnings": list(self.warnings),
            **({"worker": worker} if worker else {}),
            "seconds": self.seconds,
            **({"release": _dumped(self.release)} if self.release else {}),
        }


def _dumped(model: BaseModel | None) -> dict[str, Any] | None:
    """A result as JSON, with exactly the fields its step set."""
    return model.model_dump(mode="json", exclude_unset=True) if model is not None else None


def run_job(config: TrainConfig, log: Log = _stderr) -> JobResult | MultilabelResult:
    """Train, evaluate and publish; returns what ``ktl train`` shows."""
    if detect_task(config.data, config.task) == "multilabel":
        return MultilabelResult(run_multilabel(config, log))
    started = time.monotonic()
    distribution = choose(config, log)  # before any other TensorFlow work
    with distribution.failures():
        result = _run(config, distribution, log, started)
    released = release.release(config, result.version, log) if distribution.is_chief else None
    return dataclasses.replace(result, release=released) if released else result


@dataclass
class _Prepared:
    """A job made ready to train: its state, data, model and phases."""

    state: JobState
    spec: BackboneSpec
    listing: Any
    phases: list[Phase]
    prepared: Prepared
    model: keras.Model
    backbone: keras.Model
    parent: warm_start.Parent | None

    def run(self, config: TrainConfig, distribution: Distribution, log: Log) -> recipe.Run:
        return recipe.Run(
            config, self.model, self.backbone, self.prepared, self.state, distribution, log
        )


@contextlib.contextmanager
def _prepared(
    config: TrainConfig, distribution: Distribution, log: Log, store: ModelStore, root: Path
) -> Iterator[_Prepared]:
    """List and decode the data, build the model (from a parent version for a warm
    start), with the job's state in ``root``."""
    listing = distribution.list_dataset(config, log)
    spec = get_backbone(config.backbone)
    weights, parent = _weights(config, spec, store)
    phases = plan_phases(config, spec)
    for line in distribution.describe(config.batch_size):
        log(line)
    with open_job(root, config, log, resumable=distribution.workers == 1) as state:
        # The backbone first: missing ImageNet weights stop the job before any decoding.
        backbone = _backbone(config, spec, weights, distribution)
        prepared, reused = distribution.prepared_data(state, listing, config, log)
        if not reused:  # phases finished on other data are worth nothing now
            state.forget_phases()
        with distribution.scope():
            model = build_classifier(
                spec, backbone, len(prepared.labels), dropout=config.dropout, pooling=config.pooling
            )
        if parent is not None:
            log(
                f"Starting from {parent.lineage['name']} version {parent.lineage['version']}: "
                + warm_start.take_weights(parent, model, backbone, prepared.labels)
            )
        yield _Prepared(state, spec, listing, phases, prepared, model, backbone, parent)


def find_rates(config: TrainConfig, log: Log = _stderr) -> dict[str, dict]:
    """``ktl lr-find``: the range test of every phase, as ``--lr auto`` runs it, without
    publishing; the job's state lives in a temporary folder and goes with it."""
    local = Local()  # the range test needs one device
    with (
        tempfile.TemporaryDirectory(prefix="ktl-lr-find-") as folder,
        _prepared(config, local, log, open_store(config.store), Path(folder) / "job") as job,
    ):
        return recipe.find_rates(job.run(config, local, log), job.phases)


def _run(config: TrainConfig, distribution: Distribution, log: Log, started: float) -> JobResult:
    store = open_store(config.store)
    root = store.job_dir(config.name, distribution.index)
    with _prepared(config, distribution, log, store, root) as job:
        model, prepared, state, parent = job.model, job.prepared, job.state, job.parent
        trained = recipe.train(job.run(config, distribution, log), job.phases)
        history, details = trained.history, trained.details
        diverged = _diverged(history)
        if diverged is not None:
            state.remove()  # resuming would only go on from the broken weights
            raise TrainingDiverged(diverged)
        outcome = final.finish(config, model, prepared, job.listing, distribution, log)
        for line in final.describe(outcome) + [f"Warning: {w}" for w in outcome.warnings]:
            log(line)
        if "original_test" in prepared.report:  # --exclude/--relabel
            log("Corrections: " + held_out.describe(prepared.report["original_test"]))
        if "reviewed" in prepared.report:  # --add-reviewed
            log("Review: " + held_out.describe_reviewed(prepared.report["reviewed"]))

        def save() -> tuple[int, Any]:
            print_ = state.read("data.json")["fingerprint"]
            metadata = bundle_metadata(config, job.spec, model, prepared, outcome, details, print_)
            if parent is not None:
                metadata = metadata.replace(lineage=parent.lineage)
            reports = report_files(history, details, outcome, prepared.labels, config.data)
            if config.tensorboard:
                tensorboard_images(config, {k: reports[k] for k in _BOARD_IMAGES})
            return save_published(store, model, metadata, reports, config, prepared, outcome, log)

        version, path = distribution.publish(save)
        state.remove()
    return JobResult(
        name=config.name,
        version=version,
        path=Path(path),
        metrics=outcome.metrics,
        evaluation=outcome.evaluation,
        calibration=outcome.calibration,
        decision=outcome.decision,
        tta=outcome.tta,
        dataset=_dataset_summary(prepared),
        training=details,
        warnings=outcome.warnings,
        worker=(distribution.index, distribution.workers) if distribution.workers > 1 else None,
        seconds=round(time.monotonic() - started, 1),
    )


class TrainingDiverged(UserError):
    """The loss stopped being a number: the weights are broken, nothing is published."""

    code = "training_diverged"


def _diverged(history: list[dict[str, Any]]) -> str | None:
    """What says that training diverged (a loss that is NaN or infinite), if it did."""
    for index, row in enumerate(history):
        for key, value in row.items():
            if key.endswith("loss") and isinstance(value, float) and not math.isfinite(value):
                epoch = sum(r.get("phase") == row.get("phase") for r in history[: index + 1])
                return (
                    f"Training diverged: {key} became {value} in epoch {epoch} of phase "
                    f"{row.get('phase')}, so nothing was published; lower the learning rate "
                    "(lr, fine_tune_lr) or let lr auto choose it"
                )
    return None


def _weights(
    config: TrainConfig, spec: BackboneSpec, store: ModelStore
) -> tuple[str | None, warm_start.Parent | None]:
    """What the backbone is built with, and the published version it starts from
    (``--weights model:NAME``: built without weights, then given the version's)."""
    assert config.weights is not None, "a validated config (build_config) has its weights"
    if not warm_start.is_warm_start(config.weights):
        return resolve_weights(spec, config.weights), None
    parent = warm_start.load_parent(config.weights, store, spec.name)
    if config.image_size is None:  # the parent's size, unless asked otherwise
        config.image_size = parent.bundle.image_size[0]
    return None, parent


def _backbone(
    config: TrainConfig, spec: BackboneSpec, weights: str | None, distribution: Distribution
) -> keras.Model:
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:  # float16 compute for GPUs; the softmax stays float32
        keras.mixed_precision.set_global_policy("mixed_float16")
    with contextlib.redirect_stdout(sys.stderr), distribution.scope():  # downloads on stdout
        return build_backbone(spec, config.resolved_image_size(), weights, via=config.via)


def _dataset_summary(prepared: Prepared) -> dict[str, Any]:
    report = prepared.report
    return {
        "classes": report["classes"],
        "train_images": report["train_images"],
        "val_images": report["val_images"],
        "test_images": report.get("test_images", 0),
        "test_note": report.get("test_note"),
        "skipped": len(report["skipped"]),
        "skipped_files": report["skipped"],
        "ignored_files": report["ignored_files"],
        "warnings": report["warnings"],
        **{
            key: report[key]
            for key in ("corrections", "removed_near_copies", "reviewed")
            if report.get(key)
        },
        **(
            {"original_test": {k: v for k, v in original.items() if not k.endswith("_files")}}
            if (original := report.get("original_test"))
            else {}
        ),
    }
