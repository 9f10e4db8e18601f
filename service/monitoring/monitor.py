"""The loop's routes over the capture folder (``KTL_CAPTURE_DIR``): feedback, the
true label of an earlier prediction, and the monitor, each version's figures over
a window (``models.capture.figures``). Both need the predict keys; with capture
off they answer 409."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from flask import Blueprint, request
from pydantic import Field, RootModel

from models.capture.figures import version_figures
from models.capture.folder import CaptureFolder
from models.capture.records import feedback_since, find_prediction, predictions_since
from models.capture.review import Captured, captured
from models.errors import KtlError, ModelNotFound, NotFound, UserError
from models.ids import ID_PATTERN
from models.metadata import BundleMetadata
from models.timestamps import format_time
from service.contract.operation import Body, Reply, operation
from service.contract.replies import error
from service.contract.validation import query, validate_json
from service.monitoring.drift import Drift, version_drift
from service.protocols.bodies import Maybe, RequestModel, ResponseModel, json_body
from service.serving.registry import ModelState
from service.state import service_state

bp = Blueprint("monitor", __name__)

MAX_FEEDBACK = 1000


class CaptureOff(UserError):
    status = 409
    code = "capture_off"


class PredictionNotFound(NotFound):
    code = "prediction_not_found"


class UnknownLabel(UserError):
    code = "unknown_label"


class FeedbackItem(RequestModel):
    id: str = Field(pattern=ID_PATTERN.pattern, description="The prediction's id")
    label: str = Field(min_length=1, description="The true label, one of the version's")


FeedbackItems = Annotated[list[FeedbackItem], Field(min_length=1, max_length=MAX_FEEDBACK)]


class FeedbackRequest(RootModel[FeedbackItem | FeedbackItems]):
    """One ``{"id", "label"}``, or a list of them."""


class FeedbackEntry(ResponseModel):
    id: str
    label: str
    predicted: str = Field(description="The prediction's top label")
    version: int
    correct: bool = Field(description="Whether the top label was the true one")


class FeedbackResponse(ResponseModel):
    model: str
    accepted: int
    feedback: list[FeedbackEntry]


class MonitorQuery(RequestModel):
    window: Maybe[Annotated[int, Field(ge=60, le=30 * 86400)]] = Field(
        default=None, description="Seconds back from now the figures cover (default 3600)"
    )


class FeedbackFigures(ResponseModel):
    count: int
    correct: int
    accuracy: float | None
    interval: list[float] | None = Field(description="95 % Wilson interval of accuracy")


class Histogram(ResponseModel):
    edges: list[float]
    counts: list[int]


class Estimates(ResponseModel):
    """Label-free accuracy estimates from the calibrated probabilities (Garg et al., 2022)."""

    average_confidence: float | None = Field(description="The mean top probability")
    average_thresholded_confidence: float | None = Field(
        description="The share of top probabilities over the threshold fitted on validation "
        "(metadata monitoring.atc_threshold); null for versions trained without it"
    )


class VersionMonitor(ResponseModel):
    version: int
    requests: int
    abstained: int
    abstain_rate: float | None
    confidence_histogram: Histogram
    class_mix: dict[str, float] = Field(description="Share of each top label")
    test_class_mix: dict[str, float] | None = Field(
        description="Share of each top label on the version's test split"
    )
    class_mix_distance: float | None = Field(description="Total variation, live vs test")
    estimated_accuracy: Estimates
    feedback: FeedbackFigures
    drift: Drift | None = Field(
        description="Embedding drift of the window's captured images against the bundle's "
        "validation features; null when there is no test (drift_unavailable says why)"
    )
    drift_unavailable: str | None = Field(description="Why drift is null")


class MonitorResponse(ResponseModel):
    model: str
    since: str
    until: str
    window: int
    versions: list[VersionMonitor]


def capture_folder() -> CaptureFolder:
    directory = service_state().config.capture_dir
    if directory is None:
        raise CaptureOff(
            "Capture is off: set KTL_CAPTURE_DIR for feedback and the monitor (monitoring.md)"
        )
    return CaptureFolder(directory)


def model_state(name: str) -> ModelState:
    state = service_state().registry.snapshot.models.get(name)
    if state is None:
        raise ModelNotFound(f"No model named {name!r}; GET /v1/models lists the models")
    return state


def version_metadata(state: ModelState, version: int) -> BundleMetadata | None:
    return state.details.get(version)


@dataclass(frozen=True)
class Window:
    """What the capture folder holds of a model over the last ``seconds``: the
    prediction lines and the feedback (the monitor's and the series' input)."""

    since: datetime
    until: datetime
    seconds: int
    lines: list[dict[str, Any]]
    feedback: list[dict[str, Any]]

    @property
    def versions(self) -> list[int]:
        """The versions that answered, or were given feedback, in the window."""
        return sorted(
            {line["version"] for line in self.lines} | {f["version"] for f in self.feedback}
        )


def read_window(folder: CaptureFolder, name: str, seconds: int) -> Window:
    until = datetime.now(UTC)
    since = until - timedelta(seconds=seconds)
    lines = predictions_since(folder, name, since)
    return Window(since, until, seconds, lines, feedback_since(folder, name, since))


ERRORS = {
    404: error("Unknown model, or (feedback) a prediction id not in the capture folder"),
    409: error("Capture is off (KTL_CAPTURE_DIR unset)"),
}


@bp.post("/v1/models/<segment:name>/feedback")
@operation(
    "feedback",
    summary="The true label of earlier predictions, by their ids: stored in the capture "
    "folder, scored in the monitor",
    body=Body(FeedbackRequest),
    responses={
        200: Reply("What was stored", FeedbackResponse),
        400: error("A bad body, or a label the prediction's version does not have"),
        **ERRORS,
    },
)
def feedback(name: str) -> dict[str, Any]:
    folder, state = capture_folder(), model_state(name)
    body = validate_json(FeedbackRequest, request.get_data(cache=False))
    items = body.root if isinstance(body.root, list) else [body.root]
    entries = []
    for index, item in enumerate(items):
        found = find_prediction(folder, name, item.id)
        if found is None:
            raise PredictionNotFound(
                f"[{index}] no prediction {item.id!r} of model {name!r} in the capture folder "
                "(too old and pruned, of another model, or not made by this service)"
            )
        metadata = version_metadata(state, found["version"])
        labels = metadata.labels if metadata is not None else [found["top"]]
        if item.label not in labels:
            raise UnknownLabel(
                f"[{index}] label {item.label!r} is not one of version {found['version']}'s "
                f"labels {list(labels)}"
            )
        entries.append(
            FeedbackEntry(
                id=item.id,
                label=item.label,
                predicted=found["top"],
                version=found["version"],
                correct=found["top"] == item.label,
            )
        )
    for entry in entries:
        record = {**entry.model_dump(), "time": format_time(datetime.now(UTC))}
        folder.write_feedback(name, record)
    return json_body(FeedbackResponse(model=name, accepted=len(entries), feedback=entries))


@bp.get("/v1/models/<segment:name>/monitor")
@operation(
    "monitor",
    summary="Each version's figures over a window: requests, abstain rate, confidence "
    "histogram, class mix against the test split's, estimated accuracy, feedback accuracy, "
    "embedding drift",
    query=MonitorQuery,
    responses={200: Reply("The figures, per version", MonitorResponse), **ERRORS},
)
def monitor(name: str) -> dict[str, Any]:
    folder, state = capture_folder(), model_state(name)
    window = read_window(folder, name, query(MonitorQuery).window or 3600)
    images = captured(folder, name)  # read once, for every version's drift test
    return json_body(
        MonitorResponse(
            model=name,
            since=format_time(window.since),
            until=format_time(window.until),
            window=window.seconds,
            versions=[
                VersionMonitor(
                    version=version,
                    **version_figures(
                        [line for line in window.lines if line["version"] == version],
                        [f for f in window.feedback if f["version"] == version],
                        version_metadata(state, version),
                    ),
                    **_drift(images, name, version, window.since),
                )
                for version in window.versions
            ],
        )
    )


def _drift(images: list[Captured], name: str, version: int, since: datetime) -> dict[str, Any]:
    """The version's drift test over the window, its score kept in the
    ``ktl_embedding_drift_score`` gauge."""
    services = service_state()
    try:
        predictor = services.registry.get(name, version)
    except KtlError as exc:
        return {"drift": None, "drift_unavailable": f"the version does not load: {exc}"}
    found, reason = version_drift(images, version, since, predictor)
    if found is not None:
        loop = services.metrics.loop
        loop.drift_score.labels(name, str(version)).set(found.score)
        loop.drift_p_value.labels(name, str(version)).set(found.p_value)
    return {"drift": found, "drift_unavailable": reason}
