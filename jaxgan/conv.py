"""Convolution layers with fast kernels: ``Conv`` and ``ConvTranspose`` (Flax Linen, NHWC).

Drop-in replacements for ``nn.Conv`` and ``nn.ConvTranspose`` (2-D, no dilation or groups):
the same parameter names, shapes and initialisation, so parameter counts and checkpoints are
those of the plain layers, and outputs and gradients equal them up to float rounding. Only
the arrangement of the arithmetic differs, chosen per layer by ``formulation``:

* ``"fast"``: transposed convolutions run as the sub-pixel (phase) decomposition
  (:func:`conv_transpose_phases`) with the strided convolution they are the adjoint of as
  their backward pass (:func:`conv_transpose`); strided convolutions get the same fast
  input gradient, and im2col + matmul gradients on image layers (:func:`strided_conv`).
  XLA:CPU's own derivatives run dilated and weight-gradient convolutions 10-20x slower;
  docs/BENCHMARKS.md has the measurements.
* ``"lax"``: ``lax.conv_general_dilated`` / ``lax.conv_transpose`` and JAX's automatic
  derivatives, what ``nn.Conv`` and ``nn.ConvTranspose`` run.

The fast layers are ``jax.custom_jvp`` functions whose tangents are the linear transposes
of their fast gradients, so reverse mode runs those gradients and forward mode (``jax.jvp``,
``jax.jacfwd``, ``jax.hessian``, ``jax.linearize``) works through every formulation. This
module does no I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

__all__ = [
    "CONV_TRANSPOSE_FORMULATIONS",
    "Conv",
    "ConvTranspose",
    "conv_transpose",
    "conv_transpose_phases",
    "strided_conv",
]

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


def _tangent_of(backward: Callable, out_like: jax.Array, tangent: Any) -> Any:
    """The tangent ``J t`` of a bilinear layer, as the linear transpose of ``backward = J^T``.

    ``backward`` maps an output cotangent (shaped like ``out_like``) to the cotangent of one
    input, so its transpose maps that input's tangent to the output's. Written this way, a
    layer's reverse mode (JAX transposes the tangent once more) is ``backward`` itself, the
    fast gradient below, and forward mode (``jax.jvp``, ``jax.jacfwd``, Hessian-vector
    products) works through it too: every function here is made of plain ``lax`` operations.
    """
    (out,) = jax.linear_transpose(backward, jax.ShapeDtypeStruct(out_like.shape, out_like.dtype))(
        tangent
    )
    return out


def _bilinear_tangent(y: jax.Array, gradients, tangents) -> Any:
    """``J (dx, dk)`` from the two gradient functions; symbolic-zero tangents are skipped."""
    parts = [
        _tangent_of(gradient, y, t)
        for gradient, t in zip(gradients, tangents, strict=True)
        if not isinstance(t, SymbolicZero)
    ]
    if not parts:
        return SymbolicZero(jax.typeof(y).to_tangent_aval())
    return functools.reduce(jnp.add, parts)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
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
    (``forward="lax"``); the gradients are written through ``A`` itself: the input gradient
    is ``A g`` (a strided convolution of the output gradient ``g``) and the kernel gradient is
    that of ``<A g, x>``, one ``jax.vjp`` of ``A``. XLA:CPU's own derivatives of the
    lhs-dilated convolution run its dilated and weight-gradient convolutions 10-20x slower.

    A ``jax.custom_jvp`` whose tangent is the linear transpose of those gradients
    (:func:`_tangent_of`): reverse mode runs the gradients above, and forward mode
    (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) works as well.

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


def _conv_transpose_jvp(strides, pads, forward, primals, tangents):
    x, kernel = primals
    y = conv_transpose(x, kernel, strides, pads, forward)

    def x_grad(g):  # A g
        return _strided_conv(g, kernel, strides, pads)

    def kernel_grad(g):  # d<A g, x> / d kernel
        _, pullback = jax.vjp(lambda k: _strided_conv(g, k, strides, pads), kernel)
        return pullback(x)[0]

    return y, _bilinear_tangent(y, (x_grad, kernel_grad), tangents)


conv_transpose.defjvp(_conv_transpose_jvp, symbolic_zeros=True)

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


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def strided_conv(
    x: jax.Array, kernel: jax.Array, strides: tuple[int, int], pads: tuple[tuple[int, int], ...]
) -> jax.Array:
    """``lax.conv_general_dilated(x, kernel, strides, pads)`` (NHWC, HWIO), fast on XLA:CPU.

    The input gradient of a strided convolution is a transposed convolution, which
    XLA:CPU's own derivative runs as an lhs-dilated convolution; here it runs as the sub-pixel
    decomposition (:func:`conv_transpose_phases`) when the input has 16 or more channels,
    and the kernel gradient is JAX's own. With fewer input channels (an image layer) both
    gradients come from one im2col matrix of the input's patches and a matmul each.

    A ``jax.custom_jvp`` whose tangent is the linear transpose of those gradients
    (:func:`_tangent_of`), so forward-mode autodiff works through it too.
    """
    return jax.lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_NHWC)


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


def _strided_conv_gradients(x, kernel, strides, pads, out_size):
    """``(x_grad, kernel_grad)``: the two functions of the output gradient ``g``."""
    kh, kw, c_in, c_out = kernel.shape
    if c_in < 16:
        # Few input channels (an image layer): im2col + one matmul for each gradient.
        # XLA:CPU's own derivatives of these convolutions run at 50-100 GFLOP/s (measured:
        # dcgan64's 3-channel layer, forward + both gradients, 28.4 -> 8.0 ms).
        def patches_of(u):
            return _strided_patches(u, (kh, kw), strides, pads, out_size)

        def x_grad(g):
            _, unpatch = jax.vjp(patches_of, x)
            return unpatch(g.reshape(-1, c_out) @ kernel.reshape(kh * kw * c_in, c_out).T)[0]

        def kernel_grad(g):
            return (patches_of(x).T @ g.reshape(-1, c_out)).reshape(kernel.shape)

        return x_grad, kernel_grad

    def kernel_grad(g):
        _, pullback = jax.vjp(
            lambda k: jax.lax.conv_general_dilated(x, k, strides, pads, dimension_numbers=_NHWC),
            kernel,
        )
        return pullback(g)[0]

    t_kernel = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)  # correlation kernel of the adjoint
    t_pads = tuple(
        _transpose_of_conv(x.shape[i + 1], kernel.shape[i], strides[i], *pads[i]) for i in (0, 1)
    )
    plans = [_phase_plan(out_size[i], kernel.shape[i], strides[i], *t_pads[i]) for i in (0, 1)]

    def x_grad(g):
        if None not in plans:
            return conv_transpose_phases(g, t_kernel, strides, t_pads)
        return jax.lax.conv_transpose(g, t_kernel, strides, t_pads, dimension_numbers=_NHWC)

    return x_grad, kernel_grad


def _strided_conv_jvp(strides, pads, primals, tangents):
    x, kernel = primals
    y = strided_conv(x, kernel, strides, pads)
    gradients = _strided_conv_gradients(x, kernel, strides, pads, y.shape[1:3])
    return y, _bilinear_tangent(y, gradients, tangents)


strided_conv.defjvp(_strided_conv_jvp, symbolic_zeros=True)


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
