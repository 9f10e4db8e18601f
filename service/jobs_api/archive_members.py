"""Which members of an uploaded dataset archive are accepted, checked before anything is
written: plain relative paths inside the archive's folder, regular files and folders only,
no encrypted or exotically compressed zip members; the junk macOS adds is skipped. The
errors of a refused archive live here too (each a ``UserError``: a 4xx with its code)."""

from __future__ import annotations

import os
import re
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from typing import Any

from models.errors import UserError

MAX_PATH_BYTES = 1024  # a member's whole path; the job folder's own path comes before it
_DRIVE = re.compile(r"^[A-Za-z]:")
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_LINK, _CHR, _BLK, _FIFO = "a symbolic link", "a character device", "a block device", "a FIFO"
_KINDS = {stat.S_IFLNK: _LINK, stat.S_IFCHR: _CHR, stat.S_IFBLK: _BLK, stat.S_IFIFO: _FIFO}
_TAR_KINDS = {
    tarfile.SYMTYPE: _LINK,
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: _CHR,
    tarfile.BLKTYPE: _BLK,
    tarfile.FIFOTYPE: _FIFO,
}
_ONLY = "only regular files and folders are accepted"


class ArchiveError(UserError):
    """An uploaded dataset archive that cannot be used; the message says why."""

    code = "invalid_archive"


class NotAnArchive(ArchiveError):
    code = "not_an_archive"


class CorruptArchive(ArchiveError):
    code = "corrupt_archive"


class UnsafeArchivePath(ArchiveError):
    code = "unsafe_archive_path"


class UnsupportedArchiveMember(ArchiveError):
    code = "unsupported_archive_member"


class DuplicateArchiveMember(ArchiveError):
    code = "duplicate_archive_member"


class TooManyFiles(ArchiveError):
    status = 413
    code = "too_many_files"


class ArchiveTooLarge(ArchiveError):
    status = 413
    code = "archive_too_large"


@dataclass(frozen=True)
class Member:
    name: str
    parts: tuple[str, ...]
    is_dir: bool
    size: int
    ref: Any  # the ZipInfo or TarInfo


def zip_member(info: zipfile.ZipInfo) -> Member | None:
    name = info.filename
    kind = stat.S_IFMT(info.external_attr >> 16)
    is_dir = name.endswith("/") or kind == stat.S_IFDIR
    parts = _parts(name, is_dir)
    if junk(parts):
        return None
    if not is_dir and kind not in (0, stat.S_IFREG):
        what = _KINDS.get(kind, f"of file type {kind:#o}")
        raise UnsupportedArchiveMember(f"Archive member {name!r} is {what}; {_ONLY}")
    if info.flag_bits & 0x1 or info.compress_type not in _ZIP_METHODS:
        raise UnsupportedArchiveMember(
            f"Archive member {name!r} is encrypted or compressed with zip method "
            f"{info.compress_type}; zip it again without a password, with deflate"
        )
    return Member(name, parts, is_dir, 0 if is_dir else info.file_size, info)


def tar_member(info: tarfile.TarInfo) -> Member | None:
    name = info.name
    is_dir = info.isdir()
    parts = _parts(name, is_dir)
    if junk(parts):
        return None
    if not is_dir and not info.isreg():  # sparse files: refused by check_headers
        what = _TAR_KINDS.get(info.type, f"a tar entry of type {info.type!r}")
        raise UnsupportedArchiveMember(f"Archive member {name!r} is {what}; {_ONLY}")
    if info.size < 0:  # base-256 sizes may be negative: one would hide another's bytes
        raise CorruptArchive(f"Archive member {name!r} declares a negative size")
    return Member(name, parts, is_dir, 0 if is_dir else info.size, info)


def _parts(name: str, is_dir: bool) -> tuple[str, ...]:
    """The path components of a member's name; :class:`UnsafeArchivePath` unless it is a
    plain relative path. A folder named only "." or "./" has none (it is skipped)."""
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    problem = _path_problem(name, parts, is_dir)
    if problem is not None:
        raise UnsafeArchivePath(
            f"Archive member {name!r} {problem}; every member must be a relative path "
            "inside the archive's own folder"
        )
    return parts


def _path_problem(name: str, parts: tuple[str, ...], is_dir: bool) -> str | None:
    if not parts and not is_dir:
        return "has an empty name"
    if "\x00" in name:
        return "contains a NUL byte"
    if "\\" in name:
        return "contains a backslash (a Windows path separator)"
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    if ".." in parts:
        return "climbs out of its folder with '..'"
    if any(len(os.fsencode(part)) > 255 for part in parts):
        return "has a name longer than 255 bytes"
    if len(os.fsencode(name)) > MAX_PATH_BYTES:
        return f"is a path longer than {MAX_PATH_BYTES:,} bytes"
    return None


def junk(parts: tuple[str, ...]) -> bool:
    """Nothing to extract: the archive's own "." folder, or what macOS adds to archives
    (``__MACOSX/``, ``.DS_Store``, ``._*`` AppleDouble files)."""
    return (
        not parts or "__MACOSX" in parts or parts[-1] == ".DS_Store" or parts[-1].startswith("._")
    )
