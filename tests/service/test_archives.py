"""service.jobs_api.archives: a corpus of hostile archives, each refused with its own 4xx error and
nothing left outside the extraction folder; and the good ones, unpacked byte for byte."""

from __future__ import annotations

import gzip
import io
import itertools
import random
import stat
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from models.errors import UserError
from service.jobs_api.archive_members import (
    ArchiveError,
    ArchiveTooLarge,
    CorruptArchive,
    DuplicateArchiveMember,
    NotAnArchive,
    TooManyFiles,
    UnsafeArchivePath,
    UnsupportedArchiveMember,
)
from service.jobs_api.archives import ArchiveLimits, ArchiveSummary, dataset_root, extract
from service.jobs_api.tar_headers import ExtendedHeaderTooLarge, SizeInPaxHeader, SparseMember
from tests.support.archives import MB, Entry, pax_digits
from tests.support.archives import raw_zip as _raw_zip
from tests.support.archives import tar_bytes as _tar
from tests.support.archives import tar_special as _special
from tests.support.archives import zeros_deflated as _zeros_deflated
from tests.support.archives import zip_bytes as _zip
from tests.support.archives import zip_special as _zip_special


def _bytes(size: int, seed: int = 0) -> bytes:
    """Incompressible content, like an image's."""
    return random.Random(seed).randbytes(size)


def _tree(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def _refuse(
    tmp_path: Path, data: bytes, error: type[UserError], limits: ArchiveLimits | None = None
) -> UserError:
    """Extract ``data`` into tmp_path/job/dataset expecting ``error``; nothing may be left
    behind, in the job folder or above it."""
    dest = tmp_path / "job" / "dataset"
    dest.parent.mkdir(exist_ok=True)
    before = _tree(tmp_path)
    with pytest.raises(error) as caught:
        extract(io.BytesIO(data), dest, limits or ArchiveLimits())
    assert _tree(tmp_path) == before
    assert not dest.exists()
    assert isinstance(caught.value, UserError)
    assert 400 <= caught.value.status < 500 and caught.value.code == error.code
    return caught.value


def _unpack(tmp_path: Path, data: bytes, name: str = "upload.tmp") -> tuple[Path, ArchiveSummary]:
    upload = tmp_path / name
    upload.write_bytes(data)
    dest = tmp_path / "job" / "dataset"
    dest.parent.mkdir(exist_ok=True)
    with upload.open("rb") as source:
        summary = extract(source, dest, ArchiveLimits())
        assert not source.closed  # the caller's file stays the caller's
    return dest, summary


def test_the_hand_built_zip_of_zeros_is_a_valid_zip():
    data, crc = _zeros_deflated(5)
    with zipfile.ZipFile(io.BytesIO(_raw_zip([("zeros.bin", data, crc, 5 * MB)]))) as archive:
        assert archive.testzip() is None
        assert archive.read("zeros.bin") == bytes(5 * MB)


@pytest.fixture(scope="module")
def gib_of_zeros() -> tuple[bytes, int]:
    return _zeros_deflated(1024)


@pytest.fixture(scope="module")
def bomb(gib_of_zeros) -> bytes:
    """A zip of one 1 GiB member of zeros, about 1 MB."""
    data, crc = gib_of_zeros
    return _raw_zip([("zeros.bin", data, crc, 1024 * MB)])


@pytest.fixture(scope="module")
def many_files() -> bytes:
    """A zip of 100,000 empty members."""
    return _raw_zip(((f"c/{index}.jpg", b"", 0, 0) for index in range(100_000)), method=0)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (NotAnArchive, 400, "not_an_archive"),
        (CorruptArchive, 400, "corrupt_archive"),
        (UnsafeArchivePath, 400, "unsafe_archive_path"),
        (UnsupportedArchiveMember, 400, "unsupported_archive_member"),
        (DuplicateArchiveMember, 400, "duplicate_archive_member"),
        (TooManyFiles, 413, "too_many_files"),
        (ArchiveTooLarge, 413, "archive_too_large"),
    ],
)
def test_each_refusal_is_a_user_error_with_its_status_and_code(error, status, code):
    assert issubclass(error, ArchiveError) and issubclass(error, UserError)
    assert (error.status, error.code) == (status, code)


# Paths that escape ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "ok/../../../evil.txt"])
@pytest.mark.parametrize("build", [_zip, _tar], ids=["zip", "tar.gz"])
def test_zip_slip_is_refused(tmp_path, build, name):
    error = _refuse(tmp_path, build([("cats/1.jpg", b"x"), (name, b"evil")]), UnsafeArchivePath)
    assert "'..'" in error.message and name in error.message
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("build", [_zip, _tar], ids=["zip", "tar.gz"])
def test_absolute_paths_are_refused(tmp_path, build):
    target = tmp_path / "absolute-evil.txt"
    error = _refuse(tmp_path, build([(str(target), b"evil")]), UnsafeArchivePath)
    assert "absolute path" in error.message
    assert not target.exists()


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("C:/evil.txt", "drive letter"),
        ("c:evil.txt", "drive letter"),
        ("..\\evil.txt", "backslash"),
        ("cats\\1.jpg", "backslash"),
        ("", "empty name"),
        ("x" * 256 + "/1.jpg", "longer than 255 bytes"),
    ],
)
def test_names_that_are_not_plain_relative_paths_are_refused(tmp_path, name, problem):
    assert problem in _refuse(tmp_path, _zip([(name, b"x")]), UnsafeArchivePath).message


# Members that are not files or folders -------------------------------------------------


@pytest.mark.parametrize(
    ("info", "what"),
    [
        (_special("cats/link.jpg", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (_special("cats/inside.jpg", tarfile.SYMTYPE, "1.jpg"), "symbolic link"),
        (_special("cats/hard.jpg", tarfile.LNKTYPE, "/etc/passwd"), "hard link"),
        (_special("cats/hard2.jpg", tarfile.LNKTYPE, "cats/1.jpg"), "hard link"),
        (_special("cats/null", tarfile.CHRTYPE), "character device"),
        (_special("cats/disk", tarfile.BLKTYPE), "block device"),
        (_special("cats/pipe", tarfile.FIFOTYPE), "FIFO"),
    ],
    ids=lambda value: value if isinstance(value, str) else value.name,
)
def test_links_devices_and_fifos_in_a_tar_are_refused(tmp_path, info, what):
    data = _tar([("cats/1.jpg", b"x"), info])
    error = _refuse(tmp_path, data, UnsupportedArchiveMember)
    assert what in error.message and info.name in error.message


@pytest.mark.parametrize(
    ("mode", "what"),
    [
        (stat.S_IFLNK | 0o777, "symbolic link"),
        (stat.S_IFIFO | 0o644, "FIFO"),
        (stat.S_IFCHR | 0o644, "character device"),
    ],
)
def test_symlinks_and_devices_in_a_zip_are_refused(tmp_path, mode, what):
    data = _zip([("cats/1.jpg", b"x"), (_zip_special("cats/link.jpg", mode), b"/etc/passwd")])
    assert what in _refuse(tmp_path, data, UnsupportedArchiveMember).message


def test_an_encrypted_zip_member_is_refused(tmp_path):
    data = bytearray(_raw_zip([("cats/1.jpg", b"x", zlib.crc32(b"x"), 1)], method=0))
    data[6] |= 0x1  # the local header's flags, then the central directory's
    data[data.index(b"PK\x01\x02") + 8] |= 0x1
    error = _refuse(tmp_path, bytes(data), UnsupportedArchiveMember)
    assert "encrypted" in error.message


# Duplicates ----------------------------------------------------------------------------


def test_a_file_twice_in_a_zip_is_refused(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = _zip([("cats/1.jpg", b"first"), ("cats/1.jpg", b"second")])
    assert "twice" in _refuse(tmp_path, data, DuplicateArchiveMember).message


def test_a_file_twice_in_a_tar_is_refused(tmp_path):
    data = _tar([("cats/1.jpg", b"first"), ("./cats/1.jpg", b"second")])
    _refuse(tmp_path, data, DuplicateArchiveMember)


def test_a_name_used_as_a_file_and_a_folder_is_refused(tmp_path):
    data = _zip([("cats", b"a file"), ("cats/1.jpg", b"x")])
    assert (
        "both as a file and as a folder" in _refuse(tmp_path, data, DuplicateArchiveMember).message
    )


# Bombs and counts ----------------------------------------------------------------------


def test_a_1_gb_zip_bomb_is_refused_before_anything_is_written(tmp_path, bomb):
    assert len(bomb) < 8 * MB
    error = _refuse(tmp_path, bomb, ArchiveTooLarge)  # from the member list: nothing inflated
    assert "compression bomb" in error.message and "ratio" in error.message
    assert "100 times" in error.message


def test_an_archive_over_the_byte_limit_is_refused_whatever_its_ratio(tmp_path, bomb):
    limits = ArchiveLimits(max_bytes=100 * MB, max_ratio=1e9)
    error = _refuse(tmp_path, bomb, ArchiveTooLarge, limits)
    assert "limit of 100 MB" in error.message and "KTL_MAX_DATASET_MB" in error.message


def test_a_bomb_whose_header_understates_its_size_is_refused(tmp_path, gib_of_zeros):
    data, crc = gib_of_zeros
    forged = _raw_zip([("zeros.bin", data, crc, 4 * MB)])  # passes the list check
    assert "damaged" in _refuse(tmp_path, forged, CorruptArchive).message


def test_a_header_that_understates_the_size_unpacks_no_more_than_it_declares(
    tmp_path, gib_of_zeros
):
    declared = 3 * MB + 5
    data, _ = gib_of_zeros
    forged = _raw_zip([("zeros.bin", data, zlib.crc32(bytes(declared)), declared)])
    dest, summary = _unpack(tmp_path, forged)
    assert (dest / "zeros.bin").stat().st_size == declared
    assert summary == ArchiveSummary(files=1, bytes=declared, format="zip")


def test_a_tar_gz_bomb_is_refused(tmp_path):
    data = _tar([("zeros.bin", bytes(64 * MB))])
    assert len(data) < MB
    assert "compression bomb" in _refuse(tmp_path, data, ArchiveTooLarge).message


def _pax(pax_headers: dict[str, str], *, global_: dict[str, str] | None = None) -> bytes:
    info = tarfile.TarInfo("cats/1.jpg")
    info.pax_headers = pax_headers
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers=global_
    ) as archive:
        archive.addfile(info, io.BytesIO(b""))
    return buffer.getvalue()


def test_a_tar_gz_with_a_huge_pax_header_stops_before_inflating_it(tmp_path):
    data = _pax({"comment": "x" * (48 * MB)})
    error = _refuse(tmp_path, data, ExtendedHeaderTooLarge, ArchiveLimits(max_files=10))
    assert "4,096" in error.message


@pytest.mark.parametrize("digits", [150_000, 600_000])
def test_a_pax_header_of_digits_is_refused_before_tarfile_reads_it(tmp_path, digits):
    """CVE-2024-6232: tarfile of Python < 3.11.10 takes seconds (150,000 digits) to
    minutes (600,000) over this header; it must never see it."""
    data = pax_digits(digits)
    assert len(data) < 1000
    error = _refuse(tmp_path, data, ExtendedHeaderTooLarge)
    assert f"{digits:,} bytes" in error.message and "CVE-2024-6232" in error.message


def test_a_gnu_long_name_over_the_bound_is_refused(tmp_path):
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = tarfile.GNUTYPE_LONGNAME, 5000
    raw = header.tobuf(tarfile.USTAR_FORMAT) + b"a" * 5000 + bytes(-5000 % 512 + 1024)
    assert "GNU long-name" in _refuse(tmp_path, raw, ExtendedHeaderTooLarge).message


def test_modest_pax_headers_and_a_global_one_unpack(tmp_path):
    name = "chats/é" + "x" * 150 + ".jpg"  # non-ASCII and over 100 bytes: a pax path
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": "1" * 40}
    ) as archive:  # a global header, as git archive writes
        info = tarfile.TarInfo(name)
        info.size = 3
        archive.addfile(info, io.BytesIO(b"abc"))
    dest, summary = _unpack(tmp_path, buffer.getvalue())
    assert summary.files == 1 and (dest / name).read_bytes() == b"abc"


@pytest.mark.parametrize(
    "build",
    [
        lambda: _tar([_special("cats/s.jpg", tarfile.GNUTYPE_SPARSE)]),
        lambda: _pax({"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}),
    ],
    ids=["gnu", "pax"],
)
def test_a_sparse_member_has_its_own_message(tmp_path, build):
    error = _refuse(tmp_path, build(), SparseMember)
    assert "sparse file" in error.message and "type" not in error.message


def test_a_size_in_a_pax_header_is_refused(tmp_path):
    assert "size" in _refuse(tmp_path, _pax({"size": "0"}), SizeInPaxHeader).message


def test_a_path_over_the_length_limit_is_refused_before_anything_is_written(tmp_path):
    name = "/".join(["d" * 200] * 6) + "/1.jpg"  # each part under 255 bytes
    error = _refuse(tmp_path, _tar([(name, b"x")]), UnsafeArchivePath)
    assert "1,024 bytes" in error.message


def test_100_000_files_are_refused_before_anything_is_written(tmp_path, many_files):
    error = _refuse(tmp_path, many_files, TooManyFiles)
    assert "KTL_MAX_DATASET_FILES" in error.message and "50,000" in error.message


def test_a_tar_over_the_file_limit_is_refused(tmp_path):
    data = _tar([(f"cats/{index}.jpg", b"x") for index in range(5)])
    assert "3" in _refuse(tmp_path, data, TooManyFiles, ArchiveLimits(max_files=3)).message


# Damaged archives and non-archives -----------------------------------------------------


def _classes(build) -> bytes:
    return build(
        [(f"{label}/{index}.jpg", _bytes(20_000, index)) for label in "ab" for index in range(3)]
    )


@pytest.mark.parametrize(
    "build",
    [_zip, _tar, lambda entries: _tar(entries, "w")],
    ids=["zip", "tar.gz", "tar"],
)
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_a_truncated_archive_is_refused(tmp_path, build, keep):
    data = _classes(build)
    error = _refuse(tmp_path, data[: int(len(data) * keep)], CorruptArchive)
    assert "damaged or truncated" in error.message


def test_a_zip_with_a_corrupt_member_is_refused(tmp_path):
    data = bytearray(_zip([("cats/1.jpg", _bytes(20_000))], zipfile.ZIP_STORED))
    data[1000] ^= 0xFF  # the stored bytes no longer match their CRC
    _refuse(tmp_path, bytes(data), CorruptArchive)


def test_gzip_magic_followed_by_garbage_is_refused(tmp_path):
    _refuse(tmp_path, b"\x1f\x8b" + _bytes(4096), CorruptArchive)


def test_a_tar_member_with_a_negative_size_is_refused(tmp_path):
    data = bytearray(_tar([("cats/1.jpg", b"")], "w"))
    data[124:136] = b"\xff" * 12  # base-256: -1
    data[148:156] = b"%06o\x00 " % (sum(data[:148]) + 8 * 32 + sum(data[156:512]))
    assert "negative" in _refuse(tmp_path, bytes(data), CorruptArchive).message


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [_jpeg(), _bytes(4096), b"", b"PK", gzip.compress(b"label,file\n" * 100), b"\x00" * 100],
    ids=["jpeg", "random", "empty", "tiny", "gzip-not-tar", "zeros"],
)
def test_a_file_that_is_not_an_archive_is_refused(tmp_path, data):
    error = _refuse(tmp_path, data, NotAnArchive)
    assert ".zip" in error.message


# Good archives ---------------------------------------------------------------------------

DATASET = {
    f"{label}/{index}.jpg": _bytes(3000, seed)
    for seed, (label, index) in enumerate(itertools.product(("cats", "dogs"), range(3)))
}


def _expect_dataset(root: Path) -> None:
    files = {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*.jpg")}
    assert files == DATASET
    assert {path.name for path in root.iterdir()} == {"cats", "dogs"}


@pytest.mark.parametrize(
    ("build", "fmt"),
    [(_zip, "zip"), (_tar, "tar"), (lambda entries: _tar(entries, "w"), "tar")],
    ids=["zip", "tar.gz", "tar"],
)
def test_a_class_per_folder_archive_unpacks_byte_for_byte(tmp_path, build, fmt):
    before = _tree(tmp_path)
    dest, summary = _unpack(tmp_path, build(list(DATASET.items())), name="dataset.zip")
    _expect_dataset(dest)
    assert summary == ArchiveSummary(files=6, bytes=sum(map(len, DATASET.values())), format=fmt)
    assert {path.split("/")[0] for path in _tree(tmp_path) - before} == {"job", "dataset.zip"}
    assert dataset_root(dest) == dest


def test_folder_members_and_a_dot_prefix_are_fine(tmp_path):
    folders = [_special("./", tarfile.DIRTYPE), _special("./cats", tarfile.DIRTYPE)]
    entries = [(f"./{name}", data) for name, data in DATASET.items()]
    dest, _ = _unpack(tmp_path, _tar([*folders, *entries, _special("./empty", tarfile.DIRTYPE)]))
    assert (dest / "empty").is_dir()
    (dest / "empty").rmdir()
    _expect_dataset(dest)


def test_a_single_wrapper_folder_is_kept_and_named_by_dataset_root(tmp_path):
    entries = [(f"photos/{name}", data) for name, data in DATASET.items()]
    dest, _ = _unpack(tmp_path, _zip([("photos/", b""), *entries]))
    assert [path.name for path in dest.iterdir()] == ["photos"]
    _expect_dataset(dest / "photos")
    assert dataset_root(dest) == dest / "photos"


def test_macos_junk_is_skipped(tmp_path):
    junk: list[Entry] = [
        ("__MACOSX/", b""),
        ("__MACOSX/photos/cats/._1.jpg", b"apple double"),
        ("photos/.DS_Store", b"finder"),
        ("photos/cats/._1.jpg", b"apple double"),
        (_zip_special("__MACOSX/photos/link", stat.S_IFLNK | 0o777), b"/etc/passwd"),
    ]
    entries = [(f"photos/{name}", data) for name, data in DATASET.items()]
    dest, summary = _unpack(tmp_path, _zip([*junk, *entries]))
    assert [path.name for path in dest.iterdir()] == ["photos"]
    _expect_dataset(dest / "photos")
    assert summary.files == 6
    assert dataset_root(dest) == dest / "photos"


@pytest.mark.parametrize(
    "data", [_zip([]), _tar([], "w"), bytes(10240)], ids=["zip", "tar", "zeros"]
)
def test_an_empty_archive_unpacks_to_an_empty_folder(tmp_path, data):
    dest, summary = _unpack(tmp_path, data)
    assert list(dest.iterdir()) == []
    assert (summary.files, summary.bytes) == (0, 0)


def test_an_existing_destination_is_neither_used_nor_removed(tmp_path):
    dest = tmp_path / "dataset"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        extract(io.BytesIO(_zip(list(DATASET.items()))), dest, ArchiveLimits())
    assert _tree(dest) == {"keep.txt"}


def test_a_small_archive_is_not_held_to_the_ratio(tmp_path):
    dest, summary = _unpack(tmp_path, _zip([("cats/blank.bmp", bytes(2 * MB))]))
    assert summary.bytes == 2 * MB


# dataset_root ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        (["wrap/"], "wrap"),
        (["wrap/", ".DS_Store"], "wrap"),
        (["wrap/", "__MACOSX/"], "wrap"),
        (["wrap/", "labels.csv"], "."),
        (["cats/", "dogs/"], "."),
        (["only.jpg"], "."),
        ([], "."),
    ],
)
def test_dataset_root(tmp_path, layout, expected):
    for name in layout:
        if name.endswith("/"):
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_bytes(b"x")
    assert dataset_root(tmp_path) == tmp_path / expected


def test_dataset_root_does_not_follow_a_lone_symlink(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link").symlink_to(tmp_path / "elsewhere")
    assert dataset_root(tmp_path / "data") == tmp_path / "data"


# Any name ------------------------------------------------------------------------------

_PIECES = st.sampled_from(["..", ".", "", "a", "b", "C:", "\\", "__MACOSX", "._x", "/"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_PIECES, min_size=1, max_size=4).map("/".join), max_size=4))
def test_whatever_the_names_nothing_lands_outside_dest(names):
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        dest = root / "job" / "dataset"
        dest.parent.mkdir()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # zipfile warns of a name given twice
                data = _zip([(name, b"x") for name in names])
            extract(io.BytesIO(data), dest, ArchiveLimits())
        except ArchiveError as error:
            assert error.status == 400
            assert _tree(root) == {"job"}
        else:
            assert all(path.resolve().is_relative_to(dest) for path in dest.rglob("*"))
            assert {path.split("/")[0] for path in _tree(root)} == {"job"}
