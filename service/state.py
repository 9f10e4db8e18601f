"""What an app holds for its routes: config, model registry, metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:  # the route modules import this one; keep it free of cycles
    from service.config import ServiceConfig
    from service.metrics import Metrics
    from service.monitoring.capture import Capturer
    from service.serving.registry import ModelRegistry

EXTENSION = "ktl"
SPOOL = "ktl.spool"  # environ key: the folder a streamed upload (a dataset) is written into
SPOOLED = "ktl.spooled"  # environ key: the files written there, for the view to close


@dataclass(frozen=True)
class ServiceState:
    config: ServiceConfig
    registry: ModelRegistry
    metrics: Metrics
    capture: Capturer


def service_state() -> ServiceState:
    """The state of the app handling the current request."""
    return current_app.extensions[EXTENSION]
