"""The recipe end to end in-process: weights from a file in the official layout,
what each phase may change, and resuming an interrupted job."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from models.bundle import load_bundle
from models.networks.backbones import get_backbone
from models.store import ModelStore
from models.store.progress import JobProgress
from tests.legacy_h5 import write_legacy_h5
from tests.support.data import make_colour_dataset
from training import distribution, job
from training.config import ConfigError, build_config
from training.dataset.data import DataError
from training.fitting import finetune, recipe

pytestmark = pytest.mark.slow

SIZE = 32


def _file_weights(path) -> dict[str, list[np.ndarray]]:
    with h5py.File(path, "r") as f:
        return {
            name: [np.array(f[name][w]) for w in f[name].attrs["weight_names"]]
            for name in f
            if len(f[name].attrs["weight_names"])
        }


def _backbone_of(bundle_model, name="resnet50"):
    return bundle_model.get_layer(name)


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    path = (
        tmp_path_factory.mktemp("weights") / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )
    write_legacy_h5(get_backbone("resnet50").build((SIZE, SIZE, 3), None), path)
    return path


def _run(tmp_path, **settings):
    data = tmp_path / "data"
    if not data.exists():
        make_colour_dataset(data, per_class=6, size=SIZE)
    flags = {"data": str(data), "name": "job", "store": str(tmp_path / "store"), **settings}
    return job.run_job(build_config({}, flags), log=lambda message: None)


def test_head_only_run_leaves_the_file_weights_exactly(tmp_path, resnet_file):
    result = _run(
        tmp_path, backbone="resnet50", weights=str(resnet_file), image_size=SIZE,
        epochs=1, fine_tune_epochs=0, augment=False, batch_size=8, min_steps=0,
    )  # fmt: skip
    backbone = _backbone_of(load_bundle(result.path).model)
    expected = _file_weights(resnet_file)
    assert len(expected) == sum(1 for layer in backbone.layers if layer.weights)
    for name, arrays in expected.items():
        saved = [w.numpy() for w in backbone.get_layer(name).trainable_weights] + [
            w.numpy() for w in backbone.get_layer(name).non_trainable_weights
        ]
        for got, want in zip(saved, arrays, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=name)
    assert [(p["name"], p["epochs"]) for p in result.training["phases"]] == [("head", 1)]


def test_fine_tuning_trains_only_the_top_block_and_keeps_batchnorm_frozen(tmp_path):
    # smallcnn from a file: three conv-BatchNorm blocks, the same rule as any backbone's
    # (resnet50's default unfreeze point is test_phases' and test_backbones' to check).
    weights = _smallcnn_file(tmp_path)
    result = _run(
        tmp_path, backbone="smallcnn", weights=str(weights), image_size=16, epochs=1,
        min_steps=0, fine_tune_epochs=1, fine_tune_lr=1e-2, unfreeze_from="block3_conv1",
        augment=False, batch_size=8,
    )  # fmt: skip
    backbone = _backbone_of(load_bundle(result.path).model, "smallcnn")
    names = [layer.name for layer in backbone.layers]
    start = names.index("block3_conv1")
    changed_top = 0
    for name, arrays in _file_weights(weights).items():
        layer = backbone.get_layer(name)
        saved = [w.numpy() for w in layer.trainable_weights + layer.non_trainable_weights]
        same = all(np.array_equal(a, b) for a, b in zip(saved, arrays, strict=True))
        if names.index(name) < start or name.endswith("_bn"):
            assert same, f"{name} should be frozen"  # below the top block, and every BatchNorm
        else:
            changed_top += not same
    assert changed_top == 2, "both convolutions of the unfrozen top block train"
    assert result.training["unfreeze_from"] == "block3_conv1"


def test_unknown_unfreeze_layer_is_a_clear_error_before_anything_trains(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(finetune, "run_phase", lambda *args, **kwargs: trained.append(args))
    with pytest.raises(ValueError, match="not a layer of smallcnn"):
        _run(
            tmp_path, backbone="smallcnn", weights=str(_smallcnn_file(tmp_path)),
            image_size=16, epochs=1, min_steps=0, fine_tune_epochs=1, unfreeze_from="conv9",
            augment=False,
        )  # fmt: skip
    assert trained == [], "the head phase trained before the wrong layer name was found"


def test_interrupted_job_publishes_nothing_and_resume_finishes_it_once(tmp_path, monkeypatch):
    real_run_phase = finetune.run_phase
    phases_run = []

    def interrupted_once(fit_model, phase, *args, **kwargs):
        phases_run.append(phase.name)
        if phase.name == "fine_tune" and phases_run.count("fine_tune") == 1:
            raise KeyboardInterrupt
        return real_run_phase(fit_model, phase, *args, **kwargs)

    monkeypatch.setattr(finetune, "run_phase", interrupted_once)
    settings = dict(
        backbone="smallcnn", weights="none", image_size=16, epochs=2, batch_size=8, augment=False
    )
    # weights "none" trains in one phase; interrupt a two-phase job instead:
    settings.update(
        weights=str(_smallcnn_file(tmp_path)), fine_tune_epochs=1, unfreeze_from="block3_conv1"
    )
    settings["min_steps"] = 0  # the head's epochs as asked, not raised to 150 steps
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, **settings)
    store = ModelStore(tmp_path / "store")
    assert store.names() == [], "an interrupted job must not publish"
    assert (store.job_dir("job") / "head.weights.h5").is_file()

    with pytest.raises(ConfigError, match="other settings"):
        _run(tmp_path, **{**settings, "epochs": 3}, resume=True)

    result = _run(tmp_path, **settings, resume=True)
    assert phases_run == ["head", "fine_tune", "fine_tune"], "the head phase was not redone"
    assert result.version == 1 and store.versions("job") == [1]
    assert [p["name"] for p in result.training["phases"]] == ["head", "fine_tune"]
    assert not store.job_dir("job").exists()


def _smallcnn_file(tmp_path):
    path = tmp_path / "smallcnn.h5"
    if not path.exists():
        write_legacy_h5(get_backbone("smallcnn").build((16, 16, 3), None), path)
    return path


def test_a_job_that_fails_before_its_first_epoch_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise MemoryError("out of memory")

    settings = dict(backbone="smallcnn", weights="none", image_size=16, epochs=1, augment=False)
    monkeypatch.setattr(finetune, "run_phase", fail)
    with pytest.raises(MemoryError):
        _run(tmp_path, **settings)
    monkeypatch.undo()
    jobs = tmp_path / "store" / ".jobs"
    assert list(jobs.iterdir()) == [], "no state, no decoded pixels, no lock file"
    messages = []
    config = build_config(
        {}, {"data": str(tmp_path / "data"), "name": "job", "store": str(tmp_path / "store"),
             **settings},
    )  # fmt: skip
    assert job.run_job(config, log=messages.append).version == 1
    assert not any("interrupted" in m for m in messages), messages


def test_a_dataset_of_one_class_is_refused_before_decoding(tmp_path, monkeypatch):
    data = make_colour_dataset(tmp_path / "data", per_class=3)
    for colour in ("green", "blue"):
        shutil.rmtree(data / colour)
    monkeypatch.setattr(distribution, "prepared_data", _never_called)
    with pytest.raises(DataError, match="only class 'red'"):
        _run(tmp_path, backbone="smallcnn", weights="none", image_size=16, epochs=1)
    assert list((tmp_path / "store").glob(".jobs/*")) == []


def _never_called(*args, **kwargs):
    raise AssertionError("images were decoded")


def test_an_interrupted_job_waits_for_resume_or_restart(tmp_path, monkeypatch):
    real_record = JobProgress.record_epochs

    def interrupt_after_epoch_one(self, phase, rows):
        real_record(self, phase, rows)
        if phase == "scratch" and len(rows) == 1:
            raise KeyboardInterrupt

    settings = dict(backbone="smallcnn", weights="none", image_size=16, epochs=3, patience=5)
    monkeypatch.setattr(JobProgress, "record_epochs", interrupt_after_epoch_one)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, **settings)
    monkeypatch.undo()
    with pytest.raises(
        ConfigError, match=r"waiting \(phase scratch: 1 epochs\).*--resume.*--restart"
    ):
        _run(tmp_path, **settings)
    assert (tmp_path / "store" / ".jobs" / "job" / "epochs_scratch.json").is_file(), "kept"
    messages = []
    config = build_config(
        {}, {"data": str(tmp_path / "data"), "name": "job", "store": str(tmp_path / "store"),
             "restart": True, **settings},
    )  # fmt: skip
    result = job.run_job(config, log=messages.append)
    assert any("Discarding the interrupted job" in m for m in messages), messages
    assert result.version == 1
    assert [p["epochs"] for p in result.training["phases"]] == [3], "started over"


def test_the_same_seed_gives_the_same_model(tmp_path):
    settings = dict(backbone="smallcnn", weights="none", image_size=16, epochs=2, batch_size=8)
    first = _run(tmp_path, **settings)
    second = _run(tmp_path, **settings)
    assert second.version == 2
    assert first.metrics == second.metrics
    a, b = (load_bundle(r.path).model.get_weights() for r in (first, second))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_head_on_cached_features_learns_what_plain_fit_learns(tmp_path, monkeypatch):
    settings = dict(
        backbone="smallcnn", weights=str(_smallcnn_file(tmp_path)), image_size=16, epochs=3,
        min_steps=0, fine_tune_epochs=0, augment=False, dropout=0.0, batch_size=8,
    )  # fmt: skip
    cached = _run(tmp_path / "cached", **settings)
    monkeypatch.setattr(recipe, "uses_cached_features", lambda config: False)
    plain = _run(tmp_path / "plain", **settings)
    assert cached.training.get("cached_features") is True
    assert "cached_features" not in plain.training
    assert [p["epochs"] for p in cached.training["phases"]] == [3]
    a, b = (
        load_bundle(r.path).model.get_layer("predictions").get_weights() for r in (cached, plain)
    )
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-4)
    assert cached.metrics.accuracy == pytest.approx(plain.metrics.accuracy)


def test_a_phase_resumed_mid_way_keeps_the_history_of_its_first_epochs(tmp_path, monkeypatch):
    """Killed while writing epoch 3's backup, as a killed service's job was in CI
    (stop 34: the resume then failed on a truncated ``latest.weights.h5``)."""
    real_save = keras.Model.save_weights
    backups: list[str] = []

    def killed_while_writing_the_third_backup(self, filepath, *args, **kwargs):
        if Path(filepath).parent.name.startswith("backup_"):
            backups.append(str(filepath))
            if len(backups) == 3:
                Path(filepath).write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(88))  # 96 bytes, cut off
                raise KeyboardInterrupt
        real_save(self, filepath, *args, **kwargs)

    settings = dict(backbone="smallcnn", weights="none", image_size=16, epochs=4, patience=10)
    monkeypatch.setattr(keras.Model, "save_weights", killed_while_writing_the_third_backup)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, **settings)
    monkeypatch.undo()
    result = _run(tmp_path, **settings, resume=True)
    history = (Path(result.path) / "reports" / "history.csv").read_text().splitlines()
    assert [line.split(",")[:2] for line in history[1:]] == [
        ["scratch", str(e)] for e in (1, 2, 3, 4)
    ]
    assert [p["epochs"] for p in result.training["phases"]] == [4]
    # The same epochs as a run that was never interrupted: same shuffles, same random
    # augmentation and dropout, same optimizer state, same early-stopping memory.
    shutil.copytree(tmp_path / "data", tmp_path / "whole" / "data")
    whole = _run(tmp_path / "whole", **settings)
    whole_history = (Path(whole.path) / "reports" / "history.csv").read_text()
    assert "\n".join(history) + "\n" == whole_history
    a, b = (load_bundle(r.path).model.get_weights() for r in (result, whole))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_the_decoded_image_cache_can_live_in_another_folder(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    cache = tmp_path / "big-disk"
    settings = dict(
        backbone="smallcnn", weights="none", image_size=16, epochs=1, cache_dir=str(cache)
    )
    monkeypatch.setattr(finetune, "run_phase", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, **settings)
    monkeypatch.undo()
    cached = np.load(cache / "job.pixels.npy", mmap_mode="r")
    assert cached.shape == (18, 16, 16, 3)
    with pytest.raises(ConfigError, match=r"waiting \(images decoded, no epoch finished\)"):
        _run(tmp_path, **settings)
    assert not (ModelStore(tmp_path / "store").job_dir("job") / "pixels.npy").exists()
    messages = []
    config = build_config(
        {}, {"data": str(tmp_path / "data"), "name": "job", "store": str(tmp_path / "store"),
             "resume": True, **settings},
    )  # fmt: skip
    assert job.run_job(config, log=messages.append).version == 1
    assert "Reusing the decoded images of the interrupted job" in messages
    assert not (cache / "job.pixels.npy").exists(), "the cache goes with the finished job"


def test_doctor_corrections_are_applied_and_recorded_in_the_bundle(tmp_path):
    make_colour_dataset(tmp_path / "data", per_class=6, size=SIZE)  # what _run reads
    suspects = tmp_path / "suspects.csv"
    suspects.write_text(
        "path,given_label,suggested_label,kind,score,action\n"
        "red/red_000.png,red,blue,label_issue,0.9,exclude\n"
        "red/red_001.png,red,blue,label_issue,0.8,relabel\n"
    )
    settings = dict(backbone="smallcnn", weights="none", image_size=16, epochs=1, batch_size=8)
    result = _run(tmp_path, exclude=str(suspects), relabel=str(suspects), **settings)
    digest = hashlib.sha256(suspects.read_bytes()).hexdigest()
    corrections = load_bundle(result.path).metadata.dataset["corrections"]
    assert corrections["exclude"]["excluded"] == 1 and corrections["exclude"]["sha256"] == digest
    assert corrections["relabel"]["changes"] == {"red -> blue": 1}
    assert result.dataset["corrections"] == corrections
    classes = result.dataset["classes"]
    assert sum(classes["red"].values()) == 4 and sum(classes["blue"].values()) == 7


def test_a_job_whose_loss_becomes_nan_fails_and_publishes_nothing(tmp_path):
    settings = dict(backbone="smallcnn", weights="none", image_size=16, epochs=2, batch_size=8)
    make_colour_dataset(tmp_path / "data", per_class=6, size=SIZE)
    flags = {"data": str(tmp_path / "data"), "name": "job", "store": str(tmp_path / "store")}
    # A rate far over what the options allow (10), set past their check: the loss
    # overflows within the first steps.
    config = build_config({}, {**flags, **settings, "augment": False}).model_copy(
        update={"lr": 1e30}
    )
    with pytest.raises(job.TrainingDiverged, match="nothing was published") as caught:
        job.run_job(config, log=lambda message: None)
    assert "lower the learning rate" in caught.value.message
    store = ModelStore(tmp_path / "store")
    assert store.names() == [] and not store.job_dir("job").exists()
