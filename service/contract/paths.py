"""What a URL path carries: one path segment per model name or version, the
version as a number, and each Flask rule as the OpenAPI document spells it."""

from __future__ import annotations

import re

from werkzeug.routing import BaseConverter

from models.store import VERSION_PATTERN
from service.contract.errors import ModelNotFound

_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


class SegmentConverter(BaseConverter):
    """One path segment without ':', so ``/v1/models/m:predict`` is never read as a
    model named ``m:predict`` (a GET there gets 405, not 404)."""

    regex = "[^/:]+"


def parse_version(text: str | None) -> int | None:
    """A version from the URL; anything but a positive integer names no version."""
    if text is None:
        return None
    if not VERSION_PATTERN.fullmatch(text):
        raise ModelNotFound(f"{text[:40]!r} is not a version: versions are 1, 2, 3 ...")
    return int(text)


def openapi_path(rule: str) -> str:
    """A Flask URL rule as an OpenAPI path: ``/m/<segment:name>`` -> ``/m/{name}``."""
    return _ARGUMENT.sub(r"{\1}", rule)


def path_arguments(rule: str) -> list[str]:
    """The rule's variable parts, in the order they appear in the path."""
    return _ARGUMENT.findall(rule)
