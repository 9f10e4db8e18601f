"""Running a job's planned phases on its prepared data: the head on cached
features of the frozen backbone (augmentation waits for fine-tuning), checkpoints
after every phase and epoch for ``--resume``, and BatchNorm recalibrated after
training from scratch."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import keras
import numpy as np

from models.errors import ConfigError
from training.config import TrainConfig
from training.dataset.data import Prepared
from training.distribution import Distribution
from training.fitting import finetune, lr_find
from training.fitting.callbacks import (
    EpochSeeds,
    SettledValidation,
    save_weights_atomically,
    tensorboard,
)
from training.fitting.phases import (
    FINE_TUNE,
    HEAD,
    SCRATCH,
    Phase,
    phase_patience,
    sized_phases,
    unfreeze_point,
)
from training.fitting.regime import Regime, layer_factors
from training.jobs.state import JobState, Log


def uses_cached_features(config: TrainConfig) -> bool:
    """Phase 1 of a transfer job computes the frozen backbone's features of the
    un-augmented images once and trains the head alone on them: an epoch costs a
    matrix product instead of a forward pass of the backbone (a lite0 head at 224 px:
    seconds instead of minutes on 2 cores). Augmentation and RandAugment apply where
    the backbone trains (fine-tuning); MixUp mixes the features. Only CutMix, which
    cuts pixels, keeps the head on images."""
    return config.transfer and not config.cutmix


@dataclass
class Run:
    """One job's training: what every phase needs, and what the phases did."""

    config: TrainConfig
    model: keras.Model
    backbone: keras.Model
    prepared: Prepared
    state: JobState
    distribution: Distribution
    log: Log
    details: dict[str, Any] = field(default_factory=dict)

    def batches(self, indices: np.ndarray, shuffle: bool, batch_size: int | None = None):
        """This worker's batches of pixels for a forward pass of its own."""
        return finetune.batches(
            self.prepared.pixels,
            self.prepared.targets,
            indices,
            batch_size or self.config.batch_size,
            shuffle=shuffle,
            seed=self.config.seed,
        )

    def fit_data(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        indices,
        epochs: _Epochs | None,
        regime: Regime,
    ):
        """``(batches, steps)`` for ``fit``, split over the replicas. Training batches
        (``epochs`` given) are shuffled by epoch and carry the class weights; targets
        are distributions when the regime smooths or mixes them."""
        weights = self.prepared.class_weights() if epochs else None
        seed = (self.config.seed, epochs.phase) if epochs else self.config.seed
        first = epochs.first if epochs else 0
        soft = (len(self.prepared.labels), regime) if regime.soft_targets else None
        return self.distribution.distribute(
            lambda batch, pad_to: finetune.batches(
                inputs,
                targets,
                indices,
                batch,
                shuffle=epochs is not None,
                seed=seed,
                class_weight=weights,
                pad_to=pad_to,
                first_epoch=first,
                soft=soft,
            ),
            len(indices),
            self.config.batch_size,
        )

    def pixel_data(self, epochs: _Epochs, regime: Regime) -> tuple[tuple, tuple]:
        prepared = self.prepared
        return (
            self.fit_data(prepared.pixels, prepared.targets, prepared.train, epochs, regime),
            self.fit_data(prepared.pixels, prepared.targets, prepared.val, None, regime),
        )

    def feature_data(self, epochs: _Epochs, regime: Regime) -> tuple[tuple, tuple]:
        """The frozen backbone's pooled features of both splits, computed once."""
        self.log("Computing the frozen backbone's features once; the head trains on them")
        prepared = self.prepared
        train, val = (
            self.fit_data(
                finetune.pooled_features(self.model, self.batches(indices, False)),
                prepared.targets[indices],
                np.arange(len(indices)),
                phase_epochs,
                regime,
            )
            for indices, phase_epochs in ((prepared.train, epochs), (prepared.val, None))
        )
        self.details["cached_features"] = True
        return train, val

    def settled_validation(self) -> SettledValidation:
        """Validation after BatchNorm statistics are measured on up to 1,024 training
        images (the same ones every epoch)."""
        prepared, distribution = self.prepared, self.distribution
        sample = np.random.default_rng(self.config.seed).permutation(prepared.train)[:1024]
        size = distribution.per_replica_batch(self.config.batch_size)
        forward = finetune.inference(self.model)
        return SettledValidation(
            lambda: finetune.recalibrate_batchnorm(
                self.model, self.backbone, self.batches(np.sort(sample), False, size)
            ),
            lambda: finetune.predict_probabilities(forward, self.batches(prepared.val, False)),
            prepared.targets[prepared.val],
        )


@dataclass(frozen=True)
class _Epochs:
    """Where a phase's epochs start: its place among the phases, and the epochs it
    finished before an interruption."""

    phase: int
    first: int


@dataclass(frozen=True)
class Trained:
    """What the phases did: every epoch's row (``reports/history.csv``), and the
    ``training`` part of ``metadata.json`` (the recipe, each phase's summary)."""

    history: list[dict[str, Any]]
    details: dict[str, Any]


def train(run: Run, phases: list[Phase]) -> Trained:
    """Run the phases not yet finished; returns the history rows and what was done."""
    config, model, prepared, state, distribution, log = (
        run.config,
        run.model,
        run.prepared,
        run.state,
        run.distribution,
        run.log,
    )
    phases = sized_phases(phases, config, prepared.report["train_images"])
    for phase in phases:  # a wrong --unfreeze-from fails now, not after the head trained
        if phase.unfreeze_from is not None:
            finetune.unfreeze_index(run.backbone, phase.unfreeze_from)
    run.details.update(_describe(config, distribution, phases))
    with distribution.fit_scope():
        fit_model = finetune.training_model(
            model, config.augment, config.seed, distribution.model_class, config.randaugment
        )
    if not config.transfer:
        log(
            "Training from random weights: nothing to transfer, so the whole network trains "
            "from the start (no frozen phase; --fine-tune-epochs is not used)"
        )
    progress = state.records.phases()
    for phase in phases:
        if phase.name in progress["done"]:
            if _restored(fit_model, phase, state, log):
                continue
            progress = _without(progress, phase.name)
        rows = _run_phase(run, fit_model, phase, phases.index(phase))
        save_weights_atomically(fit_model, state.root / f"{phase.name}.weights.h5")
        progress = {"done": [*progress["done"], phase.name], "history": progress["history"] + rows}
        state.records.record_phases(progress["done"], progress["history"])
    if not config.transfer:
        _recalibrate_batchnorm(run)
    found = run.details.get("lr_find", {})
    run.details["phases"] = [
        {
            **phase_summary(phase, [r for r in progress["history"] if r["phase"] == phase.name]),
            "lr": found[phase.name]["suggestion"] if phase.name in found else phase.lr,
        }
        for phase in phases
        if phase.name in progress["done"]
    ]
    run.details["trainable_params"] = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    run.details["total_params"] = int(model.count_params())
    return Trained(progress["history"], run.details)


def phase_summary(phase: Phase, rows: list[dict]) -> dict[str, Any]:
    """How a phase ended: epochs run of its maximum, whether early stopping ended it,
    and the epoch whose weights were kept (the lowest validation loss)."""
    losses = [row.get("val_loss", np.inf) for row in rows]
    summary = {
        "name": phase.name,
        "epochs": len(rows),
        "max_epochs": phase.epochs,
        "stopped_early": len(rows) < phase.epochs,
        "kept_epoch": int(np.argmin(losses)) + 1 if rows else None,
    }
    if phase.steps_per_epoch is not None:
        summary["steps_per_epoch"] = phase.steps_per_epoch
    if phase.raised_from is not None:
        summary["epochs_asked"] = phase.raised_from
    return summary


def _describe(
    config: TrainConfig, distribution: Distribution, phases: list[Phase]
) -> dict[str, Any]:
    details: dict[str, Any] = {"recipe": "transfer" if config.transfer else "scratch"}
    spread = distribution.details(config.batch_size)
    if spread is not None:
        details["distribution"] = spread
    if config.transfer:
        details["unfreeze_from"] = unfreeze_point(phases)
    details["regime"] = {
        "schedule": config.schedule,
        "label_smoothing": config.label_smoothing,
        "mixup": config.mixup,
        "cutmix": config.cutmix,
        "randaugment": config.randaugment,
        "layer_decay": config.layer_decay,
    }
    return details


def _restored(fit_model: keras.Model, phase: Phase, state: JobState, log: Log) -> bool:
    """Load a phase finished before an interruption; False if its checkpoint is unusable."""
    try:
        fit_model.load_weights(state.root / f"{phase.name}.weights.h5")
    except (ValueError, OSError) as exc:  # e.g. saved by another ktl version
        log(f"Phase {phase.name}'s checkpoint does not load ({exc}); running it again")
        return False
    log(f"Phase {phase.name} finished before the interruption; loaded its weights")
    return True


def _without(progress: dict, phase: str) -> dict:
    return {
        "done": [d for d in progress["done"] if d != phase],
        "history": [r for r in progress["history"] if r["phase"] != phase],
    }


def _run_phase(run: Run, fit_model: keras.Model, phase: Phase, index: int) -> list[dict]:
    """Train one phase (with its layers frozen as it needs); its history rows."""
    state, single = run.state, run.distribution.workers == 1
    earlier = state.records.epochs(phase.name)
    if earlier:
        run.log(f"Phase {phase.name} resumes at epoch {len(earlier) + 1} of {phase.epochs}")
    phase_model, regime, train, val = _set_up_phase(run, fit_model, phase, index, len(earlier))
    phase = _with_learning_rate(run, phase, phase_model, train, regime)
    first: list[keras.callbacks.Callback] = [EpochSeeds(phase_model, index)] if single else []
    if phase.name == SCRATCH and single:  # Keras' own validation would judge stale statistics
        first.append(run.settled_validation())
        val = (None, None)
    if run.config.tensorboard:
        first += tensorboard(run.config, phase.name)
    with run.distribution.scope():
        return finetune.run_phase(
            phase_model,
            phase,
            *train,
            *val,
            patience=phase_patience(run.config, phase),
            # several workers restart together, so none resumes alone
            backup_dir=state.root / f"backup_{phase.name}" if single else None,
            earlier=earlier,
            on_epoch=lambda rows: state.records.record_epochs(phase.name, rows),
            jit=run.config.jit,
            first_callbacks=first,
            regime=regime,
        )


def _set_up_phase(
    run: Run, fit_model: keras.Model, phase: Phase, index: int, done: int
) -> tuple[keras.Model, Regime, tuple, tuple]:
    """The model a phase trains, its regime, and its training and validation data."""
    phase_model = _phase_model(run, fit_model, phase)
    regime = _regime(run, phase)
    data = run.feature_data if phase_model is not fit_model else run.pixel_data
    train, val = data(_Epochs(index, done), regime)
    return phase_model, regime, train, val


def find_rates(run: Run, phases: list[Phase]) -> dict[str, dict]:
    """Each phase's range test, as ``--lr auto`` runs it: ``{phase: {suggestion,
    curve}}``. A phase before the last trains first (at its suggested rate), so the
    next phase's test starts from the model a job would have there."""
    config = run.config
    fit_model = finetune.training_model(
        run.model, config.augment, config.seed, run.distribution.model_class, config.randaugment
    )
    sized = sized_phases(phases, config, run.prepared.report["train_images"])
    phases = [replace(phase, lr="auto") for phase in sized]
    for index, phase in enumerate(phases):
        if index < len(phases) - 1:
            _run_phase(run, fit_model, phase, index)
            continue
        phase_model, regime, train, _ = _set_up_phase(run, fit_model, phase, index, 0)
        _with_learning_rate(run, phase, phase_model, train, regime)
    return run.details["lr_find"]


def _phase_model(run: Run, fit_model: keras.Model, phase: Phase) -> keras.Model:
    """The model a phase trains, its layers frozen or unfrozen as the phase needs."""
    if phase.name == HEAD:
        finetune.freeze_for_head(run.backbone)
        if uses_cached_features(run.config):
            with run.distribution.fit_scope():
                return finetune.head_model(run.model, run.distribution.model_class)
    elif phase.name == FINE_TUNE:
        assert phase.unfreeze_from is not None
        count = finetune.unfreeze_top(run.backbone, phase.unfreeze_from)
        run.log(f"Unfroze {count} layers from {phase.unfreeze_from} (BatchNorm stays frozen)")
    return fit_model


def _regime(run: Run, phase: Phase) -> Regime:
    config = run.config
    factors = {}
    if phase.name == FINE_TUNE and config.layer_decay < 1:
        above = run.model.layers[run.model.layers.index(run.backbone) + 1 :]
        layers = [*run.backbone.layers, *above]
        factors = layer_factors(layers, config.layer_decay)
    return Regime(
        schedule=config.schedule,
        label_smoothing=config.label_smoothing,
        mixup=config.mixup,
        cutmix=config.cutmix,
        layer_decay=config.layer_decay,
        factors=factors,
    )


def _with_learning_rate(
    run: Run, phase: Phase, phase_model: keras.Model, train: tuple, regime: Regime
) -> Phase:
    """The phase with its rate: given, or chosen by a range test (kept for a resume)."""
    if phase.lr != "auto":
        return phase
    if not run.distribution.one_device:
        raise ConfigError("--lr auto and --fine-tune-lr auto need one device: give the rates")
    saved = run.state.read(f"lr_{phase.name}.json")
    if saved is None:
        test = lr_find.range_test(phase_model, train[0], regime)
        lr_find.report(phase.name, test)
        saved = {"suggestion": test.suggestion, "curve": test.curve()}
        run.state.write(f"lr_{phase.name}.json", saved)
    run.details.setdefault("lr_find", {})[phase.name] = saved
    return replace(phase, lr=saved["suggestion"])


def _recalibrate_batchnorm(run: Run) -> None:
    """After training from scratch: BatchNorm statistics measured on the training
    images, in batches of the size each replica trained on."""
    distribution = run.distribution
    batches = run.batches(
        run.prepared.train, False, distribution.per_replica_batch(run.config.batch_size)
    )
    if not finetune.recalibrate_batchnorm(run.model, run.backbone, batches):
        return
    run.log("Recalibrated BatchNorm statistics on the training images")
    if distribution.workers > 1:  # each worker measured its shard: average them
        statistics = finetune.batchnorm_statistics(run.backbone)
        for variable, mean in zip(
            statistics, distribution.mean([v.numpy() for v in statistics]), strict=True
        ):
            variable.assign(mean)
    run.details["batchnorm_recalibrated"] = True
