"""PyTorch ``torch.save`` state-dict files read into NumPy arrays, without torch.

:func:`read_state_dict` reads both formats of ``torch.save``:

* the zip format (torch >= 1.6's default): ``<name>/data.pkl``, the pickled dict, whose
  tensors point at ``<name>/data/<key>``, one record of raw bytes per storage (byte order
  from ``<name>/byteorder``, little-endian when absent);
* the legacy format (``_use_new_zipfile_serialization=False`` and torch < 1.6): pickles one
  after another (the magic number, the protocol version 1001, the writer's system info,
  the dict, the list of storage keys), then each storage as a little-endian int64 element
  count followed by its bytes.

A pickle from the internet can run any code while it is read, so the pickles are read by
an unpickler that knows only the names a state dict uses (``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and its relatives, the ``torch.*Storage`` types), each
mapped to a function of this module that builds no torch object; any other name (an
``os.system``, a ``builtins.eval``, ...) stops the reading with a ``ValueError`` before
anything is called. Tensors come back as NumPy arrays of their dtype in native byte order,
copied out of their storage with its offset and strides (views and non-contiguous
tensors); ``bfloat16`` arrays use ``ml_dtypes.bfloat16``. Parameters come back as plain
arrays; ``requires_grad``, hooks and the dict's ``_metadata`` are dropped.

This module reads files and does nothing else.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

__all__ = ["read_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
    "UntypedStorage": np.dtype(np.uint8),
}


# ============================================================================
# What the pickles may build
# ============================================================================


class _StorageType:
    """Stands for one ``torch.*Storage`` class in a pickle: its name and dtype."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str, dtype: np.dtype):
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """A storage: ``numel`` elements of ``dtype``, its bytes set once they are read."""

    __slots__ = ("data", "dtype", "numel")

    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype, self.numel = dtype, numel
        self.data: np.ndarray | None = None

    def set_bytes(self, raw: bytes, byteorder: str, where: str) -> None:
        if len(raw) != self.numel * self.dtype.itemsize:
            raise ValueError(
                f"{where}: {len(raw)} bytes, but {self.numel} elements of {self.dtype} "
                f"need {self.numel * self.dtype.itemsize}"
            )
        self.data = _decode(raw, self.dtype, byteorder)

    def array(self) -> np.ndarray:
        if self.data is None:
            raise ValueError("a tensor's storage has no data in the file")
        return self.data


class _StorageView:
    """An old-style view into a storage (legacy files only): ``numel`` elements from ``offset``."""

    __slots__ = ("base", "numel", "offset")

    def __init__(self, base: _Storage, offset: int, numel: int):
        if offset < 0 or numel < 0 or offset + numel > base.numel:
            raise ValueError(f"a storage view [{offset}, {offset + numel}) outside its storage")
        self.base, self.offset, self.numel = base, offset, numel

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    def array(self) -> np.ndarray:
        return self.base.array()[self.offset : self.offset + self.numel]


def _decode(raw: bytes, dtype: np.dtype, byteorder: str) -> np.ndarray:
    """Raw storage bytes to a 1-D array of ``dtype`` in native byte order."""
    order = {"little": "<", "big": ">"}[byteorder]
    if dtype == np.dtype(ml_dtypes.bfloat16):  # NumPy cannot swap the bytes of a custom dtype
        return np.frombuffer(raw, np.dtype("u2").newbyteorder(order)).astype(np.uint16).view(dtype)
    return np.frombuffer(raw, dtype.newbyteorder(order)).astype(dtype)


class _Tensor:
    """A tensor met in the pickle, turned into an array once all storages are read."""

    __slots__ = ("offset", "size", "storage", "stride")

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any):
        if not isinstance(storage, _Storage | _StorageView):
            raise ValueError(f"a tensor is rebuilt from {type(storage).__name__}, not a storage")
        if not _ints(size) or not _ints(stride) or len(size) != len(stride) or not _ints([offset]):
            raise ValueError(f"a tensor with size {size!r}, stride {stride!r}, offset {offset!r}")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def array(self) -> np.ndarray:
        data = self.storage.array()
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, data.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if self.offset < 0 or min(self.stride, default=0) < 0 or last >= len(data):
            raise ValueError(
                f"a tensor of size {self.size}, stride {self.stride} and offset {self.offset} "
                f"reaches outside its storage of {len(data)} elements"
            )
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=[s * data.dtype.itemsize for s in self.stride],
            writeable=False,
        )
        return np.array(view)


def _ints(values: Any) -> bool:
    return isinstance(values, tuple | list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    )


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _Tensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks, metadata=None):
    del requires_grad, hooks, metadata
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, hooks, state=None):
    del requires_grad, hooks, state
    if not isinstance(data, _Tensor):
        raise ValueError(f"a parameter is rebuilt from {type(data).__name__}, not a tensor")
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _Unpickler(pickle.Unpickler):
    """Knows only :data:`_ALLOWED_GLOBALS`; hands persistent ids to ``persistent``."""

    def __init__(self, file: BinaryIO, persistent: Callable[[Any], Any]):
        super().__init__(file)
        self._persistent = persistent

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ValueError(
                f"refused to unpickle the global {module}.{name}: a state dict needs only "
                "OrderedDict, torch's tensor rebuilders and storage types"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        return self._persistent(pid)


def _no_persistent(pid: Any) -> Any:
    raise ValueError(f"unexpected persistent id {pid!r}")


def _storage_type(value: Any) -> _StorageType:
    if not isinstance(value, _StorageType):
        raise ValueError(f"a storage of type {value!r}")
    return value


# ============================================================================
# The two formats
# ============================================================================


def _read_zip(archive: zipfile.ZipFile) -> Any:
    names = set(archive.namelist())
    pickles = sorted(n for n in names if n.endswith("/data.pkl") and n.count("/") == 1)
    if len(pickles) != 1:
        raise ValueError(f"a zip file with {len(pickles)} top-level data.pkl records, not 1")
    prefix = pickles[0].removesuffix("data.pkl")
    byteorder = "little"
    if prefix + "byteorder" in names:
        byteorder = archive.read(prefix + "byteorder").decode("ascii").strip()
        if byteorder not in ("little", "big"):
            raise ValueError(f"unknown byte order {byteorder!r}")
    storages: dict[str, _Storage] = {}

    def persistent(pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ValueError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        dtype = _storage_type(storage_type).dtype
        if not isinstance(key, str) or not _ints([numel]) or numel < 0:
            raise ValueError(f"unexpected persistent id {pid!r}")
        if key not in storages:
            record = f"{prefix}data/{key}"
            if record not in names:
                raise ValueError(f"the storage record {record} is missing")
            storages[key] = _Storage(dtype, numel)
            storages[key].set_bytes(archive.read(record), byteorder, record)
        storage = storages[key]
        if storage.dtype != dtype or storage.numel != numel:
            raise ValueError(f"storage {key} is read as two different types or sizes")
        return storage

    return _Unpickler(io.BytesIO(archive.read(pickles[0])), persistent).load()


def _read_legacy(f: BinaryIO) -> Any:
    if _Unpickler(f, _no_persistent).load() != _LEGACY_MAGIC:
        raise ValueError("not a torch.save file (no magic number)")
    protocol = _Unpickler(f, _no_persistent).load()
    if protocol != _LEGACY_PROTOCOL:
        raise ValueError(f"unsupported legacy protocol version {protocol!r}")
    _Unpickler(f, _no_persistent).load()  # system info; the storages are little-endian anyway
    storages: dict[str, _Storage] = {}

    def persistent(pid: Any) -> _Storage | _StorageView:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise ValueError(f"unexpected persistent id {pid!r} (a pickled module?)")
        _, storage_type, key, _location, numel, view = pid
        dtype = _storage_type(storage_type).dtype
        if not isinstance(key, str) or not _ints([numel]) or numel < 0:
            raise ValueError(f"unexpected persistent id {pid!r}")
        storage = storages.setdefault(key, _Storage(dtype, numel))
        if storage.dtype != dtype or storage.numel != numel:
            raise ValueError(f"storage {key} is read as two different types or sizes")
        if view is None:
            return storage
        if not (isinstance(view, tuple) and len(view) == 3 and _ints(view[1:])):
            raise ValueError(f"unexpected storage view {view!r}")
        return _StorageView(storage, view[1], view[2])

    obj = _Unpickler(f, persistent).load()
    keys = _Unpickler(f, _no_persistent).load()
    if not (isinstance(keys, list) and sorted(map(str, keys)) == sorted(storages)):
        raise ValueError("the list of storages does not match the storages the tensors use")
    for key in keys:
        storage = storages[key]
        header = f.read(8)
        if len(header) != 8 or struct.unpack("<q", header)[0] != storage.numel:
            raise ValueError(f"storage {key}: a wrong or missing element count")
        storage.set_bytes(f.read(storage.numel * storage.dtype.itemsize), "little", key)
    return obj


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a ``torch.save`` file of a flat ``{name: tensor}`` dict, without torch.

    Args:
      path: a ``.pth``/``.pt`` file in the zip or the legacy format.

    Returns:
      ``{name: array}`` in the file's order; each array of its tensor's dtype
      (``float32``, ``float64``, ``float16``, ``ml_dtypes.bfloat16``, ``int64``, ...),
      shape and values, in native byte order.

    Raises:
      ValueError: the file is not such a dict, is damaged, or its pickle names a global
        that a state dict does not need (it is refused before anything runs).
      OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        try:
            if zipfile.is_zipfile(f):
                f.seek(0)
                with zipfile.ZipFile(f) as archive:
                    obj = _read_zip(archive)
            else:
                f.seek(0)
                obj = _read_legacy(f)
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error) as e:
            raise ValueError(f"{path}: not a readable torch.save file: {e}") from e
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a dict of named tensors")
    out = {}
    for name, value in obj.items():
        if not isinstance(value, _Tensor):
            raise ValueError(f"{path}: {name!r} is a {type(value).__name__}, not a tensor")
        try:
            out[name] = value.array()
        except ValueError as e:
            raise ValueError(f"{path}: {name!r}: {e}") from e
    return out
