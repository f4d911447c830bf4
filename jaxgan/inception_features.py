"""The FID Inception network's weights, its features of many images, and cached real statistics.

* :func:`load_weights` reads the one weights file jaxgan accepts, pytorch-fid's
  ``pt_inception-2015-12-05-6726825d.pth`` (the TensorFlow Inception-v3 of 2015 behind
  every published FID and IS), which the user supplies: its size and SHA-256 are checked
  before a single byte of it is parsed, and it is read without torch (:mod:`jaxgan.pth`).
* :func:`extract` runs :mod:`jaxgan.inception` over any number of images in fixed-size
  batches (one compiled shape), printing its progress.
* :func:`real_statistics` gives the features of a real split, computed once and cached by
  a fingerprint of the data, the split, the image count and the weights' hash
  (``$JAXGAN_CACHE/inception``, default ``~/.cache/jaxgan/inception``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxgan import files, inception, metrics, pth
from jaxgan.errors import EvaluationError

__all__ = [
    "BATCH",
    "ENV_VAR",
    "WEIGHTS",
    "InceptionWeights",
    "RealStatistics",
    "default_cache_dir",
    "extract",
    "load_weights",
    "real_statistics",
]


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """A weights file jaxgan accepts: its name, size, SHA-256 and where users get it."""

    name: str
    size: int
    sha256: str
    url: str


WEIGHTS = WeightsFile(
    name="pt_inception-2015-12-05-6726825d.pth",
    size=95_628_359,
    # Its first 8 hex digits are the file name's, as torch.hub names files.
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth",
)
"""pytorch-fid's port of TensorFlow's ``inception-2015-12-05`` (the FID network)."""

ENV_VAR = "JAXGAN_INCEPTION_WEIGHTS"
"""The environment variable naming the weights file, when no flag does."""

BATCH = 50
"""Images per network call; fixed, so that one compiled shape serves every count."""

PROTOCOL = {
    "network": "pytorch-fid FIDInceptionV3 (TF inception-2015-12-05), float32",
    "input": "[0, 1] pixels, 1 channel repeated to 3, bilinear resize to 299x299 "
    "(align_corners=False, no antialiasing, as torch's F.interpolate), scaled to [-1, 1]",
    "features": "pool3, 2048-d",
    "inception_score": "softmax of the fc logits without bias (1008 classes), 10 splits",
}
"""How the features are made: part of every cache key and of eval.json."""


@dataclasses.dataclass(frozen=True)
class InceptionWeights:
    """The network's variables, and what file and hash they came from."""

    variables: Any
    sha256: str
    path: str


def load_weights(path: str | None, *, expected: WeightsFile | None = WEIGHTS) -> InceptionWeights:
    """The FID Inception network from its weights file, checked before it is parsed.

    Args:
      path: the file (None: ``$JAXGAN_INCEPTION_WEIGHTS``).
      expected: the file to accept (:data:`WEIGHTS`). ``None`` accepts any state dict of
        the network's layout: for tests with seeded random weights, never for scores.

    Raises:
      EvaluationError: no file named, or not the expected file (its size or SHA-256
        differ: a truncated download, another network), or not a state dict of the
        network. One line, saying which file is expected and where users get it.
    """
    path = path or os.environ.get(ENV_VAR) or None
    wanted = (
        f"expected {WEIGHTS.name} ({WEIGHTS.size:,} bytes, sha256 {WEIGHTS.sha256}), which "
        f"users get from {WEIGHTS.url}"
    )
    if path is None:
        raise EvaluationError(f"Inception metrics need the weights file: {wanted}; pass "
                              f"--inception_weights=FILE or set {ENV_VAR}.")  # fmt: skip
    if not os.path.isfile(path):
        raise EvaluationError(f"no Inception weights file at {path}: {wanted}.")
    size = os.path.getsize(path)
    if expected is not None and size != expected.size:
        raise EvaluationError(
            f"{path} is not the FID Inception weights ({size:,} bytes, not {expected.size:,}: "
            f"a truncated download or another file): {wanted}."
        )
    digest = files.file_sha256(path)
    if expected is not None and digest != expected.sha256:
        raise EvaluationError(
            f"{path} is not the FID Inception weights (sha256 {digest}): {wanted}."
        )
    try:
        state_dict = pth.read_state_dict(path)
        variables = inception.params_from_torch(state_dict)
    except (ValueError, OSError, KeyError) as e:
        raise EvaluationError(f"{path} holds no FID Inception weights ({e}): {wanted}.") from e
    return InceptionWeights(variables=variables, sha256=digest, path=os.path.abspath(path))


def extract(
    weights: InceptionWeights,
    images: Callable[[int, int], np.ndarray] | np.ndarray,
    num: int | None = None,
    *,
    what: str = "images",
    log: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """pool3 features and bias-free logits of ``num`` images, :data:`BATCH` at a time.

    Args:
      weights: the network.
      images: ``[N, H, W, C]`` pixels in [0, 1], or ``fn(start, stop)`` returning them
        batch by batch (so 50,000 samples need not be in memory at 299×299).
      num: how many (default: all of an array).
      what: the images' name in progress lines.
      log: receives a progress line about every 15 seconds.

    Returns:
      ``(features [num, 2048] float64, logits_unbiased [num, 1008] float32)``.
    """
    if not callable(images):
        array = np.asarray(images)
        num = len(array) if num is None else num
        images = lambda start, stop: array[start:stop]
    if num is None:
        raise ValueError("num is needed when images is a function")
    features, logits = [], []
    started = last = time.monotonic()
    for start in range(0, num, BATCH):
        stop = min(start + BATCH, num)
        batch = np.asarray(images(start, stop), np.float32)
        if batch.shape[0] != stop - start:
            raise ValueError(f"images({start}, {stop}) gave {batch.shape[0]} images")
        out = inception.batched_outputs(weights.variables, batch, batch_size=BATCH)
        features.append(out["pool3"])
        logits.append(out["logits_unbiased"])
        now = time.monotonic()
        if log is not None and (now - last >= 15 or stop == num) and num > BATCH:
            rate = stop / (now - started)
            left = (num - stop) / rate
            log(f"Inception features of {what}: {stop:,}/{num:,} ({rate:.1f} images/s, "
                f"{_duration(left)} left)")  # fmt: skip
            last = now
    return np.concatenate(features).astype(np.float64), np.concatenate(logits)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ----------------------------------------------------------------------------- real statistics
@dataclasses.dataclass(frozen=True)
class RealStatistics:
    """A real split through the network: its features, their moments and its IS.

    Attributes:
      features: ``[N, 2048]`` float32 pool3 features.
      mu: their mean (float64).
      sigma: their covariance (float64, ``np.cov`` with ddof 1, as pytorch-fid).
      inception_score: ``(mean, std)`` over 10 splits.
      key: what was measured (dataset, fingerprint, split, count, weights hash, protocol).
      path: the cache file.
      cached: whether it was read from the cache rather than computed now.
    """

    features: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    inception_score: tuple[float, float]
    key: dict[str, Any]
    path: str
    cached: bool


def default_cache_dir() -> str:
    """``$JAXGAN_CACHE/inception``, or ``~/.cache/jaxgan/inception``."""
    root = os.environ.get("JAXGAN_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxgan"
    )
    return os.path.join(root, "inception")


def real_statistics(
    weights: InceptionWeights,
    images_uint8: Callable[[], np.ndarray],
    *,
    dataset: str,
    fingerprint: str,
    split: str,
    num: int,
    cache_dir: str | None = None,
    log: Callable[[str], None] | None = None,
) -> RealStatistics:
    """The features of a real split's first ``num`` images: from the cache, or computed
    (and cached) now.

    Args:
      weights: the network.
      images_uint8: loads the split's uint8 ``[N, H, W, C]`` images (called only when the
        cache has no entry).
      dataset, fingerprint, split: what the images are (``fingerprint``: the split's
        :attr:`jaxgan.data.Dataset.fingerprint`); part of the cache key.
      num: how many of the split's images, from its start (fewer if the split is shorter).
      cache_dir: default :func:`default_cache_dir`.
      log: progress lines.
    """
    key = {
        "dataset": dataset,
        "fingerprint": fingerprint,
        "split": split,
        "num": num,
        "weights_sha256": weights.sha256,
        "protocol": PROTOCOL,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir or default_cache_dir(), f"{dataset}-{split}-{num}-{digest}.npz")
    cached = _read_cached(path, key)
    if cached is not None:
        return dataclasses.replace(cached, path=path)
    images = np.asarray(images_uint8())[:num]
    features, logits = extract(
        weights, lambda a, b: images[a:b].astype(np.float32) / 255.0, len(images),
        what=f"{dataset} {split}", log=log,
    )  # fmt: skip
    stats = _statistics(features, logits, key, path)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        features=stats.features,
        mu=stats.mu,
        sigma=stats.sigma,
        inception_score=np.asarray(stats.inception_score),
        key=np.asarray(json.dumps(key, sort_keys=True)),
    )
    try:
        files.write_atomic(path, buffer.getvalue())
    except OSError as e:  # a read-only cache costs the extraction next time, not this one
        if log is not None:
            log(f"warning: could not cache the real Inception statistics in {path}: {e}")
    return stats


def _statistics(features, logits, key, path) -> RealStatistics:
    features = np.asarray(features, np.float32)
    wide = features.astype(np.float64)
    score = metrics.inception_score(logits, splits=min(10, len(logits)))
    return RealStatistics(
        features, wide.mean(axis=0), np.cov(wide, rowvar=False), score, key, path, cached=False
    )


def _read_cached(path: str, key: dict[str, Any]) -> RealStatistics | None:
    """The cached statistics, or None if absent, unreadable or of another key."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if json.loads(str(f["key"])) != json.loads(json.dumps(key, sort_keys=True)):
                return None
            score = tuple(float(v) for v in f["inception_score"])
            return RealStatistics(f["features"], f["mu"], f["sigma"], score, key, path, cached=True)
    except (OSError, ValueError, KeyError):
        return None
