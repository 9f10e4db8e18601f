"""Liveness and readiness probes; open even when API keys are set."""

from __future__ import annotations

from flask import Blueprint

from service.errors import NotReady
from service.state import service_state

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> dict:
    snapshot = service_state().registry.snapshot
    if not snapshot.ready:
        raise NotReady(
            f"No model is servable yet ({len(snapshot.models)} in the store); "
            "GET /v1/models shows why, and the server log has details"
        )
    servable = sum(state.default_version is not None for state in snapshot.models.values())
    return {"status": "ready", "models": servable}
