"""Archives for the tests of dataset uploads: small builders, the hand-made zips that
zipfile would build too slowly (a 1 GiB bomb, 100,000 members) or could not build at
all (headers that lie), and a corpus of hostile archives."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

MB = 2**20
Entry = tuple[str | zipfile.ZipInfo, bytes]


def zip_folder(folder: Path, *, prefix: str = "") -> bytes:
    """Every file under ``folder`` zipped by its path relative to it, after ``prefix``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + str(path.relative_to(folder)))
    return buffer.getvalue()


def zip_bytes(entries: list[Entry], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries:
            archive.writestr(name or zipfile.ZipInfo(""), data)  # writestr("") fails
    return buffer.getvalue()


def tar_bytes(entries: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                archive.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                archive.addfile(info, io.BytesIO(entry[1]))
    return buffer.getvalue()


def tar_special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def zip_special(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, where the upper 16 bits of external_attr are st_mode
    info.external_attr = mode << 16
    return info


def raw_zip(members: Iterable[tuple[str, bytes, int, int]], method: int = 8) -> bytes:
    """A zip written by hand from (name, data as stored, CRC-32, size) members, with zip64
    end records so it may hold over 65,535: for archives zipfile would build too slowly, or
    whose headers lie."""
    body, central, count = bytearray(), bytearray(), 0
    for name, data, crc, size in members:
        encoded = name.encode()
        fields = (method, 0, 0x21, crc, len(data), size, len(encoded), 0)
        unix = (3 << 8) | 20, 20, 0, *fields, 0, 0, 0, 0o100644 << 16, len(body)
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", *unix) + encoded
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, *fields) + encoded + data
        count += 1
    start, end = len(body), len(body) + len(central)
    return bytes(
        body
        + central
        + struct.pack(
            "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, end - start, start
        )
        + struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
        + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, end - start, start, 0)
    )


def zeros_deflated(megabytes: int) -> tuple[bytes, int]:
    """``megabytes`` MiB of zeros, deflated, and their CRC-32. Once the window is all zeros,
    every further MiB compresses to the same block, so the stream is built from copies."""
    zeros, deflate = bytes(MB), zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(zeros) + deflate.flush(zlib.Z_SYNC_FLUSH)
    middle = deflate.compress(zeros) + deflate.flush(zlib.Z_SYNC_FLUSH)
    assert deflate.compress(zeros) + deflate.flush(zlib.Z_SYNC_FLUSH) == middle
    last = deflate.compress(zeros) + deflate.flush()
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(zeros, crc)
    return first + middle * (megabytes - 2) + last, crc


def pax_digits(digits: int) -> bytes:
    """A .tar.gz whose pax header is ``digits`` digits and nothing else, then one PNG: the
    input that stalls an unpatched tarfile for seconds (CVE-2024-6232)."""
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, digits
    png = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (4, 4)).save(png, "PNG")
    member = tarfile.TarInfo("a/1.png")
    member.size = len(png.getvalue())
    raw = (
        header.tobuf(tarfile.USTAR_FORMAT) + _padded(b"1" * digits)
        + member.tobuf(tarfile.USTAR_FORMAT) + _padded(png.getvalue()) + bytes(1024)
    )  # fmt: skip
    return gzip.compress(raw)


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % tarfile.BLOCKSIZE)


def hostile_corpus() -> dict[str, bytes]:
    """One archive of each kind an upload must refuse, by name."""
    zeros, crc = zeros_deflated(1024)
    jpeg = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(jpeg, "JPEG")
    good = zip_bytes([("a/1.png", b"x" * 2000), ("b/2.png", b"y" * 2000)])
    return {
        "zip-slip": zip_bytes([("../../evil.txt", b"x")]),
        "nested zip-slip": zip_bytes([("a/../../evil.txt", b"x")]),
        "absolute path (zip)": zip_bytes([("/tmp/evil.txt", b"x")]),
        "absolute path (tar)": tar_bytes([("/tmp/evil.txt", b"x")]),
        "symlink (tar)": tar_bytes([tar_special("a/link", tarfile.SYMTYPE, "/etc/passwd")]),
        "symlink (zip)": zip_bytes([(zip_special("a/link", 0o120777), b"/etc/passwd")]),
        "hard link (tar)": tar_bytes([tar_special("a/link", tarfile.LNKTYPE, "/etc/passwd")]),
        "device (tar)": tar_bytes([tar_special("a/dev", tarfile.CHRTYPE)]),
        "1 GB zip bomb": raw_zip([("a/zeros.png", zeros, crc, 1024 * MB)]),
        "100,000 files": raw_zip(
            ((f"c/{index}.jpg", b"", 0, 0) for index in range(100_000)), method=0
        ),
        "truncated zip": good[: len(good) // 2],
        "not an archive (jpeg)": jpeg.getvalue(),
        "empty body": b"",
        "pax header of 150,000 digits": pax_digits(150_000),
        "sparse member (tar)": tar_bytes([tar_special("a/sparse.png", tarfile.GNUTYPE_SPARSE)]),
        "path over 1,024 bytes": tar_bytes([("/".join(["d" * 200] * 6) + "/1.png", b"x")]),
        "empty zip": zip_bytes([]),
        "only macOS junk": zip_bytes([("__MACOSX/._a.png", b"x"), (".DS_Store", b"x")]),
        "gzip of zeros": gzip.compress(bytes(10240)),
    }
