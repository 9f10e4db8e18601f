"""Prometheus metrics, one ``CollectorRegistry`` per app.

Under gunicorn, counters and histograms are prometheus-client's multiprocess
kind: ``service/gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the
workers fork, each worker writes its figures to files there, and a scrape,
whichever worker answers it, adds up every worker's (those of workers that have
exited included, so counters never go back). In one process (tests, ``create_app``
called directly) the figures stay in memory. The model gauges are read from the
answering worker's snapshot at scrape time; every worker polls the same store.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from service.contract.operation import Reply, operation
from service.contract.paths import openapi_path
from service.monitoring.capture import LoopMetrics
from service.serving.registry import Snapshot
from service.serving.routing import served
from service.state import service_state

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

# Any other method is counted as "other" so junk requests cannot grow the label set.
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        directory = os.environ.get(MULTIPROCESS_DIR)
        if directory:
            # The metrics below write to files; this registry reads every worker's.
            MultiProcessCollector(self.registry, path=directory)
        own = None if directory else self.registry
        self.requests = Counter(
            "ktl_http_requests",
            "HTTP requests by route (as in /openapi.json), method and status",
            ["route", "method", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "ktl_http_request_duration_seconds",
            "Time from request to response, by route (as in /openapi.json) and method",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=own,
        )
        self.grpc_requests = Counter(
            "ktl_grpc_requests",
            "Open Inference Protocol gRPC calls by method (ModelInfer, ...) and status code "
            "(OK, NOT_FOUND, ...); the REST routes count in ktl_http_requests",
            ["method", "code"],
            registry=own,
        )
        self.grpc_latency = Histogram(
            "ktl_grpc_request_duration_seconds",
            "Time from call to answer of the gRPC calls, by method",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=own,
        )
        self._model_series(own)
        self.loop = LoopMetrics(own)

    def _model_series(self, own: CollectorRegistry | None) -> None:
        """Per model version: requests, latency and loads; and the forward passes."""
        self.version_requests = Counter(
            "ktl_model_requests",
            "Requests answered by each model version, by how the version was chosen: "
            "default, canary (its share of default traffic), label or version (in the path)",
            ["model", "version", "via"],
            registry=own,
        )
        self.version_latency = Histogram(
            "ktl_model_request_duration_seconds",
            "Time from request to response of the requests each model version answered",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=own,
        )
        self.model_loads = Counter(
            "ktl_model_loads",
            "Model versions loaded, by model, version and outcome (loaded, failed), counted "
            "over every worker (each loads its own copy): it rises when the store changes, "
            "never while nothing does",
            ["model", "version", "outcome"],
            registry=own,
        )
        self.batch_size = Histogram(
            "ktl_inference_batch_size",
            "Images per forward pass (micro-batching gathers concurrent requests)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=own,
        )
        self.inference_seconds = Histogram(
            "ktl_inference_duration_seconds",
            "Time of one forward pass",
            registry=own,
        )

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference_seconds.observe(seconds)

    def observe_load(self, name: str, version: int, loaded: bool) -> None:
        self.model_loads.labels(name, str(version), "loaded" if loaded else "failed").inc()

    def watch_models(self, snapshot: Callable[[], Snapshot]) -> None:
        self.registry.register(_ModelsCollector(snapshot))

    def init_app(self, app: Flask) -> None:
        app.before_request(_start_timer)
        app.after_request(self._record)

    def _record(self, response: Response) -> Response:
        rule = request.url_rule
        route = openapi_path(rule.rule) if rule is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        self.requests.labels(route, method, str(response.status_code)).inc()
        start = g.get("ktl_request_start")
        seconds = None if start is None else time.perf_counter() - start
        if seconds is not None:
            self.latency.labels(route, method).observe(seconds)
        self._count_version(seconds)
        return response

    def record_grpc(self, method: str, code: str, seconds: float) -> None:
        """One gRPC call, answered with status ``code`` after ``seconds`` (inside the
        call's app context, so the version that answered counts as over REST)."""
        self.grpc_requests.labels(method, code).inc()
        self.grpc_latency.labels(method).observe(seconds)
        self._count_version(seconds)

    def _count_version(self, seconds: float | None) -> None:
        answered = served()
        if answered is not None:
            version = str(answered.version)
            self.version_requests.labels(answered.model, version, answered.via).inc()
            if seconds is not None:
                self.version_latency.labels(answered.model, version).observe(seconds)


def _start_timer() -> None:
    g.ktl_request_start = time.perf_counter()


class _ModelsCollector(Collector):
    """Read from the registry's current snapshot at scrape time."""

    def __init__(self, snapshot: Callable[[], Snapshot]):
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        models = self._snapshot().models.values()
        loaded = GaugeMetricFamily(
            "ktl_models_loaded", "Model versions loaded and servable, by model", labels=["model"]
        )
        default = GaugeMetricFamily(
            "ktl_model_default_version", "Version served by default, by model", labels=["model"]
        )
        failed = GaugeMetricFamily(
            "ktl_model_versions_unavailable",
            "Versions in the store that failed to load, by model",
            labels=["model"],
        )
        labelled = GaugeMetricFamily(
            "ktl_model_version_label",
            "The version each label of a model points at (ktl label)",
            labels=["model", "label"],
        )
        canary = GaugeMetricFamily(
            "ktl_model_canary_weight",
            "The share of a model's default traffic its canary version answers",
            labels=["model"],
        )
        for state in models:
            loaded.add_metric([state.name], len(state.loaded))
            failed.add_metric([state.name], len(state.failures))
            canary.add_metric([state.name], state.canary_weight)
            if state.default_version is not None:
                default.add_metric([state.name], state.default_version)
            for label, version in state.labels.labels.items():
                labelled.add_metric([state.name, label], version)
        yield from (loaded, default, failed, labelled, canary)


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@operation(
    "metrics",
    summary="Prometheus metrics: requests and inference of every worker process, the "
    "models as the answering worker sees them",
    responses={
        200: Reply(
            "Prometheus text exposition format",
            content={"text/plain": {"schema": {"type": "string"}}},
        )
    },
)
def metrics() -> Response:
    body = generate_latest(service_state().metrics.registry)
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE_LATEST})
