"""Following a training job: the one loop behind the event stream
(``GET /v1/jobs/<id>/events``, service.jobs_api.events) and ``ktl jobs ID --follow``
(cli.commands.jobs), so both tell the same story by the same rule.

``follow_job`` reads the job's record (``job.json``, written by the runner) and
yields what changed since the last look:

- a ``state`` event when the job's state, phase, cancel request or attempt changed
  (the first look always shows one, unless the job has already ended);
- an ``epoch`` event for each finished epoch not yet sent, in order; ``sent`` counts
  them (the stream's event id, so a client that reconnects skips what it has seen).
  When the record holds fewer epochs than were sent (a phase started over), the
  count falls back to them;
- the job's last ``state`` once it has ended, after its epochs; then it stops;
- an ``idle`` event when ``wait`` seconds passed without a change (the stream's
  keep-alive; the command line ignores it).

It polls the record's modification time (every 0.25 s), so it needs nothing but
the store: every service worker, a restarted service and ``ktl jobs`` on the
store's machine see the same records. No Flask, no training, no TensorFlow.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from models.jobqueue.jobs import Job, JobQueue

POLL_S = 0.25  # between looks at the record's modification time


@dataclass(frozen=True)
class JobEvent:
    kind: str  # "state", "epoch" or "idle"
    job: Job  # the record as last read
    sent: int  # epoch events so far, this one included
    row: dict[str, Any] | None = None  # an epoch event's row


def state_key(job: Job) -> tuple[Any, ...]:
    """What a ``state`` event is sent for: a change of any of these."""
    return job.state, job.phase, job.cancel_requested, job.attempts


def follow_job(
    queue: JobQueue,
    job_id: str,
    *,
    sent: int = 0,
    wait: float = 15.0,
    until: float | None = None,
) -> Iterator[JobEvent]:
    """The job's events from now until it ends (or ``until``, a ``time.monotonic()``
    deadline, passes); ``sent`` epochs are taken as seen already. ``UnknownJob`` at
    once for a job that is not in the queue."""
    job, shown, mtime = queue.get(job_id), None, 0.0
    while True:
        sent = min(sent, len(job.epochs))
        if state_key(job) != shown and not job.done:
            shown = state_key(job)
            yield JobEvent("state", job, sent)
        for row in job.epochs[sent:]:
            sent += 1
            yield JobEvent("epoch", job, sent, row)
        if job.done:
            yield JobEvent("state", job, sent)
            return
        if until is not None and time.monotonic() >= until:
            return
        timeout = wait if until is None else min(wait, until - time.monotonic())
        changed = wait_changed(queue, job_id, mtime, timeout)
        if changed == mtime:
            yield JobEvent("idle", job, sent)
        mtime = changed
        job = queue.get(job_id)


def wait_changed(queue: JobQueue, job_id: str, since: float, timeout: float) -> float:
    """Block until the job's record changes after ``since`` (its modification time) or
    ``timeout`` seconds pass; the record's modification time then."""
    deadline = time.monotonic() + timeout
    queue.folder(job_id)  # the id checked before a path is built from it
    path = queue.paths.record(job_id)
    while True:
        with contextlib.suppress(OSError):
            mtime = path.stat().st_mtime
            if mtime != since or time.monotonic() >= deadline:
                return mtime
        if time.monotonic() >= deadline:
            return since
        time.sleep(POLL_S)
