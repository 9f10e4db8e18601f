"""Which phases a job trains, decided from its settings alone (no TensorFlow):
with pretrained weights, a head on the frozen backbone and then, optionally,
the top block unfrozen at a low rate; from random weights, one phase that
trains the whole network."""

from __future__ import annotations

from dataclasses import dataclass, replace

from models.errors import ConfigError
from models.networks.backbones import BackboneSpec
from models.store.progress import PHASE_ORDER
from training.config import TrainConfig

SCRATCH, HEAD, FINE_TUNE = PHASE_ORDER  # the phases' names, in the order a job trains them


@dataclass(frozen=True)
class Phase:
    name: str  # SCRATCH, or HEAD then (optionally) FINE_TUNE
    epochs: int
    lr: float | str  # "auto": chosen by a range test when the phase starts
    unfreeze_from: str | None = None  # fine_tune: the first backbone layer that trains
    steps_per_epoch: int | None = None  # head: known once the data is split (sized_phases)
    raised_from: int | None = None  # head: the epochs asked for, when --min-steps raised them


def plan_phases(config: TrainConfig, spec: BackboneSpec) -> list[Phase]:
    """The phases of a job, in order; ``ConfigError`` when fine-tuning has no layer
    to start from."""
    assert config.epochs is not None, "a validated config (build_config) has its epochs"
    if not config.transfer:
        return [Phase(SCRATCH, config.epochs, config.lr)]
    phases = [Phase(HEAD, config.epochs, config.lr)]
    if config.fine_tune_epochs:
        unfreeze_from = config.unfreeze_from or spec.unfreeze_from
        if unfreeze_from is None:
            raise ConfigError(
                f"{spec.name} has no default --unfreeze-from: name the first layer to fine-tune "
                f"(`ktl inspect {spec.name}` lists them), or train the head alone with "
                "--fine-tune-epochs 0"
            )
        phases.append(Phase(FINE_TUNE, config.fine_tune_epochs, config.fine_tune_lr, unfreeze_from))
    return phases


def unfreeze_point(phases: list[Phase]) -> str | None:
    """Where phase 2 unfreezes the backbone, None without a fine-tuning phase."""
    return next((p.unfreeze_from for p in phases if p.name == FINE_TUNE), None)


def sized_phases(phases: list[Phase], config: TrainConfig, train_images: int) -> list[Phase]:
    """The head phase runs at least ``config.min_steps`` optimizer steps: with few
    images an epoch is one or two steps, and a fixed count of epochs leaves the head
    under-trained. Its epochs rise to ``ceil(min_steps / steps per epoch)``; early
    stopping still ends it once the validation loss stops falling."""
    steps = max(1, -(-train_images // config.batch_size))
    sized = []
    for phase in phases:
        if phase.name == HEAD:
            epochs = max(phase.epochs, -(-config.min_steps // steps))
            raised = phase.epochs if epochs > phase.epochs else None
            phase = replace(phase, epochs=epochs, steps_per_epoch=steps, raised_from=raised)
        sized.append(phase)
    return sized


def phase_patience(config: TrainConfig, phase: Phase) -> int:
    """Early stopping's patience for a phase: ``--patience`` epochs, raised by the factor
    ``--min-steps`` raised the head's epochs by. With few images an epoch is one step,
    and three steps of a noisy validation loss stopped a head at a fifth of its training
    (5 photos per class: 19 of 150 epochs, validation loss 0.43, test accuracy 0.79)."""
    assert config.patience is not None
    if phase.raised_from:
        return config.patience * -(-phase.epochs // phase.raised_from)
    return config.patience
