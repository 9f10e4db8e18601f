"""What a scoring job reads: the images of a folder (recursively), of a CSV's first
column (or its ``path``/``image`` column), or under an fsspec URL prefix; each
named by its key, the name its output line carries and a rerun matches on."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.errors import ConfigError
from models.preprocessing import image_files, is_image_name

CSV_COLUMNS = ("path", "image")  # a header cell naming the column of image paths


@dataclass(frozen=True)
class Inputs:
    """``keys`` in a stable order (sorted for folders and prefixes, file order for a
    CSV), and ``read(key)``: that image's bytes."""

    keys: list[str]
    read: Callable[[str], bytes]

    def shard(self, index: int, count: int) -> Inputs:
        """The keys of shard ``index`` of ``count``: chosen by a hash of the key, so
        each key lands in the same shard whichever pod lists it, whenever."""
        return Inputs([k for k in self.keys if shard_of(k, count) == index], self.read)


def shard_of(key: str, count: int) -> int:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (0 <= I < N) as ``(I, N)``."""
    index, slash, count = text.partition("/")
    if not (slash and index.strip().isdigit() and count.strip().isdigit()):
        raise ConfigError(f"--shard {text!r}: write I/N, e.g. 0/4 (shard I of N, from 0)")
    i, n = int(index), int(count)
    if not 0 <= i < n:
        raise ConfigError(f"--shard {text!r}: I must be from 0 to N-1")
    return i, n


def list_inputs(source: str) -> Inputs:
    """The images of ``source``: a URL (``scheme://...``, through fsspec), a CSV file,
    or a folder."""
    if "://" in source:
        return _prefix(source)
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".csv":
        return _csv(path)
    if path.is_dir():
        files = image_files([path])
        keys = sorted(file.relative_to(path).as_posix() for file in files)
        return Inputs(keys, lambda key: (path / key).read_bytes())
    raise ConfigError(f"{source}: not a folder, a .csv file or a URL prefix (scheme://...)")


def _csv(path: Path) -> Inputs:
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row and row[0].strip()]
    column = 0
    if rows and any(cell.strip().lower() in CSV_COLUMNS for cell in rows[0]):
        header = [cell.strip().lower() for cell in rows.pop(0)]
        column = next(i for i, cell in enumerate(header) if cell in CSV_COLUMNS)
    keys = [row[column].strip() for row in rows if len(row) > column]
    duplicated = len(keys) - len(set(keys))
    if duplicated:
        raise ConfigError(f"{path}: {duplicated} image paths are listed more than once")
    # Relative paths are relative to the CSV's folder, as ktl train reads them.
    return Inputs(keys, lambda key: (path.parent / key).read_bytes())


def _prefix(url: str) -> Inputs:
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec is a dependency
        raise ConfigError(f"{url}: reading URLs needs fsspec (pip install fsspec)") from exc
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{url}: {exc}") from exc
    root = root.rstrip("/")
    found = fs.find(root) if fs.isdir(root) else []
    keys = sorted(p[len(root) + 1 :] for p in found if is_image_name(Path(p)))
    return Inputs(keys, lambda key: fs.cat_file(f"{root}/{key}"))
