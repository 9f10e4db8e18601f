"""The classifier: raw RGB 0..255 -> backbone preprocessing -> backbone ->
global pooling -> dropout -> softmax, and where the backbone's weights come from."""

from __future__ import annotations

from pathlib import Path

import keras

from models.choices import POOLING
from models.errors import ConfigError, UserError, WeightsUnavailable
from models.networks.backbones import BackboneSpec, keras_models_dir
from models.networks.layers import BackbonePreprocessing
from models.options import DEFAULT_BACKBONE, Via

# The global pooling layer of every classifier: the backbone's pooled features, the
# head's input (the recipe's cached features, the drift monitor's embeddings).
POOL_LAYER = "pool"


class WeightsError(ConfigError):
    """A ``--weights`` value that cannot be used as given."""


def keras_cache_path(spec: BackboneSpec) -> Path:
    """Where Keras' own download cache keeps the backbone's ImageNet file."""
    return keras_models_dir() / (spec.weights_file or "")


def resolve_weights(spec: BackboneSpec, weights: str) -> str | None:
    """``"imagenet"``, ``None`` (random initialisation) or an existing file path."""
    if weights == "imagenet":
        if not spec.pretrained:
            raise WeightsError(
                f"Backbone {spec.name!r} has no ImageNet weights; train it from scratch with "
                "--weights none, or pick a pretrained backbone (ktl backbones)"
            )
        return "imagenet"
    if weights == "none":
        return None
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(
            f"--weights {weights!r}: no such file; use imagenet, none or the path of a weights "
            "file (for example the official no-top .h5 file)"
        )
    return str(path)


def build_backbone(
    spec: BackboneSpec, image_size: tuple[int, int], weights: str | None, via: Via = "cli"
) -> keras.Model:
    """The backbone with ``weights``; ``WeightsUnavailable`` explains how to get ImageNet's,
    in the words of the interface ``via`` that asked (its flags, or its HTTP options)."""
    if min(image_size) < spec.min_size:
        raise WeightsError(
            f"{spec.name} needs images of at least {spec.min_size}x{spec.min_size} pixels; "
            f"got {image_size[0]}x{image_size[1]} (--image-size)"
        )
    try:
        return spec.build((*image_size, 3), weights)
    except UserError:
        raise  # already says what to do (packaged weights: the package, its hash)
    except Exception as exc:
        if isinstance(weights, str) and weights != "imagenet":
            hint = (
                " (a bundle's model.keras is a whole model, not backbone weights: to start "
                "from a published version, pass --weights model:NAME[:VERSION])"
                if weights.endswith(".keras")
                else ""
            )
            raise WeightsError(
                f"--weights {weights}: cannot be loaded into {spec.name}{hint}: {exc}"
            ) from exc
        cache = keras_cache_path(spec)
        if weights is None or cache.is_file():
            raise  # the weights were there: this is some other failure, not the download
        if via == "http":
            raise WeightsUnavailable(_offline_over_http(spec, exc)) from exc
        raise WeightsUnavailable(
            f"ImageNet weights for {spec.name} could not be obtained ({exc}).\n"
            f"Keras caches them at {cache} (the folder follows KERAS_HOME).\n"
            f"To work offline, download {spec.weights_url} on a machine with internet access "
            f"and copy it to that path, or pass --weights /path/to/{spec.weights_file}.\n"
            "Or use --backbone efficientnet_lite0, whose ImageNet weights ship with ktl (no "
            "download). Without ImageNet features: --weights none trains from random "
            "initialisation (expect much lower accuracy on small datasets)."
        ) from exc


def _offline_over_http(spec: BackboneSpec, exc: Exception) -> str:
    """The missing-weights advice for a job sent over HTTP: its own options, no server path."""
    return (
        f"ImageNet weights for {spec.name} could not be obtained: this server cannot "
        f"download them ({type(exc).__name__}). Choose the option "
        f'"backbone": "{DEFAULT_BACKBONE}", whose ImageNet weights ship with ktl (no '
        'download), or "weights": "none" to train from random initialisation (expect much '
        "lower accuracy on small datasets). The server's operator can also put the file "
        f"{spec.weights_file} in its Keras cache."
    )


def build_classifier(
    spec: BackboneSpec,
    backbone: keras.Model,
    num_classes: int,
    *,
    dropout: float = 0.2,
    pooling: str = "avg",
    activation: str = "softmax",
) -> keras.Model:
    """Wrap ``backbone`` into the bundle's model: raw pixels in, probabilities out
    (``activation`` "sigmoid" for multi-label: one independent probability per label).

    BatchNorm is kept in inference mode while fine-tuning by freezing its layers
    (``trainable = False``, see ``training.fitting.finetune``): in Keras 3 a frozen
    BatchNorm always uses its moving statistics, whereas a ``training=False``
    given when wiring the backbone in is overridden by the outer call's flag.
    """
    if pooling not in POOLING:
        raise ValueError(f"Unknown pooling {pooling!r}; expected one of {POOLING}")
    height, width, _ = backbone.input_shape[1:]
    inputs = keras.Input((height, width, 3), name="image")
    x = BackbonePreprocessing(spec.preprocessing, name="preprocess")(inputs)
    x = backbone(x)
    pool = (
        keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
    )
    x = pool(name=POOL_LAYER)(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(
        num_classes, activation=activation, name="predictions", dtype="float32"
    )(x)
    return keras.Model(inputs, outputs, name=f"ktl_{spec.name}")


def pooled_model(model: keras.Model) -> keras.Model:
    """``model`` up to its pooling layer: raw pixels in, the backbone's pooled features
    out (the layers are ``model``'s own, not copies)."""
    return keras.Model(model.inputs, model.get_layer(POOL_LAYER).output)


def weights_at_hand(spec: BackboneSpec) -> bool:
    """Whether a job can build ``spec`` as it would by default without a download: it
    needs no weights, its weights package is installed, or Keras' cache holds its file."""
    if spec.weights_package is not None:
        from models.networks import lite

        return lite.is_installed(lite.VARIANTS[spec.name])
    return spec.weights_url is None or keras_cache_path(spec).is_file()
