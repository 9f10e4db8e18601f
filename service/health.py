"""Liveness and readiness probes; open even when API keys are set."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from service.contract.errors import NotReady
from service.contract.operation import Reply, operation
from service.contract.replies import error
from service.protocols.bodies import Health, Readiness, json_body
from service.state import service_state

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@operation(
    "healthz",
    summary="Liveness; never touches a model",
    public=True,
    responses={200: Reply("Alive", Health)},
)
def healthz() -> dict[str, Any]:
    return json_body(Health(status="ok"))


@bp.get("/readyz")
@operation(
    "readyz",
    summary="Readiness: 200 once at least one model is servable",
    public=True,
    responses={200: Reply("Ready", Readiness), 503: error("No model is servable yet")},
)
def readyz() -> dict[str, Any]:
    snapshot = service_state().registry.snapshot
    if not snapshot.ready:
        raise NotReady(
            f"No model is servable yet ({len(snapshot.models)} in the store); "
            "GET /v1/models shows why, and the server log has details"
        )
    servable = sum(state.default_version is not None for state in snapshot.models.values())
    return json_body(Readiness(status="ready", models=servable))
