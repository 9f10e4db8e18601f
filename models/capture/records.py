"""Reading the capture folder back (``models.capture.folder`` writes it): a
prediction by its id, the predictions and feedback of a time window."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from models.capture.folder import CaptureFolder, minute_of
from models.ids import id_time, is_id


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """The whole lines of a log; a line being written (no newline yet) is skipped."""
    try:
        text = path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def find_prediction(folder: CaptureFolder, model: str, identifier: str) -> dict[str, Any] | None:
    """The logged prediction ``identifier`` of ``model``, or None."""
    if not is_id(identifier):
        return None
    for path in folder.log_files(model, minute_of(identifier)):
        for record in _lines(path):
            if record.get("id") == identifier:
                return record
    return None


def predictions_since(folder: CaptureFolder, model: str, since: datetime) -> list[dict[str, Any]]:
    """Every logged prediction of ``model`` made at or after ``since``."""
    first = since.strftime("%Y%m%d%H%M")
    found = []
    for path in folder.log_files(model):
        if path.name[:12] >= first:
            found += [r for r in _lines(path) if id_time(r["id"]) >= since]
    return found


def feedback_since(folder: CaptureFolder, model: str, since: datetime) -> list[dict[str, Any]]:
    """Every feedback record of ``model`` on predictions made at or after ``since``."""
    directory = folder.model_dir(model) / "feedback"
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.json")):
        if is_id(path.stem) and id_time(path.stem) >= since:
            try:
                found.append(json.loads(path.read_text()))
            except (FileNotFoundError, json.JSONDecodeError):
                continue
    return found
