"""Server-Sent Events of a training job, bounded so followers cannot starve predictions.

Under gunicorn's threaded worker an open stream holds one request thread for its
whole life. So each worker allows at most ``ServiceConfig.event_streams`` open
streams (``KTL_MAX_EVENT_STREAMS``, never more than half its threads; one more
is a 503 with ``Retry-After``), and each stream ends after
``KTL_EVENT_STREAM_SECONDS``: a client reconnects with ``Last-Event-ID`` and
carries on where it stopped. Events are derived from the job's record in the
store, so every worker, and a restarted service, tells the same story.

The events are ``models.jobqueue.job_events.follow_job``'s, the loop ``ktl jobs --follow``
prints too. Event ids are the number of epoch events sent so far: after a reconnect
the stream sends the job's state again, then only the epochs after that id.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app

from models.jobqueue.job_events import follow_job
from models.jobqueue.jobs import JobQueue
from service.contract.errors import Overloaded
from service.jobs_api.job_bodies import summary
from service.protocols.bodies import json_body
from service.state import service_state

_EXTENSION = "ktl.event_streams"
KEEPALIVE_S = 15.0  # a comment line this often: proxies keep the stream, and a gone client shows
RETRY_MS = 2000  # what a client waits before it reconnects


def event_stream(queue: JobQueue, job_id: str, last_event_id: str | None) -> Response:
    """The streaming response for one job; 503 when this worker has no stream to spare."""
    config = service_state().config
    slots = _slots(config.event_streams)
    if not slots.acquire(blocking=False):
        raise Overloaded(
            f"{config.event_streams} event streams are open on this worker, the most it "
            "allows (KTL_MAX_EVENT_STREAMS, at most half of KTL_THREADS); poll "
            f"GET /v1/jobs/{job_id} or retry later"
        )
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            slots.release()

    try:
        sent = max(0, int(last_event_id or 0))
    except ValueError:
        sent = 0
    lines = _events(queue, job_id, sent, time.monotonic() + config.event_stream_seconds)
    response = Response(lines, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    response.call_on_close(release)
    return response


def _slots(size: int) -> threading.BoundedSemaphore:
    """This app's (this worker's) stream slots."""
    extensions = current_app.extensions
    if _EXTENSION not in extensions:
        extensions[_EXTENSION] = threading.BoundedSemaphore(size)
    return extensions[_EXTENSION]


def _events(queue: JobQueue, job_id: str, sent: int, deadline: float) -> Iterator[str]:
    """The stream's text: ``follow_job``'s events (the state at once, then each change)
    until the job ends or the stream's life is over."""
    yield f"retry: {RETRY_MS}\n\n"
    for event in follow_job(queue, job_id, sent=sent, wait=KEEPALIVE_S, until=deadline):
        if event.kind == "epoch":
            yield _event("epoch", event.row, event.sent)
        elif event.kind == "state":
            yield _event("state", json_body(summary(event.job)), event.sent)
        else:
            yield ": keep-alive\n\n"


def _event(kind: str, data: Any, event_id: int) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"
