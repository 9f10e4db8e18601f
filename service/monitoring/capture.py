"""Capture of live predictions (``KTL_CAPTURE_DIR``), off the request path.

A route hands each answered batch to ``observe``: the decision of each image, its
id and whether ``KTL_CAPTURE``'s rules keep it are worked out there (a few
comparisons); the writing is a bounded queue's and one writer thread's per worker
(started on first use, after gunicorn's fork). The writer appends every
prediction to this worker's log, claims a slot of the per-minute cap across
workers, writes kept images with their records, and keeps the folder within its
disk budget. Nothing here raises into a request: a full queue, a full disk or an
unwritable folder is counted (``ktl_capture_*`` in /metrics) and logged, and the
prediction is answered as if capture were off.
"""

from __future__ import annotations

import atexit
import io
import logging
import queue
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from models.capture.folder import CaptureFolder, image_extension, minute_of, writer_token
from models.capture.rules import CaptureRules
from models.decision import ABSTAIN, decide
from models.drift import SIGNIFICANCE
from models.ids import id_time
from models.predictions import Answer, PredictResponse
from models.timestamps import format_time
from service.contract.request_ids import request_id
from service.serving.predictor import Predictor
from service.state import service_state

log = logging.getLogger("ktl.service.capture")

QUEUE_SIZE = 1024
PRUNE_EVERY_S = 1.0
CONFIDENCE_BUCKETS = tuple(round(0.1 * step, 1) for step in range(1, 10)) + (0.95, 0.99, 1.0)


class LoopMetrics:
    """The prediction and capture series, counted over every worker."""

    def __init__(self, registry: CollectorRegistry | None):
        self.confidence = Histogram(
            "ktl_prediction_confidence",
            "Top probability of each prediction, by model and version; its _sum over its "
            "_count is the label-free accuracy estimate (average confidence)",
            ["model", "version"],
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        )
        self.abstained = Counter(
            "ktl_predictions_abstained",
            "Predictions whose decision was not sure (under the threshold), by model and version",
            ["model", "version"],
            registry=registry,
        )
        self.above_atc = Counter(
            "ktl_predictions_above_atc_threshold",
            "Predictions whose top probability is over the version's ATC threshold (metadata "
            "monitoring.atc_threshold); over ktl_prediction_confidence_count it is the "
            "label-free accuracy estimate ATC",
            ["model", "version"],
            registry=registry,
        )
        self.drift_score = Gauge(
            "ktl_embedding_drift_score",
            "The squared MMD of the last monitor request's drift test (GET "
            "/v1/models/{name}/monitor), by model and version: set when the monitor is "
            "computed, the most recent value over every worker",
            ["model", "version"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.drift_p_value = Gauge(
            "ktl_embedding_drift_p_value",
            f"The p-value of that test: under {SIGNIFICANCE} the monitor reports drift",
            ["model", "version"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.captured = Counter(
            "ktl_capture_images", "Images written to KTL_CAPTURE_DIR", registry=registry
        )
        self.skipped = Counter(
            "ktl_capture_skipped",
            "Predictions a rule kept but whose image was not written, by reason "
            "(per_minute_cap, queue_full)",
            ["reason"],
            registry=registry,
        )
        self.failures = Counter(
            "ktl_capture_failures",
            "Capture writes that failed (disk full, folder not writable, ...), by what was "
            "being written (log, image, prune)",
            ["what"],
            registry=registry,
        )


@dataclass(frozen=True)
class Observed:
    """One prediction for the writer: its log line, and its image when a rule kept it."""

    model: str
    line: dict[str, Any]
    image: bytes | np.ndarray | None
    probabilities: dict[str, float] | None


@dataclass(frozen=True)
class Batch:
    """An answered batch; ``meta``: model, version, engine and request_id."""

    meta: dict[str, Any]
    labels: Sequence[str]
    rows: np.ndarray
    ids: Sequence[str]
    images: Sequence[bytes | np.ndarray]
    threshold: float
    atc_threshold: float | None = None


class Capturer:
    """Counts every prediction in the metrics; with a folder, logs and captures them."""

    def __init__(
        self,
        folder: CaptureFolder | None,
        rules: CaptureRules,
        max_per_minute: int,
        max_bytes: int,
        metrics: LoopMetrics,
    ):
        self.folder = folder
        self.rules = rules
        self.max_per_minute = max_per_minute
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._queue: queue.Queue[Observed] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._draws = random.Random()
        self._last_prune = 0.0

    def submit(self, item: Observed) -> None:
        self._start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.metrics.skipped.labels("queue_full").inc()

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:  # first use in this process (a gunicorn worker, after the fork)
            if self._thread is None or not self._thread.is_alive():
                self._writer = writer_token()
                self._thread = threading.Thread(target=self._run, name="ktl-capture", daemon=True)
                self._thread.start()
                atexit.register(self.drain, 2.0)  # a worker stopping writes what it queued

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < 256:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(batch)
            except Exception:  # the writer thread must outlive any fault
                log.exception("capture: writing %d predictions failed", len(batch))
                self.metrics.failures.labels("log").inc()
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _write(self, batch: list[Observed]) -> None:
        assert self.folder is not None  # nothing is queued without one
        for item in batch:
            if item.image is not None:
                self._write_image(item)
        by_model: dict[str, list[dict[str, Any]]] = {}
        for item in batch:
            by_model.setdefault(item.model, []).append(item.line)
        for model, lines in by_model.items():
            try:
                self.folder.append_log(model, self._writer, lines)
            except OSError as exc:
                self._failed("log", exc)
        if time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = time.monotonic()
            try:
                self.folder.prune(self.max_bytes)
            except OSError as exc:
                self._failed("prune", exc)

    def _write_image(self, item: Observed) -> None:
        assert self.folder is not None
        line = item.line
        try:
            if not self.folder.claim(minute_of(line["id"]), self.max_per_minute):
                self.metrics.skipped.labels("per_minute_cap").inc()
                return
            data = _encoded(item.image)
            record = {**line, "probabilities": item.probabilities}
            self.folder.write_capture(item.model, record, data, image_extension(data))
        except OSError as exc:
            self._failed("image", exc)
            return
        line["captured"] = True
        self.metrics.captured.inc()

    def _failed(self, what: str, exc: OSError) -> None:
        self.metrics.failures.labels(what).inc()
        log.warning("capture: writing the %s failed: %s", what, exc)

    def observe(self, batch: Batch) -> None:
        """Count and queue each prediction of an answered batch. Never raises."""
        try:
            self._observe(batch)
        except Exception:
            log.exception("capture: observing a prediction failed")
            self.metrics.failures.labels("observe").inc()

    def _observe(self, batch: Batch) -> None:
        meta, labels, rows, threshold = batch.meta, batch.labels, batch.rows, batch.threshold
        ids, images = batch.ids, batch.images
        decided = decide(rows, threshold)
        version = str(meta["version"])
        for row, answer, identifier, image in zip(rows, decided, ids, images, strict=True):
            confidence = float(row.max())
            abstained = int(answer) == ABSTAIN
            self.metrics.confidence.labels(meta["model"], version).observe(confidence)
            if abstained:
                self.metrics.abstained.labels(meta["model"], version).inc()
            if batch.atc_threshold is not None and confidence > batch.atc_threshold:
                self.metrics.above_atc.labels(meta["model"], version).inc()
            if self.folder is None:
                continue
            line = {
                "id": identifier,
                "time": format_time(id_time(identifier)),
                **meta,
                "top": labels[int(row.argmax())],
                "label": None if abstained else labels[int(answer)],
                "confidence": round(confidence, 6),
                "threshold": threshold,
                "captured": False,
            }
            kept = self.rules.keeps(confidence, abstained, self._draws.random())
            probabilities = dict(zip(labels, map(float, row), strict=True)) if kept else None
            self.submit(Observed(meta["model"], line, image if kept else None, probabilities))


def observe_batch(
    predictor: Predictor,
    images: Sequence[bytes | np.ndarray],
    rows: np.ndarray,
    ids: Sequence[str],
    threshold: float,
) -> None:
    """Hand an answered batch to this app's capturer (see the module's docstring).
    Multi-label versions are not captured yet: the figures assume one class per image."""
    bundle = predictor.bundle
    if bundle.metadata.task == "multilabel":
        return
    meta = {
        "model": bundle.name,
        "version": bundle.version,
        "engine": predictor.classifier.engine,
        "request_id": request_id(),
    }
    monitoring = bundle.metadata.monitoring
    atc = monitoring.atc_threshold if monitoring is not None else None
    batch = Batch(meta, bundle.labels, rows, ids, images, threshold, atc)
    service_state().capture.observe(batch)


def observe_native(
    predictor: Predictor, images: Sequence[bytes], response: PredictResponse
) -> None:
    """``observe_batch`` of a native predict body."""
    decision = response.predictions[0].decision if response.predictions else None
    if not isinstance(decision, Answer):  # none, or a multi-label version's set
        return
    rows = np.array([list(p.probabilities.values()) for p in response.predictions])
    ids = [p.id for p in response.predictions]
    observe_batch(predictor, images, rows, ids, decision.threshold)


def _encoded(image: bytes | np.ndarray | None) -> bytes:
    """Encoded bytes as sent; pixels (Open Inference Protocol UINT8) as PNG."""
    if isinstance(image, bytes):
        return image
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
