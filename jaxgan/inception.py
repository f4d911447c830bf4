"""The FID Inception-v3 network (Flax Linen): pytorch-fid's ``fid_inception_v3()``, layer for layer.

The network of FID (Heusel et al. 2017) and of the Inception Score (Salimans et al. 2016):
the TensorFlow graph ``inception-2015-12-05`` as pytorch-fid 0.3.0 ports it to PyTorch.
That is torchvision's ``Inception3`` with 1008 classes and no auxiliary head, in which

* ``Mixed_5b``..``Mixed_5d`` (InceptionA), ``Mixed_6b``..``Mixed_6e`` (InceptionC) and
  ``Mixed_7b`` (the first InceptionE) average-pool their pool branch without counting the
  zero padding (``count_include_pad=False``, TensorFlow's average pool);
* ``Mixed_7c`` (the second InceptionE) max-pools its pool branch;
* every convolution is torchvision's ``BasicConv2d``: a convolution without bias, BatchNorm
  (ε = 0.001) and ReLU; InceptionB (``Mixed_6a``) and InceptionD (``Mixed_7a``) are
  torchvision's; the stem's max-pools are 3x3, stride 2, unpadded.

The outputs are the 2048 ``pool3`` features (the final global average pool, FID's
features), the 1008 ``logits`` of the fully connected layer, and ``logits_unbiased``, the
same layer without its bias, which the original Inception Score code and torch-fidelity
turn into the class probabilities of IS.

Input, as pytorch-fid's ``InceptionV3(resize_input=True, normalize_input=True)`` takes it:
NHWC float images in ``[0, 1]`` (or any ``input_range``: jaxgan's images are in
``[-1, 1]``, pass ``input_range=(-1.0, 1.0)``), 1 or 3 channels (one channel is repeated to
three), resized to 299x299 bilinearly as ``F.interpolate(mode="bilinear",
align_corners=False)`` does (no antialiasing, also when shrinking), then scaled to
``[-1, 1]``. Values are not clipped.

* :func:`params_from_torch`: pytorch-fid's state dict (names and layouts of
  ``pt_inception-2015-12-05-6726825d.pth``; read the file with :mod:`jaxgan.pth`) to the
  Flax variables.
* :func:`preprocess`, :func:`network_outputs`, :func:`inception_outputs` (also named
  :func:`apply`): jitted; the last is the first two in one program.
  :func:`batched_outputs` runs many images in batches of one shape (one compilation).

Inference only: BatchNorm uses its running statistics; everything is float32 with the
convolutions and the fully connected layer at ``Precision.HIGHEST`` (no TF32 or bfloat16
passes on accelerators). This module does no I/O.

References:
  Szegedy et al., Rethinking the Inception architecture for computer vision, 2016.
  Heusel et al., GANs trained by a two time-scale update rule converge to a local Nash
  equilibrium, 2017. Seitzer, pytorch-fid 0.3.0 (``pytorch_fid/inception.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "FEATURE_DIM",
    "INPUT_SIZE",
    "NUM_CLASSES",
    "NUM_PARAMS",
    "FIDInceptionV3",
    "batched_outputs",
    "inception_outputs",
    "network_outputs",
    "params_from_torch",
    "preprocess",
    "torch_state_dict_shapes",
]

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008
NUM_PARAMS = 23_850_960
"""Parameters of pytorch-fid's network, BatchNorm's running statistics not counted:
torchvision's 1000-class ``inception_v3`` without the auxiliary head has 23,834,568 and the
1008-class layer adds 8 x 2048 weights and 8 biases. With the 34,432 running means and
variances the state dict holds 23,885,392 numbers (not counting ``num_batches_tracked``)."""

_HIGHEST = jax.lax.Precision.HIGHEST
_BN_EPSILON = 1e-3


# ============================================================================
# The network
# ============================================================================


class BasicConv2d(nn.Module):
    """torchvision's ``BasicConv2d``: convolution without bias, BatchNorm (ε 0.001), ReLU."""

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad_h, pad_w = self.padding
        x = nn.Conv(
            self.features,
            self.kernel_size,
            strides=self.strides,
            padding=((pad_h, pad_h), (pad_w, pad_w)),
            use_bias=False,
            dtype=jnp.float32,
            precision=_HIGHEST,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=_BN_EPSILON, name="bn")(x)
        return nn.relu(x)


def _avg_pool_same(x: jax.Array) -> jax.Array:
    """3x3, stride 1, padding 1, not counting the padding (TensorFlow's average pool)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_same(x: jax.Array) -> jax.Array:
    """3x3, stride 1, padding 1 (padded with -inf, as ``F.max_pool2d``)."""
    return nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))


def _max_pool_reduce(x: jax.Array) -> jax.Array:
    """3x3, stride 2, unpadded."""
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
    """``FIDInceptionA`` (Mixed_5b..5d): 1x1, 5x5, double 3x3 and pool branches."""

    pool_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        branch1x1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)
        branch5x5 = BasicConv2d(48, (1, 1), name="branch5x5_1")(x)
        branch5x5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(branch5x5)
        branch3x3dbl = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        branch3x3dbl = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(branch3x3dbl)
        branch3x3dbl = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(branch3x3dbl)
        branch_pool = BasicConv2d(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_same(x))
        return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
    """torchvision's ``InceptionB`` (Mixed_6a): the 35x35 -> 17x17 reduction."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        branch3x3 = BasicConv2d(384, (3, 3), strides=(2, 2), name="branch3x3")(x)
        branch3x3dbl = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        branch3x3dbl = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(branch3x3dbl)
        branch3x3dbl = BasicConv2d(96, (3, 3), strides=(2, 2), name="branch3x3dbl_3")(branch3x3dbl)
        return jnp.concatenate([branch3x3, branch3x3dbl, _max_pool_reduce(x)], axis=-1)


class InceptionC(nn.Module):
    """``FIDInceptionC`` (Mixed_6b..6e): factorised 7x7 branches."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c7 = self.channels_7x7
        row, col = {"padding": (0, 3)}, {"padding": (3, 0)}  # a 1x7 and a 7x1 convolution
        branch1x1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)
        branch7x7 = BasicConv2d(c7, (1, 1), name="branch7x7_1")(x)
        branch7x7 = BasicConv2d(c7, (1, 7), **row, name="branch7x7_2")(branch7x7)
        branch7x7 = BasicConv2d(192, (7, 1), **col, name="branch7x7_3")(branch7x7)
        dbl = BasicConv2d(c7, (1, 1), name="branch7x7dbl_1")(x)
        dbl = BasicConv2d(c7, (7, 1), **col, name="branch7x7dbl_2")(dbl)
        dbl = BasicConv2d(c7, (1, 7), **row, name="branch7x7dbl_3")(dbl)
        dbl = BasicConv2d(c7, (7, 1), **col, name="branch7x7dbl_4")(dbl)
        dbl = BasicConv2d(192, (1, 7), **row, name="branch7x7dbl_5")(dbl)
        branch_pool = BasicConv2d(192, (1, 1), name="branch_pool")(_avg_pool_same(x))
        return jnp.concatenate([branch1x1, branch7x7, dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
    """torchvision's ``InceptionD`` (Mixed_7a): the 17x17 -> 8x8 reduction."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        branch3x3 = BasicConv2d(192, (1, 1), name="branch3x3_1")(x)
        branch3x3 = BasicConv2d(320, (3, 3), strides=(2, 2), name="branch3x3_2")(branch3x3)
        branch7x7x3 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
        branch7x7x3 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(branch7x7x3)
        branch7x7x3 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(branch7x7x3)
        branch7x7x3 = BasicConv2d(192, (3, 3), strides=(2, 2), name="branch7x7x3_4")(branch7x7x3)
        return jnp.concatenate([branch3x3, branch7x7x3, _max_pool_reduce(x)], axis=-1)


class InceptionE(nn.Module):
    """``FIDInceptionE_1`` (``pool="avg"``, Mixed_7b) and ``FIDInceptionE_2`` (``"max"``, 7c)."""

    pool: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {self.pool!r}")
        row, col = {"padding": (0, 1)}, {"padding": (1, 0)}  # a 1x3 and a 3x1 convolution
        branch1x1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv2d(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate(
            [
                BasicConv2d(384, (1, 3), **row, name="branch3x3_2a")(b3),
                BasicConv2d(384, (3, 1), **col, name="branch3x3_2b")(b3),
            ],
            axis=-1,
        )
        dbl = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
        dbl = BasicConv2d(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(dbl)
        dbl = jnp.concatenate(
            [
                BasicConv2d(384, (1, 3), **row, name="branch3x3dbl_3a")(dbl),
                BasicConv2d(384, (3, 1), **col, name="branch3x3dbl_3b")(dbl),
            ],
            axis=-1,
        )
        pooled = _avg_pool_same(x) if self.pool == "avg" else _max_pool_same(x)
        branch_pool = BasicConv2d(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([branch1x1, b3, dbl, branch_pool], axis=-1)


class _Logits(nn.Module):
    """torch's ``Linear`` as ``(x W + b, x W)``: the logits with and without the bias."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        unbiased = jnp.dot(x, kernel, precision=_HIGHEST)
        return unbiased + bias[None, :], unbiased


class FIDInceptionV3(nn.Module):
    """pytorch-fid's ``fid_inception_v3()`` on preprocessed images (see :func:`preprocess`).

    Submodules carry torchvision's names (``Conv2d_1a_3x3``, ``Mixed_5b``, ...,
    ``fc``), so :func:`params_from_torch` is a renaming. Any input of at least 75x75
    pixels runs; FID's protocol feeds 299x299.

    Attributes:
      num_classes: outputs of the fully connected layer (1008 in the TensorFlow graph).
    """

    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        """Runs the network.

        Args:
          x: images ``[N, H, W, 3]`` scaled to ``[-1, 1]``.

        Returns:
          ``{"pool3": [N, 2048], "logits": [N, num_classes], "logits_unbiased": [N,
          num_classes]}``, float32.
        """
        x = BasicConv2d(32, (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_reduce(x)
        x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_reduce(x)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        x = InceptionC(128, name="Mixed_6b")(x)
        x = InceptionC(160, name="Mixed_6c")(x)
        x = InceptionC(160, name="Mixed_6d")(x)
        x = InceptionC(192, name="Mixed_6e")(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE("avg", name="Mixed_7b")(x)
        x = InceptionE("max", name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        logits, logits_unbiased = _Logits(self.num_classes, name="fc")(pool3)
        return {"pool3": pool3, "logits": logits, "logits_unbiased": logits_unbiased}


# ============================================================================
# Inputs and outputs
# ============================================================================


@functools.partial(jax.jit, static_argnames=("input_range",))
def preprocess(images: ArrayLike, *, input_range: tuple[float, float] = (0.0, 1.0)) -> jax.Array:
    """Images to the network's input, as pytorch-fid's ``InceptionV3`` prepares them.

    ``input_range`` is mapped to ``[0, 1]``; one channel is repeated to three; the
    images are resized to 299x299 with ``jax.image.resize(method="linear",
    antialias=False)``, which is ``F.interpolate(mode="bilinear", align_corners=False)``
    both when enlarging and when shrinking (half-pixel centres, the two nearest pixels,
    the border pixel repeated); then ``2x - 1``.

    Args:
      images: ``[N, H, W, C]`` with C 1 or 3, values in ``input_range``.
      input_range: the pixel range of ``images`` (``(-1.0, 1.0)`` for jaxgan's samples).

    Returns:
      ``[N, 299, 299, 3]`` float32 in ``[-1, 1]``.
    """
    x = jnp.asarray(images, jnp.float32)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"images [N, H, W, 1 or 3] needed, got shape {x.shape}")
    low, high = (float(v) for v in input_range)
    if not high > low:
        raise ValueError(f"input_range needs low < high, got {input_range}")
    if (low, high) != (0.0, 1.0):
        x = (x - low) / (high - low)
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    x = jax.image.resize(
        x, (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3), method="linear", antialias=False
    )
    return 2.0 * x - 1.0


@jax.jit
def network_outputs(variables: Mapping, x: ArrayLike) -> dict[str, jax.Array]:
    """:class:`FIDInceptionV3` in inference mode on preprocessed images ``[N, H, W, 3]``.

    Returns:
      ``{"pool3": [N, 2048], "logits": [N, 1008], "logits_unbiased": [N, 1008]}``.
    """
    return FIDInceptionV3().apply(variables, jnp.asarray(x, jnp.float32))


@functools.partial(jax.jit, static_argnames=("input_range",))
def inception_outputs(
    variables: Mapping, images: ArrayLike, *, input_range: tuple[float, float] = (0.0, 1.0)
) -> dict[str, jax.Array]:
    """:func:`preprocess` then :func:`network_outputs`, in one program.

    Args:
      variables: from :func:`params_from_torch`.
      images: ``[N, H, W, 1 or 3]`` in ``input_range``.
      input_range: the pixel range of ``images``.

    Returns:
      ``{"pool3": [N, 2048], "logits": [N, 1008], "logits_unbiased": [N, 1008]}``.
    """
    return network_outputs(variables, preprocess(images, input_range=input_range))


def batched_outputs(
    variables: Mapping,
    images: ArrayLike,
    *,
    batch_size: int = 100,
    input_range: tuple[float, float] = (0.0, 1.0),
) -> dict[str, np.ndarray]:
    """:func:`inception_outputs` over many images, ``batch_size`` at a time.

    The last batch is padded to ``batch_size`` (and the padding dropped), so every call
    runs one compiled program.

    Args:
      variables: from :func:`params_from_torch`.
      images: ``[N, H, W, 1 or 3]`` in ``input_range`` (a NumPy array stays on the host
        until its batch runs).
      batch_size: images per program.
      input_range: the pixel range of ``images``.

    Returns:
      ``{"pool3": [N, 2048], "logits": [N, 1008], "logits_unbiased": [N, 1008]}``, NumPy
      float32.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size >= 1 needed, got {batch_size}")
    num = len(images)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, num, batch_size):
        batch = np.asarray(images[start : start + batch_size], np.float32)
        size = len(batch)
        if size < batch_size:
            pad = np.zeros((batch_size - size, *batch.shape[1:]), np.float32)
            batch = np.concatenate([batch, pad])
        out = inception_outputs(variables, batch, input_range=input_range)
        for name, value in out.items():
            parts.setdefault(name, []).append(np.asarray(value)[:size])
    if not parts:
        raise ValueError("no images")
    return {name: np.concatenate(values) for name, values in parts.items()}


# ============================================================================
# pytorch-fid's state dict
# ============================================================================

_BN_NAMES = {  # torch name -> (Flax collection, Flax name)
    "weight": ("params", "scale"),
    "bias": ("params", "bias"),
    "running_mean": ("batch_stats", "mean"),
    "running_var": ("batch_stats", "var"),
}


@functools.cache
def _layout() -> dict[str, tuple[str, tuple[str, ...], tuple[int, ...]]]:
    """``{torch key: (Flax collection, Flax path, Flax shape)}`` of the whole network."""
    shapes = jax.eval_shape(
        FIDInceptionV3().init, jax.random.key(0), jnp.zeros((1, 75, 75, 3), jnp.float32)
    )
    layout = {}
    for collection, tree in shapes.items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            names = tuple(entry.key for entry in path)
            *module, leaf_name = names
            if module[-1] == "bn":
                torch_leaf = {v: k for k, v in _BN_NAMES.items()}[(collection, leaf_name)]
            else:  # conv or fc
                torch_leaf = {"kernel": "weight", "bias": "bias"}[leaf_name]
            layout[".".join([*module, torch_leaf])] = (collection, names, tuple(leaf.shape))
    return layout


def _torch_shape(flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(flax_shape) == 4:  # HWIO -> OIHW
        return (flax_shape[3], flax_shape[2], flax_shape[0], flax_shape[1])
    if len(flax_shape) == 2:  # [in, out] -> [out, in]
        return flax_shape[::-1]
    return flax_shape


def torch_state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """The keys and shapes of pytorch-fid's state dict, sorted by key.

    BatchNorm's ``num_batches_tracked`` counters, which newer torch writes and the
    network does not use, are not listed (:func:`params_from_torch` accepts them).

    Example:
      >>> shapes = torch_state_dict_shapes()
      >>> len(shapes), shapes["Conv2d_1a_3x3.conv.weight"], shapes["fc.weight"]
      (472, (32, 3, 3, 3), (1008, 2048))
    """
    return {key: _torch_shape(shape) for key, (_, _, shape) in sorted(_layout().items())}


def params_from_torch(state_dict: Mapping[str, ArrayLike]) -> dict[str, dict]:
    """pytorch-fid's state dict to the variables of :class:`FIDInceptionV3`.

    Convolution weights go from torch's ``[out, in, h, w]`` to Flax's ``[h, w, in, out]``,
    the fully connected weight is transposed, BatchNorm's ``weight``/``bias`` become
    ``scale``/``bias`` (``params``) and ``running_mean``/``running_var`` become
    ``mean``/``var`` (``batch_stats``). Everything is cast to float32.

    Args:
      state_dict: ``{torch key: array}``, e.g. :func:`jaxgan.pth.read_state_dict` of
        ``pt_inception-2015-12-05-6726825d.pth``. ``*.bn.num_batches_tracked`` entries
        may be present and are ignored.

    Returns:
      ``{"params": ..., "batch_stats": ...}`` for :func:`network_outputs`.

    Raises:
      ValueError: keys are missing or unexpected, or a shape is wrong (the message
        names them).
    """
    layout = _layout()
    keys = set(state_dict)
    ignored = {
        k
        for k in keys
        if k.endswith(".num_batches_tracked")
        and k.removesuffix(".num_batches_tracked") + ".running_mean" in layout
    }
    missing, unexpected = sorted(set(layout) - keys), sorted(keys - set(layout) - ignored)
    if missing or unexpected:
        raise ValueError(
            "not pytorch-fid's Inception-v3 state dict: "
            f"{len(missing)} missing keys {missing[:8]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:8]}"
        )
    arrays = {key: np.asarray(state_dict[key]) for key in layout}
    wrong = [
        f"{key} {arrays[key].shape} (expected {_torch_shape(shape)})"
        for key, (_, _, shape) in sorted(layout.items())
        if arrays[key].shape != _torch_shape(shape)
    ]
    if wrong:
        raise ValueError(f"wrong shapes in the state dict: {', '.join(wrong[:8])}")
    variables: dict[str, dict] = {"params": {}, "batch_stats": {}}
    for key, (collection, path, _) in layout.items():
        value = arrays[key].astype(np.float32)
        if value.ndim == 4:
            value = value.transpose(2, 3, 1, 0)
        elif value.ndim == 2:
            value = value.T
        node = variables[collection]
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = jnp.asarray(value)
    return variables
