"""The training job's configuration: one dataclass, filled from defaults, then a
TOML file (``--config``), then command-line flags, and written whole into the
bundle's ``metadata.json``."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from models.backbones import get_backbone
from models.choices import POOLING
from models.errors import ConfigError, did_you_mean

__all__ = ["STRATEGIES", "ConfigError", "TrainConfig", "build_config", "read_toml"]

STRATEGIES = ("auto", "mirrored", "multiworker")  # how training uses devices and machines
SCHEDULES = ("constant", "cosine", "onecycle")  # learning-rate schedules (training.regime)
# Epochs and early-stopping patience by recipe. A new head on frozen features
# settles in a few epochs; a network trained from random weights needs many more,
# and its validation loss is noisy early on, so it gets more patience.
RECIPE_DEFAULTS = {
    "transfer": {"epochs": 10, "patience": 3},
    "scratch": {"epochs": 40, "patience": 10},
}


@dataclass
class TrainConfig:
    data: str
    name: str
    store: str = "model_store"
    backbone: str = "resnet50"
    weights: str | None = None  # None: imagenet where the backbone has such weights, else none
    image_size: int | None = None  # None: the backbone's default
    batch_size: int = 32
    epochs: int | None = None  # None: the recipe's (RECIPE_DEFAULTS)
    fine_tune_epochs: int = 5
    min_steps: int = 150  # the head phase's least optimizer steps (training.phases.sized_phases)
    unfreeze_from: str | None = None  # None: the backbone's default
    lr: float | str = 1e-3  # or "auto": a learning-rate range test chooses it
    fine_tune_lr: float | str = 1e-5  # or "auto"
    schedule: str = "constant"  # constant, cosine or onecycle (training.regime)
    layer_decay: float = 1.0  # fine-tuning: each block below the top learns at this factor
    label_smoothing: float = 0.0
    mixup: float = 0.0  # MixUp's Beta alpha; 0: off
    cutmix: float = 0.0  # CutMix's Beta alpha; 0: off
    randaugment: bool = False
    tta: bool = False  # evaluate with test-time augmentation too (models.tta)
    tensorboard: str | None = None  # a folder for TensorBoard logs of both phases
    val_split: float = 0.2
    test_split: float | None = None  # None: held out when every class is big enough
    seed: int = 42
    augment: bool = True
    dropout: float = 0.2
    pooling: str = "avg"
    patience: int | None = None  # None: the recipe's (RECIPE_DEFAULTS)
    calibrate: bool = True  # temperature scaling fitted on validation, folded into the model
    min_confidence: float | str = "auto"  # the decision threshold, or "auto" (training.decision)
    target_accuracy: float | None = None  # for "auto": the accuracy the answered images reach
    ood: str | None = None  # images of none of the classes, to measure "none of these"
    resume: bool = False
    restart: bool = False  # discard an interrupted job of this name and start over
    mixed_precision: bool = False  # float16 compute: for GPUs with tensor cores
    jit: bool = False  # XLA-compile the training step
    cache_dir: str | None = None  # where the decoded images are cached (default: the job's folder)
    strategy: str = "auto"  # tf.distribute: auto, mirrored or multiworker (TF_CONFIG)
    promote: bool = False  # label the new version stable (training.release)
    promote_if_better: bool = False  # ... only when it beats stable on the same images
    keep: int | None = None  # then delete all but the newest N (never a protected one)
    int8: bool = False  # also publish an INT8 engine, checked for agreement (models.int8)
    exclude: str | None = None  # a ktl doctor CSV: leave out its rows with action exclude
    relabel: str | None = None  # a ktl doctor CSV: apply its rows with action relabel
    confine_to_data: bool = False  # skip files whose real path leaves DATA (service jobs)

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
        recipe = RECIPE_DEFAULTS["transfer" if self.transfer else "scratch"]
        if self.epochs is None:
            self.epochs = recipe["epochs"]
        if self.patience is None:
            self.patience = recipe["patience"]
        return self

    def resolved_image_size(self) -> tuple[int, int]:
        size = self.image_size or get_backbone(self.backbone).default_size
        return size, size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """Resolve the defaults, then raise ``ConfigError`` naming the first bad setting;
        return self."""
        spec = get_backbone(self.backbone)  # UnknownBackbone is a ValueError with a clear text
        self.resolve_defaults()
        assert self.epochs is not None and self.patience is not None
        checks = [
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.fine_tune_epochs >= 0, "--fine-tune-epochs must be 0 or more"),
            (self.min_steps >= 0, "--min-steps must be 0 or more (0: --epochs alone)"),
            (
                all(
                    rate == "auto" or (isinstance(rate, int | float) and rate > 0)
                    for rate in (self.lr, self.fine_tune_lr)
                ),
                "learning rates (--lr, --fine-tune-lr) must be positive numbers or auto",
            ),  # fmt: skip
            (self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}"),
            (0 < self.layer_decay <= 1, "--layer-decay must be more than 0, at most 1"),
            (0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (self.mixup >= 0 and self.cutmix >= 0, "--mixup and --cutmix take an alpha >= 0"),
            (0.0 < self.val_split < 1.0, "--val-split must be between 0 and 1, e.g. 0.2"),
            (
                self.test_split is None or 0.0 <= self.test_split < 1 - self.val_split,
                "--test-split must be 0 or more, and leave room for training with --val-split",
            ),
            (0.0 <= self.dropout < 1.0, "--dropout must be in [0, 1)"),
            (self.patience >= 1, "--patience must be at least 1"),
            (not (self.resume and self.restart), "--resume and --restart exclude each other"),
            (self.seed >= 0, "--seed must be 0 or more"),
            (
                not (self.promote and self.promote_if_better),
                "--promote and --promote-if-better exclude each other: choose one",
            ),
            (self.keep is None or self.keep >= 1, "--keep must be at least 1"),
            (
                self.min_confidence == "auto"
                or (not isinstance(self.min_confidence, str) and 0 <= self.min_confidence < 1),
                "--min-confidence must be auto or a number from 0 (never abstain) up to 1",
            ),
            (
                self.target_accuracy is None or 0 < self.target_accuracy <= 1,
                "--target-accuracy must be more than 0, at most 1 (e.g. 0.95)",
            ),
            (self.pooling in POOLING, f"--pooling must be one of {', '.join(POOLING)}"),
            (self.strategy in STRATEGIES, f"--strategy must be one of {', '.join(STRATEGIES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        size = self.image_size or spec.default_size
        if not spec.min_size <= size <= 1024:
            raise ConfigError(
                f"--image-size {size} is out of range for {spec.name}: "
                f"use {spec.min_size} to 1024 (default {spec.default_size})"
            )
        return self


_FIELDS = {field.name for field in dataclasses.fields(TrainConfig)}


def read_toml(path: str | Path) -> dict:
    """Settings from a TOML job file; keys are the flag names (dashes or underscores)."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML: {exc}") from exc
    settings = {key.replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(settings.keys() - _FIELDS)
    if unknown:
        hints = "".join(did_you_mean(key, _FIELDS) for key in unknown[:1])
        raise ConfigError(f"--config {path}: unknown settings {unknown}{hints}")
    if "no_augment" in raw:
        raise ConfigError(f"--config {path}: write augment = false instead of no_augment")
    return settings


def build_config(file_settings: dict, flag_settings: dict) -> TrainConfig:
    """Defaults < TOML file < flags (flags given as None are not set)."""
    merged = {**file_settings, **{k: v for k, v in flag_settings.items() if v is not None}}
    missing = [key for key in ("data", "name") if not merged.get(key)]
    if missing:
        raise ConfigError(f"missing {' and '.join(missing)} (give DATA and --name, or set them)")
    for key in _FLOAT_OR_AUTO:  # a flag gives text: "0.7" is a number, "auto" a word
        if isinstance(merged.get(key), str) and merged[key] != "auto":
            try:
                merged[key] = float(merged[key])
            except ValueError:
                raise ConfigError(
                    f"--{key.replace('_', '-')} {merged[key]!r}: auto or a number"
                ) from None
    try:
        config = TrainConfig(**merged)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
    for field in dataclasses.fields(TrainConfig):
        _check_type(field, getattr(config, field.name))
    return config.validate()


_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "bool": bool,
    "str": str,
}
_FLOAT_OR_AUTO = ("min_confidence", "lr", "fine_tune_lr")  # a number or the word auto


def _check_type(field: dataclasses.Field, value: object) -> None:
    """``ConfigError`` unless ``value`` has one of the field's types. A bool is an int
    to Python, but ``epochs = true`` in a job file is a mistake, not one epoch."""
    kinds = [kind.strip() for kind in str(field.type).split("|")]
    if value is None:
        return
    if isinstance(value, bool):
        ok = "bool" in kinds
    else:
        ok = any(isinstance(value, _TYPES[kind]) for kind in kinds if kind in _TYPES)
    if not ok:
        raise ConfigError(f"{field.name} = {value!r}: expected {field.type}")
