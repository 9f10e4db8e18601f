"""The decision rule (models/decision.py): the one place every protocol, the INT8
engine and training decide between a class and "not sure"."""

from __future__ import annotations

import numpy as np
import pytest

from models.decision import ABSTAIN, answered, decide, decided_labels, threshold_of
from models.metadata import Decision
from models.predictions import format_prediction

ROWS = np.array([[0.1, 0.7, 0.2], [0.4, 0.3, 0.3], [0.5, 0.5, 0.0]], dtype=np.float32)


def test_answers_the_top_class_at_or_above_the_threshold_else_abstains():
    assert decide(ROWS, 0.5).tolist() == [1, ABSTAIN, 0]  # a tie answers the first label
    assert decide(ROWS, 0.0).tolist() == [1, 0, 0]
    assert decide(ROWS, 0.71).tolist() == [ABSTAIN] * 3
    assert answered(ROWS, 0.5).tolist() == [True, False, True]


def test_a_probability_equal_to_the_threshold_answers():
    exact = float(ROWS[0, 1])  # 0.7 as float32 holds it
    assert decide(ROWS[:1], exact).tolist() == [1]


def test_compares_exactly_not_in_float32():
    """A float32 probability just under a float64 threshold does not reach it, though
    it would once the threshold were rounded to float32: the answer agrees with the
    confidence and threshold a native body shows."""
    row = np.array([[np.float32(0.7), np.float32(0.3)]], dtype=np.float32)
    assert float(row[0, 0]) < 0.7 and row[0, 0] >= np.float32(0.7)
    assert decide(row, 0.7).tolist() == [ABSTAIN]
    native = format_prediction(["a", "b"], row[0], 2, None, 0.7).decision
    assert native.label is None and native.confidence < native.threshold


def test_no_rows_no_answers():
    assert decide(np.zeros((0, 3), np.float32), 0.5).tolist() == []
    assert decided_labels(["a", "b", "c"], np.zeros((0, 3)), 0.5) == []


def test_decided_labels_name_the_class_or_none():
    assert decided_labels(["a", "b", "c"], ROWS, 0.5) == ["b", None, "a"]


def test_threshold_of_the_request_then_the_version_then_zero():
    decision = Decision(threshold=0.62, rule="fixed")
    assert threshold_of(decision) == pytest.approx(0.62)
    assert threshold_of(decision, 0.9) == pytest.approx(0.9)
    assert threshold_of(decision, 0.0) == 0.0  # an explicit 0 is the request's, not the version's
    assert threshold_of(None) == 0.0  # published before thresholds: always answers


@pytest.mark.parametrize("threshold", [0.0, 0.35, 0.5, 0.7, 1.0])
def test_every_consumer_gives_the_same_answer(threshold):
    """The native body's label and the batch rule agree on random rows."""
    rng = np.random.default_rng(7)
    rows = rng.dirichlet(np.ones(4), 50).astype(np.float32)
    labels = ["w", "x", "y", "z"]
    native = [format_prediction(labels, row, 1, None, threshold).decision.label for row in rows]
    assert native == decided_labels(labels, rows, threshold)
