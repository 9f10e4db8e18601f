"""decode_images: the one "decode these files, skip the bad ones" loop of training,
evaluation, scoring, INT8 calibration and ``ktl predict``."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from models.preprocessing import SkippedImage, decode_each, decode_images, load_image

SIZE = (8, 8)


@pytest.fixture
def files(tmp_path):
    """good, corrupt, good, missing, good: the good ones of different colours."""
    paths = []
    for i, colour in enumerate([(255, 0, 0), None, (0, 255, 0), "missing", (0, 0, 255)]):
        path = tmp_path / f"{i}.png"
        if isinstance(colour, tuple):
            Image.new("RGB", (12, 10), colour).save(path)
        elif colour is None:
            path.write_bytes(b"not an image at all")
        paths.append(path)
    return paths


@pytest.mark.parametrize("threads", [1, 3])
def test_yields_the_good_ones_in_order_and_reports_the_others(files, threads):
    skipped: list[SkippedImage] = []
    decoded = list(decode_images(files, SIZE, skipped.append, threads=threads))
    assert [image.position for image in decoded] == [0, 2, 4]
    assert [image.path for image in decoded] == [files[0], files[2], files[4]]
    for image in decoded:
        np.testing.assert_array_equal(image.pixels, load_image(image.path, SIZE))
        assert image.data is None
    assert [(s.position, s.path) for s in skipped] == [(1, files[1]), (3, files[3])]
    assert skipped[0].reason.startswith(str(files[1]))  # load_image's message
    assert "No such file" in skipped[1].reason
    assert skipped[0].record() == {"path": str(files[1]), "reason": skipped[0].reason}


def test_reports_each_skip_in_its_place_in_the_order(files):
    events: list[str] = []
    for image in decode_images(files, SIZE, lambda s: events.append(f"skip {s.position}")):
        events.append(f"image {image.position}")
    assert events == ["image 0", "skip 1", "image 2", "skip 3", "image 4"]


def test_keep_bytes_decodes_the_bytes_it_read(files):
    skipped: list[SkippedImage] = []
    decoded = list(decode_images(files, SIZE, skipped.append, keep_bytes=True))
    assert [image.data for image in decoded] == [files[i].read_bytes() for i in (0, 2, 4)]
    digest = hashlib.sha256(decoded[0].data or b"").hexdigest()
    assert digest == hashlib.sha256(files[0].read_bytes()).hexdigest()
    np.testing.assert_array_equal(decoded[1].pixels, load_image(files[2], SIZE))
    assert [s.position for s in skipped] == [1, 3]
    assert skipped[0].reason.startswith(str(files[1]))  # named by path, not "uploaded image"


def test_nothing_in_nothing_out():
    assert list(decode_images([], SIZE, pytest.fail)) == []


@pytest.mark.parametrize("threads", [1, 2])
def test_decode_each_takes_another_decoder_and_the_errors_it_skips(files, threads):
    def size_of(path):
        if path == files[2]:
            raise SyntaxError("a header Pillow could not parse")
        return load_image(path, SIZE).shape

    skipped: list[SkippedImage] = []
    errors = (OSError, SyntaxError, ValueError)
    decoded = list(decode_each(files, size_of, skipped.append, threads=threads, errors=errors))
    assert decoded == [(0, files[0], (8, 8, 3)), (4, files[4], (8, 8, 3))]
    assert [(s.position, s.reason) for s in skipped][1] == (2, "a header Pillow could not parse")
    assert [s.position for s in skipped] == [1, 2, 3]


def test_an_error_it_is_not_told_to_skip_is_raised(files):
    def broken(path):
        raise KeyError(path)

    with pytest.raises(KeyError):
        list(decode_each(files, broken, pytest.fail))
