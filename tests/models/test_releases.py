"""Label moves, rollback, deletion and retention on a store of metadata-only versions
(no TensorFlow): what ``ktl label``, ``rollback``, ``delete`` and ``train --keep`` do."""

from __future__ import annotations

import pytest

from models.errors import ModelNotFound, UserError
from models.store import ModelStore
from models.store.labels import InvalidLabel, read_labels
from models.store.releases import (
    IncompatibleVersion,
    NoRollbackTarget,
    ProtectedVersion,
    delete_version,
    remove_label,
    retain,
    rollback,
    set_label,
)
from tests.support.tiny import publish_metadata_only


@pytest.fixture
def store(tmp_path) -> ModelStore:
    """``tiny`` version 1 with four classes, then 2, 3, 4 with three (the same labels and
    size)."""
    publish_metadata_only(tmp_path, labels=["cat", "dog", "fox", "owl"])
    for _ in range(3):
        publish_metadata_only(tmp_path)
    return ModelStore(tmp_path)


def test_labels_move_and_the_default_follows_stable(store):
    assert store.default("tiny") == 4
    labels = set_label(store, "tiny", "stable", 3)
    assert labels.labels == {"stable": 3} and store.default("tiny") == 3
    set_label(store, "tiny", "beta", 1)  # a new label: nothing it served before
    set_label(store, "tiny", "stable", 2)
    labels = store.labels("tiny")
    assert labels.labels == {"beta": 1, "stable": 2}
    assert [(m.label, m.version, m.previous, m.forced) for m in labels.history] == [
        ("stable", 3, None, False), ("beta", 1, None, False), ("stable", 2, 3, False),
    ]  # fmt: skip
    remove_label(store, "tiny", "stable")
    assert store.default("tiny") == 4, "without stable the highest serves, as before labels"


def test_a_move_to_a_version_with_other_classes_or_size_needs_force(store, tmp_path):
    set_label(store, "tiny", "stable", 3)
    with pytest.raises(IncompatibleVersion, match=r"class labels \['cat', 'dog', 'fox', 'owl'\]"):
        set_label(store, "tiny", "stable", 1)
    with pytest.raises(IncompatibleVersion, match="--force"):
        set_label(store, "tiny", "canary", 1, weight=0.1)
    bigger = publish_metadata_only(tmp_path, size=(64, 64))
    with pytest.raises(IncompatibleVersion, match=r"image size \[64, 64\] instead of \[32, 32\]"):
        set_label(store, "tiny", "canary", bigger)
    set_label(store, "tiny", "beta", 2)
    with pytest.raises(IncompatibleVersion):  # beta served version 2's classes
        set_label(store, "tiny", "beta", 1)
    assert store.labels("tiny").labels == {"beta": 2, "stable": 3}, "refusals change nothing"
    labels = set_label(store, "tiny", "canary", 1, weight=0.1, force=True)
    assert labels.labels == {"beta": 2, "canary": 1, "stable": 3}
    assert labels.history[-1].forced


def test_a_canary_has_a_weight_and_promoting_it_ends_it(store):
    set_label(store, "tiny", "stable", 2)
    set_label(store, "tiny", "canary", 3, weight=0.25)
    labels = store.labels("tiny")
    assert labels.canary_weight == 0.25 and labels.history[-1].weight == 0.25
    with pytest.raises(UserError, match="already its default"):
        set_label(store, "tiny", "canary", 2)
    labels = set_label(store, "tiny", "stable", 3, action="promote")
    assert labels.labels == {"stable": 3} and labels.canary_weight == 0
    assert labels.history[-1].label == "canary" and labels.history[-1].version is None


@pytest.mark.parametrize(
    ("label", "weight", "error", "message"),
    [
        ("stable", 0.5, UserError, "takes none"),
        ("canary", 1.5, UserError, "from 0 to 1"),
        ("Stable", None, InvalidLabel, "Invalid label"),
    ],
)
def test_bad_labels_and_weights_are_refused(store, label, weight, error, message):
    with pytest.raises(error, match=message):
        set_label(store, "tiny", label, 2, weight=weight)
    assert not (store.root / "tiny" / "labels.json").exists()


def test_unknown_models_versions_and_labels_are_named(store):
    with pytest.raises(ModelNotFound, match="no version 9"):
        set_label(store, "tiny", "stable", 9)
    with pytest.raises(ModelNotFound, match="No model named 'nope'"):
        set_label(store, "nope", "stable", 1)
    with pytest.raises(UserError, match="no label 'canary' to remove"):
        remove_label(store, "tiny", "canary")


def test_rollback_walks_back_through_the_versions_that_held_stable(store):
    for version in (2, 3, 4):
        set_label(store, "tiny", "stable", version)
    assert rollback(store, "tiny").labels["stable"] == 3
    assert rollback(store, "tiny").labels["stable"] == 2
    with pytest.raises(NoRollbackTarget, match="ktl label tiny stable VERSION"):
        rollback(store, "tiny")
    history = store.labels("tiny").history
    assert [m.action for m in history[-2:]] == ["rollback", "rollback"]
    assert [m.previous for m in history[-2:]] == [4, 3]


def test_rollback_without_stable_goes_below_the_highest(store):
    assert rollback(store, "tiny").labels == {"stable": 3}


def test_rollback_to_other_classes_needs_force(store):
    set_label(store, "tiny", "stable", 1, force=True)
    set_label(store, "tiny", "stable", 2, force=True)
    with pytest.raises(IncompatibleVersion, match="Refusing the rollback"):
        rollback(store, "tiny")
    assert rollback(store, "tiny", force=True).labels == {"stable": 1}


def test_rollback_skips_versions_deleted_since(store):
    for version in (2, 3, 4):
        set_label(store, "tiny", "stable", version)
    delete_version(store, "tiny", 3)
    assert rollback(store, "tiny").labels["stable"] == 2


def test_delete_refuses_labelled_and_default_versions_unless_forced(store):
    set_label(store, "tiny", "stable", 2)
    set_label(store, "tiny", "canary", 3, weight=0.5)
    for version, reason in ((2, "labelled stable, the default version"), (3, "labelled canary")):
        with pytest.raises(ProtectedVersion, match=f"is {reason}: move its labels"):
            delete_version(store, "tiny", version)
    assert store.versions("tiny") == [1, 2, 3, 4]
    labels = delete_version(store, "tiny", 3, force=True)
    assert labels.labels == {"stable": 2} and labels.canary_weight == 0
    assert labels.history[-1].action == "delete" and labels.history[-1].forced
    assert store.versions("tiny") == [1, 2, 4]
    assert not (store.root / "tiny" / "3").exists()
    assert not list((store.root / ".staging").iterdir()), "the removed folder is gone"


def test_a_deleted_number_is_never_given_out_again(store, tmp_path):
    delete_version(store, "tiny", 4, force=True)  # the highest, the default
    assert store.versions("tiny") == [1, 2, 3]
    assert read_labels(tmp_path / "tiny").deleted == (4,)
    assert publish_metadata_only(tmp_path) == 5


def test_retention_keeps_the_newest_labelled_rollback_targets_and_parents(tmp_path):
    store = ModelStore(tmp_path)
    for version in range(1, 9):
        parent = {"lineage": {"kind": "warm_start", "name": "tiny", "version": 2,
                              "model_sha256": "0" * 64}}  # fmt: skip
        publish_metadata_only(tmp_path, **(parent if version == 8 else {}))
    set_label(store, "tiny", "stable", 3)
    set_label(store, "tiny", "stable", 4)  # 3: a rollback target now
    set_label(store, "tiny", "beta", 1)
    assert retain(store, "tiny", 2) == [5, 6]
    # 7, 8 newest; 4 stable; 3 rolled back to; 1 labelled; 2 the parent of 8
    assert store.versions("tiny") == [1, 2, 3, 4, 7, 8]
    assert store.labels("tiny").deleted == (5, 6)
