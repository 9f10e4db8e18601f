"""The training options: the one definition of every setting a fine-tune job takes,
with its type, default, help, valid range and whether HTTP may set it.

``ktl train``'s flags (cli.commands.train), the TOML job file (training.config) and
``POST /v1/jobs``'s options with their OpenAPI schema (models.jobqueue.jobs,
service.jobs_api.jobs) are all generated from ``TrainOptions``; a new field appears in
all of them. Checking options (``models.option_checks``) needs no TensorFlow, so a bad
name or setting is refused at once, in the words of the interface that gave it (``Via``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.choices import POOLING
from models.networks.backbones import get_backbone

__all__ = ["SCHEDULES", "STRATEGIES", "TrainOptions", "Via", "http_options"]

Via = Literal["cli", "toml", "http"]  # which interface gave the options
SCHEDULES = ("constant", "cosine", "onecycle")  # learning-rate schedules (training.fitting.regime)
STRATEGIES = ("auto", "mirrored", "multiworker")  # how training uses devices and machines
DEFAULT_BACKBONE = "efficientnet_lite0"  # its ImageNet weights ship in a pip package: offline
# Over HTTP, weights name no file of the server: imagenet, none or a version of this store.
HTTP_WEIGHTS = r"^(imagenet|none|model:[a-z0-9][a-z0-9_-]{0,63}(:[A-Za-z0-9_-]{1,64})?)$"


def option(
    default: Any,
    help: str,
    *,
    group: str,
    http: bool = False,
    shown: str | None = None,
    metavar: str | None = None,
    **schema: Any,
) -> Any:
    """A field of ``TrainOptions``. ``help`` is the flag's help without its default,
    which the help adds (``shown``, or the default itself); ``http``: whether
    ``POST /v1/jobs`` may set it (never a path on the server); ``group``: the
    section of ``ktl train --help`` ("" for DATA, --name and --store)."""
    extra: dict[str, Any] = {"group": group, "http": http, "shown": shown, "metavar": metavar}
    return Field(default, description=help, json_schema_extra={"ktl": extra, **schema})


# The range of each number (inclusive unless gt/lt): wide enough for any real run, narrow
# enough that none asks for years of training or a rate that can only end in NaN.
Share = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Alpha = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Rate = Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] | Literal["auto"]
Epochs = Annotated[int, Field(ge=1, le=10_000)]
Size = Annotated[int, Field(ge=8, le=1024)]  # finer: the backbone's min_size (rules)


class TrainOptions(BaseModel):
    """Every setting of a training job. Types are strict: ``epochs = true`` in a job
    file is a mistake, not one epoch; an integer is a valid float."""

    model_config = ConfigDict(strict=True, extra="forbid", validate_default=False)

    data: str = option(
        ..., "class folders, a folder with train/ and val/, or a CSV path,label", group=""
    )
    name: str = option(
        ..., "model name in the store: [a-z0-9][a-z0-9_-]{0,63}", group="", http=True
    )
    store: str = option(
        "model_store", "model store folder", group="", shown="$KTL_MODEL_STORE or ./model_store"
    )
    # model
    backbone: str = option(
        DEFAULT_BACKBONE,
        "backbone from `ktl backbones`",
        group="model",
        http=True,
        shown=f"{DEFAULT_BACKBONE}, whose ImageNet weights ship with ktl",
    )
    weights: str | None = option(
        None,
        "imagenet (Keras' download and cache, $KERAS_HOME; efficientnet_lite0/1/2's ship in "
        "a pip package), none (random initialisation, the whole network trains), the path "
        "of a weights file, or model:NAME[:VERSION|:LABEL] to start from a published version "
        "of the store (model:flowers:stable); over HTTP: imagenet, none or model:...",
        group="model",
        http=True,
        shown="imagenet where the backbone has it, else none",
        pattern=HTTP_WEIGHTS,
    )
    task: Literal["auto", "single_label", "multilabel"] = option(
        "auto",
        "single_label (one class per image), multilabel (zero or more labels per image: a "
        "CSV path,labels with labels separated by ';'), or auto: multilabel when a CSV's "
        "labels column gives a row several labels or none",
        group="model",
        http=True,
    )
    image_size: Size | None = option(
        None, "square input size in pixels", group="model", http=True, shown="the backbone's"
    )
    pooling: Literal[POOLING] = option(  # type: ignore[valid-type]
        "avg", "global pooling before the head", group="model", http=True
    )
    dropout: Share = option(0.2, "dropout before the softmax", group="model", http=True)
    # recipe
    epochs: Epochs | None = option(
        None,
        "epochs of the head phase, or of training from scratch",
        group="recipe",
        http=True,
        shown="10 with pretrained weights, 40 from scratch",
    )
    min_steps: Annotated[int, Field(ge=0, le=10_000_000)] = option(
        150,
        "the head phase runs at least N optimizer steps: with few images its epochs rise to "
        "N / steps per epoch, early stopping still ends it; 0: --epochs alone",
        group="recipe",
        http=True,
        metavar="N",
    )
    fine_tune_epochs: Annotated[int, Field(ge=0, le=10_000)] = option(
        5, "epochs with the top block unfrozen; 0 skips", group="recipe", http=True
    )
    unfreeze_from: str | None = option(
        None,
        "first backbone layer trained in phase 2",
        group="recipe",
        http=True,
        shown="the backbone's",
        metavar="LAYER",
    )
    lr: Rate = option(
        1e-3,
        "learning rate of the head phase; auto: a range test chooses it",
        group="recipe",
        http=True,
        metavar="RATE|auto",
    )
    fine_tune_lr: Rate = option(
        1e-5,
        "learning rate of the fine-tuning phase; auto: a range test chooses it",
        group="recipe",
        http=True,
        metavar="RATE|auto",
    )
    schedule: Literal[SCHEDULES] = option(  # type: ignore[valid-type]
        "constant",
        "the rate over each phase: constant, cosine (warm-up, then cosine down) or onecycle "
        "(fastai's one-cycle)",
        group="recipe",
        http=True,
    )
    layer_decay: Fraction = option(
        1.0,
        "fine-tuning: each layer below the top learns at F times the rate of the one above "
        "(1: all alike)",
        group="recipe",
        http=True,
        metavar="F",
    )
    batch_size: Annotated[int, Field(ge=1, le=4096)] = option(
        32, "images per step", group="recipe", http=True
    )
    patience: Epochs | None = option(
        None,
        "epochs without a better validation loss before stopping",
        group="recipe",
        http=True,
        shown="3 with pretrained weights, 10 from scratch",
    )
    val_split: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = option(
        0.2, "share of each class held out for validation", group="recipe", http=True
    )
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = option(
        42, "seed of the split, augmentation and initialisation", group="recipe", http=True
    )
    augment: bool = option(
        True,
        "flip/rotation/zoom/contrast augmentation of training images",
        group="recipe",
        http=True,
    )
    label_smoothing: Share = option(
        0.0, "smooth training targets by E (e.g. 0.1)", group="recipe", http=True, metavar="E"
    )
    mixup: Alpha = option(
        0.0,
        "MixUp training batches (alpha, e.g. 0.2); 0: off",
        group="recipe",
        http=True,
        metavar="ALPHA",
    )
    cutmix: Alpha = option(
        0.0,
        "CutMix training batches (alpha, e.g. 1.0); 0: off",
        group="recipe",
        http=True,
        metavar="ALPHA",
    )
    randaugment: bool = option(
        False,
        "Keras' RandAugment: two random image operations per training image",
        group="recipe",
        http=True,
    )
    int8: bool = option(
        False,
        "also quantize the model to INT8 (calibrated on training images) and record its "
        "agreement with the float model on validation and test; the service serves it where "
        "the agreement passes KTL_INT8_MIN_AGREEMENT",
        group="recipe",
        http=True,
    )
    mixed_precision: bool = option(
        False,
        "float16 compute with float32 weights (GPUs with tensor cores; slower on CPUs)",
        group="recipe",
    )
    jit: bool = option(False, "compile the training step with XLA", group="recipe")
    tensorboard: str | None = option(
        None,
        "write TensorBoard logs of both phases under DIR/NAME (losses, accuracy, rate)",
        group="recipe",
        shown="none",
        metavar="DIR",
    )
    cache_dir: str | None = option(
        None,
        "where the decoded images are cached as a memory map, e.g. a disk with room",
        group="recipe",
        shown="the job's folder in the store",
        metavar="DIR",
    )
    resume: bool = option(
        False, "continue this name's interrupted job from its last checkpoint", group="recipe"
    )
    restart: bool = option(
        False, "discard this name's interrupted job and start over", group="recipe"
    )
    strategy: Literal[STRATEGIES] = option(  # type: ignore[valid-type]
        "auto",
        "devices and machines: mirrored (every local GPU), multiworker (the workers in "
        "$TF_CONFIG; each decodes its shard of the files, worker 0 or the chief publishes), "
        "auto (multiworker when TF_CONFIG names several workers, mirrored with several GPUs, "
        "else one device)",
        group="recipe",
    )
    # figures you can trust
    test_split: Share | None = option(
        None,
        "share of each class held out as a test split that nothing in training sees; 0 turns "
        "it off",
        group="figures you can trust",
        http=True,
        shown="0.15 when every class has 40 images, else none",
    )
    calibrate: bool = option(
        True,
        "temperature scaling fitted on validation, inside the saved model (off: the raw "
        "softmax probabilities)",
        group="figures you can trust",
        http=True,
    )
    min_confidence: Share | Literal["auto"] = option(
        "auto",
        "below this top probability a prediction's decision is 'not sure': auto (answers 95% "
        "of validation images) or a number, 0 = always answer",
        group="figures you can trust",
        http=True,
        metavar="auto|P",
    )
    target_accuracy: Fraction | None = option(
        None,
        "with min-confidence auto: the lowest threshold whose answers are A right on "
        "validation (e.g. 0.95)",
        group="figures you can trust",
        http=True,
        shown="none",
        metavar="A",
    )
    min_precision: Fraction | None = option(
        None,
        "multilabel: each label's threshold is the lowest whose answers reach precision P "
        "on validation (else the best F1's)",
        group="figures you can trust",
        http=True,
        shown="none: the best F1 per label",
        metavar="P",
    )
    tta: bool = option(
        False,
        "also score validation and test with test-time augmentation (the image, its mirror, "
        "four corner crops: 6 passes averaged); the summary and metadata say whether it helped",
        group="figures you can trust",
        http=True,
    )
    ood: str | None = option(
        None,
        "images of none of the classes: measures how well the model tells them apart "
        "(AUROC, share the threshold rejects)",
        group="figures you can trust",
        shown="none",
        metavar="DIR",
    )
    # what goes live
    promote: bool = option(
        False,
        "label the new version stable: it becomes the default version at once (without a "
        "stable label the newest version is the default anyway)",
        group="what goes live",
        http=True,
    )
    promote_if_better: bool = option(
        False,
        "label the new version stable only if its accuracy beats the default version's on "
        "the same images (the new version's test split of DATA, else its validation split); "
        "otherwise the default version keeps serving, labelled stable",
        group="what goes live",
        http=True,
    )
    keep: Annotated[int, Field(ge=1, le=1_000_000)] | None = option(
        None,
        "then delete all but the newest N versions; labelled versions, the default, rollback "
        "targets and the parents of those kept always stay",
        group="what goes live",
        shown="keep all",
        metavar="N",
    )
    # corrections from ktl doctor
    exclude: str | None = option(
        None,
        "a ktl doctor suspects.csv: leave out the files of its rows whose action is exclude",
        group="corrections from ktl doctor",
        shown="none",
        metavar="CSV",
    )
    relabel: str | None = option(
        None,
        "a ktl doctor suspects.csv: give the files of its rows whose action is relabel their "
        "suggested_label",
        group="corrections from ktl doctor",
        shown="none",
        metavar="CSV",
    )
    add_reviewed: str | None = option(
        None, "add MODEL's reviewed captures", group="ktl review", shown="none", metavar="MODEL"
    )

    def rules(self) -> Iterator[str]:
        """What no single field's range says: each broken rule, with the settings it
        names as ``{field}``."""
        if self.lr == 0 or self.fine_tune_lr == 0:
            yield "learning rates ({lr}, {fine_tune_lr}) must be positive numbers or auto"
        if self.test_split is not None and self.test_split >= 1 - self.val_split:
            yield "{test_split} must be 0 or more, and leave room for training with {val_split}"
        if self.resume and self.restart:
            yield "{resume} and {restart} exclude each other"
        if self.promote and self.promote_if_better:
            yield "{promote} and {promote_if_better} exclude each other: choose one"
        spec = get_backbone(self.backbone)
        size = self.image_size or spec.default_size
        if not spec.min_size <= size:
            yield (
                f"{{image_size}} {size} is out of range for {spec.name}: use {spec.min_size} "
                f"to 1024 (default {spec.default_size})"
            )


def extra(name: str) -> dict[str, Any]:
    """The ktl-specific properties of field ``name`` (see ``option``)."""
    schema = TrainOptions.model_fields[name].json_schema_extra
    assert isinstance(schema, dict)
    found = schema["ktl"]
    assert isinstance(found, dict)
    return found


def http_options() -> tuple[str, ...]:
    """The options ``POST /v1/jobs`` takes, in their order."""
    return tuple(name for name in TrainOptions.model_fields if extra(name)["http"])


def http_options_schema() -> dict[str, Any]:
    """The JSON schema of ``POST /v1/jobs``'s options: the fields HTTP may set."""
    full = TrainOptions.model_json_schema()["properties"]
    properties = {}
    for name in http_options():
        schema = {k: v for k, v in full[name].items() if k not in ("ktl", "title")}
        properties[name] = schema
    return {
        "type": "object",
        "properties": properties,
        "required": ["name"],
        "additionalProperties": False,
    }
