"""No absolute path of the server leaves it: what the service shows of a bundle's
metadata, its JSON reports and a job's error and log, with paths made relative to
the dataset they name (else cut to their last part), the store's location dropped and
the source lines of a traceback left out."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# A path of two or more parts that starts at the root: not inside a relative path or a URL.
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"/:,;()\[\]<>]+/)+([^\s'\"/:,;()\[\]<>]*)")
# An uploaded job's dataset folder in the store (model_store/.queue/<id>/dataset/), gone
# once the job ends: bundles trained before reports kept paths relative still name it.
_UPLOAD_FOLDER = re.compile(r"(?<![^\s'\"(\[])[^\s'\"]*?\.queue/[^/\s'\"]+/dataset/")
_SERVER_ONLY = ("store", "cache_dir", "capture_dir")  # where the server keeps things


def relative_text(text: str, roots: Iterable[object]) -> str:
    """``text`` with paths under one of ``roots`` (or an uploaded job's dataset folder)
    relative to it, and any other absolute path cut to its last part."""
    for root in roots:
        if root:
            text = text.replace(str(root).rstrip("/") + "/", "")
    text = _UPLOAD_FOLDER.sub("", text)
    return _ABSOLUTE.sub(lambda match: match.group(1), text)


def relative_document(document: Any, roots: Iterable[object]) -> Any:
    """Every string of a JSON document through :func:`relative_text`."""
    roots = list(roots)
    if isinstance(document, str):
        return relative_text(document, roots)
    if isinstance(document, list):
        return [relative_document(item, roots) for item in document]
    if isinstance(document, dict):
        return {key: relative_document(value, roots) for key, value in document.items()}
    return document


def metadata_roots(metadata: dict[str, Any]) -> list[object]:
    """The folders a bundle's paths are shown relative to: its dataset, then the store."""
    training = metadata.get("training")
    if not isinstance(training, dict):
        return []
    return [training.get("data"), *(training.get(key) for key in _SERVER_ONLY)]


def public_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """A bundle's metadata as clients see it: paths relative to the dataset it was
    trained on, the store's location and the cache's left out."""
    training = metadata.get("training")
    shown = dict(metadata)
    if isinstance(training, dict):
        shown["training"] = {k: v for k, v in training.items() if k not in _SERVER_ONLY}
    return relative_document(shown, metadata_roots(metadata))


def public_log(lines: Iterable[str], roots: Iterable[object]) -> list[str]:
    """A job's log lines, paths relative, without the source lines of a traceback."""
    roots = list(roots)
    return [relative_text(line, roots) for line in lines if not line.lstrip().startswith('File "')]
