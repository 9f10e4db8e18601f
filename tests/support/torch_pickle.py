"""Writes small checkpoints in PyTorch's legacy format without torch, laid out as
``torch.save(..., _use_new_zipfile_serialization=False)`` does, so the reader in
``models.networks.torch_legacy`` is tested without the packaged weights.

The pickle is written with stand-ins defined here, then their global references
are renamed to torch's (protocol 2 spells a global as ``c<module>\\n<name>\\n``).
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict

import numpy as np

from models.networks.torch_legacy import MAGIC_NUMBER, PROTOCOL_VERSION


def _rebuild_tensor_v2(*args):  # pickled by reference, renamed to torch._utils'
    raise AssertionError("never called: only its name is written")


class FloatStorage:  # renamed to torch.FloatStorage
    pass


class LongStorage:  # renamed to torch.LongStorage
    pass


_STORAGE_TYPES = {np.dtype("<f4"): FloatStorage, np.dtype("<i8"): LongStorage}
_RENAMES = {
    f"c{__name__}\n_rebuild_tensor_v2\n": "ctorch._utils\n_rebuild_tensor_v2\n",
    f"c{__name__}\nFloatStorage\n": "ctorch\nFloatStorage\n",
    f"c{__name__}\nLongStorage\n": "ctorch\nLongStorage\n",
}


class _Storage:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage: _Storage):
        self.storage = storage

    def __reduce__(self):
        array = self.storage.array
        strides = tuple(s // array.itemsize for s in array.strides)
        return _rebuild_tensor_v2, (self.storage, 0, array.shape, strides, False, OrderedDict())


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            kind = _STORAGE_TYPES[obj.array.dtype]
            return ("storage", kind, obj.key, "cpu", obj.array.size, None)
        return None


def legacy_checkpoint(state: dict[str, np.ndarray], *, payload: object | None = None) -> bytes:
    """A legacy checkpoint of ``state``; ``payload`` (any picklable object) is pickled
    in place of the state dict, to make a hostile one."""
    out = io.BytesIO()
    for header in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    storages = [_Storage(str(i), np.array(a, order="C")) for i, a in enumerate(state.values())]
    tensors = OrderedDict((name, _Tensor(s)) for name, s in zip(state, storages, strict=True))
    body = io.BytesIO()
    _Pickler(body, protocol=2).dump(tensors if payload is None else payload)
    text = body.getvalue()
    for ours, torchs in _RENAMES.items():
        text = text.replace(ours.encode(), torchs.encode())
    out.write(text)
    pickle.dump([s.key for s in storages], out, protocol=2)
    for storage in storages:
        out.write(storage.array.size.to_bytes(8, "little"))
        out.write(storage.array.tobytes())
    return out.getvalue()
