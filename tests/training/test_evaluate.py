from __future__ import annotations

import numpy as np
import pytest

from models.metadata import Baseline, Figures
from training.evaluation.evaluate import baseline, evaluate, history_csv, quality_warnings

LABELS = ["a", "b", "c"]


def test_metrics_match_a_hand_computed_example():
    # true:      a  a  b  b  c  c
    # predicted: a  b  b  b  a  c
    probabilities = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.3, 0.6, 0.1],
            [0.1, 0.7, 0.2],
            [0.2, 0.5, 0.3],
            [0.5, 0.1, 0.4],
            [0.1, 0.2, 0.7],
        ]
    )
    targets = np.array([0, 0, 1, 1, 2, 2])
    metrics = evaluate(probabilities, targets, LABELS)
    assert metrics.accuracy == pytest.approx(4 / 6, abs=1e-6)
    assert metrics.confusion_matrix.matrix == ((1, 1, 0), (0, 2, 0), (1, 0, 1))
    assert metrics.per_class["a"].model_dump() == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "support": 2,
    }
    assert metrics.per_class["b"].precision == pytest.approx(2 / 3, abs=1e-6)
    assert metrics.per_class["b"].recall == 1.0
    assert metrics.per_class["c"].model_dump() == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3, abs=1e-6),
        "support": 2,
    }
    assert metrics.top_k == 2
    assert metrics.top_k_accuracy == 1.0  # every true class is in the top 2 here
    expected_loss = -np.mean(np.log([0.8, 0.3, 0.7, 0.5, 0.4, 0.7]))
    assert metrics.loss == pytest.approx(expected_loss, abs=1e-5)


def test_history_csv_has_one_row_per_epoch():
    rows = [
        {
            "phase": "head",
            "epoch": 1,
            "loss": 1.0,
            "accuracy": 0.5,
            "val_loss": 0.9,
            "val_accuracy": 0.6,
        },
        {
            "phase": "fine_tune",
            "epoch": 1,
            "loss": 0.5,
            "accuracy": 0.8,
            "val_loss": 0.4,
            "val_accuracy": 0.9,
            "kept": 1,
        },
    ]
    lines = history_csv(rows).splitlines()
    assert lines[0] == "phase,epoch,loss,accuracy,val_loss,val_accuracy,kept"
    assert lines[1] == "head,1,1.0,0.5,0.9,0.6,"
    assert lines[2] == "fine_tune,1,0.5,0.8,0.4,0.9,1"


def test_the_baseline_is_the_training_splits_largest_class_scored_on_validation():
    targets = np.array([0, 0, 1, 1, 1, 2])
    base = baseline({"a": 10, "b": 3, "c": 30}, targets, ["a", "b", "c"])
    assert base.majority_class == "c"
    assert base.majority_accuracy == pytest.approx(1 / 6, abs=1e-6)
    assert base.chance == pytest.approx(1 / 3, abs=1e-6)


@pytest.mark.parametrize(
    ("accuracy", "words"), [(0.50, "no better than"), (0.56, "barely above"), (0.9, None)]
)
def test_a_model_no_better_than_the_baseline_is_called_so(accuracy, words):
    base = Baseline(majority_class="ants", majority_accuracy=0.542, chance=0.5)
    metrics = Figures(accuracy=accuracy, baseline=base)
    warnings = quality_warnings(metrics)
    if words is None:
        assert warnings == []
    else:
        (warning,) = warnings
        assert words in warning and "'ants'" in warning
