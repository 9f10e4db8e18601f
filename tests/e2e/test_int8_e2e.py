"""The INT8 engine end to end: `ktl train --int8`, `ktl quantize`, `ktl predict
--engine`, and a real gunicorn choosing the engine per version (KTL_ENGINE). The
commands run in this process (``ktl_here``): what is checked is their output and the
store they leave, and TensorFlow is imported once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests

from models.bundle import load_bundle, read_metadata
from models.engines.int8 import INT8_FILE, choose_engine, int8_agreement
from tests.support.cli import ktl_here
from tests.support.server import Gunicorn
from tests.support.trained import CLI_FLAGS, NAME, Trained

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory, trained_store: Trained) -> tuple[Path, Path]:
    """``colours`` v1: the session's trained bundle (no INT8 engine); v2 trained as v1
    was, with --int8; v3 = v1 quantized."""
    assert NAME == "colours"
    store = trained_store.copy_to(tmp_path_factory.mktemp("int8") / "store")
    data = trained_store.data
    train = ["train", str(data), "--name", "colours", "--store", str(store), *CLI_FLAGS]
    done = ktl_here(*train, "--int8", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 2
    done = ktl_here(
        "quantize", "colours:1", "--calibration", str(data), "--store", str(store), "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 3
    return store, data


def test_train_int8_records_the_artifact_and_its_agreement_on_each_split(store):
    root, _ = store
    metadata = read_metadata(root / "colours" / "2")
    engine = metadata.engines["int8"]
    assert engine.file == INT8_FILE and INT8_FILE in metadata.files  # under the checksums
    assert set(engine.agreement) == {"validation", "test"}
    for split, figures in engine.agreement.items():
        scored = getattr(metadata.evaluation, split)
        assert figures.images == scored.images > 0
        assert figures.accuracy_float == pytest.approx(scored.accuracy)  # the same images
        assert 0 <= figures.top1_agreement <= 1 and figures.max_abs_diff < 0.05
        assert figures.decision_agreement is not None
    assert metadata.lineage is None


def test_quantize_publishes_a_new_version_that_names_its_original(store):
    root, _ = store
    original, quantized = (read_metadata(root / "colours" / v) for v in ("1", "3"))
    assert original.engines is None  # published versions never change
    assert quantized.lineage.kind == "quantized" and quantized.lineage.version == 1
    assert quantized.lineage.model_sha256 == original.files["model.keras"]
    assert quantized.evaluation == original.evaluation  # the same float model
    assert set(quantized.engines["int8"].agreement) == {"validation", "test"}
    reference = quantized.monitoring.drift_reference  # the original's, with its file
    assert reference == original.monitoring.drift_reference
    assert quantized.files[reference.file] == original.files[reference.file]
    again = ktl_here("quantize", "colours:3", "--calibration", str(store[1]), "--store", str(root))
    assert again.returncode == 2 and "already has an INT8 engine" in again.stderr


def test_predict_with_the_int8_engine_agrees_with_keras(store):
    root, data = store
    images = [str(data / "red"), str(data / "blue")]
    answers = {}
    for engine in ("keras", "int8"):
        done = ktl_here("predict", *images, "--name", "colours", "--version", "2", "--store",
                   str(root), "--engine", engine, "--json")  # fmt: skip
        assert done.returncode == 0, done.stderr
        answers[engine] = [p["probabilities"] for p in json.loads(done.stdout)["predictions"]]
    keras_rows = np.array([[row[k] for k in sorted(row)] for row in answers["keras"]])
    int8_rows = np.array([[row[k] for k in sorted(row)] for row in answers["int8"]])
    assert np.abs(keras_rows - int8_rows).max() < 0.05
    assert np.mean(keras_rows.argmax(1) == int8_rows.argmax(1)) >= 0.95


def test_asking_int8_of_a_version_without_one_says_how_to_make_it(store):
    root, data = store
    done = ktl_here("predict", str(data / "red"), "--name", "colours", "--version", "1",
               "--store", str(root), "--engine", "int8")  # fmt: skip
    assert done.returncode == 2
    assert "no INT8 engine" in done.stderr and "ktl quantize colours:1" in done.stderr


def _engines(server: Gunicorn) -> dict[int, tuple[str, float | None]]:
    (model,) = requests.get(f"{server.base}/v1/models", timeout=30).json()["models"]
    return {d["version"]: (d["engine"], d["int8_agreement"]) for d in model["version_details"]}


def test_the_service_serves_each_version_on_the_engine_its_agreement_allows(store, tmp_path):
    root, data = store
    image = (data / "green" / "green_000.png").read_bytes()
    agreed = {v: int8_agreement(read_metadata(root / "colours" / str(v))) for v in (1, 2, 3)}
    with Gunicorn(root, env={"KTL_INT8_MIN_AGREEMENT": "0"}, log_path=tmp_path / "a.log") as s:
        assert _engines(s) == {1: ("keras", None), 2: ("int8", agreed[2]), 3: ("int8", agreed[3])}
        served = requests.post(f"{s.base}/v1/models/colours/versions/2/predict",
                               files={"image": ("g.png", image)}, timeout=60)  # fmt: skip
        assert served.status_code == 200, served.text
        expected = load_bundle(root / "colours" / "2").engine("int8")
        row = served.json()["predictions"][0]["probabilities"]
        from models.preprocessing import load_image

        direct = expected.predict(load_image(image, (16, 16))[None])[0]
        assert [row[label] for label in expected.labels] == pytest.approx(direct.tolist(), abs=1e-6)
    with Gunicorn(root, env={"KTL_ENGINE": "keras"}, log_path=tmp_path / "b.log") as s:
        assert {v: engine for v, (engine, _) in _engines(s).items()} == {
            1: "keras",
            2: "keras",
            3: "keras",
        }
    with Gunicorn(root, log_path=tmp_path / "c.log") as s:  # auto at the default gate 0.99
        for engine, agreement in _engines(s).values():
            assert engine == ("int8" if agreement is not None and agreement >= 0.99 else "keras")


# TensorFlow Lite's converter warns of this for every INT8 model; run as a process,
# ktl prints it and goes on, which is what this test sees in this process too.
@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs were expected:UserWarning")
def test_an_int8_tflite_export_is_checked_by_litert(store, tmp_path):
    root, data = store
    base = ["export", "--name", "colours", "--version", "1", "--store", str(root),
            "--format", "tflite", "--out", str(tmp_path), "--json"]  # fmt: skip
    plain = ktl_here(*base)
    assert plain.returncode == 0, plain.stderr
    done = ktl_here(*base, "--int8", "--calibration", str(data))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert Path(result["path"]).name == "model_int8.tflite"
    assert (
        Path(result["path"]).stat().st_size
        < 0.5 * Path(json.loads(plain.stdout)["path"]).stat().st_size
    )
    figures = result["int8_agreement"]
    assert figures["images"] > 0 and figures["top1_agreement"] >= 0.9, figures
    alone = ktl_here(*base, "--int8")
    assert alone.returncode == 2 and "--int8 and --calibration DATA go together" in alone.stderr


def test_score_takes_the_engine_the_service_would(store, tmp_path, monkeypatch):
    root, data = store

    def score(version: int) -> tuple[str, list[dict]]:
        out = tmp_path / f"{version}-{len(list(tmp_path.iterdir()))}.jsonl"
        args = [f"colours:{version}", str(data / "red"), "--out", str(out), "--json"]
        done = ktl_here("score", *args, "--store", str(root))
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        return json.loads(done.stdout)["engine"], lines

    for version in (1, 2, 3):
        expected = choose_engine(read_metadata(root / "colours" / str(version)), "auto")
        assert score(version)[0] == expected
    monkeypatch.setenv("KTL_INT8_MIN_AGREEMENT", "0")  # every INT8 engine passes the gate
    engine, lines = score(2)
    assert engine == "int8"
    flags = ["--name", "colours", "--version", "2", "--engine", "int8", "--json"]
    predicted = ktl_here("predict", str(data / "red"), *flags, "--store", str(root))
    by_name = {p["filename"]: p for p in json.loads(predicted.stdout)["predictions"]}
    for line in lines:
        (prediction,) = line["predictions"]
        expected = by_name[prediction["filename"]]["probabilities"]
        assert prediction["probabilities"] == pytest.approx(expected, abs=1e-6)
