"""Numbers you can trust, on real training runs: the test split is decoded only
after everything else, calibration cools an over-confident network (and the
exports carry it), and the decision threshold turns away a class the model never
saw far more often than its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.bundle import load_bundle
from models.metadata import read_metadata_text
from tests.support.data import colour_image
from training.config import build_config
from training.dataset import data as data_module
from training.dataset.demo import make_shapes_dataset
from training.evaluation import final
from training.evaluation.calibration import scale
from training.job import run_job

pytestmark = pytest.mark.slow

TRAINED = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (50, 60, 210)}
LEFT_OUT = (210, 200, 40)  # yellow: a fourth colour the model never sees


def _colours(root: Path, per_class: int) -> Path:
    rng = np.random.default_rng(5)
    for label, colour in TRAINED.items():
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            colour_image(colour, 16, rng).save(root / label / f"{label}_{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """smallcnn on three colours (45 images each: a test split is held out), with the
    fourth colour as --ood; every decode recorded with who asked for it."""
    work = tmp_path_factory.mktemp("trust")
    dataset = _colours(work / "data", 45)
    ood = work / "ood"
    ood.mkdir()
    rng = np.random.default_rng(9)
    for i in range(30):
        colour_image(LEFT_OUT, 16, rng).save(ood / f"yellow_{i:03d}.png")
    decoded: list[tuple[str, str]] = []
    patch = pytest.MonkeyPatch()
    for module, who in ((data_module, "training"), (final, "final")):
        original = module.decode_images

        def recording(paths, *args, _original=original, _who=who, **kwargs):
            for image in _original(paths, *args, **kwargs):
                decoded.append((_who, str(image.path)))
                yield image

        patch.setattr(module, "decode_images", recording)
    flags = {
        "data": str(dataset), "name": "colours", "store": str(work / "store"),
        "backbone": "smallcnn", "image_size": 16, "epochs": 6, "ood": str(ood),
    }  # fmt: skip
    try:
        result = run_job(build_config({}, flags), log=lambda message: None)
    finally:
        patch.undo()
    return {"result": result, "decoded": decoded, "data": dataset}


def test_the_test_split_is_decoded_only_at_the_final_evaluation(colours):
    result, decoded = colours["result"], colours["decoded"]
    data = str(colours["data"])
    tested = {path for who, path in decoded if who == "final" and path.startswith(data)}
    trained = {path for who, path in decoded if who == "training"}
    assert len(tested) == result.evaluation.test.images > 0
    assert not tested & trained, "a test image was decoded before the final evaluation"
    first_final = next(i for i, (who, _) in enumerate(decoded) if who == "final")
    assert all(who == "final" for who, _ in decoded[first_final:]), "training decoded after"
    assert len(trained) == result.dataset["train_images"] + result.dataset["val_images"]
    assert result.metrics.split == "test"
    metadata = read_metadata_text((result.path / "metadata.json").read_text(), str(result.path))
    assert metadata.evaluation.test.fingerprint and metadata.metrics.split == "test"
    low, high = metadata.metrics.accuracy_interval
    assert low <= metadata.metrics.accuracy <= high


def test_a_class_left_out_of_training_is_turned_away_far_more_often(colours):
    decision = colours["result"].decision
    assert decision.coverage >= 0.9, "the threshold still answers its own classes"
    ood = decision.ood
    assert ood["images"] == 30
    assert ood["rejected"] >= 0.5 and ood["rejected"] >= ood["in_scope_rejected"] + 0.4, ood
    assert ood["auroc"] >= 0.8


@pytest.fixture(scope="module")
def overconfident(tmp_path_factory):
    """smallcnn from scratch on 180 shape images at 32 px: it learns the training
    images by heart within a few epochs and is far surer than it is right."""
    work = tmp_path_factory.mktemp("overconfident")
    dataset = make_shapes_dataset(work / "data", per_class=60, size=32, seed=3)
    flags = {
        "data": str(dataset), "name": "shapes", "store": str(work / "store"),
        "backbone": "smallcnn", "image_size": 32, "epochs": 12, "patience": 12,
        "augment": False, "dropout": 0.0,
    }  # fmt: skip
    return run_job(build_config({}, flags), log=lambda message: None)


def test_calibration_cools_an_overconfident_model_without_raising_validation_nll(overconfident):
    calibration = overconfident.calibration
    assert calibration.temperature > 1.5, "an over-confident model is cooled"
    assert calibration.validation_nll["after"] <= calibration.validation_nll["before"]
    assert calibration.split == "test"
    assert calibration.after.ece < calibration.before.ece


def _run_export(path: Path, fmt: str, pixels: np.ndarray) -> np.ndarray:
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["probabilities"], {"pixels": pixels})[0]
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_pixels"]
    return serve(pixels=tf.constant(pixels))["probabilities"].numpy()


@pytest.mark.parametrize("fmt", ["onnx", "savedmodel"])
def test_exports_return_the_calibrated_probabilities(overconfident, tmp_path, fmt):
    from models.engines.export import export_bundle

    bundle = load_bundle(overconfident.path)
    pixels = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    served = bundle.classifier.predict(pixels)
    exported = _run_export(export_bundle(bundle, fmt, tmp_path), fmt, pixels)
    np.testing.assert_allclose(exported, served, atol=1e-5)
    raw = scale(served, 1 / overconfident.calibration.temperature)
    assert np.abs(exported - raw).max() > 1e-2, "the export is not the uncalibrated model"
