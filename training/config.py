"""The training job's configuration: the options of ``models.options`` (where each
is defined, with its default and range), filled from defaults, then a TOML file
(``--config``), then command-line flags, checked before TensorFlow is imported,
and written whole into the bundle's ``metadata.json``."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from models.errors import ConfigError, did_you_mean
from models.networks.backbones import get_backbone
from models.option_checks import parse, spell
from models.options import SCHEDULES, STRATEGIES, TrainOptions, Via

__all__ = ["SCHEDULES", "STRATEGIES", "ConfigError", "TrainConfig", "build_config", "read_toml"]

# Epochs and early-stopping patience by recipe. A new head on frozen features
# settles in a few epochs; a network trained from random weights needs many more,
# and its validation loss is noisy early on, so it gets more patience.
RECIPE_DEFAULTS = {
    "transfer": {"epochs": 10, "patience": 3},
    "scratch": {"epochs": 40, "patience": 10},
}


class TrainConfig(TrainOptions):
    """A job's settings: the options (``models.options.TrainOptions``, where every field
    is defined), with the defaults that depend on others filled by ``resolve_defaults``."""

    confine_to_data: bool = False  # skip files whose real path leaves DATA (service jobs)
    via: Via = "cli"  # the interface that gave the options: errors name them its way
    # --add-reviewed's capture folder: ktl train's --capture-dir, else KTL_CAPTURE_DIR
    capture_dir: str | None = None

    @property
    def transfer(self) -> bool:
        """Whether there are pretrained features to transfer (two-phase recipe)."""
        return self._weights() != "none"

    def _weights(self) -> str:
        if self.weights is not None:
            return self.weights
        return "imagenet" if get_backbone(self.backbone).pretrained else "none"

    def resolve_defaults(self) -> TrainConfig:
        """Fill the settings whose default depends on others (weights on the backbone,
        epochs and patience on the recipe); what a job records is what it ran."""
        self.weights = self._weights()
        recipe: dict[str, int] = RECIPE_DEFAULTS["transfer" if self.transfer else "scratch"]
        if self.epochs is None:
            self.epochs = recipe["epochs"]
        if self.patience is None:
            self.patience = recipe["patience"]
        return self

    def resolved_image_size(self) -> tuple[int, int]:
        size = self.image_size or get_backbone(self.backbone).default_size
        return size, size

    def to_dict(self) -> dict:
        return self.model_dump()


# What a job file may set: every option (not the internal settings of TrainConfig).
_FIELDS = tuple(TrainOptions.model_fields)


def read_toml(path: str | Path) -> dict:
    """Settings from a TOML job file; keys are the option names (dashes or underscores)."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML: {exc}") from exc
    if "no_augment" in raw or "no-augment" in raw:
        raise ConfigError(f"--config {path}: write augment = false instead of no_augment")
    settings = {key.replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(settings.keys() - set(_FIELDS))
    if unknown:
        hints = "".join(did_you_mean(key, _FIELDS) for key in unknown[:1])
        raise ConfigError(f"--config {path}: unknown settings {unknown}{hints}")
    return settings


def build_config(file_settings: dict, flag_settings: dict, via: Via = "cli") -> TrainConfig:
    """Defaults < TOML file < flags (flags given as None are not set), every setting
    checked (no TensorFlow needed); a problem names the file's key, or the setting as
    the interface ``via`` that gave the rest calls it (a flag, an HTTP option)."""
    flags = {key: value for key, value in flag_settings.items() if value is not None}
    merged: dict[str, Any] = {**file_settings, **flags}
    for key in _FLOAT_OR_AUTO:  # a flag gives text: "0.7" is a number, "auto" a word
        if key in flags and isinstance(merged[key], str) and merged[key] != "auto":
            try:
                merged[key] = float(merged[key])
            except ValueError:
                pass  # refused by the check below, in the flag's words

    def speller(key: str) -> str:
        return spell(key, "toml" if key in file_settings and key not in flags else via)

    config = parse({**merged, "via": via}, speller, model=TrainConfig)
    assert isinstance(config, TrainConfig)
    return config.resolve_defaults()


_FLOAT_OR_AUTO = ("min_confidence", "lr", "fine_tune_lr")  # a number or the word auto
