from __future__ import annotations

import pytest

from models.networks.backbones import get_backbone
from training.config import ConfigError, TrainConfig, build_config, read_toml


def test_defaults_are_imagenet_features_that_need_no_download():
    config = build_config({}, {"data": "d", "name": "n"})
    assert (config.backbone, config.weights, config.epochs, config.fine_tune_epochs) == (
        "efficientnet_lite0",
        "imagenet",
        10,
        5,
    )
    assert get_backbone(config.backbone).weights_package, "ImageNet weights from a package"
    assert config.resolved_image_size() == (224, 224)  # efficientnet_lite0's default
    assert config.transfer


def test_toml_file_is_read_and_flags_win(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('backbone = "vgg16"\nimage-size = 64\nepochs = 3\naugment = false\n')
    config = build_config(read_toml(job), {"data": "d", "name": "n", "epochs": 7, "seed": None})
    assert config.backbone == "vgg16"
    assert config.image_size == 64
    assert config.epochs == 7  # the flag
    assert config.augment is False
    assert config.seed == 42  # a flag given as None does not override


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"val_split": 1.5}, "--val-split"),
        ({"batch_size": 0}, "--batch-size"),
        ({"image_size": 4}, "--image-size 4: must be from 8 to 1,024"),
        ({"image_size": 40, "backbone": "inceptionv3"}, "--image-size 40 is out of range"),
        ({"pooling": "median"}, "--pooling"),
        ({"epochs": "ten"}, "--epochs ten: expected a whole number"),
        ({"schedule": "cosin"}, "did you mean 'cosine'"),
    ],
)
def test_bad_settings_name_the_setting(settings, message):
    with pytest.raises(ConfigError, match=message):
        build_config({}, {"data": "d", "name": "n", **settings})


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError, match="choose one of: vgg16"):
        build_config({}, {"data": "d", "name": "n", "backbone": "alexnet9"})


def test_missing_data_or_name():
    with pytest.raises(ConfigError, match="missing DATA"):
        build_config({}, {"name": "n"})


def test_toml_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_toml(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("learning_rate = 0.1")
    with pytest.raises(ConfigError, match="unknown settings"):
        read_toml(unknown)
    with pytest.raises(ConfigError, match="No such file"):
        read_toml(tmp_path / "none.toml")


def test_config_round_trips_as_a_dict():
    config = TrainConfig(data="d", name="n")
    assert TrainConfig(**config.to_dict()) == config


@pytest.mark.parametrize(
    ("line", "setting"),
    [("epochs = true", "epochs"), ("lr = false", "lr"), ("image-size = true", "image_size")],
)
def test_a_boolean_is_no_number_in_a_job_file(tmp_path, line, setting):
    job = tmp_path / "job.toml"
    job.write_text(line + "\n")
    with pytest.raises(ConfigError, match=f"{setting} = (True|False): expected"):
        build_config(read_toml(job), {"data": "d", "name": "n"})


def test_a_number_is_no_boolean_in_a_job_file(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text("augment = 0\n")
    with pytest.raises(ConfigError, match="augment = 0: expected true or false"):
        build_config(read_toml(job), {"data": "d", "name": "n"})


def test_an_integer_is_a_valid_float(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text("lr = 1\n")
    assert build_config(read_toml(job), {"data": "d", "name": "n"}).lr == 1


def test_a_backbone_without_imagenet_weights_trains_from_scratch_by_default():
    config = build_config({}, {"data": "d", "name": "n", "backbone": "smallcnn"})
    assert (config.weights, config.transfer) == ("none", False)
    assert (config.epochs, config.patience) == (40, 10), "scratch needs more epochs and patience"
    pretrained = build_config({}, {"data": "d", "name": "n", "backbone": "vgg16"})
    assert (pretrained.weights, pretrained.epochs, pretrained.patience) == ("imagenet", 10, 3)
    explicit = build_config(
        {}, {"data": "d", "name": "n", "backbone": "smallcnn", "weights": "w.h5"}
    )
    assert explicit.weights == "w.h5" and explicit.transfer


def test_a_misspelt_job_file_key_gets_a_suggestion(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text("epoch = 3\n")
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        read_toml(job)


def test_resume_and_restart_exclude_each_other():
    with pytest.raises(ConfigError, match="--resume and --restart"):
        build_config({}, {"data": "d", "name": "n", "resume": True, "restart": True})
