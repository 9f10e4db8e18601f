"""The classic convolutional networks, without their fully connected classifiers
(ktl's head, global pooling then softmax, takes that place), for training from
scratch: LeNet-5 (1998), AlexNet (2012) and ZFNet (2013).

Every layer has the paper's kernel size, stride and filter count; differences
from the papers are listed in each builder's docstring.
"""

from __future__ import annotations

import keras


def _finish(model: keras.Model, weights: str | None) -> keras.Model:
    if weights is not None:
        model.load_weights(weights)
    return model


def lenet5(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    """LeCun et al. 1998: C1 6@5x5, S2 average 2x2, C3 16@5x5, S4 average 2x2,
    C5 120@5x5, tanh throughout; 32x32 in, 1x1x120 out.

    C3 connects to all six S2 maps (the paper's sparse connection table saved
    compute in 1998), the subsampling layers have no trainable coefficient, and
    the input has three channels.
    """
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(6, 5, activation="tanh", name="c1")(inputs)
    x = layers.AveragePooling2D(2, name="s2")(x)
    x = layers.Conv2D(16, 5, activation="tanh", name="c3")(x)
    x = layers.AveragePooling2D(2, name="s4")(x)
    x = layers.Conv2D(120, 5, activation="tanh", name="c5")(x)
    return _finish(keras.Model(inputs, x, name="lenet5"), weights)


def alexnet(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    """Krizhevsky et al. 2012: conv1 96@11x11 stride 4, overlapping 3x3 stride-2 max
    pooling, conv2 256@5x5, conv3-4 384@3x3, conv5 256@3x3, ReLU; 227x227 in,
    6x6x256 out.

    One tower instead of the paper's two GPUs (no grouped convolutions: TensorFlow
    has no CPU kernel for them), and no local response normalisation (later work
    found it adds little).
    """
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(96, 11, strides=4, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = layers.Conv2D(256, 5, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv4")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="conv5")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    return _finish(keras.Model(inputs, x, name="alexnet"), weights)


def zfnet(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    """Zeiler & Fergus 2013: AlexNet with conv1 7x7 stride 2 (not 11x11 stride 4) and
    conv2 stride 2, found by looking at the features with a deconvnet; 224x224 in,
    110x110 after conv1, 6x6x256 out, as in the paper's figure 3.

    One pixel of zero padding before conv1 and ``same`` padding in the first two
    poolings reproduce the paper's feature map sizes; no contrast normalisation.
    """
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.ZeroPadding2D(1, name="pad1")(inputs)
    x = layers.Conv2D(96, 7, strides=2, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = layers.Conv2D(256, 5, strides=2, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv4")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="conv5")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    return _finish(keras.Model(inputs, x, name="zfnet"), weights)
