"""The output of a scoring job: a JSONL file, one line per image, appended a batch at
a time (write, flush, fsync), so a killed job loses at most the batch in flight.

A rerun reads the file first: every complete line's ``image`` is done and skipped
(error lines too: a bad image stays bad); a last line cut off mid-write is removed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from models.errors import ConfigError


def part_path(out: Path, index: int, count: int) -> Path:
    """Shard ``index`` of ``count``'s own file: ``scores.jsonl`` becomes
    ``scores-00002-of-00008.jsonl``; unsharded, ``out`` itself."""
    if count == 1:
        return out
    return out.with_name(f"{out.stem}-{index:05d}-of-{count:05d}{out.suffix}")


def done_images(out: Path, model: str, version: int) -> set[str]:
    """The keys already written to ``out``; a cut-off last line is truncated away.
    Lines scored by another model or version are refused: one file, one version."""
    if not out.exists():
        return set()
    data = out.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(out, "r+b") as f:
            f.truncate(end)
            os.fsync(f.fileno())
    done: set[str] = set()
    for number, line in enumerate(data[:end].splitlines(), 1):
        record = _parsed(out, number, line)
        if "model" in record and (record["model"], record["version"]) != (model, version):
            raise ConfigError(
                f"{out} holds scores of {record['model']} version {record['version']} (line "
                f"{number}), not {model} version {version}: score into another file, or "
                f"name that version (ktl score {record['model']}:{record['version']} ...)"
            )
        done.add(record["image"])
    return done


def _parsed(out: Path, number: int, line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("image"), str):
        raise ConfigError(f"{out}, line {number}: not a line of ktl score; choose another --out")
    return record


class Writer:
    """Appends lines to ``out``, durably, one batch at a time."""

    def __init__(self, out: Path):
        out.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(out, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, records: list[dict[str, Any]]) -> None:
        self._file.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()
