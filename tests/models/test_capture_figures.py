from __future__ import annotations

import pytest

from models.capture.figures import feedback_accuracy, mix_on_test, version_figures
from models.metadata import BundleMetadata

LABELS = ("a", "b")


def _metadata(**fields) -> BundleMetadata:
    return BundleMetadata(name="m", labels=LABELS, image_size=(8, 8), **fields)


def _line(top: str, confidence: float, abstained: bool = False) -> dict:
    return {"top": top, "label": None if abstained else top, "confidence": confidence}


def test_the_test_mix_is_what_the_version_answered_on_test():
    evaluation = {"test": {"confusion_matrix": {"labels": LABELS, "matrix": [[3, 1], [0, 4]]}}}
    metadata = _metadata(evaluation=evaluation)
    assert mix_on_test(metadata) == {"a": 0.375, "b": 0.625}
    assert mix_on_test(_metadata()) is None


def test_version_figures():
    evaluation = {"test": {"confusion_matrix": {"labels": LABELS, "matrix": [[1, 0], [0, 1]]}}}
    metadata = _metadata(evaluation=evaluation, monitoring={"atc_threshold": 0.7})
    lines = [_line("a", 0.95), _line("a", 0.65, abstained=True), _line("b", 0.8), _line("a", 0.9)]
    figures = version_figures(lines, [{"correct": True}, {"correct": False}], metadata)
    assert figures["requests"] == 4 and figures["abstained"] == 1
    assert figures["abstain_rate"] == pytest.approx(0.25)
    assert figures["confidence_histogram"]["counts"] == [0, 0, 0, 0, 0, 0, 1, 0, 1, 2]
    assert figures["class_mix"] == {"a": 0.75, "b": 0.25}
    assert figures["class_mix_distance"] == pytest.approx(0.25)
    estimates = figures["estimated_accuracy"]
    assert estimates["average_confidence"] == pytest.approx(0.825)
    assert estimates["average_thresholded_confidence"] == pytest.approx(0.75)
    assert figures["feedback"]["count"] == 2 and figures["feedback"]["accuracy"] == 0.5


def test_no_predictions_and_no_feedback():
    figures = version_figures([], [], None)
    assert figures["requests"] == 0 and figures["abstain_rate"] is None
    assert figures["estimated_accuracy"]["average_confidence"] is None
    assert feedback_accuracy([]) == {"count": 0, "correct": 0, "accuracy": None, "interval": None}
