"""The backbone registry, checked against what keras.applications really builds and fetches."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import pytest
from keras.src.utils import file_utils

from models.networks.backbones import (
    BackboneSpec,
    UnknownBackbone,
    get_backbone,
    keras_models_dir,
    list_backbones,
)
from models.networks.layers import PREPROCESSING_MODES

# Builds that take more than a few seconds on two cores.
_SLOW = {"resnet101", "resnet152", "resnet101v2", "resnet152v2", "densenet121"}
SPECS = [
    pytest.param(spec, id=spec.name, marks=[pytest.mark.slow] if spec.name in _SLOW else [])
    for spec in list_backbones()
]


@dataclass
class Built:
    """A backbone built the way a training run asks for it, with the download intercepted."""

    spec: BackboneSpec
    model: keras.Model
    downloads: list[tuple] = field(default_factory=list)  # (fname, origin, cache_subdir)
    loaded: list[str] = field(default_factory=list)  # paths given to load_weights


@pytest.fixture(scope="module", params=SPECS)
def built(request) -> Built:
    """Build once per spec with weights="imagenet"; Keras' ``get_file`` is replaced by a
    recorder (nothing is downloaded) and ``load_weights`` by one that records its path."""
    spec: BackboneSpec = request.param
    downloads: list[tuple] = []
    loaded: list[str] = []

    def recording_get_file(fname=None, origin=None, *args, cache_subdir="datasets", **kwargs):
        downloads.append((fname, origin, cache_subdir))
        return f"/nowhere/{cache_subdir}/{fname}"

    def recording_load_weights(self, filepath, *args, **kwargs):
        loaded.append(str(filepath))

    with pytest.MonkeyPatch.context() as patch:
        # keras.applications modules call ``file_utils.get_file``: patch it there.
        patch.setattr(file_utils, "get_file", recording_get_file)
        patch.setattr(keras.Model, "load_weights", recording_load_weights)
        size = max(spec.min_size, 32) if spec.pretrained else spec.min_size
        model = spec.build((size, size, 3), "imagenet" if spec.pretrained else None)
    return Built(spec, model, downloads, loaded)


def test_params_match_the_built_backbone(built):
    assert built.model.count_params() == built.spec.params


def test_unfreeze_from_is_a_layer_inside_the_backbone(built):
    names = [layer.name for layer in built.model.layers]
    if built.spec.unfreeze_from is None:
        return
    assert built.spec.unfreeze_from in names
    position = names.index(built.spec.unfreeze_from)
    # Phase 2 trains a top block, not nothing and not the whole network.
    assert 0 < position < len(names) - 1
    assert any(layer.weights for layer in built.model.layers[position:])


def test_weights_url_and_file_are_what_keras_fetches(built):
    spec = built.spec
    if not spec.pretrained:
        assert built.downloads == []
        assert spec.weights_file is None
        return
    if spec.weights_package is not None:  # converted from the package: nothing downloaded
        assert spec.weights_url is None and built.downloads == []
        assert built.loaded == [str(keras_models_dir() / spec.weights_file)]
        return
    assert built.downloads == [(spec.weights_file, spec.weights_url, "models")]
    assert built.loaded == [f"/nowhere/models/{spec.weights_file}"]


def test_spec_fields_are_usable(built):
    spec = built.spec
    assert spec.preprocessing in PREPROCESSING_MODES
    assert spec.min_size <= spec.default_size
    assert spec.description


def test_min_size_is_the_smallest_size_keras_accepts():
    spec = get_backbone("resnet50")
    with pytest.raises(ValueError, match="at least 32"):
        spec.build((spec.min_size - 1, spec.min_size - 1, 3), None)


def test_smallcnn_builds_at_its_min_size():
    spec = get_backbone("smallcnn")
    model = spec.build((spec.min_size, spec.min_size, 3), None)
    assert model.output_shape[1:3] == (1, 1)


def test_names_are_unique_and_looked_up():
    names = [spec.name for spec in list_backbones()]
    assert len(names) == len(set(names))
    for name in names:
        assert get_backbone(name).name == name


def test_list_is_a_copy():
    listed = list_backbones()
    listed.clear()
    assert list_backbones()


def test_only_scratch_networks_lack_imagenet_weights():
    for spec in list_backbones():
        assert spec.pretrained == (spec.family != "scratch"), spec.name


def test_unknown_backbone_names_the_known_ones():
    with pytest.raises(UnknownBackbone) as caught:
        get_backbone("nope")
    message = str(caught.value)
    assert "'nope'" in message
    for spec in list_backbones():
        assert spec.name in message
    assert isinstance(caught.value, ValueError)


def test_lookup_is_exact():
    with pytest.raises(UnknownBackbone):
        get_backbone("ResNet50")
