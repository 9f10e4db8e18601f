"""Phase planning: a pure function of the settings and the backbone."""

from __future__ import annotations

import pytest

from models.networks.backbones import get_backbone
from training.config import ConfigError, build_config
from training.fitting.phases import Phase, plan_phases, sized_phases, unfreeze_point


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


def test_with_few_images_the_head_runs_at_least_min_steps_steps():
    config = _config(epochs=10, batch_size=32, min_steps=150)
    head, fine_tune = sized_phases(plan_phases(config, get_backbone("resnet50")), config, 40)
    assert (head.steps_per_epoch, head.epochs, head.raised_from) == (2, 75, 10)
    assert fine_tune.epochs == config.fine_tune_epochs, "only the head is sized by steps"


def test_enough_images_or_min_steps_0_keep_the_epochs_asked_for():
    config = _config(epochs=10, batch_size=32, min_steps=150)
    (head,) = sized_phases([Phase("head", 10, 1e-3)], config, 32 * 20)
    assert (head.epochs, head.raised_from, head.steps_per_epoch) == (10, None, 20)
    off = _config(epochs=10, min_steps=0)
    assert sized_phases([Phase("head", 10, 1e-3)], off, 40)[0].epochs == 10
    with pytest.raises(ConfigError, match="--min-steps"):
        _config(min_steps=-1)


def test_patience_rises_with_the_head_epochs_min_steps_added():
    """At one step an epoch, three epochs of patience would be three noisy steps."""
    from training.fitting.phases import phase_patience

    config = _config(backbone="resnet50", epochs=10, patience=3, min_steps=150)
    head, fine_tune = sized_phases(plan_phases(config, get_backbone("resnet50")), config, 10)
    assert (head.epochs, head.raised_from) == (150, 10)
    assert phase_patience(config, head) == 45
    assert phase_patience(config, fine_tune) == 3
    roomy, _ = sized_phases(plan_phases(config, get_backbone("resnet50")), config, 10_000)
    assert roomy.raised_from is None and phase_patience(config, roomy) == 3
