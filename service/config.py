"""The service's configuration: one frozen dataclass read from ``KTL_*`` variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from models.choices import ENGINES
from models.errors import ConfigError
from models.int8 import DEFAULT_GATE
from models.preprocessing import DEFAULT_MAX_PIXELS

__all__ = ["ConfigError", "ServiceConfig"]

JOB_RUNNERS = ("local", "kubernetes", "none")
_KEY_LISTS = ("api_keys", "report_keys", "train_keys")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError("must be a finite number, 0 or more")
    return number


def _positive_float(value: str) -> float:
    number = _non_negative_float(value)
    if number == 0:
        raise ValueError("must be more than 0")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 65535:
        raise ValueError("must be a port number, 1 to 65535")
    return number


def _api_keys(value: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in value.split(",") if key.strip())


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _path(value: str) -> Path:
    return Path(_text(value))


def _engine(value: str) -> str:
    if value not in ENGINES:
        raise ValueError(f"must be one of {', '.join(ENGINES)}")
    return value


def _optional_path(value: str) -> Path | None:
    return Path(value.strip()) if value.strip() else None


def _training(value: str) -> str:
    value = value.strip().lower()
    if value not in ("", "off", "open"):
        raise ValueError("must be open (training routes without a key), or off/empty")
    return "open" if value == "open" else ""


def _job_runner(value: str) -> str:
    if value not in JOB_RUNNERS:
        raise ValueError(f"must be one of {', '.join(JOB_RUNNERS)}")
    return value


def _share(value: str) -> float:
    share = float(value)
    if not 0 <= share <= 1:
        raise ValueError("must be from 0 to 1")
    return share


def _setting(env: str, parse: Callable[[str], Any], default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})


@dataclass(frozen=True)
class ServiceConfig:
    model_store: Path = _setting(
        "KTL_MODEL_STORE", _path, Path("model_store"), "folder of published models"
    )
    max_upload_mb: float = _setting(
        "KTL_MAX_UPLOAD_MB", _positive_float, 20.0, "largest request body, in MB"
    )
    max_image_pixels: int = _setting(
        "KTL_MAX_IMAGE_PIXELS", _positive_int, DEFAULT_MAX_PIXELS, "largest image, in pixels"
    )
    top_k: int = _setting("KTL_TOP_K", _positive_int, 5, "default number of top classes")
    api_keys: tuple[str, ...] = _setting(
        "KTL_API_KEYS", _api_keys, (), "comma-separated bearer keys; empty: no authentication"
    )
    report_keys: tuple[str, ...] = _setting(
        "KTL_REPORT_KEYS",
        _api_keys,
        (),
        "comma-separated bearer keys that may see training images (reports/worst/); "
        "empty: the KTL_API_KEYS",
    )
    max_batch_size: int = _setting(
        "KTL_MAX_BATCH_SIZE", _positive_int, 16, "most images in one forward pass"
    )
    max_batch_delay_ms: float = _setting(
        "KTL_MAX_BATCH_DELAY_MS", _non_negative_float, 5.0, "longest wait to fill a batch"
    )
    queue_size: int = _setting(
        "KTL_QUEUE_SIZE", _positive_int, 64, "requests waiting per model before 503"
    )
    max_images_per_request: int = _setting(
        "KTL_MAX_IMAGES_PER_REQUEST", _positive_int, 64, "most images in one request"
    )
    reload_interval: float = _setting(
        "KTL_RELOAD_INTERVAL", _non_negative_float, 10.0, "seconds between store scans; 0: off"
    )
    host: str = _setting(
        "KTL_HOST", _text, "127.0.0.1", "address gunicorn binds (0.0.0.0: every interface)"
    )
    port: int = _setting("KTL_PORT", _port, 8000, "port gunicorn binds")
    workers: int = _setting("KTL_WORKERS", _positive_int, 1, "gunicorn worker processes")
    threads: int = _setting("KTL_THREADS", _positive_int, 16, "request threads per worker")
    engine: str = _setting(
        "KTL_ENGINE", _engine, "auto", "auto (INT8 where it agrees), keras or int8"
    )
    int8_min_agreement: float = _setting(
        "KTL_INT8_MIN_AGREEMENT", _share, DEFAULT_GATE, "top-1 agreement INT8 needs for auto"
    )

    training: str = _setting(
        "KTL_TRAINING",
        _training,
        "",
        "training switch (open: the training routes need no key; set on purpose, for a local user)",
    )
    train_keys: tuple[str, ...] = _setting(
        "KTL_TRAIN_KEYS",
        _api_keys,
        (),
        "comma-separated bearer keys for the training routes; set: training is on",
    )
    job_runner: str = _setting(
        "KTL_JOB_RUNNER",
        _job_runner,
        "local",
        "where jobs run: local (a runner process beside gunicorn), kubernetes, or none",
    )
    data_root: Path | None = _setting(
        "KTL_DATA_ROOT",
        _optional_path,
        None,
        'folder whose subfolders POST /v1/jobs may name as {"data": ...}; unset: uploads only',
    )
    max_dataset_mb: float = _setting(
        "KTL_MAX_DATASET_MB", _positive_float, 1024.0, "largest dataset archive, in MB"
    )
    max_dataset_files: int = _setting(
        "KTL_MAX_DATASET_FILES", _positive_int, 50_000, "most files in a dataset archive"
    )
    job_queue_size: int = _setting(
        "KTL_JOB_QUEUE_SIZE", _positive_int, 8, "training jobs queued or running before 503"
    )
    max_event_streams: int = _setting(
        "KTL_MAX_EVENT_STREAMS",
        _positive_int,
        4,
        "open job event streams per worker (at most half its threads) before 503",
    )
    event_stream_seconds: float = _setting(
        "KTL_EVENT_STREAM_SECONDS",
        _positive_float,
        300.0,
        "longest life of one event stream; clients reconnect with Last-Event-ID",
    )

    def __post_init__(self) -> None:
        # Environment strings and Python overrides alike go through the same checks.
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name in _KEY_LISTS:
                if isinstance(value, str):
                    value = _api_keys(value)
                object.__setattr__(self, spec.name, tuple(value))
            elif value is not None:  # None: an optional setting left unset
                object.__setattr__(self, spec.name, _parse(spec, str(value)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceConfig:
        """Defaults, overridden by every ``KTL_*`` variable that is set."""
        environ = os.environ if environ is None else environ
        # Strings here; __post_init__ parses every field, from text or from Python.
        values: dict[str, Any] = {
            spec.name: environ[spec.metadata["env"]]
            for spec in fields(cls)
            if spec.metadata["env"] in environ
        }
        return cls(**values)

    def replace(self, overrides: Mapping[str, Any]) -> ServiceConfig:
        unknown = set(overrides) - {spec.name for spec in fields(self)}
        if unknown:
            raise ConfigError(f"Unknown configuration keys {sorted(unknown)}")
        return dataclasses.replace(self, **overrides)

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


def _parse(spec: dataclasses.Field, raw: str) -> Any:
    env = spec.metadata["env"]
    try:
        return spec.metadata["parse"](raw)
    except ValueError as exc:
        raise ConfigError(
            f"{env}={raw!r} is not valid: {exc} ({env} is the {spec.metadata['doc']}; "
            f"default {spec.default})"
        ) from None
