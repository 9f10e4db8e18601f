"""The native routes: model listing and metadata, and predict."""

from __future__ import annotations

from typing import Annotated, Any

from flask import Blueprint, request
from pydantic import Field

from models.engines.int8 import choose_engine, int8_agreement
from models.metadata import BundleMetadata
from models.predictions import PredictResponse
from service.contract.operation import Reply, operation
from service.contract.replies import image_upload, model_errors, upload_errors
from service.contract.validation import query
from service.guards.redaction import public_metadata
from service.monitoring.capture import observe_native
from service.protocols.bodies import (
    Maybe,
    ModelList,
    ModelSummary,
    RequestModel,
    UnavailableVersion,
    VersionDetail,
    json_body,
)
from service.protocols.uploads import read_images
from service.serving.registry import ModelState
from service.serving.routing import VERSION_HEADER_DOC, resolve
from service.state import service_state

bp = Blueprint("api", __name__)


class PredictQuery(RequestModel):
    top_k: Maybe[Annotated[int, Field(ge=1)]] = Field(
        default=None,
        description="Classes in `top`: default KTL_TOP_K, at most the number of labels",
    )
    min_confidence: Maybe[Annotated[float, Field(ge=0, le=1)]] = Field(
        default=None,
        description="The decision's threshold for this request instead of the version's "
        "own: below it, decision.label is null (not sure); 0 always answers",
    )
    tta: Maybe[bool] = Field(
        default=None,
        description="Test-time augmentation: the probabilities averaged over 6 views of "
        "each image (itself, its mirror, four corner crops of 87.5 % resized back). Costs "
        "6 forward passes per image. Averaged probabilities are flatter, so the version's "
        "threshold may answer fewer images; metadata `tta` says whether it helped on "
        "validation",
    )


def _summary(state: ModelState) -> ModelSummary:
    metadata = state.default.bundle.metadata if state.default is not None else None
    return ModelSummary(
        name=state.name,
        versions=list(state.versions),
        default_version=state.default_version,
        labels=list(metadata.labels) if metadata else None,
        backbone=metadata.backbone if metadata else None,
        image_size=list(metadata.image_size) if metadata else None,
        status="available" if state.default is not None else "unavailable",
        unavailable_versions=[
            UnavailableVersion(version=version, reason=failure.reason)
            for version, failure in sorted(state.failures.items())
        ],
        version_details=[
            VersionDetail(
                version=version,
                created_at=details.created_at,
                accuracy=details.metrics.accuracy,
                accuracy_split=details.metrics.split,
                threshold=details.decision.threshold if details.decision else None,
                engine=_engine(state, version, details),
                int8_agreement=int8_agreement(details),
            )
            for version, details in sorted(state.details.items(), reverse=True)
            if version in state.versions
        ],
        version_labels=state.labels.labels,
        canary_weight=state.canary_weight,
        policy=state.policy,
    )


def _engine(state: ModelState, version: int, details: BundleMetadata) -> str:
    """The engine of a loaded version; else the one it will load on."""
    if version in state.loaded:
        return state.loaded[version].classifier.engine
    config = service_state().config
    return choose_engine(details, config.engine, config.int8_min_agreement)


@bp.get("/v1/models")
@operation(
    "listModels",
    summary="Every model in the store, with unavailable versions and why",
    responses={200: Reply("The models", ModelList)},
)
def list_models() -> dict[str, Any]:
    models = service_state().registry.snapshot.models
    return json_body(ModelList(models=[_summary(models[name]) for name in sorted(models)]))


@bp.get("/v1/models/<segment:name>")
@bp.get("/v1/models/<segment:name>/versions/<segment:version>")
@bp.get("/v1/models/<segment:name>/labels/<segment:label>")
@operation(
    "getModel",
    summary="metadata.json of a version (default: the model's default version), or of "
    "the version a label points at",
    responses={
        200: Reply(
            "The version's metadata.json, as published",
            BundleMetadata,
            headers=VERSION_HEADER_DOC,
        ),
        **model_errors(),
    },
)
def model_metadata(
    name: str, version: str | None = None, label: str | None = None
) -> dict[str, Any]:
    return public_metadata(resolve(name, version, label).bundle.metadata.to_json())


@bp.post("/v1/models/<segment:name>/predict")
@bp.post("/v1/models/<segment:name>/versions/<segment:version>/predict")
@bp.post("/v1/models/<segment:name>/labels/<segment:label>/predict")
@operation(
    "predict",
    summary="Classify images: the default version (or the canary, for its share), the "
    "version in the path, or the version a label points at",
    query=PredictQuery,
    body=image_upload(batch=True),
    responses={
        200: Reply(
            "Predictions, one per image, in upload order",
            PredictResponse,
            headers=VERSION_HEADER_DOC,
        ),
        **upload_errors("Not an image, a corrupt image, a missing field, a bad top_k"),
    },
)
def predict(name: str, version: str | None = None, label: str | None = None) -> dict[str, Any]:
    state = service_state()
    predictor = resolve(name, version, label, split=True)
    asked = query(PredictQuery)
    top_k = asked.top_k or state.config.top_k
    images = read_images(request)
    response = predictor.predict_native(images, top_k, asked.min_confidence, bool(asked.tta))
    observe_native(predictor, [image.data for image in images], response)
    return json_body(response)
