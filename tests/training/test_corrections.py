"""``--exclude`` and ``--relabel``: a doctor CSV, as a person edited it, applied to
the listing before the split, and refused with a line number when it cannot be."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from training.dataset.corrections import CorrectionsError, corrected_listing

HEADER = "path,given_label,suggested_label,kind,score,action\n"


def _csv(path: Path, *rows: str) -> Path:
    path.write_text(HEADER + "".join(row + "\n" for row in rows))
    return path


def _labels(listing) -> dict[str, str]:
    return {f"{s.path.parent.name}/{s.path.name}": s.label for s in listing.samples}


def test_exclude_leaves_out_only_the_rows_marked_exclude(colour_dataset, tmp_path):
    csv = _csv(
        tmp_path / "suspects.csv",
        "red/red_000.png,red,green,label_issue,0.9,exclude",
        "red/red_001.png,red,green,label_issue,0.8,keep",
        "blue/blue_002.png,blue,red,label_issue,0.7,relabel",
        "blue/blue_003.png,blue,blue,near_duplicate,0.95,exclude",
    )
    listing = corrected_listing(str(colour_dataset), str(csv), None)
    files = _labels(listing)
    assert "red/red_000.png" not in files and "blue/blue_003.png" not in files
    assert files["red/red_001.png"] == "red" and files["blue/blue_002.png"] == "blue"
    assert len(files) == 36 - 2
    assert listing.corrections == {
        "exclude": {
            "csv": str(csv),
            "sha256": hashlib.sha256(csv.read_bytes()).hexdigest(),
            "rows": 2,
            "excluded": 2,
        }
    }


def test_relabel_applies_the_suggested_label_as_edited(colour_dataset, tmp_path):
    csv = _csv(
        tmp_path / "suspects.csv",
        "red/red_000.png,red,green,label_issue,0.9,relabel",
        "red/red_001.png,red,blue,label_issue,0.8,relabel",
        "red/red_002.png,red,green,label_issue,0.8,exclude",
    )
    listing = corrected_listing(str(colour_dataset), None, str(csv))
    files = _labels(listing)
    assert files["red/red_000.png"] == "green" and files["red/red_001.png"] == "blue"
    assert files["red/red_002.png"] == "red"  # only --exclude reads exclude rows
    relabel = listing.corrections["relabel"]
    assert relabel["relabelled"] == 2
    assert relabel["changes"] == {"red -> green": 1, "red -> blue": 1}


def test_both_from_one_csv_exclude_wins(colour_dataset, tmp_path):
    csv = _csv(
        tmp_path / "suspects.csv",
        "red/red_000.png,red,green,label_issue,0.9,relabel",
        "red/red_000.png,red,red,near_duplicate,0.97,exclude",
    )
    listing = corrected_listing(str(colour_dataset), str(csv), str(csv))
    assert "red/red_000.png" not in _labels(listing)
    assert listing.corrections["relabel"]["relabelled"] == 0


def test_rows_left_at_review_change_nothing(colour_dataset, tmp_path):
    # a weak probe's suggestion, for a person to decide: neither option acts on it
    csv = _csv(tmp_path / "s.csv", "red/red_000.png,red,green,label_issue,0.6,review")
    listing = corrected_listing(str(colour_dataset), str(csv), str(csv))
    assert _labels(listing)["red/red_000.png"] == "red" and len(listing.samples) == 36
    assert listing.corrections["exclude"]["excluded"] == 0


def test_paths_are_relative_to_a_data_csv_folder(colour_dataset, tmp_path):
    data = colour_dataset / "labels.csv"
    data.write_text("path,label\nred/red_000.png,red\nred/red_001.png,red\n"
                    "blue/blue_000.png,blue\nblue/blue_001.png,blue\n")  # fmt: skip
    csv = _csv(tmp_path / "s.csv", "red/red_001.png,red,blue,label_issue,0.9,relabel")
    listing = corrected_listing(str(data), None, str(csv))
    assert [s.label for s in listing.samples] == ["red", "blue", "blue", "blue"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("path,label\nred/red_000.png,red\n", "not a doctor CSV (no column suggested_label"),
        (HEADER + "red/red_000.png,red,green,label_issue,0.9,delete\n", "line 2: action 'delete'"),
        (HEADER + "red/nope.png,red,green,label_issue,0.9,exclude\n", "line 2: 'red/nope.png' is"),
        (HEADER + "red/red_000.png,red,,label_issue,0.9,relabel\n", "line 2: relabel with no"),
    ],
)
def test_a_csv_that_cannot_be_applied_names_the_line(colour_dataset, tmp_path, content, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    with pytest.raises(CorrectionsError, match=message.replace("(", r"\(")) as caught:
        corrected_listing(str(colour_dataset), str(csv), str(csv))
    assert caught.value.exit_code == 2


def test_a_missing_csv_is_a_user_error(colour_dataset, tmp_path):
    with pytest.raises(CorrectionsError, match="--exclude .*cannot read it"):
        corrected_listing(str(colour_dataset), str(tmp_path / "none.csv"), None)
