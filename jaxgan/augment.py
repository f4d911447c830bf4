"""DiffAugment (Zhao et al. 2020): differentiable augmentations of real and fake images alike.

Pure functions of ``(images, key)`` on NHWC batches with pixels in [-1, 1], written after
the official ``DiffAugment_pytorch.py`` (mit-han-lab/data-efficient-gans), which is NCHW:

* ``color``: brightness ``x + U(-0.5, 0.5)``; saturation ``(x - mean_C) · U(0, 2) + mean_C``;
  contrast ``(x - mean_CHW) · U(0.5, 1.5) + mean_CHW``; one draw per image each.
* ``translation`` (ratio 1/8): each image shifted by integers ``t_h ∈ [-s_h, s_h]``,
  ``t_w ∈ [-s_w, s_w]``, ``s = int(size · ratio + 0.5)``; output pixel ``(i, j)`` is input
  pixel ``(i + t_h, j + t_w)``, or 0 outside the image.
* ``cutout`` (ratio 1/2): a ``c_h × c_w`` rectangle, ``c = int(size · ratio + 0.5)``, set to
  0 around a centre ``o ∈ [0, size + 1 - c mod 2)`` (rows ``o - c // 2 ... o - c // 2 + c - 1``,
  clipped at the border).

Each operation draws from ``fold_in(key, its fixed number)``, so a policy's draws do not
depend on which other operations it holds; shapes never depend on the draws (masks and
gathers, no dynamic slicing), so the functions jit, vmap and differentiate (gradients flow
through the pixels that are kept). No randomness but the key's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "POLICIES",
    "color",
    "cutout",
    "cutout_offsets",
    "diff_augment",
    "parse_policy",
    "translation",
    "translation_offsets",
]

POLICIES = ("color", "translation", "cutout")
"""The operations a policy may name, in the order of the official implementation."""

_STREAMS = {"brightness": 0, "saturation": 1, "contrast": 2, "translation": 3, "cutout": 4}


def parse_policy(policy: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The operations of a policy (``"color,translation"`` or a sequence of names).

    Raises:
      ValueError: an unknown name, saying which are known.
    """
    names = policy.split(",") if isinstance(policy, str) else list(policy)
    names = tuple(name.strip() for name in names if name.strip())
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ValueError(
            f"unknown DiffAugment operation(s) {unknown}: a policy is a comma-separated list "
            f"of {', '.join(POLICIES)} (e.g. 'color,translation,cutout'), or '' for none"
        )
    return names


def _per_image(key: jax.Array, images: jax.Array, low: float, high: float) -> jax.Array:
    shape = (images.shape[0],) + (1,) * (images.ndim - 1)
    return jax.random.uniform(key, shape, images.dtype, low, high)


def color(images: jax.Array, key: jax.Array) -> jax.Array:
    """Random brightness, saturation and contrast, one draw of each per image."""
    x = images
    x = x + _per_image(jax.random.fold_in(key, _STREAMS["brightness"]), x, -0.5, 0.5)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    x = (x - mean) * _per_image(jax.random.fold_in(key, _STREAMS["saturation"]), x, 0.0, 2.0) + mean
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * _per_image(jax.random.fold_in(key, _STREAMS["contrast"]), x, 0.5, 1.5) + mean
    return x


def _sizes(images: jax.Array, ratio: float) -> tuple[int, int]:
    return int(images.shape[1] * ratio + 0.5), int(images.shape[2] * ratio + 0.5)


def translation_offsets(images: jax.Array, key: jax.Array, ratio: float = 0.125):
    """``(t_h, t_w)``, int32 ``(B,)`` each: the shifts :func:`translation` applies."""
    shift_h, shift_w = _sizes(images, ratio)
    key = jax.random.fold_in(key, _STREAMS["translation"])
    key_h, key_w = jax.random.split(key)
    batch = images.shape[0]
    t_h = jax.random.randint(key_h, (batch,), -shift_h, shift_h + 1)
    t_w = jax.random.randint(key_w, (batch,), -shift_w, shift_w + 1)
    return t_h, t_w


def _shift(x: jax.Array, offsets: jax.Array, axis: int) -> jax.Array:
    """``out[b, ..., i, ...] = x[b, ..., i + offsets[b], ...]`` along ``axis``, 0 outside."""
    size = x.shape[axis]
    source = jnp.arange(size)[None, :] + offsets[:, None]  # (B, size)
    inside = (source >= 0) & (source < size)
    shape = [x.shape[0]] + [1] * (x.ndim - 1)
    shape[axis] = size
    index = jnp.broadcast_to(jnp.clip(source, 0, size - 1).reshape(shape), x.shape)
    gathered = jnp.take_along_axis(x, index, axis=axis)
    return gathered * inside.reshape(shape).astype(x.dtype)


def translation(images: jax.Array, key: jax.Array, ratio: float = 0.125) -> jax.Array:
    """Each image shifted by its own integer offsets (:func:`translation_offsets`), zero fill."""
    t_h, t_w = translation_offsets(images, key, ratio)
    return _shift(_shift(images, t_h, 1), t_w, 2)


def cutout_offsets(images: jax.Array, key: jax.Array, ratio: float = 0.5):
    """``(o_h, o_w)``, int32 ``(B,)`` each: the centres of :func:`cutout`'s rectangles."""
    size_h, size_w = _sizes(images, ratio)
    key = jax.random.fold_in(key, _STREAMS["cutout"])
    key_h, key_w = jax.random.split(key)
    batch, height, width = images.shape[:3]
    o_h = jax.random.randint(key_h, (batch,), 0, height + (1 - size_h % 2))
    o_w = jax.random.randint(key_w, (batch,), 0, width + (1 - size_w % 2))
    return o_h, o_w


def cutout(images: jax.Array, key: jax.Array, ratio: float = 0.5) -> jax.Array:
    """Each image with a rectangle of ``ratio`` of its size set to 0 (:func:`cutout_offsets`)."""
    size_h, size_w = _sizes(images, ratio)
    o_h, o_w = cutout_offsets(images, key, ratio)

    def band(offset, size, length):
        start = offset[:, None] - size // 2
        position = jnp.arange(length)[None, :]
        return (position >= start) & (position < start + size)  # (B, length)

    rows = band(o_h, size_h, images.shape[1])
    cols = band(o_w, size_w, images.shape[2])
    keep = ~(rows[:, :, None] & cols[:, None, :])
    return images * keep[..., None].astype(images.dtype)


_OPERATIONS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(
    images: jax.Array, key: jax.Array, policy: str | tuple[str, ...] = "color,translation,cutout"
) -> jax.Array:
    """DiffAugment's transform of a batch ``(B, H, W, C)``: the policy's operations in order.

    Args:
      images: NHWC images, pixels in [-1, 1] (any channel count; any height and width).
      key: a PRNG key; the same key gives the same transform.
      policy: comma-separated operations of :data:`POLICIES`; ``""`` returns ``images``.

    Returns:
      The transformed batch, same shape and dtype.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> x = jnp.zeros((2, 8, 8, 3))
      >>> diff_augment(x, jax.random.key(0), "translation,cutout").shape
      (2, 8, 8, 3)
    """
    names = parse_policy(policy)
    if names and images.ndim != 4:
        raise ValueError(f"diff_augment needs images (B, H, W, C), got shape {images.shape}")
    for name in names:
        images = _OPERATIONS[name](images, key)
    return images
