"""The service's settings: one frozen pydantic-settings object read from the ``KTL_*``
variables once, where the process starts (gunicorn.conf.py, the app factory), and
passed down. Variables the job runner or the command line read too come from the
shared definitions of models/settings.py."""

from __future__ import annotations

import importlib.util
from typing import Annotated, ClassVar

from pydantic import Field

from models.capture.rules import CaptureRules, parse_rules
from models.choices import ENGINES
from models.errors import ConfigError
from models.preprocessing import DEFAULT_MAX_PIXELS
from models.settings import (
    JOB_RUNNERS,
    CaptureDirSetting,
    DataRootSetting,
    Int8GateSetting,
    JobRunnerSetting,
    StoreSetting,
    key_list,
    non_negative_float,
    one_of,
    parsed,
    port_number,
    positive_float,
    positive_int,
    text,
)

__all__ = ["JOB_RUNNERS", "ConfigError", "ServiceConfig"]

Keys = Annotated[tuple[str, ...], parsed(key_list)]
PositiveInt = Annotated[int, parsed(positive_int)]
PositiveFloat = Annotated[float, parsed(positive_float)]
NonNegativeFloat = Annotated[float, parsed(non_negative_float)]


def _training(value: str) -> str:
    value = value.strip().lower()
    if value not in ("", "off", "open"):
        raise ValueError("must be open (training routes without a key), or off/empty")
    return "open" if value == "open" else ""


def _optional_port(value: str) -> int | None:
    return port_number(value) if value.strip() else None


def _rules(value: str) -> str:
    return str(parse_rules(value))


class ServiceConfig(
    StoreSetting, JobRunnerSetting, DataRootSetting, Int8GateSetting, CaptureDirSetting
):
    what: ClassVar[str] = "configuration"

    max_upload_mb: PositiveFloat = Field(20.0, description="largest request body, in MB")
    max_image_pixels: PositiveInt = Field(
        DEFAULT_MAX_PIXELS, description="largest image, in pixels"
    )
    top_k: PositiveInt = Field(5, description="default number of top classes")
    api_keys: Keys = Field((), description="comma-separated bearer keys; empty: no authentication")
    report_keys: Keys = Field(
        (),
        description="comma-separated bearer keys that may see training images "
        "(reports/worst/); empty: the KTL_API_KEYS",
    )
    max_batch_size: PositiveInt = Field(16, description="most images in one forward pass")
    max_batch_delay_ms: NonNegativeFloat = Field(5.0, description="longest wait to fill a batch")
    queue_size: PositiveInt = Field(64, description="requests waiting per model before 503")
    max_images_per_request: PositiveInt = Field(64, description="most images in one request")
    reload_interval: NonNegativeFloat = Field(
        10.0, description="seconds between store scans; 0: off"
    )
    host: Annotated[str, parsed(text)] = Field(
        "127.0.0.1", description="address gunicorn binds (0.0.0.0: every interface)"
    )
    port: Annotated[int, parsed(port_number)] = Field(8000, description="port gunicorn binds")
    grpc_port: Annotated[int | None, parsed(_optional_port)] = Field(
        None,
        description="port of the Open Inference Protocol over gRPC, on KTL_HOST (every "
        "worker serves it); unset: off",
    )
    workers: PositiveInt = Field(1, description="gunicorn worker processes")
    threads: PositiveInt = Field(16, description="request threads per worker")
    engine: Annotated[str, parsed(one_of(ENGINES))] = Field(
        "auto", description="auto (INT8 where it agrees), keras or int8"
    )

    training: Annotated[str, parsed(_training)] = Field(
        "",
        description="training switch (open: the training routes need no key; set on "
        "purpose, for a local user)",
    )
    train_keys: Keys = Field(
        (),
        description="comma-separated bearer keys for the training routes; set: training is on",
    )
    max_dataset_mb: PositiveFloat = Field(1024.0, description="largest dataset archive, in MB")
    max_dataset_files: PositiveInt = Field(50_000, description="most files in a dataset archive")
    job_queue_size: PositiveInt = Field(8, description="training jobs queued or running before 503")
    max_event_streams: PositiveInt = Field(
        4, description="open job event streams per worker (at most half its threads) before 503"
    )
    event_stream_seconds: PositiveFloat = Field(
        300.0,
        description="longest life of one event stream; clients reconnect with Last-Event-ID",
    )

    def check_grpc(self) -> None:
        """With KTL_GRPC_PORT set: a port of its own, and grpcio installed (looked for,
        not imported: gunicorn's master must not import grpc before it forks)."""
        if self.grpc_port is None:
            return
        if self.grpc_port == self.port:
            raise ConfigError(
                f"KTL_GRPC_PORT and KTL_PORT are both {self.port}; gRPC needs a port of its own"
            )
        if importlib.util.find_spec("grpc") is None:
            raise ConfigError(
                "KTL_GRPC_PORT is set but grpcio is not installed: pip install 'ktl[grpc]' "
                "(or unset KTL_GRPC_PORT)"
            )

    capture: Annotated[str, parsed(_rules)] = Field(
        "abstained",
        description="which predictions keep their image: abstained, below:P, sample:F, "
        "comma-joined",
    )
    capture_max_per_minute: PositiveInt = Field(
        60, description="most images captured per minute, over every worker"
    )
    capture_max_mb: PositiveFloat = Field(
        1024.0, description="disk budget of the capture folder, in MB; oldest files go first"
    )

    @property
    def capture_rules(self) -> CaptureRules:
        return parse_rules(self.capture)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_dataset_bytes(self) -> int:
        return int(self.max_dataset_mb * 1024 * 1024)

    @property
    def training_enabled(self) -> bool:
        """Training routes answer (KTL_TRAIN_KEYS set, or KTL_TRAINING=open)."""
        return bool(self.train_keys) or self.training == "open"

    @property
    def event_streams(self) -> int:
        """Open event streams one worker allows: never more than half its threads, so
        followers of jobs cannot make the service deaf to predictions."""
        return max(1, min(self.max_event_streams, self.threads // 2))
