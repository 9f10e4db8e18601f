"""Safe extraction of an uploaded dataset archive (.zip, .tar.gz/.tgz or .tar) into a folder.

The format is told by magic bytes, never by the upload's name. The member list is checked
whole (count, names, types, declared sizes) before anything is written; then each member
streams through a copy loop that counts the bytes it writes, since headers can lie. Files
are created ``O_EXCL | O_NOFOLLOW`` under ``dest`` only; on any error ``dest`` goes again."""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

from models.preprocessing import is_image_name
from service.jobs_api.archive_members import (
    ArchiveTooLarge,
    CorruptArchive,
    DuplicateArchiveMember,
    Member,
    NotAnArchive,
    TooManyFiles,
    UnsafeArchivePath,
    junk,
    tar_member,
    zip_member,
)
from service.jobs_api.tar_headers import CappedStream, check_headers

MB = 2**20
CHUNK = MB
FILES_SETTING = "KTL_MAX_DATASET_FILES"
BYTES_SETTING = "KTL_MAX_DATASET_MB"
_ENTRY_OVERHEAD = 4096  # most tar header bytes (header, pax record, padding) one entry takes
# What a damaged or truncated archive raises while it is read (never while we write).
_DECODE_ERRORS = (
    OSError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,
    tarfile.TarError,
    struct.error,
    NotImplementedError,
)


@dataclass(frozen=True)
class ArchiveLimits:
    max_files: int = 50_000  # entries (files and folders), junk not counted
    max_bytes: int = 4 * 2**30  # total uncompressed bytes
    max_ratio: float = 100.0  # uncompressed bytes per archive byte; images barely compress
    ratio_floor: int = 16 * MB  # the ratio applies only to archives unpacking to more


@dataclass(frozen=True)
class ArchiveSummary:
    files: int
    bytes: int
    format: Literal["zip", "tar"]


DEFAULT_LIMITS = ArchiveLimits()


@dataclass(frozen=True)
class _Budget:
    """The limits as they apply to one archive of ``size`` bytes."""

    limits: ArchiveLimits
    size: int

    @property
    def bytes(self) -> int:
        """The most it may unpack to: the byte limit, and the ratio past its floor."""
        ratio = max(self.limits.ratio_floor, int(self.limits.max_ratio * self.size))
        return min(self.limits.max_bytes, ratio)

    def check(self, count: int, total: int) -> None:
        if count > self.limits.max_files:
            raise TooManyFiles(
                f"The archive holds more than {self.limits.max_files:,} files and folders, "
                f"the limit ({FILES_SETTING})"
            )
        if total > self.bytes:
            raise self.too_large(total)

    def too_large(self, total: int | None = None) -> ArchiveTooLarge:
        amount = f" ({total / MB:,.1f} MB)" if total is not None else ""
        if self.bytes >= self.limits.max_bytes:
            return ArchiveTooLarge(
                f"The archive unpacks to more than the limit of {self.limits.max_bytes / MB:,.0f}"
                f" MB{amount} (set from {BYTES_SETTING}); refused as too large, or a "
                "compression bomb"
            )
        return ArchiveTooLarge(
            f"The archive unpacks to more than {self.limits.max_ratio:g} times its own "
            f"{self.size / MB:,.2f} MB{amount}, the compression ratio limit; refused as a "
            "compression bomb (images barely compress)"
        )


def extract(
    source: IO[bytes], dest: Path, limits: ArchiveLimits = DEFAULT_LIMITS
) -> ArchiveSummary:
    """Unpack the archive in the seekable ``source`` into ``dest``, which must not exist yet
    (its parent must). Raises an :class:`ArchiveError` (4xx) for an archive that is not
    one, is damaged, is too big, or holds anything but plain relative files and folders;
    ``dest`` is then gone and nothing was written anywhere else."""
    dest = Path(dest)
    dest.mkdir()
    try:
        return _extract(source, dest, limits)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def dataset_root(dest: Path) -> Path:
    """The folder inside ``dest`` when it holds that one folder and nothing else (archives
    made from a parent folder wrap everything in one); else ``dest`` itself."""
    entries = [entry for entry in Path(dest).iterdir() if not junk((entry.name,))]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return Path(dest)


def loose_images(root: Path, extracted: Path) -> str | None:
    """What is wrong with an unpacked archive whose images lie at its top level with no
    class folder, in the archive's own terms (the uploader never sees the server's folder);
    None when it has folders of images (or no images), which the job then reads."""
    entries = [entry for entry in root.iterdir() if not junk((entry.name,))]
    if any(entry.is_dir() for entry in entries):
        return None
    images = sum(1 for entry in entries if entry.is_file() and is_image_name(entry))
    if not images:
        return None
    where = "at its top level" if root == extracted else f"in its folder “{root.name}/”"
    return (
        f"The archive has {images} images {where} and no class folders, so there is no "
        "class to learn; put each class's images in a folder named after the class "
        "(cats/1.jpg, dogs/2.jpg, …), or in train/ and val/ folders laid out so, and zip "
        "those folders"
    )


def _extract(source: IO[bytes], dest: Path, limits: ArchiveLimits) -> ArchiveSummary:
    budget = _Budget(limits, source.seek(0, os.SEEK_END))
    source.seek(0)
    head = source.read(4)
    source.seek(0)
    if not head:
        raise NotAnArchive("The dataset file is empty; upload a .zip or .tar.gz archive")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        with _decoding("its table of contents"):
            archive = zipfile.ZipFile(source)
        with archive:
            members = _distinct(_listed(map(zip_member, archive.infolist()), budget))
            return _write_all(members, dest, budget, archive.open, "zip")
    return _extract_tar(source, dest, budget, gzipped=head.startswith(b"\x1f\x8b"))


def _extract_tar(
    source: IO[bytes], dest: Path, budget: _Budget, *, gzipped: bool
) -> ArchiveSummary:
    cap = budget.bytes + (budget.limits.max_files + 16) * _ENTRY_OVERHEAD
    opened = gzip.GzipFile(fileobj=source, mode="rb") if gzipped else nullcontext(source)
    with opened as raw:
        stream = CappedStream(cast(IO[bytes], raw), cap, budget.too_large)
        with _decoding("its headers"):
            check_headers(stream)
        stream.seek(0)
        archive = _open_tar(stream, gzipped=gzipped)
        with _decoding("its member list"):  # tar reads one header at a time, as _listed asks
            members = _distinct(_listed(map(tar_member, archive), budget))
        return _write_all(members, dest, budget, archive.extractfile, "tar")


def _open_tar(stream: CappedStream, *, gzipped: bool) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=cast(IO[bytes], stream), mode="r:")
    except tarfile.ReadError as exc:
        what = "a gzip file that holds no tar archive" if gzipped else "not an archive"
        raise NotAnArchive(
            f"The dataset file is {what} (told by its first bytes, not its name); upload a "
            ".zip, .tar.gz or .tar archive"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise CorruptArchive(f"The archive is damaged or truncated ({exc})") from exc


@contextmanager
def _decoding(where: str) -> Iterator[None]:
    """Turn what a damaged archive raises while it is read into a :class:`CorruptArchive`."""
    try:
        yield
    except _DECODE_ERRORS as exc:
        raise CorruptArchive(
            f"The archive is damaged or truncated (reading {where}: {exc}); upload it again, "
            "or make it again with zip or tar"
        ) from exc


def _listed(found: Iterable[Member | None], budget: _Budget) -> list[Member]:
    """The members worth writing, taken one at a time: the first over a limit stops it."""
    members: list[Member] = []
    total = 0
    for member in found:
        if member is not None:
            members.append(member)
            total += member.size
            budget.check(len(members), total)
    return members


def _distinct(kept: list[Member]) -> list[Member]:
    """The members, once no two of them claim the same path."""
    files: set[tuple[str, ...]] = set()
    folders: set[tuple[str, ...]] = set()
    for member in kept:
        if member.is_dir:
            folders.add(member.parts)
        elif member.parts in files:
            raise DuplicateArchiveMember(
                f"The archive holds {member.name!r} twice; each file may appear once"
            )
        else:
            files.add(member.parts)
        folders.update(member.parts[:end] for end in range(1, len(member.parts)))
    clash = files & folders
    if clash:
        raise DuplicateArchiveMember(
            f"The archive holds {'/'.join(min(clash))!r} both as a file and as a folder"
        )
    return kept


def _write_all(
    members: list[Member], dest: Path, budget: _Budget, opener: Callable[[Any], Any], fmt: Any
) -> ArchiveSummary:
    root = dest.resolve()
    written = files = 0
    for member in members:
        target = root.joinpath(*member.parts)
        if not target.resolve().is_relative_to(root) or target.resolve() == root:
            raise UnsafeArchivePath(f"Archive member {member.name!r} points outside its folder")
        if member.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with _decoding(repr(member.name)):
            stream = opener(member.ref)
        with stream:
            written += _copy(stream, target, member, budget.bytes - written)
        budget.check(0, written)
        files += 1
    return ArchiveSummary(files=files, bytes=written, format=fmt)


def _copy(stream: IO[bytes], target: Path, member: Member, budget: int) -> int:
    """Stream one member into a new file (never through a link), counting what is written;
    it stops just past its declared size or past what is left of the budget."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    written = 0
    with open(os.open(target, flags, 0o644), "wb") as out:
        while True:
            with _decoding(repr(member.name)):
                chunk = stream.read(CHUNK)
            written += len(chunk)
            if not chunk or written > budget:
                return written  # the caller refuses what is over the budget
            if written > member.size:
                raise CorruptArchive(
                    f"Archive member {member.name!r} unpacks to more than the "
                    f"{member.size:,} bytes its header declares; the archive is damaged "
                    "or forged"
                )
            out.write(chunk)
