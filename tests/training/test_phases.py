"""Phase planning: a pure function of the settings and the backbone."""

from __future__ import annotations

import pytest

from models.backbones import get_backbone
from training.config import ConfigError, build_config
from training.phases import Phase, plan_phases, unfreeze_point


def _config(**settings):
    return build_config({}, {"data": "d", "name": "n", **settings})


def test_transfer_trains_a_head_then_the_top_block_at_its_own_rate():
    config = _config(backbone="resnet50", epochs=4, fine_tune_epochs=2, lr=0.01)
    phases = plan_phases(config, get_backbone("resnet50"))
    assert phases == [
        Phase("head", 4, 0.01),
        Phase("fine_tune", 2, config.fine_tune_lr, "conv5_block1_1_conv"),
    ]
    assert unfreeze_point(phases) == "conv5_block1_1_conv"


def test_no_fine_tune_epochs_means_the_head_alone():
    phases = plan_phases(_config(fine_tune_epochs=0), get_backbone("resnet50"))
    assert [p.name for p in phases] == ["head"]
    assert unfreeze_point(phases) is None


def test_an_explicit_layer_wins_over_the_backbones_default():
    config = _config(backbone="vgg16", unfreeze_from="block4_conv1")
    assert unfreeze_point(plan_phases(config, get_backbone("vgg16"))) == "block4_conv1"


def test_random_weights_train_the_whole_network_in_one_phase():
    config = _config(backbone="smallcnn", weights="none", epochs=7, fine_tune_epochs=3)
    assert plan_phases(config, get_backbone("smallcnn")) == [Phase("scratch", 7, config.lr)]


def test_fine_tuning_a_backbone_without_a_default_layer_is_refused():
    config = _config(backbone="smallcnn", weights="some.weights.h5", fine_tune_epochs=2)
    with pytest.raises(ConfigError, match="no default --unfreeze-from"):
        plan_phases(config, get_backbone("smallcnn"))
