"""Write a model's weights the way the official Keras ImageNet ``*_notop.h5`` files are laid out.

Those files come from Keras 2's ``save_weights_to_hdf5_group``; Keras 3 reads them with
``keras.src.legacy.saving.legacy_h5_format.load_weights_from_hdf5_group``, matching
layers by order. Layout:

- root attributes ``layer_names`` (every layer, weights or not), ``backend``,
  ``keras_version`` (bytes);
- one group per layer, attribute ``weight_names`` (``b"conv1_conv/kernel:0"`` ...,
  trainable weights first, then non-trainable), and a dataset under each of those
  names (so ``f["conv1_conv"]["conv1_conv"]["kernel:0"]``).

Written with h5py alone, so a test does not trust Keras to check Keras.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import keras
import numpy as np

# HDF5 refuses attributes larger than its object header; Keras splits longer lists
# into name0, name1, ... and reads them back the same way.
_HEADER_LIMIT = 64512


def legacy_weight_names(layer: keras.layers.Layer) -> list[str]:
    """``<layer>/<weight>:0`` in Keras 2's order: trainable weights, then the rest."""
    return [f"{layer.name}/{w.name}:0" for w in _legacy_weights(layer)]


def _legacy_weights(layer: keras.layers.Layer) -> list:
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def _write_names(group: h5py.Group, name: str, values: list[str]) -> None:
    if not values:
        group.attrs[name] = []  # what Keras 2 wrote for a layer without weights
        return
    data = np.array([value.encode("utf8") for value in values])
    chunks = 1
    while any(part.nbytes > _HEADER_LIMIT for part in np.array_split(data, chunks)):
        chunks += 1
    if chunks == 1:
        group.attrs[name] = data
    else:
        for index, part in enumerate(np.array_split(data, chunks)):
            group.attrs[f"{name}{index}"] = part


def write_legacy_h5(model: keras.Model, path: str | Path) -> None:
    """Save ``model``'s weights to ``path`` in the official no-top ImageNet file layout."""
    with h5py.File(path, "w") as f:
        _write_names(f, "layer_names", [layer.name for layer in model.layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            names = legacy_weight_names(layer)
            _write_names(group, "weight_names", names)
            for name, weight in zip(names, _legacy_weights(layer), strict=True):
                value = keras.ops.convert_to_numpy(weight)
                group.create_dataset(name, data=value, dtype=value.dtype)
