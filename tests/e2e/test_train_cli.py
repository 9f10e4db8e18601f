"""The real ``ktl`` command, run as a user runs it: train, publish, predict (the
follow-up commands and the refusals run in this process, ``ktl_here``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models.bundle import load_bundle, read_metadata
from models.store import ModelStore
from tests.support.cli import ktl, ktl_here, offline
from tests.support.data import make_colour_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("e2e")
    data = make_colour_dataset(root / "data", per_class=16, size=24)
    (data / "red" / "notes.txt").write_text("ignored")
    (data / "green" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    store = root / "store"
    result = ktl(
        "train", str(data), "--name", "colours", "--store", str(store),
        "--backbone", "smallcnn", "--weights", "none", "--image-size", "24",
        "--epochs", "25", "--patience", "8", "--batch-size", "8", "--seed", "3", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return data, store, json.loads(result.stdout)


def test_train_publishes_a_complete_bundle(trained):
    data, store, summary = trained
    assert summary["name"] == "colours" and summary["version"] == 1
    assert Path(summary["path"]) == store / "colours" / "1"
    assert summary["dataset"]["skipped"] == 1
    assert summary["dataset"]["ignored_files"] == 1
    assert summary["metrics"]["accuracy"] >= 0.8, summary["metrics"]  # chance is 1/3
    bundle_dir = Path(summary["path"])
    assert {p.name for p in bundle_dir.iterdir()} == {
        "model.keras", "metadata.json", "reports", "seen.txt", "drift_reference.npy"
    }  # fmt: skip
    assert (bundle_dir / "reports" / "history.csv").read_text().startswith("phase,epoch,loss")
    metrics = json.loads((bundle_dir / "reports" / "metrics.json").read_text())
    assert metrics == summary["metrics"]
    metadata = read_metadata(bundle_dir).to_json()
    for key in (
        "format_version", "name", "version", "labels", "backbone", "image_size", "input",
        "resize", "created_at", "metrics", "training", "dataset", "files", "framework",
    ):  # fmt: skip
        assert key in metadata, key
    assert metadata["labels"] == ["blue", "green", "red"]
    assert metadata["image_size"] == [24, 24]
    assert metadata["training"]["recipe"] == "scratch"
    assert metadata["training"]["weights"] == "none"
    assert metadata["dataset"]["skipped"][0]["path"].endswith("broken.png")
    reports = {
        "reports/metrics.json", "reports/history.csv", "reports/curves.png",
        "reports/confusion_matrix.png", "reports/worst.json",
    }  # fmt: skip
    assert {"model.keras", *reports} <= set(metadata["files"])
    worst = json.loads((bundle_dir / "reports" / "worst.json").read_text())  # wrong answers only
    assert all(f"reports/{entry['thumbnail']}" in metadata["files"] for entry in worst)
    assert all(entry["true"] != entry["predicted"] for entry in worst)
    assert load_bundle(bundle_dir).version == 1  # checksums match, safe_mode loads it
    assert not list((store / ".jobs").glob("colours*")), "job state is cleaned up"


def test_predict_classifies_files_like_the_bundle(trained):
    data, store, _ = trained
    files = [str(data / colour / f"{colour}_000.png") for colour in ("red", "green", "blue")]
    result = ktl(
        "predict", *files, "--name", "colours", "--store", str(store), "--json", "--top-k", "2"
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["model"] == "colours" and body["version"] == 1
    assert [p["filename"] for p in body["predictions"]] == [
        "red_000.png",
        "green_000.png",
        "blue_000.png",
    ]
    for prediction, colour in zip(body["predictions"], ("red", "green", "blue"), strict=True):
        assert prediction["top"][0]["label"] == colour
        assert len(prediction["top"]) == 2
        assert prediction["top"][0]["probability"] >= prediction["top"][1]["probability"]
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_predict_skips_bad_files_and_says_so(trained, tmp_path):
    data, store, _ = trained
    bad = tmp_path / "fake.jpg"
    bad.write_text("<html>not an image</html>")
    result = ktl_here(
        "predict",
        str(bad),
        str(data / "red" / "red_001.png"),
        "--name",
        "colours",
        "--store",
        str(store),
    )
    assert result.returncode == 2
    assert "fake.jpg" in result.stderr
    header, answer = result.stdout.splitlines()  # the version that answered, then the image
    assert header == "colours version 1 (keras engine):"
    assert Path(answer.split(": ")[0]).name == "red_001.png" and ": red  (red " in answer


def test_a_second_run_publishes_version_two(trained):
    data, store, _ = trained
    result = ktl_here(
        "train", str(data), "--name", "colours", "--store", str(store), "--backbone", "smallcnn",
        "--weights", "none", "--image-size", "24", "--epochs", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Published colours version 2" in result.stdout
    assert ModelStore(store).versions("colours") == [1, 2]


def test_evaluate_scores_every_image_and_warns_on_those_it_learnt_from(trained, tmp_path):
    data, store, _ = trained
    fresh = make_colour_dataset(tmp_path / "fresh", per_class=5, size=24, seed=11)
    new = ktl_here("evaluate", "colours:1", str(fresh), "--store", str(store), "--json")
    assert new.returncode == 0, new.stderr
    scored = json.loads(new.stdout)
    assert (scored["split"], scored["images"], scored["seen"]) == ("all", 15, 0)
    assert scored["figures"]["images"] == 15
    assert "Warning" not in new.stderr
    seen = (store / "colours" / "1" / "seen.txt").read_text().split()
    assert 0 < len(seen) <= 48  # 16 per class (the broken file is not), train and validation
    old = ktl_here("evaluate", "colours:1", str(data), "--store", str(store), "--json")
    assert old.returncode == 0, old.stderr
    assert (json.loads(old.stdout)["images"], json.loads(old.stdout)["seen"]) == (48, len(seen))
    assert f"Warning: {len(seen)} of the 48 images scored are images colours version 1 " in (
        old.stderr
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "{empty}", "--name", "x", "--weights", "none"], "no images found"),
        (["train", "{data}", "--name", "Bad/Name", "--weights", "none"], "Invalid model name"),
        (["train", "{data}", "--name", "x", "--backbone", "nope"], "Unknown backbone 'nope'"),
        (["train", "{data}", "--name", "x", "--weights", "/no/such.h5"], "no such file"),
        (
            ["train", "{data}", "--name", "x", "--backbone", "smallcnn", "--weights", "imagenet"],
            "has no ImageNet weights",
        ),  # fmt: skip
        (["predict", "{data}/red/red_000.png", "--name", "missing"], "No model store at"),
    ],
)
def test_user_errors_exit_2_with_a_message(tmp_path, args, message):
    data = make_colour_dataset(tmp_path / "data", per_class=3, size=8)
    (tmp_path / "empty").mkdir()
    args = [a.format(data=data, empty=tmp_path / "empty") for a in args]
    result = ktl_here(*args, "--store", str(tmp_path / "store"))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "store" / "x").exists()


def test_missing_imagenet_weights_stop_the_job_with_instructions(tmp_path):
    """A backbone whose weights Keras downloads (the default, efficientnet_lite0, ships
    its own), with nothing in the cache and no network."""
    data = make_colour_dataset(tmp_path / "data", per_class=3, size=8)
    store = tmp_path / "store"
    result = ktl(
        "train",
        str(data),
        "--name",
        "x",
        "--store",
        str(store),
        "--backbone",
        "resnet50",
        "--image-size",
        "32",
        env=offline(tmp_path / "keras"),
    )
    assert result.returncode == 2, result.stderr
    expected_file = (
        tmp_path / "keras" / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )
    assert str(expected_file) in result.stderr
    assert "--weights none" in result.stderr and "--weights /path/to/" in result.stderr
    assert "--backbone efficientnet_lite0" in result.stderr  # the weights that ship with ktl
    assert "Decoding" not in result.stderr, "it failed before decoding the dataset"
    assert ModelStore(store).names() == []


def test_efficientnet_lite0_fine_tunes_imagenet_features_offline(tmp_path):
    """The weights that ship with ktl: no network (every proxy is dead), no flag but the
    backbone's, and the published model loads in a user's Python after ``import models``."""
    data = make_colour_dataset(tmp_path / "data", per_class=10, size=32)
    store = tmp_path / "store"
    no_network = {key: value for key, value in offline(tmp_path).items() if key != "KERAS_HOME"}
    result = ktl(
        "train", str(data), "--name", "lite", "--store", str(store), "--backbone",
        "efficientnet_lite0", "--image-size", "32", "--epochs", "2", "--min-steps", "0",
        "--fine-tune-epochs", "1", "--batch-size", "8", "--json", env=no_network,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    training = summary["training"]
    assert read_metadata(Path(summary["path"])).to_json()["training"]["weights"] == "imagenet"
    assert training["recipe"] == "transfer" and training["cached_features"] is True
    assert [phase["name"] for phase in training["phases"]] == ["head", "fine_tune"]
    assert training["unfreeze_from"] == "block6a_expand_conv"
    image = next((data / "red").iterdir())
    bundle = load_bundle(summary["path"])
    expected = bundle.predict([str(image)]).predictions[0].probabilities
    script = (
        "import sys, json, numpy as np, keras, models\n"
        "from models.preprocessing import load_image\n"
        "model = keras.saving.load_model(sys.argv[1] + '/model.keras')\n"
        "print(json.dumps(model.predict(load_image(sys.argv[2], (32, 32))[None], verbose=0)"
        "[0].tolist()))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script, summary["path"], str(image)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    probabilities = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert probabilities == pytest.approx([expected[label] for label in bundle.labels], abs=1e-5)


def test_python_m_training_is_the_same_job(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "training", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "--fine-tune-epochs" in result.stdout and "--unfreeze-from" in result.stdout
