"""The application factory; gunicorn calls ``service.app:create_app()``."""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import IO, Any

from flask import Flask, Request
from flask.json.provider import DefaultJSONProvider

from models.bundle import load_bundle
from models.capture.folder import CaptureFolder
from models.store import open_store
from service import health, metrics
from service.config import ServiceConfig
from service.contract import openapi, request_ids, validation
from service.contract.errors import register_error_handlers
from service.contract.paths import SegmentConverter
from service.guards import auth, request_limits, security
from service.jobs_api import jobs
from service.metrics import Metrics
from service.monitoring import monitor, review, series
from service.monitoring.capture import Capturer
from service.pages import web
from service.protocols import api, explain, kserve, tfserving
from service.serving import routing
from service.serving.predictor import BatchSettings, Predictor
from service.serving.registry import ModelRegistry
from service.state import EXTENSION, SPOOL, SPOOLED, ServiceState

log = logging.getLogger("ktl.service")


class InMemoryRequest(Request):
    """Keeps uploads in memory: Werkzeug would spool those over 500 KB to temporary
    files, and bodies are already bounded by MAX_CONTENT_LENGTH. The one exception is
    a dataset archive (``@operation(streamed=True)``): its view names a job folder in
    ``environ[SPOOL]``, and the file goes to disk there."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        spool = self.environ.get(SPOOL)
        if spool is not None:  # closed by the view, even when parsing stops half-way
            stream = tempfile.TemporaryFile(dir=spool)  # noqa: SIM115
            self.environ.setdefault(SPOOLED, []).append(stream)
            return stream
        return io.BytesIO()


class OrderedJSON(DefaultJSONProvider):
    """Keys keep their order: probabilities are listed in label order."""

    sort_keys = False


def create_app(config: ServiceConfig | Mapping[str, Any] | None = None) -> Flask:
    """Build the app and load every model of the store.

    ``config`` is a whole ``ServiceConfig``, or overrides applied on top of the
    ``KTL_*`` environment (for tests); None reads the environment alone.
    """
    if not isinstance(config, ServiceConfig):
        config = ServiceConfig.from_env().replace(config or {})

    app = Flask(__name__, static_folder=None)
    app.request_class = InMemoryRequest
    app.json = OrderedJSON(app)
    app.url_map.converters["segment"] = SegmentConverter
    # "/v1/models//x" is no route; merging slashes would redirect it somewhere else.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes

    service_metrics = Metrics()
    registry = _registry(config, service_metrics)
    app.extensions[EXTENSION] = ServiceState(
        config, registry, service_metrics, _capturer(config, service_metrics)
    )

    register_error_handlers(app)
    routing.init_app(app)
    request_ids.init_app(app)
    service_metrics.init_app(app)

    @app.before_request
    def _start_polling() -> None:
        # First request, not here: under gunicorn a thread must start after the fork.
        registry.start_polling()

    # In this order: who may ask, then what the query says, then the body.
    auth.init_app(app)
    validation.init_app(app)
    request_limits.init_app(app)
    for module in (
        health,
        api,
        explain,
        tfserving,
        kserve,
        monitor,
        series,
        review,
        jobs,
        openapi,
        metrics,
        web,
    ):
        app.register_blueprint(module.bp)
    security.init_app(app)
    return app


def _capturer(config: ServiceConfig, service_metrics: Metrics) -> Capturer:
    """Counts predictions; with KTL_CAPTURE_DIR, logs and captures them there."""
    folder = CaptureFolder(config.capture_dir) if config.capture_dir is not None else None
    return Capturer(
        folder,
        config.capture_rules,
        config.capture_max_per_minute,
        int(config.capture_max_mb * 1024 * 1024),
        service_metrics.loop,
    )


def _registry(config: ServiceConfig, service_metrics: Metrics) -> ModelRegistry:
    """The model registry of the store, loaded."""
    batching = BatchSettings(
        max_batch_size=config.max_batch_size,
        max_delay_s=config.max_batch_delay_ms / 1000,
        queue_size=config.queue_size,
        on_batch=service_metrics.observe_batch,
    )
    store = open_store(config.model_store, config.cache_dir)
    registry = ModelRegistry(
        store,
        partial(_load_predictor, batching=batching, config=config),
        config.reload_interval,
        on_load=service_metrics.observe_load,
    )
    service_metrics.watch_models(lambda: registry.snapshot)
    if isinstance(config.model_store, Path) and not config.model_store.is_dir():
        log.warning(
            "The model store %s does not exist (KTL_MODEL_STORE); no model is served until "
            "one is published there",
            config.model_store.resolve(),
        )
    registry.reload()
    return registry


def _load_predictor(path: Path, *, batching: BatchSettings, config: ServiceConfig) -> Predictor:
    """Load (safe mode, checksums), warm up and wrap one version of a bundle, on the
    engine ``KTL_ENGINE`` chooses for it."""
    engine = load_bundle(path).engine(config.engine, config.int8_min_agreement)
    return Predictor(engine, batching, config.max_image_pixels)
