"""Starting a job from a published version: --weights model:NAME[:VERSION]."""

from __future__ import annotations

import shutil

import pytest

from models.bundle import load_bundle, sha256_file
from models.errors import ConfigError
from tests.support.data import make_colour_dataset
from training.config import build_config
from training.job import run_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    work = tmp_path_factory.mktemp("warm")
    data = make_colour_dataset(work / "data", per_class=8, size=16)
    flags = {"data": str(data), "name": "colours", "store": str(work / "store"),
             "backbone": "smallcnn", "image_size": 16, "epochs": 2}  # fmt: skip
    result = run_job(build_config({}, flags), log=lambda message: None)
    return {"work": work, "data": data, "result": result, "flags": flags}


def _child(parent, **changes):
    messages: list[str] = []
    flags = {**parent["flags"], "name": "child", "weights": "model:colours:1",
             "unfreeze_from": "block3_conv1", "fine_tune_epochs": 1, "min_steps": 0,
             **changes}  # fmt: skip
    flags.pop("image_size", None)  # the parent's size is the default
    return run_job(build_config({}, flags), log=messages.append), messages


def test_the_same_classes_continue_the_whole_model_and_record_the_parent(parent):
    result, messages = _child(parent)
    assert any("backbone and head (same classes)" in m for m in messages), messages
    bundle = load_bundle(result.path)
    assert bundle.image_size == (16, 16)
    parent_model = parent["result"].path / "model.keras"
    assert bundle.metadata.lineage.model_dump() == {
        "kind": "warm_start", "name": "colours", "version": 1,
        "model_sha256": sha256_file(parent_model),
    }  # fmt: skip
    assert [p["name"] for p in result.training["phases"]] == ["head", "fine_tune"]


def test_other_classes_keep_the_backbone_and_train_a_new_head(parent, tmp_path):
    two = tmp_path / "two"
    shutil.copytree(parent["data"], two)
    shutil.rmtree(two / "blue")
    result, messages = _child(parent, data=str(two))
    assert any("backbone (other classes)" in m for m in messages), messages
    assert load_bundle(result.path).labels == ["green", "red"]


def test_a_parent_of_another_backbone_is_refused_with_what_to_pass(parent):
    with pytest.raises(ConfigError, match="is a smallcnn; pass --backbone smallcnn"):
        _child(parent, backbone="lenet5")
