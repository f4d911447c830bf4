"""Canonical GAN networks (Flax Linen): a generator G and a discriminator D per model name.

Every G maps a latent batch ``z`` of shape ``(B, latent_dim)`` to samples ``(B, *data_shape)``;
every D maps ``(B, *data_shape)`` to one logit per *pack* of ``m`` samples, shape ``(B // m,)``
(PacGAN packing, Lin et al. 2018; ``m = 1`` is an ordinary D). The sigmoid of the original
papers' D is folded into the loss. Both take ``train`` as a keyword: in train mode BatchNorm
normalises with batch statistics and updates its running averages in the ``"batch_stats"``
collection (apply with ``mutable=["batch_stats"]``) and dropout is active (rng collection
``"dropout"``).

Models (layer-by-layer specs in ``shared/peers/MODELS.md``):

* ``toy2d``: PacGAN's 2-D mixture networks (Lin et al. 2018).
* ``mlp``: Goodfellow et al. 2014, MNIST (goodfeli/adversarial ``mnist.yaml``).
* ``dcgan28``: the TensorFlow DCGAN tutorial (28x28).
* ``dcgan32``, ``dcgan64``: Radford et al. 2015 as in pytorch/examples ``dcgan`` (32x32, 64x64).

This module does no I/O.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

MODEL_NAMES = ("toy2d", "mlp", "dcgan28", "dcgan32", "dcgan64")

_LATENT_PRIORS = ("normal", "uniform")


# ----------------------------------------------------------------------------- helpers
def _uniform(scale: float) -> Callable[..., jax.Array]:
    """Initializer drawing from U(-scale, scale)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


def _normal_around_one(stddev: float) -> Callable[..., jax.Array]:
    """Initializer drawing from N(1, stddev²) (DCGAN's BatchNorm scale)."""

    def init(key, shape, dtype=jnp.float32):
        return 1.0 + stddev * jax.random.normal(key, shape, dtype)

    return init


def _pack(x: jax.Array, pack: int, *, channels_last: bool) -> jax.Array:
    """Packs groups of ``pack`` consecutive samples into one D input (PacGAN).

    Args:
      x: a batch ``(B, *shape)``.
      pack: the packing degree ``m``; ``B`` must be divisible by it.
      channels_last: if True, concatenate the ``m`` samples along the last (channel) axis,
        giving ``(B // m, *shape[:-1], m * shape[-1])``; otherwise flatten them into
        ``(B // m, m * prod(shape))``.

    Returns:
      The packed batch.

    Raises:
      ValueError: if ``B`` is not divisible by ``pack``.
    """
    batch = x.shape[0]
    if pack < 1 or batch % pack:
        raise ValueError(
            f"discriminator batch size {batch} is not divisible by the packing degree {pack}"
        )
    if not channels_last:
        return x.reshape(batch // pack, -1)
    if pack == 1:
        return x
    grouped = x.reshape(batch // pack, pack, *x.shape[1:])
    grouped = jnp.moveaxis(grouped, 1, -2)  # (B/m, H, W, m, C): sample i owns channels iC..iC+C-1
    return grouped.reshape(*grouped.shape[:-2], pack * x.shape[-1])


class Maxout(nn.Module):
    """A maxout layer (Goodfellow et al. 2013): Dense(units * pieces), max over each group.

    Unit ``j`` takes the max of pre-activation columns ``pieces*j .. pieces*j + pieces - 1``
    (pylearn2's grouping).

    Attributes:
      units: number of output units.
      pieces: number of linear pieces per unit.
      kernel_init: initializer of the Dense kernel; the bias starts at 0.
    """

    units: int
    pieces: int
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the layer.

        Args:
          x: inputs ``(B, features)``.

        Returns:
          ``(B, units)`` activations.
        """
        h = nn.Dense(self.units * self.pieces, kernel_init=self.kernel_init)(x)
        return h.reshape(*h.shape[:-1], self.units, self.pieces).max(axis=-1)


# ----------------------------------------------------------------------------- transposed conv
ConvPadding = str | tuple[tuple[int, int], ...]
_NHWC = ("NHWC", "HWIO", "NHWC")


def _transpose_pads(kernel_size, strides, padding: ConvPadding) -> tuple[tuple[int, int], ...]:
    """The explicit ``lax.conv_transpose`` padding of ``nn.ConvTranspose(padding=...)``."""
    if not isinstance(padding, str):
        return tuple((int(lo), int(hi)) for lo, hi in padding)
    pads = []
    for k, s in zip(kernel_size, strides, strict=True):
        if padding == "SAME":
            total = k + s - 2
            lo = k - 1 if s > k - 1 else -(-total // 2)
        elif padding == "VALID":
            total, lo = k + s - 2 + max(k - s, 0), k - 1
        else:
            raise ValueError(f"unsupported transposed-convolution padding {padding!r}")
        pads.append((lo, total - lo))
    return tuple(pads)


def _phase_plan(size: int, k: int, s: int, lo: int, hi: int):
    """How output phase ``r`` (outputs ``s*m + r``) of a 1-D transposed conv reads its input.

    The transposed conv is a correlation of the input dilated by ``s`` and padded by
    ``(lo, hi)`` with a kernel ``w`` of ``k`` taps. Output ``s*m + r`` only meets the taps
    ``kk0, kk0 + s, ...`` (``kk0 = (lo - r) mod s``) and reads inputs ``m + off + t``: a
    stride-1 correlation with the sub-kernel ``w[kk0::s]`` over the input padded by
    ``(-off, ...)``.

    Returns:
      ``(outputs per phase, [(kk0, pad_lo, pad_hi) for each phase r])``, or None if the
      output length is not a multiple of ``s`` or some phase meets no tap.
    """
    length = (size - 1) * s + 1 + lo + hi - k + 1
    if length % s or k < s:
        return None
    per_phase, plan = length // s, []
    for r in range(s):
        kk0 = (lo - r) % s
        taps = len(range(kk0, k, s))
        off = (r + kk0 - lo) // s
        plan.append((kk0, -off, per_phase + off + taps - 1 - size))
    return per_phase, plan


def conv_transpose_phases(
    x: jax.Array, kernel: jax.Array, strides: tuple[int, int], pads: tuple[tuple[int, int], ...]
) -> jax.Array:
    """``lax.conv_transpose(x, kernel, strides, pads)`` (NHWC, HWIO) as stride-1 convolutions.

    The sub-pixel (phase) decomposition: each of the ``sh * sw`` output phases is a stride-1
    VALID convolution of the (cropped or padded) input with a sub-kernel, and the phases are
    interleaved (depth to space). The same multiply-adds as the lhs-dilated convolution, minus
    the products with inserted zeros; and no dilated convolution appears in the forward or
    backward pass, which XLA:CPU runs far below its peak.

    Args:
      x: inputs ``(B, H, W, C_in)``.
      kernel: the correlation kernel ``(kh, kw, C_in, C_out)`` (already flipped and swapped
        when the layer uses ``transpose_kernel``).
      strides: ``(sh, sw)``.
      pads: the explicit ``lax.conv_transpose`` padding ``((lo, hi), (lo, hi))``.

    Returns:
      ``(B, H_out, W_out, C_out)``, equal to ``lax.conv_transpose`` up to float rounding.
    """
    (kh, kw), (sh, sw) = kernel.shape[:2], strides
    plan_h = _phase_plan(x.shape[1], kh, sh, *pads[0])
    plan_w = _phase_plan(x.shape[2], kw, sw, *pads[1])
    if plan_h is None or plan_w is None:
        raise ValueError("this transposed convolution has no even phase decomposition")
    (rows_h, phases_h), (rows_w, phases_w) = plan_h, plan_w
    zero = jnp.zeros((), x.dtype)
    rows = []
    for kh0, lo_h, hi_h in phases_h:
        cols = []
        for kw0, lo_w, hi_w in phases_w:
            xp = jax.lax.pad(x, zero, ((0, 0, 0), (lo_h, hi_h, 0), (lo_w, hi_w, 0), (0, 0, 0)))
            cols.append(
                jax.lax.conv_general_dilated(
                    xp,
                    kernel[kh0::sh, kw0::sw],
                    (1, 1),
                    "VALID",
                    dimension_numbers=_NHWC,
                )
            )
        rows.append(jnp.stack(cols, axis=3))  # (B, rows_h, rows_w, sw, C)
    y = jnp.stack(rows, axis=2)  # (B, rows_h, sh, rows_w, sw, C)
    return y.reshape(x.shape[0], rows_h * sh, rows_w * sw, kernel.shape[-1])


def _strided_conv(u: jax.Array, kernel: jax.Array, strides, pads) -> jax.Array:
    """The strided convolution whose transpose is ``lax.conv_transpose(., kernel, strides, pads)``.

    ``kernel`` is the correlation kernel of the transposed conv, ``(kh, kw, C_in, C_out)``;
    ``u`` has ``C_out`` channels, the result ``C_in``.
    """
    conv_pads = [
        (k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(kernel.shape[:2], pads, strict=True)
    ]
    conv_kernel = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
    return jax.lax.conv_general_dilated(u, conv_kernel, strides, conv_pads, dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_transpose(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, int],
    pads: tuple[tuple[int, int], ...],
    forward: str = "phases",
) -> jax.Array:
    """``lax.conv_transpose(x, kernel, strides, pads)`` (NHWC, HWIO), fast on XLA:CPU.

    A transposed convolution is the adjoint ``A^T`` of the strided convolution ``A``
    (:func:`_strided_conv`). The forward pass runs the sub-pixel decomposition
    (:func:`conv_transpose_phases`, ``forward="phases"``) or ``lax.conv_transpose``
    (``forward="lax"``); the backward pass is written through ``A`` itself: the input gradient
    is ``A g`` (a strided convolution of the output gradient ``g``) and the kernel gradient is
    that of ``<A g, x>``, one ``jax.vjp`` of ``A``. XLA:CPU's own derivatives of the
    lhs-dilated convolution run its dilated and weight-gradient convolutions 10-20x slower.

    Args:
      x: inputs ``(B, H, W, C_in)``.
      kernel: the correlation kernel ``(kh, kw, C_in, C_out)`` (already flipped and swapped
        for ``transpose_kernel`` layers); every ``k - 1 - pad`` must be >= 0.
      strides: ``(sh, sw)``.
      pads: the explicit ``lax.conv_transpose`` padding ``((lo, hi), (lo, hi))``.
      forward: ``"phases"`` or ``"lax"``.

    Returns:
      ``(B, H_out, W_out, C_out)``, equal to ``lax.conv_transpose`` up to float rounding.
    """
    if forward == "phases":
        return conv_transpose_phases(x, kernel, strides, pads)
    return jax.lax.conv_transpose(x, kernel, strides, pads, dimension_numbers=_NHWC)


def _conv_transpose_fwd(x, kernel, strides, pads, forward):
    return conv_transpose(x, kernel, strides, pads, forward), (x, kernel)


def _conv_transpose_bwd(strides, pads, forward, residuals, g):
    del forward
    x, kernel = residuals
    x_grad, pullback = jax.vjp(lambda k: _strided_conv(g, k, strides, pads), kernel)
    (kernel_grad,) = pullback(x)
    return x_grad, kernel_grad


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)

CONV_TRANSPOSE_FORMULATIONS = ("fast", "lax")


def _check_formulation(formulation: str) -> None:
    if formulation not in CONV_TRANSPOSE_FORMULATIONS:
        raise ValueError(
            f"unknown formulation {formulation!r}; known: {CONV_TRANSPOSE_FORMULATIONS}"
        )


class ConvTranspose(nn.Module):
    """``nn.ConvTranspose`` (2-D, NHWC) run as :func:`conv_transpose`; same parameters.

    The kernel has ``nn.ConvTranspose``'s name, shape and initialisation, so parameter counts
    and checkpoints are those of the plain layer, and outputs and gradients equal it up to
    float rounding (tests/test_models.py checks every transposed conv of the DCGANs). Only
    the arrangement of the arithmetic differs; docs/BENCHMARKS.md has the measurements.

    * ``formulation="fast"`` (default): :func:`conv_transpose`, whose forward pass is the
      sub-pixel decomposition for layers with 16 or more output channels and
      ``lax.conv_transpose`` for narrower ones (there the phases' small convolutions lose),
      and whose backward pass is the strided convolution the layer is the transpose of.
      Stride-1 layers are plain convolutions already and use ``lax.conv_transpose``.
    * ``formulation="lax"``: ``lax.conv_transpose`` and its automatic derivatives (what
      ``nn.ConvTranspose`` runs).

    Attributes mirror ``nn.ConvTranspose``: ``features``, ``kernel_size``, ``strides``,
    ``padding`` (``"SAME"``, ``"VALID"`` or ``((lo, hi), (lo, hi))`` in ``lax.conv_transpose``
    terms), ``use_bias``, ``kernel_init``, ``bias_init``, ``transpose_kernel``; plus
    ``formulation``.
    """

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: ConvPadding = "SAME"
    use_bias: bool = True
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()
    transpose_kernel: bool = False
    formulation: str = "fast"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``(B, H, W, C_in)`` to ``(B, H_out, W_out, features)``."""
        _check_formulation(self.formulation)
        kernel_size, strides = tuple(self.kernel_size), tuple(self.strides)
        in_features = x.shape[-1]
        if self.transpose_kernel:
            shape = (*kernel_size, self.features, in_features)
        else:
            shape = (*kernel_size, in_features, self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        pads = _transpose_pads(kernel_size, strides, self.padding)
        fast = (
            self.formulation == "fast"
            and strides != (1, 1)
            and all(k - 1 - p >= 0 for k, pad in zip(kernel_size, pads, strict=True) for p in pad)
        )
        if not fast:
            y = jax.lax.conv_transpose(
                x,
                kernel,
                strides,
                pads,
                dimension_numbers=_NHWC,
                transpose_kernel=self.transpose_kernel,
            )
        else:
            if self.transpose_kernel:  # lax.conv_transpose's flip and swap, done once here
                kernel = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
            plans = [
                _phase_plan(x.shape[i + 1], kernel_size[i], strides[i], *pads[i]) for i in (0, 1)
            ]
            phases = self.features >= 16 and None not in plans
            y = conv_transpose(x, kernel, strides, pads, "phases" if phases else "lax")
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
            y = y + bias.reshape(1, 1, 1, -1)
        return y


def _same_conv_pads(sizes, kernel_size, strides) -> tuple[tuple[int, int], ...]:
    """TF/XLA ``SAME`` padding of a strided convolution (``nn.Conv(padding="SAME")``)."""
    pads = []
    for size, k, s in zip(sizes, kernel_size, strides, strict=True):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def _transpose_of_conv(size: int, k: int, s: int, lo: int, hi: int) -> tuple[int, int]:
    """The ``lax.conv_transpose`` padding of the adjoint of a conv (pads lo, hi) on ``size``."""
    return k - 1 - lo, k - 1 - hi + (size + lo + hi - k) % s


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def strided_conv(
    x: jax.Array, kernel: jax.Array, strides: tuple[int, int], pads: tuple[tuple[int, int], ...]
) -> jax.Array:
    """``lax.conv_general_dilated(x, kernel, strides, pads)`` (NHWC, HWIO), fast on XLA:CPU.

    The input gradient of a strided convolution is a transposed convolution, which
    XLA:CPU's own derivative runs as an lhs-dilated convolution; here it runs as the sub-pixel
    decomposition (:func:`conv_transpose_phases`) when the input has 16 or more channels,
    and the kernel gradient is JAX's own. With fewer input channels (an image layer) both
    gradients come from one im2col matrix of the input's patches and a matmul each.
    """
    return jax.lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_NHWC)


def _strided_conv_fwd(x, kernel, strides, pads):
    return strided_conv(x, kernel, strides, pads), (x, kernel)


def _strided_patches(x: jax.Array, kernel_size, strides, pads, out_size) -> jax.Array:
    """im2col: ``[B * H_out * W_out, kh * kw * C]`` patches of the padded input, tap-major."""
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    (kh, kw), (sh, sw), (oh, ow) = kernel_size, strides, out_size
    taps = [
        xp[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.concatenate(taps, axis=-1).reshape(-1, kh * kw * x.shape[-1])


def _strided_conv_bwd(strides, pads, residuals, g):
    x, kernel = residuals
    if x.shape[-1] < 16:
        # Few input channels (an image layer): im2col + one matmul for both gradients.
        # XLA:CPU's own derivatives of these convolutions run at 50-100 GFLOP/s (measured:
        # dcgan64's 3-channel layer, forward + both gradients, 28.4 -> 8.0 ms).
        kh, kw, c_in, c_out = kernel.shape
        patches, unpatch = jax.vjp(
            lambda u: _strided_patches(u, (kh, kw), strides, pads, g.shape[1:3]), x
        )
        g2 = g.reshape(-1, c_out)
        kernel_grad = (patches.T @ g2).reshape(kernel.shape)
        (x_grad,) = unpatch(g2 @ kernel.reshape(kh * kw * c_in, c_out).T)
        return x_grad, kernel_grad
    _, pullback = jax.vjp(
        lambda k: jax.lax.conv_general_dilated(x, k, strides, pads, dimension_numbers=_NHWC),
        kernel,
    )
    (kernel_grad,) = pullback(g)
    t_kernel = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)  # correlation kernel of the adjoint
    t_pads = tuple(
        _transpose_of_conv(x.shape[i + 1], kernel.shape[i], strides[i], *pads[i]) for i in (0, 1)
    )
    plans = [_phase_plan(g.shape[i + 1], kernel.shape[i], strides[i], *t_pads[i]) for i in (0, 1)]
    if x.shape[-1] >= 16 and None not in plans:
        x_grad = conv_transpose_phases(g, t_kernel, strides, t_pads)
    else:
        x_grad = jax.lax.conv_transpose(g, t_kernel, strides, t_pads, dimension_numbers=_NHWC)
    return x_grad, kernel_grad


strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)


class Conv(nn.Module):
    """``nn.Conv`` (2-D, NHWC, no dilation or groups) with a fast input gradient; same parameters.

    Strided layers run :func:`strided_conv`; stride-1 layers ``lax.conv_general_dilated``.
    Parameter names, shapes and initialisation are ``nn.Conv``'s; outputs and gradients equal
    it up to float rounding (tests/test_models.py).

    Attributes: ``features``, ``kernel_size``, ``strides``, ``padding`` (``"SAME"``,
    ``"VALID"`` or ``((lo, hi), (lo, hi))``), ``use_bias``, ``kernel_init``, ``bias_init``,
    ``formulation`` (``"fast"``, or ``"lax"`` for JAX's own derivatives).
    """

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: ConvPadding = "SAME"
    use_bias: bool = True
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()
    formulation: str = "fast"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``(B, H, W, C_in)`` to ``(B, H_out, W_out, features)``."""
        _check_formulation(self.formulation)
        kernel_size, strides = tuple(self.kernel_size), tuple(self.strides)
        shape = (*kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        if self.padding == "SAME":
            pads = _same_conv_pads(x.shape[1:3], kernel_size, strides)
        elif self.padding == "VALID":
            pads = ((0, 0), (0, 0))
        else:
            pads = tuple((int(lo), int(hi)) for lo, hi in self.padding)
        if self.formulation == "fast" and strides != (1, 1):
            y = strided_conv(x, kernel, strides, pads)
        else:
            y = jax.lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_NHWC)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
            y = y + bias.reshape(1, 1, 1, -1)
        return y


# ----------------------------------------------------------------------------- toy2d
_TOY_INIT = nn.initializers.normal(stddev=0.02)


class Toy2dGenerator(nn.Module):
    """PacGAN's 2-D generator (Lin et al. 2018): 4 x (Dense 400, BatchNorm, ReLU), linear out.

    Attributes:
      data_dim: size of each output sample (2 for the 2-D mixtures).
      hidden: width of the hidden layers.
      num_hidden: number of hidden layers.
    """

    data_dim: int = 2
    hidden: int = 400
    num_hidden: int = 4

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
        """Maps latents ``(B, latent_dim)`` to samples ``(B, data_dim)`` (unbounded)."""
        h = z
        for _ in range(self.num_hidden):
            h = nn.Dense(self.hidden, kernel_init=_TOY_INIT)(h)
            h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(h)
            h = nn.relu(h)
        return nn.Dense(self.data_dim, kernel_init=_TOY_INIT)(h)


class Toy2dDiscriminator(nn.Module):
    """PacGAN's 2-D discriminator (Lin et al. 2018): 3 maxout layers (200 x 5), linear logit.

    Attributes:
      pack: PacGAN packing degree ``m``; the ``m`` samples of a pack are concatenated.
      units: maxout units per layer.
      pieces: maxout pieces per unit.
      num_layers: number of maxout layers.
    """

    pack: int = 1
    units: int = 200
    pieces: int = 5
    num_layers: int = 3

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps samples ``(B, d)`` to logits ``(B // pack,)``; ``train`` is unused."""
        del train  # no BatchNorm or dropout
        h = _pack(x, self.pack, channels_last=False)
        for _ in range(self.num_layers):
            h = Maxout(self.units, self.pieces, kernel_init=_TOY_INIT)(h)
        return nn.Dense(1, kernel_init=_TOY_INIT)(h).reshape(-1)


# ----------------------------------------------------------------------------- mlp
class MLPGenerator(nn.Module):
    """Goodfellow et al. 2014 MNIST generator: Dense 1200 ReLU, 1200 ReLU, 784 sigmoid.

    Weights start U(-0.05, 0.05), biases 0 (goodfeli/adversarial ``mnist.yaml``).

    Attributes:
      data_shape: per-example output shape; its product must be 784.
    """

    data_shape: tuple[int, ...] = (784,)

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
        """Maps latents ``(B, 100)`` to samples ``(B, *data_shape)`` in (0, 1)."""
        del train  # no BatchNorm or dropout
        init = _uniform(0.05)
        h = nn.relu(nn.Dense(1200, kernel_init=init)(z))
        h = nn.relu(nn.Dense(1200, kernel_init=init)(h))
        h = nn.sigmoid(nn.Dense(784, kernel_init=init)(h))
        return h.reshape(z.shape[0], *self.data_shape)


class MLPDiscriminator(nn.Module):
    """Goodfellow et al. 2014 MNIST discriminator: maxout 240 x 5 twice, then a logit.

    Weights start U(-0.005, 0.005), biases 0. Dropout as in ``mnist.yaml``: keep probability
    0.8 on the input and 0.5 on each hidden layer, in train mode only.

    Attributes:
      pack: PacGAN packing degree ``m``; the ``m`` flattened samples of a pack are concatenated.
      dropout: whether to apply dropout in train mode; the MODELS.md speed benchmark turns it
        off (``models.discriminator.clone(dropout=False)``).
    """

    pack: int = 1
    dropout: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps samples ``(B, *shape)`` (prod 784) to logits ``(B // pack,)``."""
        deterministic = not (train and self.dropout)
        init = _uniform(0.005)
        h = _pack(x, self.pack, channels_last=False)
        h = nn.Dropout(rate=0.2, deterministic=deterministic)(h)
        for _ in range(2):
            h = Maxout(240, 5, kernel_init=init)(h)
            h = nn.Dropout(rate=0.5, deterministic=deterministic)(h)
        return nn.Dense(1, kernel_init=init)(h).reshape(-1)


# ----------------------------------------------------------------------------- dcgan28
_KERAS_INIT = nn.initializers.glorot_uniform()


def _keras_batch_norm(train: bool) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3)


class DCGAN28Generator(nn.Module):
    """The TensorFlow DCGAN tutorial generator for 28x28 images.

    Dense 7*7*256 (no bias), BN, LeakyReLU 0.3, reshape; ConvTranspose 128 k5 s1, BN, LReLU;
    ConvTranspose 64 k5 s2, BN, LReLU; ConvTranspose nc k5 s2, tanh. Keras defaults: glorot
    uniform kernels, BatchNorm momentum 0.99, epsilon 1e-3, SAME padding.

    Attributes:
      nc: number of output channels.
      conv: formulation of the transposed convolutions, ``"fast"`` or ``"lax"`` (see
        :class:`ConvTranspose`; same parameters and outputs).
    """

    nc: int = 1
    conv: str = "fast"

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
        """Maps latents ``(B, 100)`` to images ``(B, 28, 28, nc)`` in [-1, 1]."""
        h = nn.Dense(7 * 7 * 256, use_bias=False, kernel_init=_KERAS_INIT)(z)
        h = nn.leaky_relu(_keras_batch_norm(train)(h), 0.3)
        h = h.reshape(z.shape[0], 7, 7, 256)
        for features, stride in ((128, 1), (64, 2)):
            h = ConvTranspose(
                features,
                (5, 5),
                (stride, stride),
                "SAME",
                use_bias=False,
                kernel_init=_KERAS_INIT,
                formulation=self.conv,
            )(h)
            h = nn.leaky_relu(_keras_batch_norm(train)(h), 0.3)
        h = ConvTranspose(
            self.nc,
            (5, 5),
            (2, 2),
            "SAME",
            use_bias=False,
            kernel_init=_KERAS_INIT,
            formulation=self.conv,
        )(h)
        return jnp.tanh(h)


class DCGAN28Discriminator(nn.Module):
    """The TensorFlow DCGAN tutorial discriminator for 28x28 images.

    Conv 64 k5 s2, LeakyReLU 0.3, Dropout 0.3; Conv 128 k5 s2, LReLU, Dropout 0.3; Dense 1.
    Keras defaults: glorot uniform kernels, zero biases, SAME padding.

    Attributes:
      pack: PacGAN packing degree ``m``; the ``m`` images of a pack are concatenated along
        the channel axis.
      conv: formulation of the convolutions, ``"fast"`` or ``"lax"`` (see :class:`Conv`).
    """

    pack: int = 1
    conv: str = "fast"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps images ``(B, 28, 28, C)`` to logits ``(B // pack,)``."""
        h = _pack(x, self.pack, channels_last=True)
        for features in (64, 128):
            h = Conv(
                features, (5, 5), (2, 2), "SAME", kernel_init=_KERAS_INIT, formulation=self.conv
            )(h)
            h = nn.Dropout(rate=0.3, deterministic=not train)(nn.leaky_relu(h, 0.3))
        h = h.reshape(h.shape[0], -1)
        return nn.Dense(1, kernel_init=_KERAS_INIT)(h).reshape(-1)


# ----------------------------------------------------------------------------- dcgan32/64
_DCGAN_INIT = nn.initializers.normal(stddev=0.02)


def _dcgan_batch_norm(train: bool) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        scale_init=_normal_around_one(0.02),
    )


class DCGANGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2015) as in pytorch/examples ``dcgan``.

    ConvTranspose ``ngf * 2**(num_blocks-1)`` k4 s1 p0 on the 1x1 latent, then
    ``num_blocks - 1`` ConvTranspose k4 s2 p1 halving the width, each followed by BatchNorm and
    ReLU, then ConvTranspose nc k4 s2 p1 and tanh. No biases; weights N(0, 0.02²), BatchNorm
    scale N(1, 0.02²), momentum 0.9 (torch 0.1), epsilon 1e-5. ``num_blocks=4`` gives 64x64
    images (dcgan64), ``3`` gives 32x32 (dcgan32). Torch padding p becomes the
    ``lax.conv_transpose`` padding ``k - 1 - p`` with ``transpose_kernel=True``.

    Attributes:
      num_blocks: number of ConvTranspose + BatchNorm + ReLU blocks.
      nc: number of output channels.
      ngf: width of the last block.
      conv: formulation of the transposed convolutions, ``"fast"`` or ``"lax"`` (see
        :class:`ConvTranspose`; same parameters and outputs).
    """

    num_blocks: int = 4
    nc: int = 3
    ngf: int = 64
    conv: str = "fast"

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
        """Maps latents ``(B, nz)`` to images ``(B, 2**(num_blocks+2), same, nc)`` in [-1, 1]."""
        h = z.reshape(z.shape[0], 1, 1, z.shape[-1])
        for i in range(self.num_blocks):
            features = self.ngf * 2 ** (self.num_blocks - 1 - i)
            stride, pad = (1, 3) if i == 0 else (2, 2)  # torch p0 on 1x1, then p1
            h = ConvTranspose(
                features,
                (4, 4),
                (stride, stride),
                ((pad, pad), (pad, pad)),
                use_bias=False,
                kernel_init=_DCGAN_INIT,
                transpose_kernel=True,
                formulation=self.conv,
            )(h)
            h = nn.relu(_dcgan_batch_norm(train)(h))
        h = ConvTranspose(
            self.nc,
            (4, 4),
            (2, 2),
            ((2, 2), (2, 2)),
            use_bias=False,
            kernel_init=_DCGAN_INIT,
            transpose_kernel=True,
            formulation=self.conv,
        )(h)
        return jnp.tanh(h)


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator (Radford et al. 2015) as in pytorch/examples ``dcgan``.

    Conv ``ndf`` k4 s2 p1 and LeakyReLU 0.2, then ``num_blocks - 1`` Conv k4 s2 p1 doubling the
    width, each followed by BatchNorm and LeakyReLU 0.2, then Conv 1 k4 s1 p0 on the 4x4 map
    (the logit). No biases; weights N(0, 0.02²), BatchNorm scale N(1, 0.02²), momentum 0.9,
    epsilon 1e-5. ``num_blocks=4`` takes 64x64 images (dcgan64), ``3`` takes 32x32 (dcgan32).

    Attributes:
      num_blocks: number of stride-2 convolutions.
      ndf: width of the first convolution.
      pack: PacGAN packing degree ``m``; the ``m`` images of a pack are concatenated along
        the channel axis.
      conv: formulation of the convolutions, ``"fast"`` or ``"lax"`` (see :class:`Conv`).
    """

    num_blocks: int = 4
    ndf: int = 64
    pack: int = 1
    conv: str = "fast"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps images ``(B, S, S, C)``, ``S = 2**(num_blocks+2)``, to logits ``(B // pack,)``."""
        h = _pack(x, self.pack, channels_last=True)
        for i in range(self.num_blocks):
            h = Conv(
                self.ndf * 2**i,
                (4, 4),
                (2, 2),
                ((1, 1), (1, 1)),
                use_bias=False,
                kernel_init=_DCGAN_INIT,
                formulation=self.conv,
            )(h)
            if i > 0:
                h = _dcgan_batch_norm(train)(h)
            h = nn.leaky_relu(h, 0.2)
        h = Conv(1, (4, 4), (1, 1), "VALID", use_bias=False, kernel_init=_DCGAN_INIT)(h)
        return h.reshape(-1)


# ----------------------------------------------------------------------------- registry
@dataclasses.dataclass(frozen=True)
class GANModels:
    """A generator, a discriminator and what a trainer needs to know about them.

    Attributes:
      generator: ``generator.apply(vars, z, train=...)`` maps ``(B, latent_dim)`` latents to
        samples ``(B, *data_shape)``.
      discriminator: ``discriminator.apply(vars, x, train=...)`` maps ``(B, *data_shape)``
        samples to logits ``(B // pack,)``.
      latent_dim: size of the latent vector z.
      data_shape: per-example sample shape, e.g. ``(2,)``, ``(784,)`` or ``(32, 32, 3)``.
      output_range: the range of the generator's output activation.
      pack: PacGAN packing degree ``m`` of the discriminator (1 = no packing).
      prior: the latent prior: ``"normal"`` is N(0, I), ``"uniform"`` is U(-√3, √3) per
        coordinate (zero mean, unit variance, Goodfellow et al. 2014).
    """

    generator: nn.Module
    discriminator: nn.Module
    latent_dim: int
    data_shape: tuple[int, ...]
    output_range: tuple[float, float]
    pack: int
    prior: str = "normal"

    def __post_init__(self):
        if self.prior not in _LATENT_PRIORS:
            raise ValueError(f"unknown prior {self.prior!r}; known: {_LATENT_PRIORS}")

    def sample_latent(self, key: jax.Array, num: int) -> jax.Array:
        """Draws ``num`` latent vectors from the model's prior.

        Args:
          key: a typed PRNG key (``jax.random.key``).
          num: number of vectors.

        Returns:
          float32 array of shape ``(num, latent_dim)``.
        """
        shape = (num, self.latent_dim)
        if self.prior == "uniform":
            bound = math.sqrt(3.0)
            return jax.random.uniform(key, shape, jnp.float32, -bound, bound)
        return jax.random.normal(key, shape, jnp.float32)


def _require_image(name: str, data_shape: tuple[int, ...], size: int) -> int:
    if len(data_shape) != 3 or data_shape[:2] != (size, size) or data_shape[2] < 1:
        raise ValueError(f"{name} needs data_shape ({size}, {size}, C), got {data_shape}")
    return data_shape[2]


def build_models(name: str, *, data_shape: tuple[int, ...], pack: int = 1) -> GANModels:
    """Builds the generator and discriminator of a canonical GAN by name.

    Args:
      name: one of ``MODEL_NAMES``: ``"toy2d"`` (PacGAN 2-D, Lin et al. 2018), ``"mlp"``
        (Goodfellow et al. 2014), ``"dcgan28"`` (TensorFlow DCGAN tutorial), ``"dcgan32"`` and
        ``"dcgan64"`` (Radford et al. 2015).
      data_shape: per-example data shape. toy2d: ``(d,)``; mlp: any shape with 784 elements;
        dcgan28/32/64: ``(S, S, C)`` with S = 28/32/64 and any channel count C.
      pack: PacGAN packing degree ``m`` (Lin et al. 2018): D scores packs of ``m`` samples,
        so its batch must be divisible by ``m``.

    Returns:
      A ``GANModels``.

    Raises:
      ValueError: for an unknown name, a data shape the networks cannot produce, or
        ``pack < 1``.

    Example:
      >>> import jax
      >>> models = build_models("toy2d", data_shape=(2,), pack=2)
      >>> z = models.sample_latent(jax.random.key(0), 4)
      >>> g_vars = models.generator.init(jax.random.key(1), z, train=False)
      >>> fake = models.generator.apply(g_vars, z, train=False)
      >>> fake.shape
      (4, 2)
      >>> d_vars = models.discriminator.init(jax.random.key(2), fake, train=False)
      >>> models.discriminator.apply(d_vars, fake, train=False).shape
      (2,)
    """
    data_shape = tuple(int(s) for s in data_shape)
    if not isinstance(pack, int) or pack < 1:
        raise ValueError(f"pack must be a positive integer, got {pack!r}")
    if name == "toy2d":
        if len(data_shape) != 1 or data_shape[0] < 1:
            raise ValueError(f"toy2d needs a vector data_shape (d,), got {data_shape}")
        return GANModels(
            generator=Toy2dGenerator(data_dim=data_shape[0]),
            discriminator=Toy2dDiscriminator(pack=pack),
            latent_dim=2,
            data_shape=data_shape,
            output_range=(-math.inf, math.inf),
            pack=pack,
        )
    if name == "mlp":
        if math.prod(data_shape) != 784 or not data_shape:
            raise ValueError(f"mlp needs a data_shape with 784 elements, got {data_shape}")
        return GANModels(
            generator=MLPGenerator(data_shape=data_shape),
            discriminator=MLPDiscriminator(pack=pack),
            latent_dim=100,
            data_shape=data_shape,
            output_range=(0.0, 1.0),
            pack=pack,
            prior="uniform",
        )
    if name == "dcgan28":
        nc = _require_image(name, data_shape, 28)
        generator, discriminator = DCGAN28Generator(nc=nc), DCGAN28Discriminator(pack=pack)
    elif name in ("dcgan32", "dcgan64"):
        num_blocks = 3 if name == "dcgan32" else 4
        nc = _require_image(name, data_shape, 2 ** (num_blocks + 2))
        generator = DCGANGenerator(num_blocks=num_blocks, nc=nc)
        discriminator = DCGANDiscriminator(num_blocks=num_blocks, pack=pack)
    else:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    return GANModels(
        generator=generator,
        discriminator=discriminator,
        latent_dim=100,
        data_shape=data_shape,
        output_range=(-1.0, 1.0),
        pack=pack,
    )
