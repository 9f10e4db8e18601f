"""The decompressed stream of an uploaded tar, capped, and a pass over its raw 512-byte
headers before ``tarfile`` parses any.

CPython's tarfile before 3.11.10 / 3.12.6 searches a pax header with a regex that
backtracks on a long run of digits (CVE-2024-6232): a 474-byte .tar.gz holds the GIL
for seconds, freezing every thread of the worker. So the headers are read here first,
each pax and GNU long-name header held to ``MAX_EXTENDED_HEADER`` bytes (its cost, on an
unpatched interpreter, is then a few milliseconds), and the members tarfile would read
in ways this pass cannot follow (sparse files, a size given in a pax header) refused.
The pass walks members exactly as tarfile does, with tarfile's own number and checksum
functions, so both see the same headers."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from typing import IO

from models.errors import UserError

BLOCK = tarfile.BLOCKSIZE
MAX_EXTENDED_HEADER = 4096  # 22 ms of the regex, at worst; a path of up to MAX_PATH_BYTES fits
_PAX = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_LONG_NAMES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_SPARSE = "a sparse file (tar --sparse); make the archive again without --sparse"


class ExtendedHeaderTooLarge(UserError):
    code = "tar_header_too_large"


class SparseMember(UserError):
    code = "unsupported_archive_member"


class SizeInPaxHeader(UserError):
    code = "unsupported_archive_member"


class CappedStream:
    """A seekable view of a (decompressed) stream that refuses to go past ``cap`` bytes,
    so a tar.gz bomb, or a huge pax header, stops before it is inflated."""

    def __init__(self, raw: IO[bytes], cap: int, error: Callable[[], Exception]):
        self.raw, self.cap, self.error = raw, cap, error

    def read(self, size: int = -1) -> bytes:
        allowed = self.cap - self.raw.tell()
        if 0 <= size <= allowed:
            return self.raw.read(size)
        data = self.raw.read(max(allowed, 0) + 1)
        if len(data) > allowed:
            raise self.error()
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET and offset > self.cap:
            raise self.error()
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()


def check_headers(stream: CappedStream) -> None:
    """Read every header of the tar in ``stream`` (from where it is; the caller rewinds):
    refuses an oversized pax or GNU long-name header, a sparse member and a pax size."""
    offset = stream.tell()
    while True:
        stream.seek(offset)
        info = _header(stream.read(BLOCK))
        if info is None or info.size < 0:
            return  # the end, or what tarfile too takes for the end (or refuses itself)
        if info.type == tarfile.GNUTYPE_SPARSE:
            raise SparseMember(f"Archive member {info.name!r} is {_SPARSE}")
        extended = info.type in _PAX or info.type in _LONG_NAMES
        if extended:
            _check_extended(info, stream.read(min(info.size, MAX_EXTENDED_HEADER + 1)))
        offset += BLOCK
        # As tarfile does: the data of regular files and unknown types is skipped, and of
        # extended headers; other members' sizes say nothing.
        if extended or info.isreg() or info.type not in tarfile.SUPPORTED_TYPES:
            offset += -(-info.size // BLOCK) * BLOCK


def _header(block: bytes) -> tarfile.TarInfo | None:
    """The header in ``block``, or None where tarfile stops: a short or zero block, or a
    bad checksum."""
    try:
        return tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return None


def _check_extended(info: tarfile.TarInfo, data: bytes) -> None:
    what = "pax" if info.type in _PAX else "GNU long-name"
    if info.size > MAX_EXTENDED_HEADER:
        raise ExtendedHeaderTooLarge(
            f"The archive has a {what} header of {info.size:,} bytes ({info.name!r}); at "
            f"most {MAX_EXTENDED_HEADER:,} are accepted (long ones are used to stall tar "
            "readers, CVE-2024-6232)"
        )
    if info.type not in _PAX:
        return
    keys = {record.split(b"=", 1)[0].rpartition(b" ")[2] for record in data.split(b"\n")}
    if any(key.startswith(b"GNU.sparse.") for key in keys):
        raise SparseMember(f"An archive member is {_SPARSE}")
    if b"size" in keys:
        raise SizeInPaxHeader(
            "The archive gives a member's size in a pax header, which only files over 8 GB "
            "need; make the archive again with zip or a plain tar"
        )
