"""Bundles: saved through the store, loaded only when every checksum matches, in safe mode."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest

from models.bundle import (
    FORMAT_VERSION,
    MODEL_FILE,
    BundleError,
    file_digests,
    load_bundle,
    save_bundle,
    sha256_file,
)
from models.store import METADATA_FILE, ModelStore, PublishError
from tests.models.tiny import IMAGE_SIZE, LABELS, make_tiny_model, tiny_metadata


def _pixels(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, *IMAGE_SIZE, 3)).astype("float32")


def _copy(bundle, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(bundle.path, target)
    return target


def _edit_metadata(folder, change) -> None:
    path = folder / METADATA_FILE
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))


def test_round_trip(tiny_bundle, tiny_model):
    assert tiny_bundle.name == "flowers"
    assert tiny_bundle.version == 1
    assert tiny_bundle.path.name == "1"
    assert tiny_bundle.labels == LABELS
    assert tiny_bundle.image_size == IMAGE_SIZE
    pixels = _pixels()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(tiny_bundle.model(pixels, training=False)),
        keras.ops.convert_to_numpy(tiny_model(pixels, training=False)),
        atol=1e-6,
    )


def test_metadata_is_filled_in(tiny_bundle):
    metadata = json.loads((tiny_bundle.path / METADATA_FILE).read_text())
    assert metadata["format_version"] == FORMAT_VERSION
    assert metadata["name"] == "flowers"
    assert metadata["version"] == 1
    assert metadata["files"] == {MODEL_FILE: sha256_file(tiny_bundle.path / MODEL_FILE)}
    assert {"tensorflow", "keras", "python"} <= metadata["framework"].keys()
    assert metadata["framework"]["keras"] == keras.__version__
    for key, value in tiny_metadata().items():
        assert metadata[key] == value


def test_reports_are_saved_and_checksummed(tmp_path, tiny_model):
    store = ModelStore(tmp_path)
    reports = {"metrics.json": b'{"accuracy": 1}', "plots/confusion.png": b"\x89PNG fake"}
    version, path = save_bundle(store, "flowers", tiny_model, tiny_metadata(), reports)
    assert version == 1
    for relative, data in reports.items():
        assert (path / "reports" / relative).read_bytes() == data
    metadata = json.loads((path / METADATA_FILE).read_text())
    assert metadata["files"] == file_digests(path)
    expected = {MODEL_FILE, "reports/metrics.json", "reports/plots/confusion.png"}
    assert set(metadata["files"]) == expected
    assert load_bundle(path).version == 1


def test_the_store_assigns_the_name_and_next_version(tmp_path, tiny_model):
    store = ModelStore(tmp_path)
    save_bundle(store, "flowers", tiny_model, tiny_metadata())
    metadata = {**tiny_metadata(), "name": "something else", "version": 99}
    version, path = save_bundle(store, "flowers", tiny_model, metadata)
    assert version == 2
    bundle = load_bundle(path)
    assert (bundle.name, bundle.version) == ("flowers", 2)


def test_a_tampered_model_is_refused(tiny_bundle, tmp_path):
    folder = _copy(tiny_bundle, tmp_path)
    with open(folder / MODEL_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(folder)


def test_a_tampered_report_is_refused(tmp_path, tiny_model):
    store = ModelStore(tmp_path / "store")
    _, path = save_bundle(store, "flowers", tiny_model, tiny_metadata(), {"a.txt": b"1"})
    (path / "reports" / "a.txt").write_bytes(b"2")
    with pytest.raises(BundleError, match=r"reports/a\.txt.*sha256"):
        load_bundle(path)


def test_missing_metadata(tiny_bundle, tmp_path):
    folder = _copy(tiny_bundle, tmp_path)
    (folder / METADATA_FILE).unlink()
    with pytest.raises(BundleError, match=METADATA_FILE):
        load_bundle(folder)


def test_corrupt_metadata(tiny_bundle, tmp_path):
    folder = _copy(tiny_bundle, tmp_path)
    (folder / METADATA_FILE).write_text("{not json")
    with pytest.raises(BundleError, match=METADATA_FILE):
        load_bundle(folder)


@pytest.mark.parametrize("key", ["name", "version", "labels", "image_size", "files"])
def test_metadata_missing_a_key(tiny_bundle, tmp_path, key):
    folder = _copy(tiny_bundle, tmp_path)
    _edit_metadata(folder, lambda metadata: metadata.pop(key))
    with pytest.raises(BundleError, match=f"'{key}'"):
        load_bundle(folder)


def test_missing_model_file(tiny_bundle, tmp_path):
    folder = _copy(tiny_bundle, tmp_path)
    (folder / MODEL_FILE).unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(folder)


def test_a_model_without_a_checksum_is_refused(tiny_bundle, tmp_path):
    folder = _copy(tiny_bundle, tmp_path)
    _edit_metadata(folder, lambda metadata: metadata["files"].clear())
    with pytest.raises(BundleError, match="no checksum"):
        load_bundle(folder)


def test_labels_must_match_the_outputs(tiny_bundle, tmp_path):
    folder = _copy(tiny_bundle, tmp_path)
    _edit_metadata(folder, lambda metadata: metadata["labels"].append("extra"))
    with pytest.raises(BundleError, match="3 outputs but metadata lists 4 labels"):
        load_bundle(folder)


def test_a_model_that_does_not_load_is_a_bundle_error(tiny_bundle, tmp_path):
    folder = _copy(tiny_bundle, tmp_path)
    (folder / MODEL_FILE).write_bytes(b"not a zip file")
    digest = sha256_file(folder / MODEL_FILE)
    _edit_metadata(folder, lambda metadata: metadata["files"].update({MODEL_FILE: digest}))
    with pytest.raises(BundleError, match="does not load"):
        load_bundle(folder)


def test_safe_mode_refuses_code_inside_the_bundle(tmp_path):
    inputs = keras.Input((*IMAGE_SIZE, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    _, path = save_bundle(ModelStore(tmp_path), "unsafe", model, tiny_metadata())
    with pytest.raises(BundleError, match="does not load"):
        load_bundle(path)


def test_a_failed_save_leaves_the_store_empty(tmp_path, monkeypatch):
    model = make_tiny_model()

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(model), "save", disk_full)
    store = ModelStore(tmp_path)
    with pytest.raises(PublishError, match="No space left"):
        save_bundle(store, "flowers", model, tiny_metadata())
    assert store.names() == []
    assert list((tmp_path / ".staging").iterdir()) == []
