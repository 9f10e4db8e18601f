"""The bundle contract: ``metadata.json`` as one typed, immutable object.

Every reader (the service, ``ktl predict``, exports, the report page through the
API) takes its facts from :class:`BundleMetadata`, never from dict keys. The
format carries a version: this ktl writes :data:`FORMAT_VERSION` and reads every
version up to it (bundles without ``format_version`` are version 1). Keys a
newer ktl added are kept as they are, so nothing in a bundle is lost by reading
it. Pydantic only: this module imports no TensorFlow.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.errors import UserError

# The file of a bundle that this module describes (in every version folder).
METADATA_FILE = "metadata.json"
# 1: ktl 0.1. 2: metrics name their split; evaluation (validation and test),
# calibration and decision (the confidence threshold) are recorded.
FORMAT_VERSION = 2


class BundleError(UserError):
    """A bundle that is incomplete, corrupt, or does not match its checksums."""

    code = "invalid_bundle"


class _Frozen(BaseModel):
    # extra="allow": keys written by a newer ktl survive a read and a re-serialisation.
    model_config = ConfigDict(frozen=True, extra="allow")


class InputSpec(_Frozen):
    """What the model file takes: RGB pixels, uint8 0..255, at the bundle's size."""

    format: str = "RGB"
    dtype: str = "uint8"
    range: tuple[int, int] = (0, 255)
    shape: tuple[int, int, int] | None = None


class ClassFigures(_Frozen):
    precision: float
    recall: float
    f1: float
    support: int


class ConfusionMatrix(_Frozen):
    labels: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]


class Baseline(_Frozen):
    """What a model must beat: always answering the training split's largest class
    (scored on the same images), and chance."""

    majority_class: str
    majority_accuracy: float
    chance: float


class Figures(_Frozen):
    """A model's figures on one split of labelled images."""

    images: int | None = None
    accuracy: float | None = None
    accuracy_interval: tuple[float, float] | None = None  # Wilson, 95 %
    top_k: int | None = None
    top_k_accuracy: float | None = None
    loss: float | None = None
    macro_f1: float | None = None
    per_class: dict[str, ClassFigures] | None = None
    confusion_matrix: ConfusionMatrix | None = None
    baseline: Baseline | None = None


class Metrics(Figures):
    """The figures ``ktl train`` prints: those of the test split when there is one
    (``split`` names it); empty for a bundle that was never evaluated."""

    split: str | None = None  # "test" or "validation"; None in format 1 (validation)
    val_images: int | None = None  # format 1


class SplitFigures(Figures):
    fingerprint: str | None = None  # the test split: its images' content, sha256


class OriginalTest(Figures):
    """``ktl train --exclude/--relabel``: the figures on DATA's test split as it was
    before the CSVs (every image with DATA's label, the excluded ones included), and
    how many of those images the CSVs excluded or relabelled in ``test``."""

    excluded: int = 0
    relabelled: int = 0
    unknown: int = 0  # of a class the model does not know (relabelled away): not scored


class Evaluation(_Frozen):
    validation: SplitFigures | None = None
    test: SplitFigures | None = None
    original_test: OriginalTest | None = None  # only when --exclude/--relabel applied


class CalibrationFigures(_Frozen):
    ece: float
    nll: float
    brier: float


class Calibration(_Frozen):
    """Temperature scaling, folded into the model's last layer; figures before and
    after it, on the test split (validation when there is none)."""

    temperature: float
    split: str
    before: CalibrationFigures
    after: CalibrationFigures
    validation_nll: dict[str, float] | None = None  # where T was fitted: before, after
    how: str | None = None  # how T was chosen (1 when fitting it did not carry over)


class Decision(_Frozen):
    """Below ``threshold``, the model's top probability means "not sure"."""

    threshold: float
    rule: str
    note: str | None = None
    split: str | None = None  # where coverage and selective accuracy were measured
    coverage: float | None = None
    selective_accuracy: float | None = None
    ood: dict[str, Any] | None = None  # images of none of the classes, when given


class Lineage(_Frozen):
    """Where a version comes from when it started from another one."""

    kind: str  # "warm_start" or "quantized"
    name: str
    version: int
    model_sha256: str


class EngineAgreement(_Frozen):
    """How far another engine's answers are from the float Keras model's, on one split."""

    images: int
    top1_agreement: float
    mean_abs_diff: float
    max_abs_diff: float
    decision_agreement: float | None = None  # same label, or 'not sure' by both
    accuracy_float: float | None = None
    accuracy_int8: float | None = None


class Engine(_Frozen):
    """Another way to run the model (``engines.int8``): its file in the bundle, the
    runtime that runs it, how it was made, and its agreement by split."""

    file: str
    runtime: str
    method: str | None = None
    calibration_images: int | None = None
    seconds: float | None = None
    agreement: dict[str, EngineAgreement] = Field(default_factory=dict)


class TTAFigures(_Frozen):
    """One split's figures without and with test-time augmentation."""

    accuracy: float
    accuracy_tta: float
    gain: float  # accuracy_tta - accuracy
    loss: float
    loss_tta: float


class TestTimeAugmentation(_Frozen):
    """``ktl train --tta``: the views averaged (``models.engines.tta``), and whether that
    helped on validation (``gain``: its accuracy with TTA minus without)."""

    views: tuple[str, ...]
    helped: bool
    gain: float
    validation: TTAFigures
    test: TTAFigures | None = None


class LabelFigures(_Frozen):
    """Multi-label: one label's figures at its threshold; intervals are 95 % (Wilson
    for precision and recall, a seeded bootstrap over images for AP)."""

    precision: float
    recall: float
    f1: float
    ap: float | None  # None: no image of the split has the label
    support: int
    precision_interval: tuple[float, float] | None = None
    recall_interval: tuple[float, float] | None = None
    ap_interval: tuple[float, float] | None = None


class MultilabelFigures(_Frozen):
    """Multi-label: one split's figures, each label at its own threshold."""

    images: int
    micro_f1: float
    macro_f1: float
    map: float  # mean AP over the labels present in the split
    exact_match: float
    hamming_loss: float
    loss: float  # binary cross-entropy per label, calibrated
    none_images: int  # images with no label
    none_answered_empty: float | None  # share of them answered with the empty set
    per_label: dict[str, LabelFigures]


class LabelDecision(_Frozen):
    """Multi-label: one label's threshold and temperature, chosen on validation."""

    threshold: float
    temperature: float = 1.0
    note: str | None = None


class Multilabel(_Frozen):
    """A multi-label version's decisions (``models.decision.chosen``) and figures."""

    rule: str
    labels: dict[str, LabelDecision]
    calibration: str | None = None  # how the temperatures were chosen
    evaluation: dict[str, MultilabelFigures] = Field(default_factory=dict)

    def thresholds(self, labels: tuple[str, ...] | list[str]) -> list[float]:
        return [self.labels[label].threshold for label in labels]


class DriftReference(_Frozen):
    """The sample of validation features live images are tested against (``models.drift``):
    its file in the bundle, its rows and width, and the model layer they come from."""

    file: str
    rows: int
    width: int
    layer: str  # the pooling layer: the backbone's globally pooled output


class Monitoring(_Frozen):
    """What the monitor compares live predictions with (``models.label_free``,
    ``models.drift``)."""

    atc_threshold: float | None = None  # fitted on the calibrated validation split
    drift_reference: DriftReference | None = None  # bundles before it have none


class BundleMetadata(_Frozen):
    """``metadata.json``. ``version`` and ``files`` are filled in when the bundle is
    published (``models.bundle.save_bundle``); a published bundle always has both."""

    format_version: int = FORMAT_VERSION
    name: str
    version: int | None = None
    labels: tuple[str, ...] = Field(min_length=1)
    backbone: str | None = None
    image_size: tuple[int, int]
    input: InputSpec = InputSpec()
    resize: dict[str, Any] | None = None
    created_at: str | None = None
    metrics: Metrics = Metrics()
    evaluation: Evaluation | None = None
    calibration: Calibration | None = None
    decision: Decision | None = None
    lineage: Lineage | None = None
    task: Literal["multilabel"] | None = None  # None: one class per image (every older bundle)
    multilabel: Multilabel | None = None  # with task multilabel
    tta: TestTimeAugmentation | None = None  # optional: format 2 bundles without it load
    monitoring: Monitoring | None = None  # optional: bundles without it load
    training: dict[str, Any] = Field(default_factory=dict)
    dataset: dict[str, Any] = Field(default_factory=dict)
    activation_layers: tuple[str, ...] | None = None
    engines: dict[str, Engine] | None = None  # beside the Keras model (models.engines.int8)
    files: dict[str, str] = Field(default_factory=dict)
    framework: dict[str, str] = Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``metadata.json`` and served by the API."""
        return self.model_dump(mode="json", exclude_none=True)

    def replace(self, **changes: Any) -> BundleMetadata:
        """A copy with ``changes``, validated like a fresh read."""
        return BundleMetadata.model_validate({**self.to_json(), **changes})


_REQUIRED_ON_READ = ("name", "version", "labels", "image_size", "files")


def parse_metadata(raw: object, where: str) -> BundleMetadata:
    """Validate a published bundle's ``metadata.json`` (already parsed); ``where``
    names it in errors."""
    if not isinstance(raw, dict):
        raise BundleError(f"{where}: {METADATA_FILE} is not a JSON object")
    missing = sorted(set(_REQUIRED_ON_READ) - raw.keys())
    if missing:
        raise BundleError(f"{where}: {METADATA_FILE} lacks {missing}")
    written = raw.get("format_version", 1)
    if isinstance(written, int) and written > FORMAT_VERSION:
        raise BundleError(
            f"{where}: written by a newer ktl (bundle format {written}; this ktl reads up to "
            f"{FORMAT_VERSION}): upgrade ktl to load it"
        )
    try:
        return BundleMetadata.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise BundleError(f"{where}: {METADATA_FILE} is not valid: {problems}") from None


def read_metadata_text(text: str, where: str) -> BundleMetadata:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise BundleError(f"{where}: cannot read {METADATA_FILE}: {exc}") from exc
    return parse_metadata(raw, where)
