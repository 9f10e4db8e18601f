"""``ktl compare``: candidates with weights at hand are probed, the others skipped
with the reason, and the pick is the most accurate (ties to the cheaper)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.errors import ConfigError
from models.networks.backbones import get_backbone
from tests.support.cli import ktl, ktl_here
from tests.support.patterns import make_pattern_dataset
from training.evaluation import compare

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "smallcnn_patterns.h5"


def test_weight_files_are_name_equals_path():
    assert compare.parse_weight_files(["smallcnn=a.h5", "vgg16=/x/b.h5"]) == {
        "smallcnn": "a.h5", "vgg16": "/x/b.h5"
    }  # fmt: skip
    for bad in ("a.h5", "=a.h5", "smallcnn="):
        with pytest.raises(ConfigError, match="NAME=FILE"):
            compare.parse_weight_files([bad])


def test_the_pick_is_the_most_accurate_and_a_tie_goes_to_the_cheaper():
    rows = [
        {"backbone": "big", "right": 90, "params": 20_000_000},
        {"backbone": "small", "right": 90, "params": 3_000_000},
        {"backbone": "worse", "right": 80, "params": 1_000_000},
    ]
    assert compare.pick(rows) == "small"
    rows[0]["right"] = 91
    assert compare.pick(rows) == "big"
    assert compare.pick([]) is None


def test_weights_at_hand_come_from_a_file_or_keras_cache(tmp_path, monkeypatch):
    scratch = get_backbone("lenet5")
    assert compare.weights_at_hand(scratch, None) == (
        None, "lenet5 has no pretrained weights: give --weights lenet5=FILE"
    )  # fmt: skip
    resnet = get_backbone("resnet50")
    cached = tmp_path / "models" / resnet.weights_file
    monkeypatch.setattr(compare, "keras_cache_path", lambda spec: cached)
    weights, why = compare.weights_at_hand(resnet, None)
    assert weights is None and str(cached) in why and "--weights resnet50=FILE" in why
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    assert compare.weights_at_hand(resnet, None) == ("imagenet", "imagenet (Keras' cache)")
    assert compare.weights_at_hand(resnet, str(FIXTURE)) == (str(FIXTURE), f"file {FIXTURE}")


@pytest.fixture(scope="module")
def patterns(tmp_path_factory) -> Path:
    return make_pattern_dataset(
        tmp_path_factory.mktemp("compare"), ("circle", "stripes"), 30, 32, seed=5
    )


def test_candidates_are_probed_or_skipped_with_the_reason(patterns, tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "keras_cache_path", lambda spec: tmp_path / "absent.h5")
    lenet = get_backbone("lenet5").build((32, 32, 3), None)
    lenet.save_weights(tmp_path / "lenet5.weights.h5")  # random: a weaker candidate
    files = {"smallcnn": str(FIXTURE), "lenet5": str(tmp_path / "lenet5.weights.h5")}
    result = compare.compare_backbones(
        str(patterns), ["smallcnn", "lenet5", "resnet50"], files, image_size=32,
        log=lambda message: None,
    )  # fmt: skip
    rows = {row["backbone"]: row for row in result["candidates"]}
    assert set(rows) == {"smallcnn", "lenet5"}
    assert result["skipped"] == [
        {
            "backbone": "resnet50",
            "reason": compare.weights_at_hand(get_backbone("resnet50"), None)[1],
        }
    ]
    # The test split ktl train would hold out (15 % once classes reach 40) is not
    # reached at 30 per class: every image is probed.
    assert result["images"] == 60 and result["baseline"] == 0.5
    best = rows["smallcnn"]
    assert best["accuracy"] >= 0.9 and best["right"] == round(best["accuracy"] * 60)
    low, high = best["accuracy_interval"]
    assert low < best["accuracy"] <= high
    assert best["params"] == get_backbone("smallcnn").params and best["seconds"] > 0
    assert result["pick"] == compare.pick(result["candidates"])


def test_unknown_names_fail_before_any_work(patterns):
    with pytest.raises(ConfigError, match="resnet5"):
        compare.compare_backbones(str(patterns), ["resnet5"], {})
    with pytest.raises(ConfigError, match="not in --backbones"):
        compare.compare_backbones(str(patterns), ["smallcnn"], {"vgg16": "x.h5"})


@pytest.mark.slow
def test_the_command_prints_the_table_and_the_pick(patterns):
    done = ktl("compare", str(patterns), "--backbones", "smallcnn,lenet5",
               "--weights", f"smallcnn={FIXTURE}", "--image-size", "32")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "lenet5" in done.stdout and "skipped: lenet5 has no pretrained weights" in done.stdout
    assert "Pick: smallcnn" in done.stdout
    nothing = ktl_here("compare", str(patterns), "--backbones", "lenet5", "--json")
    assert nothing.returncode == 2
    assert json.loads(nothing.stdout)["pick"] is None
