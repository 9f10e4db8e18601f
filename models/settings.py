"""What every ktl process reads from its ``KTL_*`` environment, defined once.

Each kind of process has one settings object, read once at its start and passed
down: the service's ``service.config.ServiceConfig``, the job runner's
``training.jobs.settings.RunnerSettings`` and the command line's ``cli.settings.CliSettings``.
They are pydantic-settings classes with the ``KTL_`` prefix built on ``KtlSettings``
here, and a variable that several processes read (``KTL_MODEL_STORE``,
``KTL_JOB_RUNNER``, ``KTL_INT8_MIN_AGREEMENT``, ``KTL_DATA_ROOT``) is one field of
one mixin below, so its default, accepted values and error cannot differ between
them. A bad value is a ``ConfigError`` that names the variable, the value, what is
wrong, what the variable is for and its default. TensorFlow-free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from models.choices import DEFAULT_GATE
from models.errors import ConfigError

__all__ = [
    "JOB_RUNNERS",
    "DataRootSetting",
    "Int8GateSetting",
    "JobRunnerSetting",
    "KtlSettings",
    "StoreSetting",
    "parsed",
]

PREFIX = "KTL_"
JOB_RUNNERS = ("local", "kubernetes", "none")
Settings = TypeVar("Settings", bound="KtlSettings")


# The checks, each from the variable's text (or a Python value's str) to its value; a
# ValueError's text becomes the "what is wrong" of the ConfigError.
def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError("must be a finite number, 0 or more")
    return number


def positive_float(value: str) -> float:
    number = non_negative_float(value)
    if number == 0:
        raise ValueError("must be more than 0")
    return number


def whole_number(least: int, most: int, blank: int | None = None) -> Callable[[str], Any]:
    """A whole number from ``least`` to ``most``; blank text means ``blank``."""

    def check(value: str) -> int | None:
        if not value.strip():
            return blank
        try:
            number = int(value.strip())
        except ValueError:
            number = least - 1
        if not least <= number <= most:
            raise ValueError(f"a whole number from {least} to {most}")
        return number

    return check


def port_number(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 65535:
        raise ValueError("must be a port number, 1 to 65535")
    return number


def key_list(value: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in value.split(",") if key.strip())


def text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def path(value: str) -> Path:
    return Path(text(value))


def store_location(value: str) -> Path | str:
    """A model store's folder, or an object-storage URL ktl serves (kept as text); any
    other URL is refused, never taken as a folder name."""
    from models.store.location import check_location, is_remote

    location = text(value)
    check_location(location)  # UnsupportedStore is a ValueError: its text is the cause
    return location if is_remote(location) else Path(location)


def optional_path(value: str) -> Path | None:
    return Path(value.strip()) if value.strip() else None


def optional_text(value: str) -> str | None:
    return value.strip() or None


def one_of(choices: tuple[str, ...], default: str | None = None) -> Callable[[str], str]:
    """One of ``choices``; blank means ``default`` where one is given."""

    def check(value: str) -> str:
        value = value.strip()
        if not value and default is not None:
            return default
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return check


def share(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise ValueError("must be from 0 to 1")
    return number


def parsed(check: Callable[[str], Any]) -> BeforeValidator:
    """A field's check, applied to the environment's text and to Python values alike
    (None stays None: an optional setting left unset; a tuple of keys stays one)."""

    def before(value: Any) -> Any:
        if value is None or isinstance(value, tuple):
            return value
        return check(str(value))

    return BeforeValidator(before)


class _Environ(EnvSettingsSource):
    """pydantic-settings' own ``KTL_*`` lookup, over a given mapping (the process's
    environment, or a test's dict) rather than ``os.environ`` alone."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self.environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self.environ.items()}


class KtlSettings(BaseSettings):
    """The ``KTL_`` settings of one kind of process. ``from_env`` reads them (once, at
    the process's start); constructing one directly reads no environment."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, frozen=True, extra="forbid", enable_decoding=False
    )
    # Shown in errors about the whole object (unknown keys).
    what: ClassVar[str] = "configuration"

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **sources):  # type: ignore[override]
        return (init_settings,)  # from_env gives the environment's values explicitly

    @classmethod
    def variable(cls, field: str) -> str:
        return PREFIX + field.upper()

    @classmethod
    def from_env(cls: type[Settings], environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, overridden by every ``KTL_*`` variable that is set."""
        import os

        values = _Environ(cls, os.environ if environ is None else environ)()
        return cls.checked(values)

    @classmethod
    def checked(cls: type[Settings], values: Mapping[str, Any]) -> Settings:
        """``cls(**values)``, a bad value a ``ConfigError`` naming its variable."""
        unknown = set(values) - set(cls.model_fields)
        if unknown:
            raise ConfigError(f"Unknown {cls.what} keys {sorted(unknown)}")
        try:
            return cls(**values)
        except ValidationError as exc:
            raise cls._named(exc, values) from None

    def replace(self: Settings, overrides: Mapping[str, Any]) -> Settings:
        """A copy with ``overrides`` (field names), checked as the environment is."""
        return self.checked({**self.model_dump(), **overrides})

    @classmethod
    def _named(cls, exc: ValidationError, values: Mapping[str, Any]) -> ConfigError:
        error = exc.errors()[0]
        name = str(error["loc"][0])
        field = cls.model_fields[name]
        env = cls.variable(name)
        cause = error.get("ctx", {}).get("error", error["msg"])
        raw = values.get(name)
        shown = raw if isinstance(raw, str) else str(raw)
        return ConfigError(
            f"{env}={shown!r} is not valid: {cause} ({env} is the {field.description}; "
            f"default {field.default})"
        )


# Variables read by more than one kind of process: one definition each.


class StoreSetting(KtlSettings):
    model_store: Annotated[Path | str, parsed(store_location)] = Field(
        Path("model_store"), description="folder (or s3://bucket/prefix) of published models"
    )
    cache_dir: Annotated[Path | None, parsed(optional_path)] = Field(
        None,
        description="local cache of an s3:// store's versions, staging and job state; "
        "unset: ~/.cache/ktl",
    )


class JobRunnerSetting(KtlSettings):
    job_runner: Annotated[str, parsed(one_of(JOB_RUNNERS, default="local"))] = Field(
        "local",
        description="where jobs run: local (a runner process beside gunicorn), kubernetes, or none",
    )


class DataRootSetting(KtlSettings):
    data_root: Annotated[Path | None, parsed(optional_path)] = Field(
        None,
        description='folder whose subfolders POST /v1/jobs may name as {"data": ...}; '
        "unset: uploads only",
    )


class CaptureDirSetting(KtlSettings):
    capture_dir: Annotated[Path | None, parsed(optional_path)] = Field(
        None, description="folder of captured predictions and feedback; unset: capture off"
    )


class Int8GateSetting(KtlSettings):
    int8_min_agreement: Annotated[float, parsed(share)] = Field(
        DEFAULT_GATE, description="top-1 agreement INT8 needs for auto"
    )
