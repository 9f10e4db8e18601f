"""The bodies of the training-job routes (``service.jobs_api.jobs``), as pydantic models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from models.jobqueue.jobs import Job
from models.options import http_options_schema
from service.guards.redaction import public_log, relative_text
from service.protocols.bodies import RequestModel, ResponseModel

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]

OPTIONS_DOC = (
    "Training settings with the names of the TOML job file (docs/training.md), each "
    'with its default and range below: "name" is required; e.g. {"name": "flowers", '
    '"epochs": 10}. Only training settings are taken: nothing that names a path on the '
    "server (store, cache_dir, tensorboard, ood, exclude, relabel, capture_dir, a weights "
    "file), nor add_reviewed (it reads the service's capture folder), "
    "resume or strategy; weights are imagenet, none or model:NAME[:VERSION|LABEL] of this store"
)


class JobRequest(RequestModel):
    """A job on a folder the server already has, under KTL_DATA_ROOT."""

    data: str = Field(
        min_length=1,
        description="A folder under KTL_DATA_ROOT, relative to it (as ktl train reads a "
        "folder: one subfolder per class, or train/ val/ test/, or a CSV)",
    )
    options: dict[str, Any] = Field(
        description=OPTIONS_DOC, json_schema_extra=http_options_schema()
    )


class EpochRow(ResponseModel):
    """One finished epoch: its phase, number within the phase, and Keras' figures."""

    model_config = {"extra": "allow", "frozen": True}

    phase: str
    epoch: int = Field(ge=1)


class JobLinks(ResponseModel):
    self_: str = Field(alias="self")
    events: str
    report: str | None = Field(description="The published version's report page")
    try_: str | None = Field(alias="try", description="The try-it page with the new model selected")


class JobSummary(ResponseModel):
    """A training job: where it stands, its figures so far, and what it published."""

    id: str
    name: str = Field(description="The model the job publishes a version of")
    state: JobState
    created: str
    started: str | None
    finished: str | None
    phase: str | None = Field(description="The training phase now: head, fine_tune or scratch")
    epoch: int | None = Field(description="The last finished epoch of that phase")
    epochs: list[EpochRow] = Field(description="Every finished epoch so far, in order")
    version: int | None = Field(description="The version published (succeeded)")
    error: str | None = Field(description="Why it failed")
    cancel_requested: bool
    attempts: int = Field(ge=0, description="Runs so far; more than one: it was resumed")
    source: Literal["upload", "data_root"]
    options: dict[str, Any]
    links: JobLinks


class JobDetail(JobSummary):
    log: list[str] = Field(description="The last lines of the job's log")


class JobList(ResponseModel):
    jobs: list[JobSummary] = Field(description="Every job of the store, newest first")


def summary(job: Job, log: list[str] | None = None) -> JobSummary:
    base = f"/v1/jobs/{job.id}"
    done = job.state == "succeeded" and job.version is not None
    links = JobLinks.model_validate(
        {
            "self": base,
            "events": f"{base}/events",
            "report": f"/models/{job.name}/versions/{job.version}/report" if done else None,
            "try": f"/?model={job.name}&version={job.version}" if done else None,
        }
    )
    fields = {
        key: value
        for key, value in job.to_dict().items()
        if key in JobSummary.model_fields and key != "links"
    }
    # Paths in what the job wrote are shown relative to its dataset; none absolute.
    if job.error is not None:
        fields["error"] = relative_text(job.error, [job.data])
    if log is None:
        return JobSummary(**fields, links=links)
    return JobDetail(**fields, links=links, log=public_log(log, [job.data]))
