"""The one way ktl replaces a file in the store: the new content goes to a temporary
file in the same folder, which is flushed and fsynced, renamed over the old name in
one step, and then the folder is fsynced so the rename itself survives a crash. A
reader sees the old file or the new one, never half of one; a writer that fails
(or is killed) leaves the old file and no temporary behind it."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (see the module's docstring); ``OSError`` on
    failure, with ``path`` as it was."""

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as f:
            f.write(data)

    write_atomically(path, write)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Replace ``path`` with what ``write`` puts in the file it is given (a temporary
    beside ``path`` whose name ends as ``path``'s does, so writers that check the
    suffix, such as Keras' ``save_weights``, accept it)."""
    temporary = path.with_name(f".{uuid.uuid4().hex}.tmp-{path.name}")
    try:
        write(temporary)
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.rename(temporary, path)  # replaces path in one step (POSIX)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text_atomically(path: Path, text: str) -> None:
    """``write_bytes_atomically`` of ``text`` in UTF-8."""
    write_bytes_atomically(path, text.encode("utf-8"))


def write_json_atomically(path: Path, data: Any, *, indent: int | None = 2) -> None:
    """``data`` as JSON (``indent`` as ``json.dumps`` takes it), one newline at the end."""
    write_text_atomically(path, json.dumps(data, indent=indent) + "\n")


def fsync_dir(path: Path) -> None:
    """Make the entries of ``path`` (a rename, a new or removed file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root``, deepest first, then ``root``."""
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        else:
            fsync_dir(path)
    fsync_dir(root)
