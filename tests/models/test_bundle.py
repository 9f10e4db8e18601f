"""Bundles: saved through the store, loaded only when every checksum matches, in safe mode."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from models.bundle import (
    MODEL_FILE,
    SEEN_FILE,
    BundleError,
    file_digests,
    load_bundle,
    read_metadata,
    save_bundle,
    seen_file,
    sha256_file,
)
from models.ids import is_id
from models.metadata import FORMAT_VERSION
from models.store import METADATA_FILE, ModelStore, PublishError
from tests.models.conftest import IMAGE_SIZE, LABELS, make_tiny_model, tiny_metadata


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
    for key, value in tiny_metadata().to_json().items():
        if key not in ("version", "files", "framework"):
            assert metadata[key] == value


def test_reports_are_saved_and_checksummed(tmp_path, tiny_model):
    store = ModelStore(tmp_path)
    reports = {"metrics.json": b'{"accuracy": 1}', "plots/confusion.png": b"\x89PNG fake"}
    version, path = save_bundle(store, tiny_model, tiny_metadata(), reports)
    assert version == 1
    for relative, data in reports.items():
        assert (path / "reports" / relative).read_bytes() == data
    metadata = json.loads((path / METADATA_FILE).read_text())
    assert metadata["files"] == file_digests(path)
    expected = {MODEL_FILE, "reports/metrics.json", "reports/plots/confusion.png"}
    assert set(metadata["files"]) == expected
    assert load_bundle(path).version == 1


def test_the_store_assigns_the_next_version_and_the_checksums(tmp_path, tiny_model):
    store = ModelStore(tmp_path)
    save_bundle(store, tiny_model, tiny_metadata())
    metadata = tiny_metadata().replace(version=99, files={"model.keras": "0" * 64})
    version, path = save_bundle(store, tiny_model, metadata)
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
    _, path = save_bundle(store, tiny_model, tiny_metadata(), {"a.txt": b"1"})
    (path / "reports" / "a.txt").write_bytes(b"2")
    with pytest.raises(BundleError, match=r"reports/a\.txt.*sha256"):
        load_bundle(path)


def test_the_images_a_version_learnt_from_are_recorded_and_checksummed(tmp_path, tiny_model):
    store = ModelStore(tmp_path / "store")
    _, old = save_bundle(store, tiny_model, tiny_metadata())
    assert load_bundle(old).seen() is None  # published before bundles recorded them
    recorded = {SEEN_FILE: seen_file(["ab" * 32, "cd" * 32])}
    _, path = save_bundle(store, tiny_model, tiny_metadata(), None, recorded)
    assert load_bundle(path).seen() == {"ab" * 32, "cd" * 32}
    (path / SEEN_FILE).write_text("ef" * 32 + "\n")
    with pytest.raises(BundleError, match=r"seen\.txt.*sha256"):
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
    _, path = save_bundle(ModelStore(tmp_path), model, tiny_metadata("unsafe"))
    with pytest.raises(BundleError, match="does not load"):
        load_bundle(path)


def test_a_failed_save_leaves_the_store_empty(tmp_path, monkeypatch):
    model = make_tiny_model()

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(model), "save", disk_full)
    store = ModelStore(tmp_path)
    with pytest.raises(PublishError, match="No space left"):
        save_bundle(store, model, tiny_metadata())
    assert store.names() == []
    assert list((tmp_path / ".staging").iterdir()) == []


# -- the format over time ------------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
V1 = FIXTURES / "store_v1" / "legacy" / "1"  # written by `ktl train` of ktl 0.1 (format 1)


def test_a_bundle_written_before_the_typed_contract_loads_and_predicts_as_it_did():
    bundle = load_bundle(V1)
    assert (bundle.name, bundle.version, bundle.labels) == ("legacy", 1, ["blue", "green", "red"])
    assert bundle.metadata.metrics.accuracy == pytest.approx(0.666667)
    images = [FIXTURES / "red.png", FIXTURES / "blue.png"]
    expected = json.loads((FIXTURES / "store_v1_predictions.json").read_text())  # by ktl 0.1
    answered = bundle.predict(images).model_dump(mode="json")
    for prediction in answered["predictions"]:
        # No threshold was published then: such a version always answers.
        decision = prediction.pop("decision")
        assert is_id(prediction.pop("id"))  # ids came after ktl 0.1
        assert decision["threshold"] == 0 and decision["label"] == prediction["top"][0]["label"]
    # Floats within a tolerance: AVX-512 machines differ from AVX2 in the last bits (6e-8).
    assert _floats_approx(answered) == expected


def _floats_approx(value):
    """``value`` with every float replaced by ``pytest.approx`` of it (abs 1e-6)."""
    if isinstance(value, float):
        return pytest.approx(value, abs=1e-6)
    if isinstance(value, dict):
        return {key: _floats_approx(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_floats_approx(item) for item in value]
    return value


def test_reading_metadata_loses_nothing():
    written = json.loads((V1 / METADATA_FILE).read_text())
    assert read_metadata(V1).to_json() == written


def test_keys_of_a_newer_ktl_are_kept(tiny_bundle, tmp_path):
    folder = _copy(tiny_bundle, tmp_path)
    _edit_metadata(folder, lambda metadata: metadata.update(future={"a": [1, 2]}))
    assert read_metadata(folder).to_json()["future"] == {"a": [1, 2]}


def test_a_newer_format_is_refused_with_what_to_do(tiny_bundle, tmp_path):
    folder = _copy(tiny_bundle, tmp_path)
    _edit_metadata(folder, lambda metadata: metadata.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(BundleError, match="newer ktl.*upgrade ktl"):
        load_bundle(folder)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m.update(labels=[]), "labels"),
        (lambda m: m.update(image_size=[16]), "image_size"),
        (lambda m: m.update(version="two"), "version"),
    ],
)
def test_metadata_of_the_wrong_shape_names_the_field(tiny_bundle, tmp_path, change, field):
    folder = _copy(tiny_bundle, tmp_path)
    _edit_metadata(folder, change)
    with pytest.raises(BundleError, match=f"not valid: {field}"):
        load_bundle(folder)
