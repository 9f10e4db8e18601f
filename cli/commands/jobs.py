"""``ktl jobs [ID]``: the training jobs of a store (submitted over HTTP, run by the
job runner), read from the store itself: list them, show or follow one, cancel one."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from cli.common import add_json, add_store, note, print_json
from models.errors import ConfigError

if TYPE_CHECKING:
    from models.jobqueue.jobs import Job, JobQueue

_FOLLOW_WAIT_S = 30.0  # longest wait for a change of the record before looking again
_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "jobs",
        help="list, follow or cancel the store's training jobs",
        description="List the training jobs of the store (submitted with POST /v1/jobs or the "
        "/train page, run by the job runner), or show the job ID: its state, phase, epochs, "
        "published version or error, and the end of its log.",
        epilog="Exit codes: 0; with --follow, 0 when the job succeeded and 1 when it failed or "
        "was cancelled; 2 for an unknown job or one that has already finished (--cancel).",
    )
    parser.add_argument("id", nargs="?", metavar="ID", help="a job id, e.g. 20261202-120000-a1b2c3")
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--follow",
        action="store_true",
        help="print each finished epoch and change of state until the job ends",
    )
    action.add_argument(
        "--cancel",
        action="store_true",
        help="cancel the job: a queued one at once, a running one when the runner stops it "
        "(nothing is published)",
    )
    parser.add_argument(
        "--lines", type=int, default=20, metavar="N", help="lines of the job's log shown (20)"
    )
    add_store(parser)
    add_json(
        parser,
        "print JSON: the list, the job (with its log), or with --follow one object a line "
        "per event",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from models.jobqueue.jobs import JobQueue, UnknownJob
    from models.store import ModelStore

    if (args.follow or args.cancel) and not args.id:
        flag = "--follow" if args.follow else "--cancel"
        raise ConfigError(f"{flag} needs a job ID (`ktl jobs` lists them)")
    ModelStore(args.store).check_exists()
    queue = JobQueue(args.store)
    if args.id is None:
        return _list(queue, args.json, args.store)
    try:
        return _one(queue, args)
    except UnknownJob as exc:
        raise UnknownJob(f"{exc.message}; `ktl jobs` lists them", exc.job_id) from None


def _one(queue: JobQueue, args: argparse.Namespace) -> int:
    if args.cancel:
        return _cancel(queue, args.id, args.json)
    if args.follow:
        return follow(queue, args.id, as_json=args.json)
    job = queue.get(args.id)
    tail = queue.log_tail(job.id, args.lines) if args.lines > 0 else []
    if args.json:
        print_json({**job.to_dict(), "log": tail})
    else:
        _show(job, tail)
    return 0


def _cancel(queue: JobQueue, job_id: str, as_json: bool) -> int:
    job = queue.cancel(job_id)
    if as_json:
        print_json(job.to_dict())
    elif job.done:
        note(f"Job {job.id} cancelled")
    else:
        note(f"Job {job.id}: cancelling; the runner stops it and publishes nothing")
    return 0


def _list(queue: JobQueue, as_json: bool, store: str) -> int:
    jobs = queue.jobs()
    if as_json:
        print_json([job.to_dict() for job in jobs])
        return 0
    if not jobs:
        print(
            f"No training job in the store {store} yet (POST /v1/jobs or the /train page "
            "submits one)."
        )
        return 0
    print(
        f"{'id':<23}  {'name':<20}  {'state':<10}  {'phase':<10}  {'epoch':>5}  "
        f"{'version':>7}  created"
    )
    for job in jobs:
        state = "cancelling" if job.cancel_requested and not job.done else job.state
        print(
            f"{job.id:<23}  {job.name:<20}  {state:<10}  {job.phase or '-':<10}  "
            f"{_dash(job.epoch):>5}  {_dash(job.version):>7}  {job.created}"
        )
    return 0


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _show(job: Job, tail: list[str]) -> None:
    state = job.state + (" (cancelling)" if job.cancel_requested and not job.done else "")
    if job.attempts > 1:
        state += f", attempt {job.attempts}"
    fields = [
        ("job", job.id),
        ("name", job.name),
        ("state", state),
        ("phase", f"{job.phase}, epoch {job.epoch}" if job.phase else "-"),
        ("created", job.created),
        ("started", job.started),
        ("finished", job.finished),
        ("data", f"{job.data} ({job.source})"),
        ("options", " ".join(f"{k}={v}" for k, v in job.options.items() if k != "name")),
        ("version", job.version),
        ("error", job.error),
    ]
    for label, value in fields:
        print(f"{label:<9} {_dash(value) if value != '' else '-'}")
    if job.epochs:
        print("epochs:")
        for row in job.epochs:
            print(f"  {epoch_line(row)}")
    if tail:
        print(f"log (last {len(tail)} lines):")
        for line in tail:
            print(f"  {line}")


def epoch_line(row: dict[str, Any]) -> str:
    """``head epoch 2: loss 0.5121, accuracy 0.81, val_loss 0.6043, val_accuracy 0.78``."""
    figures = [
        f"{key} {row[key]:.4g}" if isinstance(row[key], float) else f"{key} {row[key]}"
        for key in _METRICS
        if key in row
    ]
    return f"{row.get('phase')} epoch {row.get('epoch')}: {', '.join(figures) or '-'}"


def _state_line(job: Job) -> str:
    if job.state == "succeeded":
        return f"Job {job.id}: succeeded, published {job.name} version {job.version}"
    if job.state == "failed":
        return f"Job {job.id}: failed: {job.error}"
    if job.state == "running" and job.cancel_requested:
        return f"Job {job.id}: cancelling"
    phase = f", phase {job.phase}" if job.phase and job.state == "running" else ""
    attempt = f" (attempt {job.attempts}, resumed)" if job.attempts > 1 else ""
    return f"Job {job.id}: {job.state}{phase}{attempt}"


def follow(
    queue: JobQueue, job_id: str, *, as_json: bool = False, wait: float = _FOLLOW_WAIT_S
) -> int:
    """Print ``follow_job``'s events (the loop the event stream sends too) as they come,
    until the job ends; 0 when it succeeded, else 1."""
    from models.jobqueue.job_events import follow_job

    last = None
    try:
        for event in follow_job(queue, job_id, wait=wait):
            if event.kind == "epoch" and event.row is not None:
                _event("epoch", event.row, f"  {epoch_line(event.row)}", as_json)
            elif event.kind == "state":
                _state_event(event.job, as_json)
            last = event.job
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"stopped following; job {job_id} goes on (ktl jobs {job_id} --cancel stops it)"
        ) from None
    return 0 if last is not None and last.state == "succeeded" else 1


def _state_event(job: Job, as_json: bool) -> None:
    summary = {key: value for key, value in job.to_dict().items() if key != "epochs"}
    _event("state", summary, _state_line(job), as_json)


def _event(kind: str, data: dict[str, Any], text: str, as_json: bool) -> None:
    print(json.dumps({"event": kind, **data}) if as_json else text, flush=True)
