"""A small MNIST-family classifier that jaxgan trains itself, for feature-based metrics.

Inception weights cannot be downloaded here, so FID, KID and the classifier score of
MNIST-family data use the features of this network instead (docs/EVALUATION.md). It is
trained deterministically from a seed on the train split, and pinned by the sha256 of
its serialized parameters (:func:`params_hash`): two evaluations are comparable when
they name the same hash.

The network (:class:`MnistClassifier`): Conv 32 5x5 stride 2, ReLU; Conv 64 5x5
stride 2, ReLU; Dense 128, ReLU (the *features*); Dense 10 (the logits). Training
(:data:`RECIPE`, :data:`RECIPE_CHANGES`): Adam with a cosine learning-rate decay on
minibatches drawn as a pure function of ``(seed, step)`` on device, i.i.d. with
replacement as the GAN trainer draws its batches, with random ±1-pixel translations
of MNIST digits.

* :func:`train_classifier` trains from uint8 images and labels;
* :func:`features_and_probs` gives penultimate features and class probabilities;
* :func:`get_classifier` loads the classifier of a dataset from the cache, or trains,
  tests and caches it (``$JAXGAN_CACHE/classifiers``, default
  ``~/.cache/jaxgan/classifiers``);
* :func:`real_features` gives the features of the test split and of an equal-sized
  train subset, from which :mod:`jaxgan.evaluators` measures the real-data floor.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan import data, files
from jaxgan.state import prng_key

__all__ = [
    "CLASSIFIER_VERSION",
    "NUM_FEATURES",
    "RECIPE",
    "RECIPE_CHANGES",
    "MnistClassifier",
    "RealFeatures",
    "accuracy",
    "cache_path",
    "default_cache_dir",
    "features_and_probs",
    "get_classifier",
    "params_hash",
    "real_features",
    "recipe_hash",
    "train_classifier",
]

CLASSIFIER_VERSION = 1
"""Bumped whenever the network or the training code changes what a recipe produces."""

NUM_FEATURES = 128
"""Width of the penultimate (feature) layer."""

RECIPE = {"steps": 3_000, "batch_size": 128, "learning_rate": 2e-3, "max_shift": 0}
"""The training recipe of :func:`get_classifier`: 6.4 epochs of 60,000 images."""

RECIPE_CHANGES = {"mnist": {"max_shift": 1}}
"""Per-dataset changes to :data:`RECIPE`. Digits get random ±1-pixel translations
(test accuracy 99.37 % against 99.06 % without); Fashion-MNIST's centred garments do
not (91.7 % without, 90.6 % with)."""

IMAGE_SHAPE = (28, 28, 1)


class MnistClassifier(nn.Module):
    """Conv32/2-Conv64/2-Dense128-Dense10 on ``(B, 28, 28, 1)`` images in [0, 1].

    Attributes:
      num_classes: number of classes (10 for MNIST and Fashion-MNIST).
    """

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns ``(features (B, 128), logits (B, num_classes))``."""
        h = x - 0.5  # centre the pixels; the convolutions learn the rest
        for width in (32, 64):  # strided convolutions: max-pool's gradient is slow on CPU
            h = nn.relu(nn.Conv(width, (5, 5), strides=(2, 2), padding="SAME")(h))
        h = h.reshape(h.shape[0], -1)
        features = nn.relu(nn.Dense(NUM_FEATURES)(h))
        return features, nn.Dense(self.num_classes)(features)


_MODEL = MnistClassifier()


def _as_images(images: Any) -> np.ndarray:
    """(N, 28, 28, 1) float32 on the host from (N, 784), (N, 28, 28) or (N, 28, 28, 1)."""
    images = np.asarray(images, np.float32)
    if images.ndim == 0 or int(np.prod(images.shape[1:])) != 784:
        raise ValueError(f"images of 28x28x1 = 784 values needed, got shape {images.shape}")
    return images.reshape(images.shape[0], *IMAGE_SHAPE)


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------


def train_classifier(
    images: Any,
    labels: Any,
    *,
    seed: int,
    steps: int = RECIPE["steps"],
    batch_size: int = RECIPE["batch_size"],
    learning_rate: float = RECIPE["learning_rate"],
    max_shift: int = RECIPE["max_shift"],
    log: Callable[[str], None] | None = None,
) -> tuple[dict, dict[str, float]]:
    """Trains :class:`MnistClassifier` deterministically from a seed.

    Step ``t`` uses the minibatch ``images[randint(k1, (B,), 0, N)]``, each image
    translated by a random whole number of pixels in ``[-max_shift, max_shift]`` per
    axis (zeros enter at the border; offsets from ``k2``), with ``(k1, k2) =
    split(fold_in(data_key, t))``, and Adam with learning rate ``lr · (1 + cos(π t /
    steps)) / 2``; the parameters are initialised from ``init_key``; ``(init_key,
    data_key) = split(key(seed))``.
    The images live on device as uint8 and are scaled to [0, 1] per batch. On one
    machine the same arguments give the same parameters bit for bit.

    Args:
      images: uint8 array (N, 28, 28[, 1]) of training images.
      labels: integer array (N,) of class labels in 0..9.
      seed: the seed of the initialisation and of the minibatch order.
      steps: number of Adam updates.
      batch_size: examples per update.
      learning_rate: peak learning rate.
      max_shift: largest random translation in pixels (0: none).
      log: optional callable receiving progress lines.

    Returns:
      ``(params, metrics)``: the Flax parameters, and ``{"train_loss": mean
      cross-entropy over the last 10 % of steps, "seconds": wall time}``.

    Example:
      >>> import numpy as np
      >>> images = np.zeros((8, 28, 28), np.uint8)
      >>> params, metrics = train_classifier(images, np.zeros(8, int), seed=0, steps=2,
      ...                                    batch_size=4)
      >>> sorted(params), params["Dense_0"]["kernel"].shape
      (['Conv_0', 'Conv_1', 'Dense_0', 'Dense_1'], (3136, 128))
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8:
        raise ValueError(f"uint8 training images needed, got {images.dtype}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"one label per image needed: {labels.shape} vs {images.shape}")
    if steps < 1 or batch_size < 1 or max_shift < 0:
        raise ValueError(
            f"steps, batch_size > 0 and max_shift >= 0 needed, got {steps}, {batch_size}, "
            f"{max_shift}"
        )
    start = time.perf_counter()
    device_images = jax.device_put(np.ascontiguousarray(images.reshape(-1, *IMAGE_SHAPE)))
    device_labels = jax.device_put(labels.astype(np.int32))
    init_key, data_key = jax.random.split(prng_key(int(seed)))
    params = _MODEL.init(init_key, jnp.zeros((1, *IMAGE_SHAPE), jnp.float32))["params"]
    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    opt_state = tx.init(params)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def update(params, opt_state, step):
        index_key, shift_key = jax.random.split(jax.random.fold_in(data_key, step))
        index = jax.random.randint(index_key, (batch_size,), 0, device_images.shape[0])
        x = jnp.take(device_images, index, axis=0).astype(jnp.float32) / 255.0
        x = _random_shift(x, shift_key, max_shift)
        y = jnp.take(device_labels, index, axis=0)

        def loss_fn(params):
            _, logits = _MODEL.apply({"params": params}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for step in range(steps):
        params, opt_state, loss = update(params, opt_state, jnp.uint32(step))
        losses.append(loss)
        if log is not None and (step + 1) % 200 == 0:
            log(f"classifier step {step + 1}/{steps}: loss {float(loss):.4f}")
    tail = np.asarray(jax.device_get(losses[-max(1, steps // 10) :]), np.float64)
    params = jax.device_get(params)
    return params, {"train_loss": float(tail.mean()), "seconds": time.perf_counter() - start}


def _random_shift(x: jax.Array, key: jax.Array, max_shift: int) -> jax.Array:
    """Translates each image of ``x`` (B, H, W, C) by its own random offset."""
    if max_shift == 0:
        return x
    _, height, width, channels = x.shape
    pad = ((max_shift, max_shift), (max_shift, max_shift), (0, 0))
    offsets = jax.random.randint(key, (x.shape[0], 2), 0, 2 * max_shift + 1)

    def shift_one(image, offset):
        return jax.lax.dynamic_slice(
            jnp.pad(image, pad), (offset[0], offset[1], 0), (height, width, channels)
        )

    return jax.vmap(shift_one)(x, offsets)


# ----------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------


@jax.jit
def _apply(params, x):
    features, logits = _MODEL.apply({"params": params}, x)
    return features, jax.nn.softmax(logits)


def features_and_probs(
    params: dict, images: Any, *, batch_size: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features and class probabilities of images with pixels in [0, 1].

    The images go through the network in chunks of ``batch_size`` (the last one
    padded), so that one compiled shape serves any number of images.

    Args:
      params: the classifier's parameters.
      images: float array (N, 28, 28, 1), (N, 28, 28) or (N, 784), pixels in [0, 1].
      batch_size: images per call of the network.

    Returns:
      ``(features float32 (N, 128), probs float32 (N, 10))``.

    Example:
      >>> import numpy as np
      >>> params, _ = train_classifier(np.zeros((4, 784), np.uint8), np.arange(4), seed=0,
      ...                              steps=1, batch_size=2)
      >>> f, p = features_and_probs(params, np.zeros((3, 784)), batch_size=2)
      >>> f.shape, p.shape, bool(np.allclose(p.sum(axis=1), 1.0, atol=1e-5))
      ((3, 128), (3, 10), True)
    """
    images = _as_images(images)  # on the host: only one chunk at a time goes to the device
    num = images.shape[0]
    features, probs = [], []
    for begin in range(0, num, batch_size):
        chunk = images[begin : begin + batch_size]
        size = chunk.shape[0]
        if size < batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - size, *IMAGE_SHAPE), np.float32)])
        f, p = _apply(params, chunk)
        features.append(np.asarray(f)[:size])
        probs.append(np.asarray(p)[:size])
    if not features:
        return np.zeros((0, NUM_FEATURES), np.float32), np.zeros((0, 10), np.float32)
    return np.concatenate(features), np.concatenate(probs)


def accuracy(params: dict, images_uint8: Any, labels: Any) -> float:
    """Fraction of uint8 images whose most probable class is the label."""
    _, probs = features_and_probs(params, np.asarray(images_uint8, np.float32) / 255.0)
    return float(np.mean(probs.argmax(axis=1) == np.asarray(labels)))


def params_hash(params: dict) -> str:
    """sha256 hex digest of ``flax.serialization.to_bytes(params)``: the classifier's pin."""
    return hashlib.sha256(flax.serialization.to_bytes(params)).hexdigest()


# ----------------------------------------------------------------------------
# The cached classifier of a dataset
# ----------------------------------------------------------------------------


def default_cache_dir() -> str:
    """``$JAXGAN_CACHE/classifiers``, or ``~/.cache/jaxgan/classifiers``."""
    root = os.environ.get("JAXGAN_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxgan"
    )
    return os.path.join(root, "classifiers")


def recipe_hash(recipe: dict[str, Any]) -> str:
    """First 16 hex digits of the sha256 of the recipe as sorted JSON."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _full_recipe(dataset_name: str, fingerprint: str, **overrides) -> dict[str, Any]:
    recipe = {**RECIPE, **RECIPE_CHANGES.get(dataset_name, {})}
    recipe.update({k: v for k, v in overrides.items() if v is not None})
    return {
        "version": CLASSIFIER_VERSION,
        "dataset": dataset_name,
        "train_fingerprint": fingerprint,
        **recipe,
    }


def cache_path(cache_dir: str, dataset_name: str, seed: int, recipe: dict[str, Any]) -> str:
    """``<cache_dir>/<dataset>-<seed>-<recipe hash>.msgpack``."""
    return os.path.join(cache_dir, f"{dataset_name}-{seed}-{recipe_hash(recipe)}.msgpack")


def _read_cached(path: str, recipe: dict[str, Any]) -> tuple[dict, dict] | None:
    """The cached (params, info), or None if absent, unreadable or not this recipe."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            stored = flax.serialization.msgpack_restore(f.read())
        params, info = stored["params"], stored["info"]
        info = json.loads(info)
    except Exception:
        return None
    if info.get("recipe") != recipe or params_hash(params) != info.get("hash"):
        return None
    return params, info


def get_classifier(
    dataset_name: str,
    idx_dir: str,
    *,
    seed: int = 0,
    cache_dir: str | None = None,
    steps: int | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[dict, str, dict[str, Any]]:
    """The classifier of an MNIST-family dataset: from the cache, or trained and cached.

    The cache file is named by the dataset, the seed and the hash of the recipe (the
    network version, :data:`RECIPE` with the dataset's :data:`RECIPE_CHANGES`, and the
    fingerprint of the training images), and holds the parameters and ``info``; it is
    written through a temporary file and a rename. A cached file whose parameters no
    longer match its recorded hash is ignored and replaced. Training is bitwise
    deterministic on one machine and backend; another backend may train other bits,
    so copy the cache file to compare evaluations across machines (the hash says
    whether two evaluations used the same classifier).

    Args:
      dataset_name: e.g. ``"mnist"`` or ``"fashion_mnist"`` (recorded, and part of
        the file name).
      idx_dir: folder of the dataset's four IDX files (:func:`jaxgan.data.load_idx`).
      seed: training seed.
      cache_dir: folder of cached classifiers (default :func:`default_cache_dir`).
      steps: overrides ``RECIPE["steps"]`` (tests use short runs).
      log: optional callable receiving progress lines.

    Returns:
      ``(params, hash, info)``; ``info`` holds ``recipe``, ``recipe_hash``, ``hash``,
      ``seed``, ``test_accuracy``, ``train_seconds``, ``train_loss``, ``path`` and
      ``cached`` (whether it was loaded rather than trained now).

    Raises:
      jaxgan.data.DataError: the IDX files are missing or corrupt.
    """
    train = data.load_idx(idx_dir, name=dataset_name, split="train")
    recipe = _full_recipe(dataset_name, train.fingerprint, steps=steps)
    path = cache_path(cache_dir or default_cache_dir(), dataset_name, seed, recipe)
    cached = _read_cached(path, recipe)
    if cached is not None:
        params, info = cached
        return params, info["hash"], {**info, "path": path, "cached": True}

    if log is not None:
        log(f"Training the {dataset_name} classifier (seed {seed}) for {path} ...")
    labels = data.load_idx_labels(idx_dir, split="train")
    params, metrics = train_classifier(
        train.arrays["images"],
        labels,
        seed=seed,
        steps=recipe["steps"],
        batch_size=recipe["batch_size"],
        learning_rate=recipe["learning_rate"],
        max_shift=recipe["max_shift"],
        log=log,
    )
    test = data.load_idx(idx_dir, name=dataset_name, split="test")
    test_accuracy = accuracy(
        params, test.arrays["images"], data.load_idx_labels(idx_dir, split="test")
    )
    digest = params_hash(params)
    info = {
        "recipe": recipe,
        "recipe_hash": recipe_hash(recipe),
        "hash": digest,
        "seed": int(seed),
        "test_accuracy": test_accuracy,
        "train_seconds": metrics["seconds"],
        "train_loss": metrics["train_loss"],
        "jax": jax.__version__,
        "backend": jax.default_backend(),
    }
    payload = flax.serialization.msgpack_serialize({"params": params, "info": json.dumps(info)})
    try:
        files.write_atomic(path, payload)
    except OSError as e:  # a read-only cache costs a retraining next time, not this evaluation
        if log is not None:
            log(f"warning: could not cache the classifier in {path}: {e}")
    if log is not None:
        log(
            f"Classifier {digest[:12]}: test accuracy {100 * test_accuracy:.2f}% "
            f"({metrics['seconds']:.0f} s)."
        )
    return params, digest, {**info, "path": path, "cached": False}


# ----------------------------------------------------------------------------
# The real-data floor
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RealFeatures:
    """Classifier outputs of the real data a metric compares against.

    Attributes:
      test_features, test_probs: of the whole test split, (N_test, 128) and (N_test, 10).
      train_features, train_probs: of a random train subset the size of the test split.
      train_index: the indices of that subset in the train split.
    """

    test_features: np.ndarray
    test_probs: np.ndarray
    train_features: np.ndarray
    train_probs: np.ndarray
    train_index: np.ndarray


def real_features(
    params: dict, train_uint8: Any, test_uint8: Any, *, num: int | None = None, seed: int = 0
) -> RealFeatures:
    """Features and probabilities of the test split and of an equal-sized train subset.

    Args:
      params: classifier parameters.
      train_uint8: uint8 train images (N_train, 28, 28[, 1]).
      test_uint8: uint8 test images (N_test, 28, 28[, 1]).
      num: size of the train subset (default: the size of the test split).
      seed: seed of the subset, drawn without replacement by
        ``np.random.default_rng(seed).choice``.

    Returns:
      A :class:`RealFeatures`.
    """
    train_uint8, test_uint8 = np.asarray(train_uint8), np.asarray(test_uint8)
    num = test_uint8.shape[0] if num is None else num
    index = np.sort(np.random.default_rng(seed).choice(train_uint8.shape[0], num, replace=False))
    test_f, test_p = features_and_probs(params, test_uint8.astype(np.float32) / 255.0)
    train_f, train_p = features_and_probs(params, train_uint8[index].astype(np.float32) / 255.0)
    return RealFeatures(test_f, test_p, train_f, train_p, index)
