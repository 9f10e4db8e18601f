"""Which phases a job trains, decided from its settings alone (no TensorFlow):
with pretrained weights, a head on the frozen backbone and then, optionally,
the top block unfrozen at a low rate; from random weights, one phase that
trains the whole network."""

from __future__ import annotations

from dataclasses import dataclass

from models.backbones import BackboneSpec
from models.errors import ConfigError
from training.config import TrainConfig


@dataclass(frozen=True)
class Phase:
    name: str  # "head", "fine_tune" or "scratch"
    epochs: int
    lr: float | str  # "auto": chosen by a range test when the phase starts
    unfreeze_from: str | None = None  # fine_tune: the first backbone layer that trains


def plan_phases(config: TrainConfig, spec: BackboneSpec) -> list[Phase]:
    """The phases of a job, in order; ``ConfigError`` when fine-tuning has no layer
    to start from."""
    assert config.epochs is not None, "a validated config (build_config) has its epochs"
    if not config.transfer:
        return [Phase("scratch", config.epochs, config.lr)]
    phases = [Phase("head", config.epochs, config.lr)]
    if config.fine_tune_epochs:
        unfreeze_from = config.unfreeze_from or spec.unfreeze_from
        if unfreeze_from is None:
            raise ConfigError(
                f"{spec.name} has no default --unfreeze-from: name the first layer to fine-tune "
                f"(`ktl inspect {spec.name}` lists them), or train the head alone with "
                "--fine-tune-epochs 0"
            )
        phases.append(
            Phase("fine_tune", config.fine_tune_epochs, config.fine_tune_lr, unfreeze_from)
        )
    return phases


def unfreeze_point(phases: list[Phase]) -> str | None:
    """Where phase 2 unfreezes the backbone, None without a fine-tuning phase."""
    return next((p.unfreeze_from for p in phases if p.name == "fine_tune"), None)
