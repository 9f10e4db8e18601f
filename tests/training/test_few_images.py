"""The recipe for few images end to end: the head sized by steps, and test-time
augmentation scored, recorded in the bundle and printed."""

from __future__ import annotations

import pytest

from cli.train_summary import print_summary
from models.bundle import load_bundle
from models.engines.tta import VIEWS
from models.networks.backbones import get_backbone
from tests.support.data import make_colour_dataset
from training import job
from training.config import build_config

pytestmark = pytest.mark.slow  # one short training job: ~45 s on 2 busy cores


def test_a_tiny_set_trains_the_head_by_steps_and_records_what_tta_gave(tmp_path, capsys):
    data = make_colour_dataset(tmp_path / "data", per_class=16, size=32)
    weights = tmp_path / "smallcnn.weights.h5"
    get_backbone("smallcnn").build((32, 32, 3), None).save_weights(weights)
    flags = {
        "data": str(data), "name": "tiny", "store": str(tmp_path / "store"),
        "backbone": "smallcnn", "weights": str(weights), "fine_tune_epochs": 0,
        "epochs": 2, "min_steps": 12, "batch_size": 16, "patience": 50,
        "augment": False, "test_split": 0.2, "tta": True,
    }  # fmt: skip
    result = job.run_job(build_config({}, flags), log=lambda message: None)

    (head,) = result.training["phases"]
    steps = head["steps_per_epoch"]
    assert steps == -(-result.dataset["train_images"] // 16)
    assert head["epochs_asked"] == 2 and head["max_epochs"] == -(-12 // steps) > 2
    assert head["epochs"] == head["max_epochs"], "patience 50: it ran every raised epoch"

    tta = load_bundle(result.path).metadata.tta
    assert tta is not None and tta.views == VIEWS and tta.test is not None
    assert tta.helped == (tta.gain > 0) and tta.gain == tta.validation.gain
    assert tta.validation.accuracy == pytest.approx(
        result.evaluation.validation.accuracy, abs=1e-6
    ), "the accuracy without TTA is the validation figure the bundle reports"
    print_summary(result.to_json())
    out = capsys.readouterr().out
    assert f"(raised from 2: at {steps} steps an epoch" in out
    assert f"tta         {len(VIEWS)} views: validation accuracy " in out
    assert ("did not help" in out) != tta.helped
