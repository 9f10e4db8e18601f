"""The monitor over time: each version's figures in equal buckets of a window
(``GET /v1/models/{name}/monitor/series``), what the monitor page plots. Each
bucket's figures are the monitor's (``models.capture.figures``) over that bucket
alone. Needs the predict keys; with capture off it answers 409, as the monitor."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from flask import Blueprint
from pydantic import Field

from models.capture.figures import version_figures
from models.ids import id_time
from models.timestamps import format_time
from service.contract.operation import Reply, operation
from service.contract.validation import query
from service.monitoring.monitor import (
    ERRORS,
    capture_folder,
    model_state,
    read_window,
    version_metadata,
)
from service.protocols.bodies import Maybe, RequestModel, ResponseModel, json_body

bp = Blueprint("monitor_series", __name__)


class SeriesQuery(RequestModel):
    window: Maybe[Annotated[int, Field(ge=60, le=30 * 86400)]] = Field(
        default=None, description="Seconds back from now the series covers (default 86400)"
    )
    buckets: Maybe[Annotated[int, Field(ge=1, le=200)]] = Field(
        default=None, description="Equal buckets the window is cut into (default 24)"
    )


class Point(ResponseModel):
    start: str
    end: str
    requests: int
    abstain_rate: float | None
    average_confidence: float | None = Field(description="Label-free estimate: mean top score")
    average_thresholded_confidence: float | None = Field(
        description="Label-free estimate ATC: share of top probabilities over the ATC threshold"
    )
    class_mix_distance: float | None = Field(description="Total variation, live vs test")
    feedback_count: int
    feedback_accuracy: float | None


class VersionSeries(ResponseModel):
    version: int
    points: list[Point]


class SeriesResponse(ResponseModel):
    model: str
    since: str
    until: str
    window: int
    bucket_seconds: float
    versions: list[VersionSeries]


@bp.get("/v1/models/<segment:name>/monitor/series")
@operation(
    "monitorSeries",
    summary="Each version's monitor figures in equal buckets of a window: requests, abstain "
    "rate, label-free accuracy estimates, class-mix distance, feedback accuracy",
    query=SeriesQuery,
    responses={200: Reply("The figures per bucket, per version", SeriesResponse), **ERRORS},
)
def series(name: str) -> dict[str, Any]:
    folder, state = capture_folder(), model_state(name)
    asked = query(SeriesQuery)
    window, buckets = read_window(folder, name, asked.window or 86400), asked.buckets or 24
    since, step = window.since, window.seconds / buckets

    def bucket_of(moment: datetime) -> int:
        return min(buckets - 1, int((moment - since).total_seconds() // step))

    def points(version: int) -> list[Point]:
        mine: list[list[dict[str, Any]]] = [[] for _ in range(buckets)]
        told: list[list[dict[str, Any]]] = [[] for _ in range(buckets)]
        for line in window.lines:
            if line["version"] == version:
                mine[bucket_of(id_time(line["id"]))].append(line)
        for entry in window.feedback:
            if entry["version"] == version:
                told[bucket_of(id_time(entry["id"]))].append(entry)  # the prediction's time
        metadata = version_metadata(state, version)
        return [
            _point(since + timedelta(seconds=i * step), step, mine[i], told[i], metadata)
            for i in range(buckets)
        ]

    return json_body(
        SeriesResponse(
            model=name,
            since=format_time(since),
            until=format_time(window.until),
            window=window.seconds,
            bucket_seconds=step,
            versions=[VersionSeries(version=v, points=points(v)) for v in window.versions],
        )
    )


def _point(start: datetime, step: float, lines, feedback, metadata) -> Point:
    figures = version_figures(lines, feedback, metadata)
    estimates, told = figures["estimated_accuracy"], figures["feedback"]
    return Point(
        start=format_time(start),
        end=format_time(start + timedelta(seconds=step)),
        requests=figures["requests"],
        abstain_rate=figures["abstain_rate"],
        average_confidence=estimates["average_confidence"],
        average_thresholded_confidence=estimates["average_thresholded_confidence"],
        class_mix_distance=figures["class_mix_distance"],
        feedback_count=told["count"],
        feedback_accuracy=told["accuracy"],
    )
