"""The capture folder on disk, one sub-folder per model:

```
<KTL_CAPTURE_DIR>/
  .quota                         the per-minute cap's count, under an flock
  <model>/
    log/<minute>-<writer>.jsonl  every prediction, one line each (no image); one writer each
    images/<id>.<ext>            a captured image, then its record <id>.json
    feedback/<id>.json           the true label a caller sent for a prediction
    reviewed/<id>.json           the label a person gave a capture (ktl review, /review)
```

``<minute>`` is the id's minute (``YYYYmmddHHMM``, UTC), so a prediction's line is
found from its id alone; ``<writer>`` is unique per writer (process and start), so
workers never share a file. Images and records go through the store's atomic writer.
Every path is built from a valid model name and an id (``models.ids``): nothing is
written outside the folder. Reading: ``models.capture.records``.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from models.ids import id_time, is_id
from models.store.atomic import write_bytes_atomically, write_json_atomically
from models.store.layout import validate_name

_IMAGE_KINDS = (
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF8", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tif"),
    (b"MM\x00*", "tif"),
)


def image_extension(data: bytes) -> str:
    """The file extension of encoded image bytes, from their magic number."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((ext for magic, ext in _IMAGE_KINDS if data.startswith(magic)), "img")


def minute_of(identifier: str) -> str:
    return id_time(identifier).strftime("%Y%m%d%H%M")


class CaptureFolder:
    def __init__(self, root: Path):
        self.root = Path(root)

    def model_dir(self, model: str) -> Path:
        return self.root / validate_name(model)

    def _checked_id(self, identifier: str) -> str:
        if not is_id(identifier):
            raise ValueError(f"{identifier!r} is not a prediction id")
        return identifier

    def log_files(self, model: str, minute: str | None = None) -> list[Path]:
        folder = self.model_dir(model) / "log"
        pattern = f"{minute}-*.jsonl" if minute else "*.jsonl"
        return sorted(folder.glob(pattern)) if folder.is_dir() else []

    def append_log(self, model: str, writer: str, records: Iterable[dict[str, Any]]) -> int:
        """Append one line per record to this writer's file of each record's minute;
        the bytes written."""
        by_minute: dict[str, list[str]] = defaultdict(list)
        for record in records:
            by_minute[minute_of(record["id"])].append(json.dumps(record) + "\n")
        folder = self.model_dir(model) / "log"
        folder.mkdir(parents=True, exist_ok=True)
        written = 0
        for minute, lines in by_minute.items():
            data = "".join(lines).encode()
            with open(folder / f"{minute}-{writer}.jsonl", "ab") as f:
                f.write(data)
            written += len(data)
        return written

    def write_capture(self, model: str, record: dict[str, Any], image: bytes, ext: str) -> int:
        """The image, then its record (whose presence says the capture is whole)."""
        identifier = self._checked_id(record["id"])
        folder = self.model_dir(model) / "images"
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(folder / f"{identifier}.{ext}", image)
        record = {**record, "image": f"{identifier}.{ext}"}
        write_json_atomically(folder / f"{identifier}.json", record)
        return len(image) + len(json.dumps(record))

    def write_feedback(self, model: str, record: dict[str, Any]) -> None:
        folder = self.model_dir(model) / "feedback"
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomically(folder / f"{self._checked_id(record['id'])}.json", record)

    def write_review(self, model: str, record: dict[str, Any]) -> None:
        """A person's label for a captured prediction (``models.capture.review``)."""
        folder = self.model_dir(model) / "reviewed"
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomically(folder / f"{self._checked_id(record['id'])}.json", record)

    def claim(self, minute: str, cap: int) -> bool:
        """Take one of the ``cap`` captures of ``minute``, across every worker; False
        when they are taken."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".quota", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
            f.seek(0)
            kept, _, count = f.read().partition(" ")
            taken = int(count) if kept == minute and count.strip().isdigit() else 0
            if taken >= cap:
                return False
            f.seek(0)
            f.truncate()
            f.write(f"{minute} {taken + 1}")
            return True

    def _reviewed_files(self) -> set[Path]:
        """A person's work, which the budget never prunes: the labels given, and the
        image and record of every capture that has one."""
        kept: set[Path] = set()
        for review in self.root.glob("*/reviewed/*.json"):
            images = review.parent.parent / "images"
            kept |= {review, images / f"{review.stem}.json"}
            kept |= set(images.glob(f"{review.stem}.*"))
        return kept

    def size(self) -> tuple[int, list[tuple[float, int, Path]]]:
        """Total bytes under the folder, and each file as (modified, bytes, path)."""
        files = []
        for path in self.root.rglob("*"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # another worker pruned it
                continue
            if path.is_file() and path.name != ".quota":
                files.append((stat.st_mtime, stat.st_size, path))
        return sum(size for _, size, _ in files), files

    def prune(self, max_bytes: int) -> int:
        """Remove the oldest files until the folder holds at most 90 % of ``max_bytes``
        (once over ``max_bytes``), never a reviewed capture or its label; the number
        removed."""
        total, files = self.size()
        if total <= max_bytes:
            return 0
        removed = 0
        kept = self._reviewed_files()
        for _, size, path in sorted(files):
            if total <= 0.9 * max_bytes:
                break
            if path in kept:
                continue
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
        return removed


def writer_token() -> str:
    """A name no other writer (worker, restart) uses: the process id and a random tail."""
    return f"{os.getpid()}-{os.urandom(4).hex()}"
