"""The INT8 engine: a bundle's model as an ONNX graph with 8-bit weights and
activations, run by ONNX Runtime, checked for agreement with the float model.

Made by post-training static quantization (ONNX Runtime's ``quantize_static``,
QDQ format, weights int8 per output channel in a 7-bit range, activations uint8
with ranges measured on calibration images of the job's own training split). The
7-bit range avoids the saturation of ``vpmaddubsw`` on CPUs without VNNI (most
AVX2 machines): measured on the demo model, top-1 agreement 95.9 % with the full
range, 98.8 % with it (docs/int8.md). The artifact
lives in the bundle (``int8/model.onnx``, covered by its checksums) and the
metadata records, under ``engines.int8``, how far its answers are from the float
model's on the validation and test images. The service serves it only when that
agreement passes a gate (``KTL_INT8_MIN_AGREEMENT``, default 0.99).

ONNX Runtime is needed where INT8 is served (the ``serve`` extra); tf2onnx and
onnx only where a model is quantized (the ``export`` extra). Both are imported
when used, never at import time.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.choices import DEFAULT_GATE, ENGINES
from models.decision import chosen, decide
from models.errors import ConfigError, UserError

if TYPE_CHECKING:
    import keras

    from models.bundle import Bundle
    from models.metadata import BundleMetadata

INT8_FILE = "int8/model.onnx"
RUNTIME = "onnxruntime"
CALIBRATION_IMAGES = 64  # measured ranges settle well before this (see docs/int8.md)
_BATCH = 8


class QuantizationError(UserError):
    """A model that cannot be quantized as asked: the message says why."""

    code = "quantization_failed"


def quantize(
    model: keras.Model, image_size: tuple[int, int], calibration: np.ndarray, path: Path
) -> dict[str, Any]:
    """Write the INT8 ONNX graph of ``model`` to ``path``, its activation ranges
    measured on ``calibration`` (uint8 pixels, ``(n, h, w, 3)``). Returns what the
    metadata records of how it was made."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise QuantizationError(
            "INT8 quantization needs onnxruntime, tf2onnx and onnx: pip install 'ktl[serve,export]'"
        ) from exc
    from models.engines.export import quiet_stdout, save_onnx

    if len(calibration) == 0:
        raise QuantizationError("INT8 quantization needs at least one calibration image")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = iter(
                calibration[i : i + _BATCH] for i in range(0, len(calibration), _BATCH)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {"pixels": batch}

    started = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_stdout(), tempfile.TemporaryDirectory(prefix="ktl-int8-") as tmp:
        float_path, prepared = Path(tmp) / "float.onnx", Path(tmp) / "prepared.onnx"
        save_onnx(model, image_size, float_path)
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(path),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            reduce_range=True,  # 7-bit weights: AVX2 without VNNI saturates u8 x s8 pairs
            nodes_to_exclude=head_nodes(prepared),
        )
    return {
        "file": INT8_FILE,
        "runtime": RUNTIME,
        "method": "onnxruntime quantize_static, QDQ, int8 weights per channel (7-bit "
        "range), uint8 activations (min-max), head in float",
        "calibration_images": int(len(calibration)),
        "seconds": round(time.monotonic() - started, 1),
    }


# The classification head: a few thousand multiply-adds, kept in float so that the
# probabilities keep their precision (quantized, they move in steps of 1/255, and a
# decision threshold near 1 would flip).
_HEAD_OPS = {"Softmax", "Gemm", "MatMul", "Add", "Mul", "Div"}


def head_nodes(path: Path) -> list[str]:
    """Names of the nodes from the graph's output back through the head (softmax,
    dense layer) to the pooled features."""
    import onnx

    graph = onnx.load(str(path)).graph
    producer = {output: node for node in graph.node for output in node.output}
    names, pending = [], [output.name for output in graph.output]
    while pending:
        node = producer.get(pending.pop())
        if node is None or node.op_type not in _HEAD_OPS or node.name in names:
            continue
        names.append(node.name)
        pending.extend(node.input)
    return names


def calibration_rows(available: int, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """Positions of up to ``count`` of ``available`` images, spread evenly."""
    return np.unique(np.linspace(0, available - 1, min(count, available)).round().astype(int))


def agreement(
    reference: np.ndarray,
    candidate: np.ndarray,
    targets: np.ndarray | None = None,
    threshold: float | None = None,
    thresholds: np.ndarray | None = None,
) -> dict[str, Any]:
    """How close ``candidate``'s probabilities are to ``reference``'s (same images):
    top-1 agreement, mean and max absolute difference, both accuracies, and with the
    version's ``threshold`` the share of images given the same decision (the same
    label, or 'not sure' by both); with a multi-label version's ``thresholds``, the
    share of label decisions (image by label) that agree."""
    figures: dict[str, Any] = {
        "images": int(len(reference)),
        "top1_agreement": _share(reference.argmax(1) == candidate.argmax(1)),
        "mean_abs_diff": round(float(np.mean(np.abs(reference - candidate))), 6),
        "max_abs_diff": round(float(np.max(np.abs(reference - candidate))), 6),
    }
    if threshold is not None:
        figures["decision_agreement"] = _share(
            decide(reference, threshold) == decide(candidate, threshold)
        )
    if thresholds is not None:  # multi-label: each (image, label) decision, one by one
        figures["decision_agreement"] = _share(
            chosen(reference, thresholds) == chosen(candidate, thresholds)
        )
    if targets is not None:
        figures["accuracy_float"] = _share(reference.argmax(1) == targets)
        figures["accuracy_int8"] = _share(candidate.argmax(1) == targets)
    return figures


def _share(hits: np.ndarray) -> float:
    return round(float(np.mean(hits)), 6)


def int8_agreement(metadata: BundleMetadata) -> float | None:
    """The lowest agreement recorded, top-1 or decision, over the splits checked;
    None: the version has no INT8 artifact."""
    engine = metadata.engines.get("int8") if metadata.engines else None
    if engine is None:
        return None
    if metadata.task == "multilabel":  # the label decisions; the top label is no answer
        checked = [split.decision_agreement or 0.0 for split in engine.agreement.values()]
        return min(checked) if checked else 0.0
    checked = [
        split.top1_agreement
        if split.decision_agreement is None
        else min(split.top1_agreement, split.decision_agreement)
        for split in engine.agreement.values()
    ]
    return min(checked) if checked else 0.0


def choose_engine(metadata: BundleMetadata, choice: str, gate: float = DEFAULT_GATE) -> str:
    """The engine that serves a version: ``keras`` or ``int8``.

    ``auto``: INT8 when the bundle has an artifact whose agreement passed ``gate``;
    ``int8``: INT8 wherever the bundle has one (whatever its agreement); ``keras``:
    always the Keras model."""
    if choice not in ENGINES:
        raise ConfigError(f"Unknown engine {choice!r}; choose one of {', '.join(ENGINES)}")
    agreed = int8_agreement(metadata)
    if choice == "keras" or agreed is None:
        return "keras"
    return "int8" if choice == "int8" or agreed >= gate else "keras"


class Int8Runner:
    """An INT8 ONNX file run by ONNX Runtime: uint8 pixels in, probabilities out.
    Sessions are safe to call from many threads at once."""

    def __init__(self, path: Path):
        try:
            import onnxruntime
        except ImportError as exc:
            raise QuantizationError(
                "The INT8 engine needs onnxruntime: pip install 'ktl[serve]'"
            ) from exc
        options = onnxruntime.SessionOptions()
        # Idle pool threads sleep instead of spinning: in the service they share the
        # cores with the request threads that decode the next images.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """``(n, h, w, 3)`` uint8 in, ``(n, classes)`` float probabilities out."""
        (probabilities,) = self._session.run(
            ["probabilities"], {"pixels": np.ascontiguousarray(pixels, np.uint8)}
        )
        return probabilities


class Int8Classifier(Int8Runner):
    """A bundle's INT8 artifact behind the interface of
    :class:`models.engines.inference.Classifier`, warmed up."""

    engine = "int8"

    def __init__(self, bundle: Bundle):
        from models.engines.inference import warm_up

        super().__init__(bundle.path / INT8_FILE)
        self.bundle = bundle
        self.labels = bundle.labels
        warm_up(self)
