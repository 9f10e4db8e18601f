"""What goes live after a job publishes: --promote, --promote-if-better, --keep
(``training.publishing.release``), on tiny bundles whose answers are fixed by hand."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from models.errors import UserError
from models.store import ModelStore
from tests.support.data import make_colour_dataset
from tests.support.tiny import publish_tiny, tiny_model
from training.config import build_config
from training.publishing.release import release

LABELS = ["blue", "green", "red"]


def always(label: str, labels: list[str] = LABELS):
    """A tiny model that answers ``label`` for every image."""
    model = tiny_model(classes=len(labels))
    head = model.get_layer("predictions")
    kernel, bias = head.get_weights()
    bias = np.zeros_like(bias)
    bias[labels.index(label)] = 20.0
    head.set_weights([np.zeros_like(kernel), bias])
    return model


@pytest.fixture(scope="module")
def models():
    return {"red": always("red"), "blue": always("blue")}


@pytest.fixture
def job(tmp_path):
    """Green and red images (no blue): a model that answers red is right on half."""
    data = make_colour_dataset(tmp_path / "data", per_class=10, size=16)
    shutil.rmtree(data / "blue")
    store = tmp_path / "store"

    def run(version_model, labels=LABELS, **options):
        version, _ = publish_tiny(store, "colours", model=version_model, labels=labels)
        flags = {"data": str(data), "name": "colours", "store": str(store),
                 "backbone": "smallcnn", **options}  # fmt: skip
        return version, release(build_config({}, flags), version, log=lambda message: None)

    run.store = ModelStore(store)  # type: ignore[attr-defined]
    return run


@pytest.mark.slow
def test_a_worse_version_is_kept_out_of_stable_even_without_labels(job, models):
    job(models["red"])
    version, outcome = job(models["blue"], promote_if_better=True)
    assert version == 2 and not outcome.promoted
    assert outcome.stable == 1 and outcome.default_version == 1
    comparison = outcome.comparison
    assert comparison.split == "val" and comparison.stable_version == 1
    # The red answers are right on the red half of the validation images.
    assert comparison.accuracy == 0.0 and 0 < comparison.stable_accuracy < 1
    assert comparison.images > 0 and comparison.difference < 0
    assert "not promoted, version 1 stays stable" in outcome.reason
    assert f"{comparison.difference * 100:+.1f} points" in outcome.reason
    assert job.store.default("colours") == 1


@pytest.mark.slow
def test_a_better_version_takes_stable_and_says_by_how_much(job, models):
    job(models["blue"], promote=True)
    version, outcome = job(models["red"], promote_if_better=True)
    assert outcome.promoted and outcome.stable == version == 2
    assert outcome.comparison.difference == outcome.comparison.accuracy > 0
    assert outcome.reason.startswith("promoted to stable: validation accuracy")
    [move] = [m for m in job.store.labels("colours").history if m.version == 2]
    assert move.action == "promote" and move.previous == 1


@pytest.mark.slow
def test_an_equal_version_does_not_take_stable(job, models):
    job(models["red"], promote=True)
    _, outcome = job(models["red"], promote_if_better=True)
    assert not outcome.promoted and outcome.default_version == 1


@pytest.mark.slow
def test_promote_labels_the_new_version_stable(job, models):
    job(models["red"], promote=True)
    version, outcome = job(models["blue"])  # no option: stable stays where it is
    assert outcome is None and job.store.default("colours") == 1
    version, outcome = job(models["blue"], promote=True)
    assert outcome.promoted and job.store.default("colours") == version == 3


@pytest.mark.slow
def test_other_classes_are_not_compared_and_promote_needs_the_label_command(job, models):
    job(models["red"])
    classes = ["cat", "dog", "fox"]
    other = always("cat", classes)
    version, outcome = job(other, classes, promote_if_better=True)
    assert not outcome.promoted and outcome.default_version == 1
    assert "other classes" in outcome.reason
    with pytest.raises(UserError, match="did not promote it"):
        job(other, classes, promote=True)


@pytest.mark.slow
def test_keep_deletes_the_oldest_but_never_stable(job, models):
    job(models["red"], promote=True)
    for _ in range(3):
        job(models["blue"])
    version, outcome = job(models["blue"], keep=2)
    assert outcome.deleted == [2, 3]
    assert job.store.versions("colours") == [1, 4, 5]


def test_promote_and_promote_if_better_exclude_each_other(tmp_path):
    from models.errors import ConfigError

    flags = {"data": "d", "name": "n", "backbone": "smallcnn"}
    with pytest.raises(ConfigError, match="exclude each other"):
        build_config({}, {**flags, "promote": True, "promote_if_better": True})
    with pytest.raises(ConfigError, match="--keep"):
        build_config({}, {**flags, "keep": 0})


@pytest.mark.slow
def test_a_warm_start_can_name_the_parent_by_its_label(job, models):
    from models.errors import ConfigError
    from training.fitting.warm_start import load_parent

    job(models["red"], promote=True)
    job(models["blue"])
    parent = load_parent("model:colours:stable", job.store, "smallcnn")
    assert parent.lineage["version"] == 1
    with pytest.raises(ConfigError, match="no version labelled canary"):
        load_parent("model:colours:canary", job.store, "smallcnn")
    with pytest.raises(ConfigError, match="model:NAME:LABEL"):
        load_parent("model:colours:Stable!", job.store, "smallcnn")
