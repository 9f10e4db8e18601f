"""``ktl review``: the queue in the terminal and as JSON, labelling from the command
line, and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.capture.folder import CaptureFolder
from models.capture.review import reviews
from tests.support.captures import write_captures
from tests.support.cli import ktl_here
from tests.support.patterns import scene

MODEL = "insects"
LABELS = ["ant", "bee", "wasp"]


@pytest.fixture
def capture(tmp_path):
    """Three distinct captures (one abstained) and a look-alike of the abstained one."""
    rng = np.random.default_rng(11)
    pictures = [scene(96, rng) for _ in range(3)]
    folder = CaptureFolder(tmp_path / "capture")

    plan = {
        "sure": (pictures[0], 0.96, False),
        "unsure": (pictures[1], 0.58, False),
        "abstained": (pictures[2], 0.41, True),
        "alike": (pictures[2].resize((84, 84)), 0.72, False),
    }
    return folder, write_captures(folder, MODEL, plan, labels=LABELS, top="bee")


def test_the_queue_lists_abstained_first_with_their_look_alikes(capture):
    folder, ids = capture
    done = ktl_here("review", MODEL, "--capture-dir", str(folder.root))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{MODEL}: 3 items to label (4 captured, 0 reviewed)")
    rows = [line for line in lines if line[:26] in ids.values()]
    assert [row[:26] for row in rows] == [ids["abstained"], ids["unsure"], ids["sure"]]
    assert "abstained" in rows[0] and rows[0].split()[-2] == "1"  # one look-alike
    assert "labels: ant, bee, wasp" in lines[-1]

    as_json = json.loads(
        ktl_here("review", MODEL, "--capture-dir", str(folder.root), "--json").stdout
    )
    assert (as_json["captured"], as_json["reviewed"], as_json["items_left"]) == (4, 0, 3)
    assert as_json["items"][0]["near_duplicates"] == [ids["alike"]]


def test_labels_given_on_the_command_line_are_kept_for_look_alikes(capture, monkeypatch):
    folder, ids = capture
    monkeypatch.setenv("KTL_CAPTURE_DIR", str(folder.root))  # the default folder
    args = ("review", MODEL, "--label", f"{ids['abstained']}=wasp", "--label", f"{ids['sure']}=bee")
    done = ktl_here(*args)
    assert done.returncode == 0, done.stderr
    assert f"Labelled {ids['abstained']} and 1 look-alike as wasp" in done.stdout
    given = {i: r["label"] for i, r in reviews(folder, MODEL).items()}
    assert given == {ids["abstained"]: "wasp", ids["alike"]: "wasp", ids["sure"]: "bee"}
    left = ktl_here("review", MODEL)
    assert left.stdout.startswith(f"{MODEL}: 1 item to label (4 captured, 3 reviewed)")
    assert "labelled" in ktl_here("review", MODEL, "--all").stdout


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--label", "nonsense"], "write ID=LABEL"),
        (["--label", "01JF0000000000000000000000=bee"], "No captured prediction"),
        (["--label", "{sure}=moth"], "'moth' is not one of the labels"),
    ],
)
def test_a_bad_label_is_refused_and_nothing_is_written(capture, extra, said):
    folder, ids = capture
    extra = [word.format(**ids) for word in extra]
    done = ktl_here("review", MODEL, "--capture-dir", str(folder.root), *extra)
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert reviews(folder, MODEL) == {}


def test_without_a_capture_folder_it_says_where_to_find_one(tmp_path, monkeypatch):
    monkeypatch.delenv("KTL_CAPTURE_DIR", raising=False)
    done = ktl_here("review", MODEL)
    assert done.returncode == 2 and "--capture-dir DIR or set KTL_CAPTURE_DIR" in done.stderr
    missing = ktl_here("review", MODEL, "--capture-dir", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such folder" in missing.stderr
    empty = ktl_here("review", MODEL, "--capture-dir", str(tmp_path))
    assert empty.returncode == 0 and "Nothing to label for insects" in empty.stdout
