"""The INT8 engine: agreement figures, the engine choice, the head kept in float,
and a real quantization of a small model run by ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

from models.engines import int8
from models.errors import ConfigError
from models.metadata import Engine
from tests.support.tiny import tiny_metadata


def _with_int8(**splits: dict) -> object:
    figures = {
        split: {"images": 10, "top1_agreement": 1.0, "mean_abs_diff": 0.0, "max_abs_diff": 0.0,
                **given}
        for split, given in splits.items()
    }  # fmt: skip
    engine = Engine(file=int8.INT8_FILE, runtime=int8.RUNTIME, agreement=figures)
    return tiny_metadata().replace(engines={"int8": engine.model_dump()})


def test_agreement_counts_labels_decisions_and_accuracy():
    reference = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55]])
    candidate = np.array([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.55, 0.45]])
    figures = int8.agreement(reference, candidate, np.array([0, 0, 1, 1]), threshold=0.7)
    assert figures["images"] == 4
    assert figures["top1_agreement"] == 0.5  # rows 1 and 3 change their label
    # Decisions at 0.7: reference (0, not sure, 1, not sure), candidate (0, ns, 1, ns).
    assert figures["decision_agreement"] == 1.0
    assert figures["accuracy_float"] == 1.0 and figures["accuracy_int8"] == 0.5
    assert figures["max_abs_diff"] == pytest.approx(0.2)
    assert figures["mean_abs_diff"] == pytest.approx(0.125)


def test_a_decision_that_flips_at_the_threshold_counts_against_agreement():
    reference = np.array([[0.96, 0.04], [0.2, 0.8]])
    candidate = np.array([[0.94, 0.06], [0.2, 0.8]])  # same labels, one under 0.95
    figures = int8.agreement(reference, candidate, threshold=0.95)
    assert figures["top1_agreement"] == 1.0
    assert figures["decision_agreement"] == 0.5
    assert "accuracy_float" not in figures


def test_the_lowest_agreement_of_any_split_decides():
    metadata = _with_int8(
        validation={"top1_agreement": 0.999, "decision_agreement": 0.995},
        test={"top1_agreement": 0.98},
    )
    assert int8.int8_agreement(metadata) == 0.98
    assert int8.int8_agreement(tiny_metadata()) is None


def test_a_decision_agreement_of_zero_is_not_taken_for_missing():
    metadata = _with_int8(validation={"top1_agreement": 1.0, "decision_agreement": 0.0})
    assert int8.int8_agreement(metadata) == 0.0


@pytest.mark.parametrize(
    ("choice", "agreed", "gate", "engine"),
    [
        ("auto", 0.995, 0.99, "int8"),
        ("auto", 0.985, 0.99, "keras"),
        ("auto", 0.985, 0.98, "int8"),
        ("keras", 1.0, 0.0, "keras"),
        ("int8", 0.5, 0.99, "int8"),  # asked for: served whatever its agreement
    ],
)
def test_the_engine_choice(choice, agreed, gate, engine):
    metadata = _with_int8(validation={"top1_agreement": agreed})
    assert int8.choose_engine(metadata, choice, gate) == engine


def test_without_an_artifact_every_choice_is_keras_and_unknown_ones_are_refused():
    for choice in ("auto", "keras", "int8"):
        assert int8.choose_engine(tiny_metadata(), choice) == "keras"
    with pytest.raises(ConfigError, match="auto, keras, int8"):
        int8.choose_engine(tiny_metadata(), "fp16")


def test_calibration_rows_spread_over_the_images():
    rows = int8.calibration_rows(1000, 64)
    assert len(rows) == 64 and rows[0] == 0 and rows[-1] == 999
    assert np.all(np.diff(rows) > 0)
    assert list(int8.calibration_rows(5, 64)) == [0, 1, 2, 3, 4]


def test_the_head_is_found_from_the_output_back_to_the_features(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    weights = helper.make_tensor("w", TensorProto.FLOAT, [4, 2], [0.1] * 8)
    bias = helper.make_tensor("b", TensorProto.FLOAT, [2], [0.0, 0.0])
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["features"], name="conv_relu"),
            helper.make_node("MatMul", ["features", "w"], ["logits0"], name="dense"),
            helper.make_node("Add", ["logits0", "b"], ["logits"], name="bias"),
            helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 2])],
        initializer=[weights, bias],
    )
    path = tmp_path / "head.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert sorted(int8.head_nodes(path)) == ["bias", "dense", "softmax"]


@pytest.mark.slow
def test_a_quantized_model_runs_and_stays_close_to_the_float_one(tmp_path):
    from tests.support.tiny import tiny_model

    model = tiny_model(seed=3)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    made = int8.quantize(model, (32, 32), pixels[:32], tmp_path / int8.INT8_FILE)
    assert made["calibration_images"] == 32 and "head in float" in made["method"]
    runner = int8.Int8Runner(tmp_path / int8.INT8_FILE)
    reference = model(pixels[32:].astype("float32"), training=False).numpy()
    quantized = runner.predict(pixels[32:])
    assert quantized.shape == (8, 3)
    np.testing.assert_allclose(quantized.sum(1), 1.0, atol=1e-5)
    figures = int8.agreement(reference, quantized)
    assert figures["max_abs_diff"] < 0.05, figures
    # Fewer bytes: int8 weights (the graph holds a little float besides).
    float_path = tmp_path / "float.onnx"
    from models.engines.export import save_onnx

    save_onnx(model, (32, 32), float_path)
    assert (tmp_path / int8.INT8_FILE).stat().st_size < 0.5 * float_path.stat().st_size
