"""What a person reads after ``ktl train --exclude`` and after ``ktl doctor`` with a
weak probe: the original test figures beside the new ones, and label issues
listed at review with the reason the doctor did not pre-fill exclude."""

from __future__ import annotations

from cli.commands.doctor import print_summary as print_doctor
from cli.train_summary import print_summary

CLASS = {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 26}
FIGURES = {"top_k": 1, "top_k_accuracy": 0.9, "loss": 0.3, "macro_f1": 0.8}
CHANGES = {
    "images": 67,
    "excluded": 14,
    "relabelled": 1,
    "excluded_by_split": {"train": 18, "val": 27, "test": 14},
    "relabelled_by_split": {"train": 0, "val": 0, "test": 1},
}


def _result(**evaluation) -> dict:
    return {
        "name": "bees",
        "version": 3,
        "path": "model_store/bees/3",
        "seconds": 1.0,
        "dataset": {
            "train_images": 200,
            "val_images": 60,
            "test_images": 53,
            "classes": {"ants": {}, "bees": {}},
            "skipped": 0,
            "ignored_files": 0,
            "warnings": [],
            "original_test": CHANGES,
        },
        "training": {"recipe": "transfer", "phases": []},
        "metrics": {
            "split": "test",
            "accuracy": 0.83,
            "images": 53,
            **FIGURES,
            "per_class": {"ants": CLASS, "bees": CLASS},
        },
        "evaluation": evaluation,
    }


def test_the_train_summary_gives_the_original_test_accuracy_and_what_the_csvs_changed(capsys):
    original = {"accuracy": 0.672, "images": 67, "unknown": 0, **FIGURES}
    print_summary(_result(original_test=original))
    out = capsys.readouterr().out
    assert "  test        accuracy 0.830 (53 images)" in out
    assert "  original    accuracy 0.672 (67 images)" in out
    assert (
        "  corrected   15 of the 67 original test images changed by the CSVs (14 excluded, "
        "1 relabelled); also 18 excluded in train, 27 excluded in validation"
    ) in out


def test_without_a_test_split_left_the_changes_are_still_stated(capsys):
    print_summary(_result())
    assert "corrected   15 of the 67 original test images" in capsys.readouterr().out


def test_a_weak_but_useful_probes_issues_are_listed_under_its_note(capsys):
    issue = {
        "kind": "label_issue",
        "path": "ants/1.jpg",
        "given_label": "ants",
        "suggested_label": "bees",
        "score": 0.8,
        "action": "review",
    }
    print_doctor(
        {
            "data": "d",
            "layout": "folders",
            "images": 10,
            "labels": ["ants", "bees"],
            "skipped": [],
            "ignored_files": 0,
            "suspects": [issue],
            "near_duplicate_groups": [],
            "balance": {"classes": {}, "imbalance_ratio": 1.0, "class_weights": None},
            "probe": {
                "description": "a probe",
                "accuracy": 0.8,
                "majority_baseline": 0.5,
                "useful": True,
                "strong": False,
                "note": "pre-filled review, not exclude",
            },
            "seconds": 1.0,
        }
    )
    out = capsys.readouterr().out
    assert "pre-filled review, not exclude" in out
    assert "ants/1.jpg: ants -> bees (score 0.80)" in out
