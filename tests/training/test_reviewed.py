"""``ktl train --add-reviewed MODEL``: the reviewed captures join DATA's listing; DATA's
split is drawn as before (no image of DATA moves), each reviewed image by the same
hash rule at DATA's shares, and copies or near-copies of training images stay out
of validation and test (``training.dataset.reviewed``, ``held_out.draw``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from models.capture.folder import CaptureFolder
from models.capture.review import record_review
from models.errors import ConfigError
from tests.support.captures import png, write_capture
from tests.support.data import COLOURS, colour_image, make_colour_dataset
from training.config import build_config
from training.dataset.data import list_samples, prepare
from training.dataset.held_out import describe_reviewed
from training.dataset.reviewed import NoReview, with_reviewed
from training.dataset.splits import drawn_alike
from training.multilabel.recipe import refuse_unsupported

SIZE = (8, 8)
MODEL = "colours"
LABELS = [*COLOURS, "purple"]
SEED, VAL = 3, 0.2


def _prepare(listing, test_split=None):
    return prepare(
        listing, SIZE, val_split=VAL, test_split=test_split, seed=SEED, log=lambda m: None
    )


def _review(folder: CaptureFolder, images: list[tuple[Image.Image, str, int]]) -> None:
    """Capture each (image, label, version) as a prediction of that version, and
    label it in review."""
    for image, label, version in images:
        identifier = write_capture(
            folder, MODEL, png(image), labels=LABELS, top="red", confidence=0.5, version=version
        )
        record_review(folder, MODEL, identifier, label, by="cli")


def _where(listing, prepared) -> dict[str, str]:
    rows = {"train": prepared.train, "val": prepared.val, "test": prepared.test}
    return {str(listing.samples[i].path): name for name, part in rows.items() for i in part}


def _digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def reviewed(tmp_path):
    """DATA: 40 colour images a class (a test split with --test-split auto); a capture
    folder with 30 reviewed images, of versions 1 and 2."""
    data = make_colour_dataset(tmp_path / "data", per_class=40, size=16)
    folder = CaptureFolder(tmp_path / "capture")
    rng = np.random.default_rng(11)
    images = [
        (colour_image(COLOURS[label], 16, rng), label, 1 + k % 2)
        for k, label in enumerate(list(COLOURS) * 10)
    ]
    _review(folder, images)
    return data, folder


def test_reviewed_images_move_none_of_datas_and_land_by_their_hash(reviewed):
    data, folder = reviewed
    plain = list_samples(data)
    before = _where(plain, _prepare(plain))
    listing = with_reviewed(list_samples(data), MODEL, str(folder.root))
    prepared = _prepare(listing)
    after = _where(listing, prepared)
    assert {path: after[path] for path in before} == before  # no image of DATA moved
    added = [path for path in listing.reviewed]
    assert len(added) == 30
    test_share = prepared.report["test_split"]
    assert test_share > 0
    for path in added:  # each one where its hash falls, at DATA's shares
        assert after.get(path) in (drawn_alike(_digest(path), SEED, VAL, test_share), None)
    record = prepared.report["reviewed"]
    assert record["model"] == MODEL and record["added"] == 30
    assert sum(record["by_split"].values()) == record["images"] == sum(p in after for p in added)
    assert sum(record["by_version"].values()) == record["images"]
    assert set(record["by_version"]) == {"1", "2"}
    assert record["by_split"]["train"] > 0 and record["by_split"]["test"] > 0
    assert describe_reviewed(record).startswith(f"{record['images']} reviewed images of {MODEL}")


def test_a_reviewed_copy_is_never_in_two_splits_and_near_copies_stay_out_of_test(tmp_path):
    data = make_colour_dataset(tmp_path / "data", per_class=40, size=16)
    plain = list_samples(data)
    splits = _where(plain, _prepare(plain))
    trained = sorted(p for p, split in splits.items() if split == "train")
    tested = sorted(p for p, split in splits.items() if split == "test")
    folder = CaptureFolder(tmp_path / "capture")
    # exact copies of a training and a test image of DATA
    images = [(Image.open(trained[0]), Path(trained[0]).parent.name, 1)]
    images.append((Image.open(tested[0]), Path(tested[0]).parent.name, 1))
    # resized copies of a training image whose hash draws them into test
    source = Image.open(trained[1])
    near = []
    for size in range(17, 80):
        variant = source.resize((size, size), Image.Resampling.BICUBIC)
        digest = hashlib.sha256(png(variant)).hexdigest()
        if drawn_alike(digest, SEED, VAL, 0.15) == "test":
            near.append((variant, Path(trained[1]).parent.name, 2))
        if len(near) == 2:
            break
    assert len(near) == 2
    _review(folder, images + near)
    listing = with_reviewed(list_samples(data), MODEL, str(folder.root))
    prepared = _prepare(listing)
    rows = {"train": prepared.train, "val": prepared.val, "test": prepared.test}
    digests = {
        name: {_digest(listing.samples[i].path) for i in part} for name, part in rows.items()
    }
    assert not digests["train"] & (digests["val"] | digests["test"])
    assert _digest(tested[0]) in digests["test"]  # the copy of a test image went to test too
    where = _where(listing, prepared)
    near_paths = sorted(p for p in listing.reviewed if listing.reviewed[p] == 2)
    assert len(near_paths) == 2
    assert all(where.get(p) != "test" for p in near_paths)
    assert set(near_paths) <= set(prepared.report["removed_near_copies"])
    assert prepared.report["reviewed"]["by_version"] == {"1": 2}


def test_train_val_and_csv_data_take_reviewed_images(reviewed, tmp_path):
    data, folder = reviewed
    split_data = tmp_path / "split"
    for path in sorted(data.rglob("*.png")):
        n = int(path.stem.split("_")[1])
        target = split_data / ("val" if n % 4 == 0 else "train") / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    table = tmp_path / "data.csv"
    rows = [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(data.rglob("*.png"))]
    table.write_text("path,label\n" + "\n".join(rows) + "\n")
    for source in (split_data, table):
        plain = list_samples(source)
        before = _where(plain, _prepare(plain))
        listing = with_reviewed(list_samples(source), MODEL, str(folder.root))
        prepared = _prepare(listing)
        after = _where(listing, prepared)
        assert {path: after[path] for path in before} == before
        assert prepared.report["reviewed"]["images"] == sum(p in after for p in listing.reviewed)
        assert prepared.report["reviewed"]["by_split"]["train"] > 0


def test_reviewed_labels_must_be_classes_of_the_data(reviewed):
    data, folder = reviewed
    rng = np.random.default_rng(5)
    _review(folder, [(colour_image((150, 40, 200), 16, rng), "purple", 1)])
    with pytest.raises(ConfigError, match=r"not classes of the data: 'purple' \(1\)"):
        with_reviewed(list_samples(data), MODEL, str(folder.root))


def test_no_capture_folder_or_no_review_is_a_clear_error(reviewed, tmp_path):
    data, folder = reviewed
    with pytest.raises(ConfigError, match="give --capture-dir DIR or set KTL_CAPTURE_DIR"):
        with_reviewed(list_samples(data), MODEL, None)
    with pytest.raises(ConfigError, match="no such folder"):
        with_reviewed(list_samples(data), MODEL, str(tmp_path / "nowhere"))
    with pytest.raises(NoReview, match="no reviewed captures of flowers"):
        with_reviewed(list_samples(data), "flowers", str(folder.root))


def test_a_multilabel_job_refuses_add_reviewed():
    flags = {"data": "d.csv", "name": "m", "backbone": "smallcnn", "add_reviewed": MODEL}
    config = build_config({}, flags)
    with pytest.raises(ConfigError, match="--add-reviewed"):
        refuse_unsupported(config)


def test_a_job_of_several_workers_refuses_add_reviewed(reviewed):
    from training.multiworker.distributed import list_dataset

    data, folder = reviewed
    flags = {"data": str(data), "name": "m", "backbone": "smallcnn", "add_reviewed": MODEL}
    config = build_config({}, {**flags, "capture_dir": str(folder.root)})
    with pytest.raises(ConfigError, match="--add-reviewed is not available with more than one"):
        list_dataset(SimpleNamespace(workers=2), config, log=print)
