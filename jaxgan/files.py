"""File primitives: one atomic writer, JSON in and out, and JSON-safe values.

Every file jaxgan writes goes through :func:`write_atomic`: a temporary file in the same
folder, flushed and fsynced, then renamed over the target, so a reader (or a rerun after a
crash) sees the old file or the new one, never half of one. :func:`json_ready` is the one
converter of numpy values and non-finite floats for JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from typing import Any

import numpy as np

__all__ = ["file_sha256", "json_ready", "read_json", "write_atomic", "write_json_atomic"]


def write_atomic(path: str, payload: bytes | str) -> None:
    """Writes ``payload`` to ``path`` through a temporary file, fsync and a rename.

    The folder is created if needed. On any failure the temporary file is removed and
    the old ``path`` (if any) is left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    data = payload.encode() if isinstance(payload, str) else payload
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def file_sha256(path: str) -> str:
    """The sha256 hex digest of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def write_json_atomic(path: str, obj: Any) -> None:
    """``obj`` as indented, key-sorted JSON (through :func:`json_ready`), atomically."""
    write_atomic(path, json.dumps(json_ready(obj), indent=2, sort_keys=True))


def json_ready(value: Any) -> Any:
    """JSON has no inf or NaN: they become null; numpy scalars and arrays become Python.

    Example:
      >>> json_ready({"a": np.float32(0.5), "b": [float("inf"), np.int64(3)]})
      {'a': 0.5, 'b': [None, 3]}
    """
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
