"""Downloads the four IDX files of MNIST or Fashion-MNIST, resumably, checked by sha256.

:func:`download` fetches each of the four standard ``.gz`` files (:data:`jaxgan.data.
IDX_FILES`) into a folder, trying the mirrors in order (:data:`MIRRORS`, or the caller's),
and keeps a file only once its size and sha256 are the pinned ones
(:data:`jaxgan.data.IDX_CHECKSUMS`):

* the bytes go to ``FILE.part``; ``FILE`` appears (an atomic rename) only after the hash
  matched, so a ``FILE`` of the folder is always complete;
* an interrupted download leaves ``FILE.part``, which the next attempt continues with an
  HTTP ``Range`` request; a server that ignores ``Range`` sends the whole file, which
  then replaces the part;
* a ``FILE`` whose hash already matches is not downloaded again;
* a mirror that serves other bytes (another size, another hash) is refused, its bytes
  deleted, and the next mirror is tried.

It prints nothing: progress goes to the ``progress`` factory the caller passes (the
command line, ``python -m jaxgan.data``, passes tqdm). Only the standard library.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from jaxgan import __version__, data
from jaxgan.errors import DataError

__all__ = ["MIRRORS", "DownloadError", "Fetched", "download", "fetch_file"]

MIRRORS = {
    # torchvision's first mirror, then the CVDF mirror tensorflow-datasets reads.
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    # The mirror torchvision and tensorflow-datasets read, then Zalando's repository.
    "fashion_mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
}
"""Folders (URLs ending in ``/``) that hold the four IDX files of each dataset, in the
order they are tried."""

CHUNK_BYTES = 1 << 16
TIMEOUT_S = 30.0
_USER_AGENT = f"jaxgan/{__version__} (python urllib)"


class DownloadError(DataError):
    """No mirror gave a file with its pinned hash; ``tried`` lists ``(url, why)``."""

    def __init__(self, message: str, tried: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.tried = list(tried)


@dataclasses.dataclass(frozen=True)
class Fetched:
    """One file of the folder, checked.

    Attributes:
      path: the file, its size and sha256 the pinned ones.
      url: where it came from, or ``None`` when it was already there.
      resumed_from: the bytes of ``FILE.part`` the download continued (0: from scratch).
    """

    path: str
    url: str | None
    resumed_from: int = 0


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _no_progress(**_: Any) -> _NoProgress:
    return _NoProgress()


class _MirrorFailed(Exception):
    """One mirror did not give the file; ``discard``: its bytes in ``.part`` are wrong."""

    def __init__(self, why: str, *, discard: bool):
        super().__init__(why)
        self.discard = discard


def _local(action: str, path: str, error: OSError) -> DataError:
    return DataError(f"Could not {action} {path}: {error.strerror or error}.")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise _local("delete", path, e) from e


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0
    except OSError as e:
        raise _local("read", path, e) from e


def _matches(path: str, sha256: str, size: int) -> bool:
    """Whether the file exists with the pinned size and sha256 (the size is checked first)."""
    try:
        return os.path.getsize(path) == size and data.file_sha256(path) == sha256
    except FileNotFoundError:
        return False
    except OSError as e:
        raise _local("read", path, e) from e


def _publish(part: str, final: str) -> None:
    """Renames the checked part to its final name, durably."""
    try:
        os.replace(part, final)
        folder = os.open(os.path.dirname(final) or ".", os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as e:
        raise _local("write", final, e) from e


def _open(url: str, start: int, timeout: float) -> tuple[Any, int]:
    """Opens ``url`` from byte ``start``; returns ``(response, offset its body starts at)``:
    ``start`` when the server honoured the Range request, 0 when it sends the whole file."""
    headers = {"User-Agent": _USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the part is at least as long as the server's file
            raise _MirrorFailed(f"HTTP 416 for Range bytes={start}-", discard=True) from e
        raise _MirrorFailed(f"HTTP {e.code} {e.reason}", discard=False) from e
    except (OSError, http.client.HTTPException, ValueError) as e:  # URLError is an OSError
        reason = getattr(e, "reason", None) or e
        raise _MirrorFailed(f"{type(e).__name__}: {reason}", discard=False) from e
    status = response.getcode()  # None for file:// URLs
    if status == 206:
        found = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if not found or int(found.group(1)) != start:
            response.close()
            raise _MirrorFailed(
                f"answered Range bytes={start}- with Content-Range "
                f"{response.headers.get('Content-Range')!r}",
                discard=True,
            )
        return response, start
    if status not in (200, None):
        response.close()
        raise _MirrorFailed(f"HTTP {status}", discard=False)
    return response, 0


def _attempt(
    url: str, part: str, *, sha256: str, size: int, progress: Callable[..., Any], timeout: float
) -> int:
    """Downloads ``url`` into ``part`` (continuing it when it has bytes) and checks it.

    Returns the number of bytes the download continued from. Raises ``_MirrorFailed``
    when the mirror did not give the file (``discard``: the bytes of the part are wrong),
    ``DataError`` when the folder cannot be written.
    """
    start = _size(part)
    if start >= size:  # a part of the full size is not the file (fetch_file checked it)
        _remove(part)
        start = 0
    response, offset = _open(url, start, timeout)
    with response:
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and offset + int(length) != size:
            raise _MirrorFailed(
                f"serves {offset + int(length)} bytes, not the {size} of the pinned file",
                discard=False,  # nothing written: the part keeps its bytes
            )
        try:
            out = open(part, "ab" if offset else "wb")
        except OSError as e:
            raise _local("write", part, e) from e
        bar = progress(desc=os.path.basename(part)[: -len(".part")], total=size, initial=offset)
        received = offset
        try:
            with out:
                while True:
                    try:
                        block = response.read(CHUNK_BYTES)
                    except (OSError, http.client.HTTPException) as e:
                        raise _MirrorFailed(
                            f"connection lost after {received} of {size} bytes "
                            f"({type(e).__name__}: {e}); {part} keeps them",
                            discard=False,
                        ) from e
                    if not block:
                        break
                    received += len(block)
                    if received > size:
                        break
                    try:
                        out.write(block)
                    except OSError as e:
                        raise _local("write", part, e) from e
                    bar.update(len(block))
                try:
                    out.flush()
                    os.fsync(out.fileno())
                except OSError as e:
                    raise _local("write", part, e) from e
        finally:
            bar.close()
    if received > size:
        raise _MirrorFailed(f"serves more than the {size} bytes of the pinned file", discard=True)
    if received < size:
        raise _MirrorFailed(f"sent {received} of {size} bytes; {part} keeps them", discard=False)
    got = data.file_sha256(part)
    if got != sha256:
        raise _MirrorFailed(f"sha256 {got}, not the pinned {sha256}", discard=True)
    return offset


def fetch_file(
    filename: str,
    directory: str,
    *,
    sha256: str,
    size: int,
    mirrors: Sequence[str],
    progress: Callable[..., Any] = _no_progress,
    timeout: float = TIMEOUT_S,
) -> Fetched:
    """Makes ``directory/filename`` the file of the pinned sha256 and size.

    A file already there with that hash is kept as it is (nothing is downloaded);
    otherwise each mirror ``URL + filename`` is tried in order, continuing
    ``filename.part`` where one is left. A resumed download whose bytes turn out wrong
    is started once more from scratch on the same mirror before the next is tried.

    Args:
      filename: e.g. ``"train-images-idx3-ubyte.gz"``.
      directory: the folder it goes to (it must exist).
      sha256, size: the pinned hash and size.
      mirrors: folder URLs; ``filename`` is appended to each.
      progress: a factory ``progress(desc=, total=, initial=)`` of an object with
        ``update(n)`` and ``close()``, e.g. ``tqdm.tqdm``; called once per download.
      timeout: seconds a connection may wait for the server.

    Returns:
      The ``Fetched`` file.

    Raises:
      DownloadError: no mirror gave the file; the message lists each URL and why.
      DataError: the folder cannot be read or written.
    """
    final = os.path.join(directory, filename)
    part = final + ".part"
    if _matches(final, sha256, size):
        return Fetched(final, None)
    if _matches(part, sha256, size):  # complete but not yet renamed (interrupted there)
        _publish(part, final)
        return Fetched(final, None, size)
    tried = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        for _ in range(2):
            resumed = _size(part)
            try:
                offset = _attempt(
                    url, part, sha256=sha256, size=size, progress=progress, timeout=timeout
                )
            except _MirrorFailed as e:
                if e.discard:
                    _remove(part)
                    if resumed:
                        continue  # the old part may be what was wrong: once more, from 0
                tried.append((url, str(e)))
                break
            _publish(part, final)
            return Fetched(final, url, offset)
    listing = "; ".join(f"{url} ({why})" for url, why in tried) or "no mirror given"
    raise DownloadError(
        f"Could not download {filename} with its pinned sha256 {sha256[:12]}...: tried "
        f"{listing}. Check the network and run this again (it continues where it "
        f"stopped), pass --mirror=URL of another folder holding the IDX files, or copy "
        f"the four files by hand into {directory} and run this again to check them.",
        tried,
    )


def download(
    name: str,
    directory: str,
    *,
    mirrors: Sequence[str] | None = None,
    progress: Callable[..., Any] = _no_progress,
    timeout: float = TIMEOUT_S,
) -> list[Fetched]:
    """Fetches the four IDX files of ``name`` into ``directory`` (made if missing).

    Args:
      name: ``"mnist"`` or ``"fashion_mnist"``.
      directory: the folder; pass it to training as ``--config.data.idx_dir``.
      mirrors: folder URLs tried in order; None: ``MIRRORS[name]``.
      progress: see :func:`fetch_file`.
      timeout: see :func:`fetch_file`.

    Returns:
      The four ``Fetched`` files, in the order of :data:`jaxgan.data.IDX_FILES`.

    Raises:
      DownloadError: a file could not be downloaded with its pinned hash (the files
        before it are kept, checked; the rest are not tried).
      DataError: an unknown name, or a folder that cannot be made or written.
    """
    if name not in data.IDX_CHECKSUMS:
        raise DataError(
            f"Unknown IDX dataset {name!r}: the ones to download are "
            f"{', '.join(data.IDX_CHECKSUMS)}."
        )
    mirrors = list(MIRRORS[name] if mirrors is None else mirrors)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise _local("make the folder", directory, e) from e
    checksums = data.IDX_CHECKSUMS[name]
    return [
        fetch_file(
            filename,
            directory,
            sha256=checksums[filename][0],
            size=checksums[filename][1],
            mirrors=mirrors,
            progress=progress,
            timeout=timeout,
        )
        for pair in data.IDX_FILES.values()
        for filename in pair
    ]
