"""Max pooling that remembers where each maximum came from, and the unpooling that
puts values back there (SegNet's decoder, ZFNet's deconvnet "switches").

Positions follow PyTorch's ``MaxPool2d(return_indices=True)``: for each sample and
channel, the flat index ``row * input_width + column`` in the pooling's input.
Unpooling therefore needs the pooling's input size. It is computed as
``(h - 1) * stride + pool`` (``valid``) or ``h * stride`` (``same``), which is
exact when the input divided evenly; for other sizes (5x7 pooled by 2 gives
2x3, and 2x3 unpools to 4x6) pass ``output_size`` or the pooling's input as a
third input, whose height and width are then used.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them; got {value!r}")
    return pair[0], pair[1]


def _padding(value: str) -> str:
    if value not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same'; got {value!r}")
    return value


def pooled_size(size: int, pool: int, stride: int, padding: str) -> int:
    """Keras' output size of a pooling along one axis."""
    return -(-size // stride) if padding == "same" else (size - pool) // stride + 1


def unpooled_size(size: int, pool: int, stride: int, padding: str) -> int:
    """The input size a pooling output of ``size`` comes from when the input divided evenly."""
    return size * stride if padding == "same" else (size - 1) * stride + pool


@keras.saving.register_keras_serializable(package="ktl")
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """``MaxPooling2D`` that also returns the position of each maximum (int64)."""

    def __init__(self, pool_size=2, strides=None, padding: str = "valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = _pair(strides if strides is not None else pool_size, "strides")
        self.padding = _padding(padding)

    def call(self, inputs):
        pooled, argmax = tf.nn.max_pool_with_argmax(
            inputs,
            ksize=(1, *self.pool_size, 1),
            strides=(1, *self.strides, 1),
            padding=self.padding.upper(),
            include_batch_in_index=False,
        )
        # TensorFlow's index is (row * width + column) * channels + channel.
        channels = tf.cast(tf.shape(inputs)[-1], tf.int64)
        return pooled, argmax // channels

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        pooled = [
            None if size is None else pooled_size(size, pool, stride, self.padding)
            for size, pool, stride in zip(
                (height, width), self.pool_size, self.strides, strict=True
            )
        ]
        shape = (batch, *pooled, channels)
        return shape, shape

    def compute_output_spec(self, inputs):
        shape, _ = self.compute_output_shape(inputs.shape)
        return (
            keras.KerasTensor(shape, dtype=inputs.dtype),
            keras.KerasTensor(shape, dtype="int64"),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "padding": self.padding,
        }


@keras.saving.register_keras_serializable(package="ktl")
class MaxUnpooling2D(keras.layers.Layer):
    """Inputs ``[values, argmax]`` or ``[values, argmax, reference]``: each value goes
    back to its recorded position, zeros elsewhere. Values of windows that share a
    maximum add up, as in max pooling's gradient (of which this is the same map).

    The output's height and width are the reference's, else ``output_size``, else
    computed from ``pool_size``, ``strides`` and ``padding`` (see the module doc).
    """

    def __init__(
        self,
        pool_size=2,
        strides=None,
        padding: str = "valid",
        output_size: tuple[int, int] | list[int] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = _pair(strides if strides is not None else pool_size, "strides")
        self.padding = _padding(padding)
        self.output_size = None if output_size is None else _pair(output_size, "output_size")

    def _size(self, values_shape, reference_shape) -> tuple:
        if reference_shape is not None:
            return reference_shape[1], reference_shape[2]
        if self.output_size is not None:
            return self.output_size
        return tuple(
            None
            if size is None
            else unpooled_size(size, self.pool_size[axis], self.strides[axis], self.padding)
            for axis, size in enumerate(values_shape[1:3])
        )

    def call(self, inputs):
        values, argmax, *reference = inputs
        argmax = tf.cast(argmax, tf.int64)
        shape = tf.shape(values, out_type=tf.int64)
        batch, channels = shape[0], shape[3]
        if reference:
            ref = tf.shape(reference[0], out_type=tf.int64)
            height, width = ref[1], ref[2]
        elif self.output_size is not None:
            height, width = (tf.constant(size, tf.int64) for size in self.output_size)
        else:
            height, width = (
                unpooled_size(shape[1 + axis], pool, stride, self.padding)
                for axis, pool, stride in zip((0, 1), self.pool_size, self.strides, strict=True)
            )
        samples = tf.reshape(tf.range(batch, dtype=tf.int64), (-1, 1, 1, 1))
        channel = tf.reshape(tf.range(channels, dtype=tf.int64), (1, 1, 1, -1))
        flat = (samples * height * width + argmax) * channels + channel
        total = batch * height * width * channels
        out = tf.scatter_nd(tf.reshape(flat, (-1, 1)), tf.reshape(values, (-1,)), (total,))
        return tf.reshape(out, tf.stack([batch, height, width, channels]))

    def compute_output_shape(self, input_shapes):
        values_shape = input_shapes[0]
        reference_shape = input_shapes[2] if len(input_shapes) > 2 else None
        height, width = self._size(values_shape, reference_shape)
        return (values_shape[0], height, width, values_shape[3])

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "output_size": None if self.output_size is None else list(self.output_size),
        }
