"""Following a job (models.jobqueue.job_events.follow_job): the one loop the event stream and
``ktl jobs --follow`` are both driven by."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import models.jobqueue.job_events
from models.jobqueue.job_events import JobEvent, follow_job, wait_changed
from models.jobqueue.jobs import Job, JobQueue, UnknownJob

ROWS = [{"phase": "head", "epoch": n, "loss": 1.0 / n} for n in (1, 2, 3)]


@pytest.fixture
def queue(tmp_path: Path) -> JobQueue:
    return JobQueue(tmp_path)


def _submit(queue: JobQueue) -> Job:
    job_id, folder = queue.reserve()
    return queue.submit(job_id, options={"name": "x"}, data=folder, source="upload", limit=8)


def _seen(events) -> list[tuple]:
    return [
        (e.kind, e.sent, e.job.state if e.kind == "state" else (e.row or {}).get("epoch"))
        for e in events
    ]


def _finished(queue: JobQueue) -> Job:
    job = _submit(queue)
    queue.claim("local")
    queue.record_progress(job.id, ROWS)
    return queue.finish(job.id, "succeeded", version=2)


def test_a_finished_job_gives_its_epochs_then_its_end(queue):
    job = _finished(queue)
    events = list(follow_job(queue, job.id, wait=0.1))
    assert _seen(events) == [
        ("epoch", 1, 1),
        ("epoch", 2, 2),
        ("epoch", 3, 3),
        ("state", 3, "succeeded"),
    ]
    assert events[-1].job.version == 2
    again = list(follow_job(queue, job.id, sent=2, wait=0.1))
    assert _seen(again) == [("epoch", 3, 3), ("state", 3, "succeeded")]


def test_each_change_once_the_state_before_its_epochs(queue):
    job = _submit(queue)

    def train() -> None:
        for change in (
            lambda: queue.claim("local"),
            lambda: queue.record_progress(job.id, ROWS[:1]),
            lambda: queue.record_progress(job.id, ROWS[:1] + [{"phase": "fine_tune", "epoch": 1}]),
            lambda: queue.update(job.id, cancel_requested=True),
            lambda: queue.finish(job.id, "cancelled"),
        ):
            time.sleep(0.4)  # longer than a look at the record's time (0.25 s)
            change()

    trainer = threading.Thread(target=train)
    trainer.start()
    try:
        events = [e for e in follow_job(queue, job.id, wait=5) if e.kind != "idle"]
    finally:
        trainer.join()
    assert _seen(events) == [
        ("state", 0, "queued"),
        ("state", 0, "running"),
        ("state", 0, "running"),  # phase head, then its epoch
        ("epoch", 1, 1),
        ("state", 1, "running"),  # phase fine_tune, then its epoch
        ("epoch", 2, 1),
        ("state", 2, "running"),  # cancel requested
        ("state", 2, "cancelled"),
    ]
    phases = [e.job.phase for e in events if e.kind == "state"]
    assert phases == [None, None, "head", "fine_tune", "fine_tune", "fine_tune"]
    assert events[6].job.cancel_requested


def test_quiet_stretches_are_idle_events_and_a_deadline_ends_it(queue):
    job = _submit(queue)
    started = time.monotonic()
    events = list(follow_job(queue, job.id, wait=0.3, until=started + 1.0))
    assert time.monotonic() - started < 3
    kinds = [e.kind for e in events]
    assert kinds[0] == "state" and "idle" in kinds and set(kinds) == {"state", "idle"}
    assert list(follow_job(queue, job.id, until=time.monotonic() - 1)) == [
        JobEvent("state", queue.get(job.id), 0)
    ]


def test_fewer_epochs_than_were_sent_start_the_count_again(queue):
    job = _submit(queue)
    queue.claim("local")
    queue.record_progress(job.id, ROWS[:1])  # a phase started over: fewer than were sent
    events = list(follow_job(queue, job.id, sent=3, until=time.monotonic() - 1))
    assert _seen(events) == [("state", 1, "running")]


def test_an_unknown_job_is_refused_at_once(queue):
    with pytest.raises(UnknownJob):
        next(follow_job(queue, "20990101-000000-abcdef"))


def test_wait_changed_returns_at_a_change_or_the_timeout(queue):
    job = _submit(queue)
    mtime = wait_changed(queue, job.id, 0.0, 1)
    assert mtime > 0
    assert wait_changed(queue, job.id, mtime, 0.3) == mtime
    queue.update(job.id, phase="head")
    assert wait_changed(queue, job.id, mtime, 5) != mtime


def test_the_event_stream_and_ktl_jobs_follow_are_driven_by_follow_job(queue, monkeypatch, capsys):
    """Both print what ``follow_job`` yields, nothing of their own: a scripted loop
    drives each."""
    import service.jobs_api.events
    from cli.commands import jobs as jobs_command

    job = _finished(queue)
    calls: list[dict] = []

    def scripted(queue, job_id, **kwargs):
        calls.append(kwargs)
        yield JobEvent("epoch", job, 7, {"phase": "head", "epoch": 9, "loss": 0.25})
        yield JobEvent("idle", job, 7)
        yield JobEvent("state", job, 7)

    monkeypatch.setattr(models.jobqueue.job_events, "follow_job", scripted)
    monkeypatch.setattr(service.jobs_api.events, "follow_job", scripted)
    monkeypatch.setattr(service.jobs_api.events, "summary", lambda job: {"state": job.state})
    monkeypatch.setattr(service.jobs_api.events, "json_body", lambda body: body)
    text = "".join(service.jobs_api.events._events(queue, job.id, 5, time.monotonic() + 60))
    assert text == (
        "retry: 2000\n\n"
        'id: 7\nevent: epoch\ndata: {"phase": "head", "epoch": 9, "loss": 0.25}\n\n'
        ": keep-alive\n\n"
        'id: 7\nevent: state\ndata: {"state": "succeeded"}\n\n'
    )
    assert jobs_command.follow(queue, job.id) == 0
    assert capsys.readouterr().out.splitlines() == [
        "  head epoch 9: loss 0.25",
        f"Job {job.id}: succeeded, published x version 2",
    ]
    assert calls[0]["sent"] == 5 and "until" in calls[0] and "until" not in calls[1]
