"""Version labels: stored beside the versions, replaced atomically, one writer at a
time, with their history; the default version follows ``stable``."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from models.store import ModelStore
from models.store.labels import (
    LABELS_FILE,
    InvalidLabel,
    LabelFileError,
    LabelMove,
    VersionLabels,
    default_version,
    read_labels,
    update_labels,
    validate_label,
)
from tests.support.tiny import publish_metadata_only


def move(label: str, version: int | None, action: str = "set", **more) -> LabelMove:
    return LabelMove(
        at="2025-01-01T00:00:00.000Z", label=label, version=version, action=action, **more
    )


@pytest.mark.parametrize("label", ["stable", "canary", "a", "beta-2", "x_y", "a" * 64])
def test_valid_labels(label):
    assert validate_label(label) == label


@pytest.mark.parametrize("label", ["", "Stable", "1st", "-a", "a b", "../x", "a" * 65, "é", None])
def test_invalid_labels(label):
    with pytest.raises(InvalidLabel, match="Invalid label"):
        validate_label(label)


def test_the_default_is_stable_when_it_exists_else_the_highest():
    none = VersionLabels()
    assert default_version([1, 2, 3], none) == 3
    assert default_version([], none) is None
    stable = none.moved(move("stable", 2))
    assert default_version([1, 2, 3], stable) == 2
    # A stable version that is no longer in the store (removed by hand) serves nothing:
    # the highest does, as if there were no label.
    assert default_version([1, 3], stable) == 3


def test_moves_are_recorded_and_the_canary_weight_goes_with_its_label():
    labels = VersionLabels().moved(move("canary", 4, weight=0.25)).moved(move("stable", 3))
    assert labels.labels == {"canary": 4, "stable": 3}
    assert labels.canary_weight == 0.25
    assert [(m.label, m.version) for m in labels.history] == [("canary", 4), ("stable", 3)]
    assert labels.labels_of(4) == ["canary"] and labels.labels_of(1) == []
    ended = labels.moved(move("canary", None, "remove"))
    assert ended.labels == {"stable": 3} and ended.canary_weight == 0


def test_stable_holders_push_on_moves_and_pop_on_rollbacks():
    labels = VersionLabels()
    for version in (1, 2, 3):
        labels = labels.moved(move("stable", version))
    assert labels.stable_holders() == [1, 2, 3]
    labels = labels.moved(move("stable", 2, "rollback"))
    assert labels.stable_holders() == [1, 2]
    labels = labels.moved(move("stable", None, "remove")).moved(move("stable", 5))
    assert labels.stable_holders() == [1, 2, 5]
    labels = labels.moved(move("stable", 1, "rollback"))
    assert labels.stable_holders() == [1]


def test_no_file_reads_as_no_labels_and_a_write_is_one_whole_file(tmp_path):
    assert read_labels(tmp_path) == VersionLabels()
    written = update_labels(tmp_path, lambda labels: labels.moved(move("stable", 1)))
    assert read_labels(tmp_path) == written
    raw = json.loads((tmp_path / LABELS_FILE).read_text())
    assert raw["labels"] == {"stable": 1} and raw["format_version"] == 1
    assert len(raw["history"]) == 1 and raw["history"][0]["at"].endswith("Z")
    # Nothing but the file and its lock is left beside it: no temporary files.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".labels.lock", LABELS_FILE]


def test_a_change_that_raises_leaves_the_file_as_it_was(tmp_path):
    update_labels(tmp_path, lambda labels: labels.moved(move("stable", 1)))
    before = (tmp_path / LABELS_FILE).read_bytes()

    def refuse(labels: VersionLabels) -> VersionLabels:
        raise ValueError("no")

    with pytest.raises(ValueError):
        update_labels(tmp_path, refuse)
    assert (tmp_path / LABELS_FILE).read_bytes() == before


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    update_labels(tmp_path, lambda labels: labels.moved(move("stable", 1)))
    before = (tmp_path / LABELS_FILE).read_bytes()

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", full_disk)
    with pytest.raises(LabelFileError, match="No space left.*unchanged"):
        update_labels(tmp_path, lambda labels: labels.moved(move("stable", 2)))
    assert (tmp_path / LABELS_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([LABELS_FILE, ".labels.lock"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a valid labels file"),
        ('{"labels": {"stable": "three"}}', "not a valid labels file"),
        ('{"format_version": 99}', "newer ktl"),
    ],
)
def test_an_unusable_file_is_named(tmp_path, content, message):
    (tmp_path / LABELS_FILE).write_text(content)
    with pytest.raises(LabelFileError, match=message) as error:
        read_labels(tmp_path)
    assert str(tmp_path / LABELS_FILE) in str(error.value)


def test_keys_of_a_newer_ktl_survive_a_rewrite(tmp_path):
    (tmp_path / LABELS_FILE).write_text(json.dumps({"labels": {}, "shadow": {"v": 1}}))
    update_labels(tmp_path, lambda labels: labels.moved(move("stable", 1)))
    assert json.loads((tmp_path / LABELS_FILE).read_text())["shadow"] == {"v": 1}


def _add_moves(folder: str, label: str, count: int) -> None:
    for i in range(count):
        update_labels(Path(folder), lambda labels, i=i: labels.moved(move(label, i + 1)))


def test_concurrent_writers_lose_nothing(tmp_path):
    """Two processes move labels at once: every move of both is in the history."""
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_add_moves, args=(str(tmp_path), label, 40))
        for label in ("stable", "canary")
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    history = read_labels(tmp_path).history
    assert len(history) == 80
    for label in ("stable", "canary"):
        assert [m.version for m in history if m.label == label] == list(range(1, 41))


def test_the_store_serves_the_stable_version_by_default(tmp_path):
    store = ModelStore(tmp_path)
    for _ in range(3):
        publish_metadata_only(tmp_path)
    assert store.default("tiny") == 3 and store.resolve("tiny")[0] == 3
    update_labels(tmp_path / "tiny", lambda labels: labels.moved(move("stable", 1)))
    assert store.labels("tiny").labels == {"stable": 1}
    assert store.default("tiny") == 1
    assert store.resolve("tiny") == (1, tmp_path / "tiny" / "1")
    assert store.latest("tiny") == 3
    assert store.versions("tiny") == [1, 2, 3], "labels.json is not a version"
