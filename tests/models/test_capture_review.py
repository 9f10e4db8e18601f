"""The review queue over a capture folder, without a service: abstained first, then
the least confident, near-duplicates as one item, labels kept for a whole group,
checked against the version's labels, and never pruned by the disk budget."""

from __future__ import annotations

import numpy as np
import pytest

from models.capture.folder import CaptureFolder
from models.capture.review import (
    NotALabel,
    NotCaptured,
    queue,
    record_review,
    record_reviews,
    reviewed_images,
    reviews,
)
from models.ids import new_id
from tests.support.captures import png, write_capture, write_captures
from tests.support.patterns import scene

LABELS = ["ant", "bee"]
MODEL = "insects"


@pytest.fixture
def captures(tmp_path):
    """Five captures: a sure one, an unsure one, an abstained one, and an abstained
    near-copy (resized) of the unsure picture, and an exact copy of the sure one."""
    rng = np.random.default_rng(7)
    pictures = [scene(96, rng) for _ in range(3)]
    folder = CaptureFolder(tmp_path / "capture")
    plan = {
        "sure": (pictures[0], 0.97, False),
        "unsure": (pictures[1], 0.62, False),
        "abstained": (pictures[2], 0.55, True),
        "resized": (pictures[1].resize((80, 80)), 0.51, True),
        "copy": (pictures[0], 0.95, False),
    }
    return folder, write_captures(folder, MODEL, plan, labels=LABELS, top="bee")


def test_abstained_first_then_the_least_confident_with_look_alikes_as_one_item(captures):
    folder, ids = captures
    items = queue(folder, MODEL)
    shown = [item.shown.id for item in items]
    # the resized copy abstained at 0.51: it leads and carries the unsure original
    assert shown == [ids["resized"], ids["abstained"], ids["copy"]]
    assert items[0].members == (ids["resized"], ids["unsure"])
    assert items[2].members == (ids["copy"], ids["sure"])
    described = items[0].to_json()
    assert described["abstained"] and described["near_duplicates"] == [ids["unsure"]]
    assert described["labels"] == LABELS and described["reviewed"] is None


def test_a_label_is_kept_for_the_whole_group_and_the_item_leaves_the_queue(captures):
    folder, ids = captures
    labelled = record_review(folder, MODEL, ids["resized"], "ant", by="cli")
    assert sorted(labelled) == sorted([ids["resized"], ids["unsure"]])
    given = reviews(folder, MODEL)
    assert {given[i]["label"] for i in labelled} == {"ant"}
    assert given[ids["unsure"]]["predicted"] == "bee" and given[ids["unsure"]]["by"] == "cli"
    assert [item.shown.id for item in queue(folder, MODEL)] == [ids["abstained"], ids["copy"]]
    assert len(queue(folder, MODEL, include_done=True)) == 3
    # labelling a member (not the one shown) labels its group too
    assert sorted(record_review(folder, MODEL, ids["sure"], "bee", by="page")) == sorted(
        [ids["copy"], ids["sure"]]
    )
    training = reviewed_images(folder, MODEL)
    assert sorted((r.path.name, r.label) for r in training) == sorted(
        (f"{i}.png", label)
        for i, label in [
            (ids["resized"], "ant"),
            (ids["unsure"], "ant"),
            (ids["copy"], "bee"),
            (ids["sure"], "bee"),
        ]
    )
    assert {r.version for r in training} == {1}


def test_an_unknown_id_or_label_is_refused_and_nothing_is_written(captures):
    folder, ids = captures
    with pytest.raises(NotCaptured, match="No captured prediction"):
        record_review(folder, MODEL, new_id(), "ant", by="cli")
    with pytest.raises(NotALabel, match=r"'wasp' is not one of the labels.*\['ant', 'bee'\]"):
        record_review(folder, MODEL, ids["sure"], "wasp", by="cli")
    assert reviews(folder, MODEL) == {}


def test_the_disk_budget_never_prunes_a_reviewed_capture(captures):
    folder, ids = captures
    record_review(folder, MODEL, ids["abstained"], "ant", by="cli")
    total, _ = folder.size()
    assert folder.prune(total // 4) > 0
    images = folder.model_dir(MODEL) / "images"
    assert (images / f"{ids['abstained']}.png").is_file()
    assert (images / f"{ids['abstained']}.json").is_file()
    assert reviews(folder, MODEL)[ids["abstained"]]["label"] == "ant"
    assert [r.label for r in reviewed_images(folder, MODEL)] == ["ant"]


def test_a_record_without_its_image_is_not_offered(captures):
    folder, ids = captures
    (folder.model_dir(MODEL) / "images" / f"{ids['abstained']}.png").unlink()
    assert ids["abstained"] not in {i.shown.id for i in queue(folder, MODEL)}


def test_many_labels_are_checked_before_any_is_written(captures):
    folder, ids = captures
    good = (ids["abstained"], "ant")
    with pytest.raises(NotALabel):
        record_reviews(folder, MODEL, [good, (ids["sure"], "wasp")], by="cli")
    assert reviews(folder, MODEL) == {}
    labelled = record_reviews(folder, MODEL, [good, (ids["sure"], "bee")], by="cli")
    assert labelled == [[ids["abstained"]], [ids["copy"], ids["sure"]]]
    assert {i: r["label"] for i, r in reviews(folder, MODEL).items()} == {
        ids["abstained"]: "ant",
        ids["copy"]: "bee",
        ids["sure"]: "bee",
    }


def test_each_capture_is_decoded_once_however_often_the_queue_is_read(captures, monkeypatch):
    import models.capture.review as review

    folder, _ = captures
    decoded: list[str] = []
    real = review.look_at_files

    def counting(paths):
        decoded.extend(str(p) for p in paths)
        return real(paths)

    monkeypatch.setattr(review, "look_at_files", counting)
    first = [item.members for item in queue(folder, MODEL)]
    assert [item.members for item in queue(folder, MODEL)] == first
    assert len(decoded) == len(set(decoded)) == 5  # the second read decoded nothing
    picture = png(scene(96, np.random.default_rng(3)))
    write_capture(folder, MODEL, picture, labels=LABELS, top="ant", confidence=0.3)
    queue(folder, MODEL)
    assert len(decoded) == len(set(decoded)) == 6  # only the new capture
