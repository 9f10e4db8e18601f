"""Serializable layers that live inside a bundle's model (no Lambda layers, so
``keras.saving.load_model(..., safe_mode=True)`` loads them)."""

from __future__ import annotations

import keras
from keras import ops

# Per-channel constants of keras.applications' preprocess_input modes.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)

PREPROCESSING_MODES = ("caffe", "tf", "torch", "unit", "raw", "lite")


@keras.saving.register_keras_serializable(package="ktl")
class BackbonePreprocessing(keras.layers.Layer):
    """Raw RGB 0..255 to what a backbone was trained on.

    caffe: RGB->BGR, minus the ImageNet mean (VGG, ResNet v1).
    tf:    scaled to -1..1 (ResNet v2, MobileNet, Inception).
    torch: scaled to 0..1, ImageNet mean and std per channel (DenseNet).
    unit:  scaled to 0..1 (the small networks trained from scratch).
    raw:   unchanged (backbones that normalise inside themselves, EfficientNet).
    lite:  (x - 127) / 128, as Google's EfficientNet-Lite checkpoints were trained.
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(
                f"Unknown preprocessing mode {mode!r}; expected one of {PREPROCESSING_MODES}"
            )
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            return x - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=x.dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(_TORCH_STD, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "lite":
            return (x - 127.0) / 128.0
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
