"""Training jobs over HTTP: submit a dataset and options, follow the job, cancel it.

The routes only queue and read jobs (``models.jobqueue.jobs``, in the store); a runner
process beside gunicorn trains them, never a request worker. The routes are off
(403) unless ``KTL_TRAIN_KEYS`` is set, when they need one of those keys, or
``KTL_TRAINING=open`` opens them on purpose. A dataset archive is the one body
streamed to disk, into the job's folder, under ``KTL_MAX_DATASET_MB``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic_core
from flask import Blueprint, Response, request, url_for

from models.errors import UserError
from models.jobqueue.jobs import JobQueue, QueueFull, UnknownJob, check_options
from service.contract.errors import UnsupportedMediaType, error_response
from service.contract.operation import TRAIN_KEYS, Body, Reply, operation
from service.contract.replies import RETRY_AFTER, error
from service.contract.validation import validate_json
from service.jobs_api.archives import ArchiveLimits, dataset_root, extract, loose_images
from service.jobs_api.events import event_stream
from service.jobs_api.job_bodies import (
    OPTIONS_DOC,
    JobDetail,
    JobList,
    JobRequest,
    JobSummary,
    summary,
)
from service.protocols.bodies import ErrorBody, json_body
from service.state import SPOOL, SPOOLED, service_state

bp = Blueprint("jobs", __name__)
EVENT_STREAM = {"text/event-stream": {"schema": {"type": "string"}}}

ENABLE_HINT = (
    "Training over HTTP is off on this service: set KTL_TRAIN_KEYS to the keys that may "
    "train (then send 'Authorization: Bearer <key>'), or KTL_TRAINING=open on a service "
    "only you can reach; see docs/jobs.md"
)


class TrainingOff(UserError):
    status = 403
    code = "training_disabled"


class DataOutsideRoot(UserError):
    code = "invalid_data"


class EmptyDataset(UserError):
    code = "empty_dataset"


_FORMS = (
    "multipart/form-data (fields dataset and options) or application/json "
    '({"data": ..., "options": ...})'
)


_ERRORS = {
    401: error("A training key is needed (KTL_TRAIN_KEYS)"),
    403: error("Training is off on this service; the message says how to enable it"),
}


QUEUE_RETRY_AFTER_S = 60  # a full queue frees a place when a job ends: minutes, not seconds


@bp.errorhandler(QueueFull)
def _queue_full(exc: QueueFull) -> Response:
    """The queue's refusal in HTTP's words: a 503 that says when to try again."""
    return error_response(
        exc.status, exc.code, exc.message, {"Retry-After": str(QUEUE_RETRY_AFTER_S)}
    )


@bp.errorhandler(UnknownJob)
def _unknown_job(exc: UnknownJob) -> Response:
    return error_response(exc.status, exc.code, f"{exc.message}; GET /v1/jobs lists them")


@bp.before_request
def _training_on() -> None:
    if not service_state().config.training_enabled:
        raise TrainingOff(ENABLE_HINT)


def _queue() -> JobQueue:
    return JobQueue(service_state().config.model_store)


@bp.post("/v1/jobs")
@operation(
    "createJob",
    summary="Start a training job: a dataset archive and options (multipart), or a folder "
    "under KTL_DATA_ROOT (JSON); answers at once, the job runs in the background",
    keys=TRAIN_KEYS,
    streamed=True,
    body=Body(
        JobRequest,
        content={
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["dataset", "options"],
                    "properties": {
                        "dataset": {
                            "type": "string",
                            "format": "binary",
                            "description": "A .zip or .tar.gz of the dataset, laid out as "
                            "ktl train reads a folder; at most KTL_MAX_DATASET_MB and "
                            "KTL_MAX_DATASET_FILES files",
                        },
                        "options": {"type": "string", "description": f"JSON: {OPTIONS_DOC}"},
                    },
                }
            }
        },
    ),
    responses={
        202: Reply(
            "Queued; Location is the job",
            JobSummary,
            headers={"Location": {"schema": {"type": "string"}}},
        ),
        400: error("Bad options, not an archive, a corrupt archive or an unsafe one"),
        **_ERRORS,
        413: error(
            "The archive is over KTL_MAX_DATASET_MB, holds too many files, or unpacks "
            "to too much (a compression bomb)"
        ),
        415: error("Neither multipart/form-data nor application/json"),
        503: error(
            "KTL_JOB_QUEUE_SIZE jobs are already queued or running", ErrorBody, **RETRY_AFTER
        ),
    },
)
def create_job() -> tuple[dict[str, Any], int, dict[str, str]]:
    config = service_state().config
    queue = _queue()
    if request.mimetype == "multipart/form-data":
        job = _from_upload(queue)
    elif request.is_json:
        asked = validate_json(JobRequest, request.get_data(cache=False), hint=_FORMS)
        options = check_options(asked.options)
        data = _under_data_root(asked.data)
        job = queue.submit(
            queue.reserve()[0],  # only now: a refused request leaves no folder
            options=options,
            data=data,
            source="data_root",
            limit=config.job_queue_size,
        )
    else:
        raise UnsupportedMediaType(f"POST /v1/jobs takes {_FORMS}")
    location = url_for("jobs.get_job", job_id=job.id)
    return json_body(summary(job)), 202, {"Location": location}


def _from_upload(queue: JobQueue) -> Any:
    """Stream the archive into a new job folder, check it, unpack it, queue the job; the
    folder goes again if anything fails."""
    config = service_state().config
    job_id, folder = queue.reserve()
    try:
        request.environ[SPOOL] = str(folder)
        upload = request.files.get("dataset")
        if upload is None or "options" not in request.form:
            raise UserError('POST /v1/jobs needs the fields "dataset" (an archive) and "options"')
        options = check_options(_options_field(request.form["options"]))
        limits = ArchiveLimits(
            max_files=config.max_dataset_files, max_bytes=4 * config.max_dataset_bytes
        )
        if extract(upload.stream, queue.dataset_dir(job_id), limits).files == 0:
            raise EmptyDataset(
                "The archive holds no files (macOS' __MACOSX and .DS_Store are not counted): "
                "zip the dataset's class folders, with their images"
            )
        data = dataset_root(queue.dataset_dir(job_id))
        problem = loose_images(data, queue.dataset_dir(job_id))
        if problem:
            raise EmptyDataset(problem)
        return queue.submit(
            job_id,
            options=options,
            data=data,
            source="upload",
            limit=config.job_queue_size,
        )
    except BaseException:
        queue.discard(job_id)
        raise
    finally:
        for stream in request.environ.get(SPOOLED, []):
            stream.close()


def _options_field(text: str) -> Any:
    """The multipart options field as JSON, by a parser that bounds its own depth."""
    try:
        return pydantic_core.from_json(text)
    except ValueError as exc:
        raise UserError(f"options is not valid JSON: {exc}") from None


def _under_data_root(data: str) -> Path:
    """The folder ``data`` names under KTL_DATA_ROOT; nothing outside it."""
    root = service_state().config.data_root
    if root is None:
        raise DataOutsideRoot(
            'This service takes no {"data": ...} jobs: KTL_DATA_ROOT is not set; upload an '
            "archive instead (multipart field dataset)"
        )
    if "\x00" in data:
        raise DataOutsideRoot("data: a folder name cannot hold a NUL byte")
    base = root.resolve()
    try:
        folder = (base / data).resolve()
        if Path(data).is_absolute() or not folder.is_relative_to(base) or folder == base:
            raise DataOutsideRoot(f"data {data[:80]!r} must name a folder inside KTL_DATA_ROOT")
        if not folder.is_dir():
            raise DataOutsideRoot(f"data {data[:80]!r}: no such folder under KTL_DATA_ROOT")
    except OSError as exc:  # a name too long, a loop of links
        raise DataOutsideRoot(f"data {data[:80]!r}: {exc.strerror}") from None
    return folder


@bp.get("/v1/jobs")
@operation(
    "listJobs",
    summary="Every training job of the store, newest first",
    keys=TRAIN_KEYS,
    responses={200: Reply("The jobs", JobList), **_ERRORS},
)
def list_jobs() -> dict[str, Any]:
    return json_body(JobList(jobs=[summary(job) for job in _queue().jobs()]))


@bp.get("/v1/jobs/<job_id>")
@operation(
    "getJob",
    summary="One job: state, phase, epoch, figures so far, the version it published, "
    "the error of a failed job and the last lines of its log",
    keys=TRAIN_KEYS,
    responses={200: Reply("The job", JobDetail), 404: error("No such job"), **_ERRORS},
)
def get_job(job_id: str) -> dict[str, Any]:
    queue = _queue()
    return json_body(summary(queue.get(job_id), queue.log_tail(job_id)))


@bp.delete("/v1/jobs/<job_id>")
@operation(
    "cancelJob",
    summary="Cancel a job: a queued one at once (200), a running one as soon as the "
    "runner stops it (202, state stays running with cancel_requested); nothing is published",
    keys=TRAIN_KEYS,
    responses={
        200: Reply("Cancelled", JobSummary),
        202: Reply("Being cancelled", JobSummary),
        404: error("No such job"),
        409: error("The job has already finished"),
        **_ERRORS,
    },
)
def cancel_job(job_id: str) -> tuple[dict[str, Any], int]:
    job = _queue().cancel(job_id)
    return json_body(summary(job)), 200 if job.done else 202


@bp.get("/v1/jobs/<job_id>/events")
@operation(
    "jobEvents",
    summary="Server-Sent Events of a job: `state` (the job, on each change of its state, "
    "phase, cancel request or attempt) and `epoch` (each finished epoch); ends after the "
    "job ends. Send Last-Event-ID to continue after a reconnect",
    keys=TRAIN_KEYS,
    responses={
        200: Reply("The event stream", content=EVENT_STREAM),
        404: error("No such job"),
        **_ERRORS,
        503: error(
            "KTL_MAX_EVENT_STREAMS streams are open on this worker", ErrorBody, **RETRY_AFTER
        ),
    },
)
def job_events(job_id: str) -> Response:
    queue = _queue()
    queue.get(job_id)  # 404 before any stream starts
    return event_stream(queue, job_id, request.headers.get("Last-Event-ID"))
