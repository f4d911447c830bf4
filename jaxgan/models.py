"""Canonical GAN networks (Flax Linen): a generator G and a discriminator D per model name.

Every G maps a latent batch ``z`` of shape ``(B, latent_dim)`` to samples ``(B, *data_shape)``;
every D maps ``(B, *data_shape)`` to one logit per *pack* of ``m`` samples, shape ``(B // m,)``
(PacGAN packing, Lin et al. 2018; ``m = 1`` is an ordinary D). The sigmoid of the original
papers' D is folded into the loss. Both take ``train`` as a keyword: in train mode BatchNorm
normalises with batch statistics and updates its running averages in the ``"batch_stats"``
collection (apply with ``mutable=["batch_stats"]``) and dropout is active (rng collection
``"dropout"``).

Models (layer-by-layer specs in ``docs/MODELS.md``):

* ``toy2d``: PacGAN's 2-D mixture networks (Lin et al. 2018).
* ``mlp``: Goodfellow et al. 2014, MNIST (goodfeli/adversarial ``mnist.yaml``).
* ``dcgan28``: the TensorFlow DCGAN tutorial (28x28).
* ``dcgan32``, ``dcgan64``: Radford et al. 2015 as in pytorch/examples ``dcgan`` (32x32, 64x64).

The convolution layers and their fast kernels live in :mod:`jaxgan.conv`; ``Conv`` and
``ConvTranspose`` are re-exported here. This module does no I/O.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan import resnets
from jaxgan.conv import Conv, ConvTranspose

__all__ = [
    "CONDITIONINGS",
    "CONV_FORMULATIONS",
    "CONV_MODELS",
    "D_NORMS",
    "MODEL_NAMES",
    "Conv",
    "ConvTranspose",
    "DCGAN28Discriminator",
    "DCGAN28Generator",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "GANModels",
    "MLPDiscriminator",
    "MLPGenerator",
    "Maxout",
    "Toy2dDiscriminator",
    "Toy2dGenerator",
    "build_models",
    "truncate_latent",
]

MODEL_NAMES = ("toy2d", "mlp", "dcgan28", "dcgan32", "dcgan64", *resnets.RESNET_NAMES)
CONV_FORMULATIONS = ("fast", "lax")
CONV_MODELS = ("dcgan28", "dcgan32", "dcgan64", *resnets.RESNET_NAMES)  # the conv= users
D_NORMS = ("batch", "layer", "none")
CONDITIONINGS = ("none", "projection", "acgan")
SPECTRAL_NORMS = ("default", "none", "d", "g_and_d")
_CONDITIONAL_MODELS = ("dcgan28", *resnets.RESNET_NAMES)
_SPECTRAL_MODELS = ("dcgan28", *resnets.RESNET_NAMES)

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
      dropout: whether to apply dropout in train mode; the benchmark of docs/MODELS.md turns it
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
      num_classes: 0, or the number of classes of a class-conditional G: every BatchNorm
        is then class-conditional (:class:`jaxgan.resnets.ConditionalBatchNorm`: per-class
        gain and bias, as Miyato & Koyama 2018 and BigGAN), and G takes labels ``y``.
      spectral_norm: spectral normalization of every Dense and transposed convolution.
    """

    nc: int = 1
    conv: str = "fast"
    num_classes: int = 0
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, z: jax.Array, y: jax.Array | None = None, *, train: bool) -> jax.Array:
        """Maps latents ``(B, 100)`` (and labels ``(B,)`` when conditional) to images
        ``(B, 28, 28, nc)`` in [-1, 1]."""
        _check_labels(self, y)
        sn = functools.partial(resnets.spectral_normed, enabled=self.spectral_norm, train=train)

        def norm(h):
            if self.num_classes:
                return resnets.ConditionalBatchNorm(self.num_classes, momentum=0.99, epsilon=1e-3)(
                    h, y, train=train
                )
            return _keras_batch_norm(train)(h)

        h = sn(nn.Dense(7 * 7 * 256, use_bias=False, kernel_init=_KERAS_INIT), z)
        h = nn.leaky_relu(norm(h), 0.3)
        h = h.reshape(z.shape[0], 7, 7, 256)
        for features, stride in ((128, 1), (64, 2)):
            layer = ConvTranspose(
                features,
                (5, 5),
                (stride, stride),
                "SAME",
                use_bias=False,
                kernel_init=_KERAS_INIT,
                formulation=self.conv,
            )
            h = nn.leaky_relu(norm(sn(layer, h)), 0.3)
        layer = ConvTranspose(
            self.nc,
            (5, 5),
            (2, 2),
            "SAME",
            use_bias=False,
            kernel_init=_KERAS_INIT,
            formulation=self.conv,
        )
        return jnp.tanh(sn(layer, h))


class DCGAN28Discriminator(nn.Module):
    """The TensorFlow DCGAN tutorial discriminator for 28x28 images.

    Conv 64 k5 s2, LeakyReLU 0.3, Dropout 0.3; Conv 128 k5 s2, LReLU, Dropout 0.3; Dense 1.
    Keras defaults: glorot uniform kernels, zero biases, SAME padding.

    Attributes:
      pack: PacGAN packing degree ``m``; the ``m`` images of a pack are concatenated along
        the channel axis.
      conv: formulation of the convolutions, ``"fast"`` or ``"lax"`` (see :class:`Conv`).
      num_classes: 0, or the number of classes of a class-conditional D.
      conditioning: ``"none"``; ``"projection"`` (Miyato & Koyama 2018): the logit is
        ``ψ(φ(x)) + ⟨embed(y), φ(x)⟩`` for the flattened features φ, and D takes labels
        ``y``; ``"acgan"`` (Odena et al. 2017): D also returns class logits ``(B, C)`` from
        a Dense head on φ.
      spectral_norm: spectral normalization (Miyato et al. 2018) of every convolution,
        Dense and embedding.
    """

    pack: int = 1
    conv: str = "fast"
    num_classes: int = 0
    conditioning: str = "none"
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array | None = None, *, train: bool):
        """Maps images ``(B, 28, 28, C)`` (and labels ``(B,)`` for a projection D) to
        logits ``(B // pack,)``; ACGAN's D returns ``(logits, class_logits)``."""
        _check_labels(self, y, needed=self.conditioning == "projection")
        sn = functools.partial(resnets.spectral_normed, enabled=self.spectral_norm, train=train)
        h = _pack(x, self.pack, channels_last=True)
        for features in (64, 128):
            layer = Conv(
                features, (5, 5), (2, 2), "SAME", kernel_init=_KERAS_INIT, formulation=self.conv
            )
            h = nn.Dropout(rate=0.3, deterministic=not train)(nn.leaky_relu(sn(layer, h), 0.3))
        h = h.reshape(h.shape[0], -1)
        logits = sn(nn.Dense(1, kernel_init=_KERAS_INIT), h).reshape(-1)
        if self.conditioning == "projection":
            embedding = sn(nn.Embed(self.num_classes, h.shape[-1], embedding_init=_KERAS_INIT), y)
            return logits + jnp.sum(embedding * h, axis=-1)
        if self.conditioning == "acgan":
            return logits, sn(nn.Dense(self.num_classes, kernel_init=_KERAS_INIT), h)
        return logits


def _check_labels(module: nn.Module, y: jax.Array | None, needed: bool | None = None) -> None:
    """Refuses labels missing from, or given to, a network (conditional or not)."""
    needed = module.num_classes > 0 if needed is None else needed
    name = type(module).__name__
    if needed and y is None:
        raise ValueError(f"{name} is class-conditional: call it with labels y (B,) int")
    if not needed and y is not None:
        raise ValueError(f"{name} takes no labels (num_classes={module.num_classes})")


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
      norm: ``"batch"`` (the paper's BatchNorm), ``"layer"`` (LayerNorm over each example's
        H, W and C, as WGAN-GP's critic: each logit depends on its own input alone, which
        gradient penalties need) or ``"none"``.
    """

    num_blocks: int = 4
    ndf: int = 64
    pack: int = 1
    conv: str = "fast"
    norm: str = "batch"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Maps images ``(B, S, S, C)``, ``S = 2**(num_blocks+2)``, to logits ``(B // pack,)``."""
        if self.norm not in D_NORMS:
            raise ValueError(f"unknown D normalisation {self.norm!r}; choose one of {D_NORMS}")
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
            if i > 0 and self.norm == "batch":
                h = _dcgan_batch_norm(train)(h)
            elif i > 0 and self.norm == "layer":  # per example, over H, W and C
                h = nn.LayerNorm(epsilon=1e-5, reduction_axes=(-3, -2, -1))(h)
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
      num_classes: 0 for an unconditional GAN; otherwise the number of classes ``C``: G is
        applied as ``generator.apply(vars, z, y, train=...)`` with integer labels ``y`` of
        shape ``(B,)`` in ``[0, C)``, and D as ``discriminator.apply(vars, x, y, ...)``
        when ``conditioning == "projection"``.
      conditioning: how D uses the class: ``"none"`` (unconditional), ``"projection"``
        (Miyato & Koyama 2018: D takes ``y``) or ``"acgan"`` (Odena et al. 2017: D takes
        no label and returns ``(logits, class_logits (B, C))``).
    """

    generator: nn.Module
    discriminator: nn.Module
    latent_dim: int
    data_shape: tuple[int, ...]
    output_range: tuple[float, float]
    pack: int
    prior: str = "normal"
    num_classes: int = 0
    conditioning: str = "none"

    def __post_init__(self):
        if self.prior not in _LATENT_PRIORS:
            raise ValueError(f"unknown prior {self.prior!r}; known: {_LATENT_PRIORS}")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown conditioning {self.conditioning!r}; known: {CONDITIONINGS}")
        if (self.num_classes > 0) != (self.conditioning != "none"):
            raise ValueError(
                f"conditioning={self.conditioning!r} with num_classes={self.num_classes}: a "
                "class-conditional GAN needs both a number of classes and a conditioning mode"
            )

    @property
    def conditional(self) -> bool:
        """True for a class-conditional GAN (G takes labels)."""
        return self.num_classes > 0

    @property
    def d_takes_labels(self) -> bool:
        """True if D is applied with the labels (the projection discriminator)."""
        return self.conditioning == "projection"

    def sample_latent(
        self, key: jax.Array, num: int, *, truncation: float | None = None
    ) -> jax.Array:
        """Draws ``num`` latent vectors from the model's prior.

        Args:
          key: a typed PRNG key (``jax.random.key``).
          num: number of vectors.
          truncation: None, or a threshold ``T > 0`` for the truncation trick (Brock et
            al. 2019) of a normal prior: every coordinate whose magnitude exceeds ``T`` is
            drawn again (:func:`truncate_latent`), so the coordinates inside ``[-T, T]``
            are those of the untruncated draw with the same key.

        Returns:
          float32 array of shape ``(num, latent_dim)``.

        Raises:
          ValueError: truncation of the uniform prior (it is bounded already), or ``T <= 0``.
        """
        shape = (num, self.latent_dim)
        if self.prior == "uniform":
            if truncation is not None:
                raise ValueError(
                    "truncation applies to a normal prior; this generator's prior is uniform "
                    "on [-√3, √3] (mlp), bounded already: sample it without --truncation"
                )
            bound = math.sqrt(3.0)
            return jax.random.uniform(key, shape, jnp.float32, -bound, bound)
        z = jax.random.normal(key, shape, jnp.float32)
        return z if truncation is None else truncate_latent(z, key, truncation)

    def sample_labels(self, key: jax.Array, num: int) -> jax.Array:
        """``num`` class labels, int32, uniform over ``[0, num_classes)``."""
        if not self.conditional:
            raise ValueError("sample_labels: this GAN is not class-conditional")
        return jax.random.randint(key, (num,), 0, self.num_classes, jnp.int32)


def truncate_latent(z: jax.Array, key: jax.Array, threshold: float) -> jax.Array:
    """The truncation trick: redraws every coordinate of ``z`` with ``|z| > threshold``.

    Each round ``i`` draws a fresh N(0, 1) array from ``fold_in(key, i + 1)`` and puts it
    where ``z`` is still outside ``[-threshold, threshold]``, until no coordinate is (a
    ``lax.while_loop``: jit-able, and a pure function of the key). The result is
    distributed as a normal truncated to the interval, and the coordinates of ``z`` that
    were inside it are kept.

    Raises:
      ValueError: ``threshold`` is not a positive number.
    """
    threshold = float(threshold)
    if not threshold > 0 or not math.isfinite(threshold):
        raise ValueError(f"truncation must be a positive threshold, got {threshold}")

    def outside(z):
        return jnp.abs(z) > threshold

    def redraw(carry):
        i, z = carry
        fresh = jax.random.normal(jax.random.fold_in(key, i + 1), z.shape, z.dtype)
        return i + 1, jnp.where(outside(z), fresh, z)

    _, z = jax.lax.while_loop(lambda c: jnp.any(outside(c[1])), redraw, (jnp.int32(0), z))
    return z


def _require_image(name: str, data_shape: tuple[int, ...], size: int) -> int:
    if len(data_shape) != 3 or data_shape[:2] != (size, size) or data_shape[2] < 1:
        raise ValueError(f"{name} needs data_shape ({size}, {size}, C), got {data_shape}")
    return data_shape[2]


def build_models(
    name: str,
    *,
    data_shape: tuple[int, ...],
    pack: int = 1,
    conv: str = "fast",
    d_norm: str = "batch",
    num_classes: int = 0,
    conditioning: str = "none",
    spectral_norm: str = "default",
    attention: int = 0,
) -> GANModels:
    """Builds the generator and discriminator of a canonical GAN by name.

    Args:
      name: one of ``MODEL_NAMES``: ``"toy2d"`` (PacGAN 2-D, Lin et al. 2018), ``"mlp"``
        (Goodfellow et al. 2014), ``"dcgan28"`` (TensorFlow DCGAN tutorial), ``"dcgan32"`` and
        ``"dcgan64"`` (Radford et al. 2015).
      data_shape: per-example data shape. toy2d: ``(d,)``; mlp: any shape with 784 elements;
        dcgan28/32/64: ``(S, S, C)`` with S = 28/32/64 and any channel count C.
      pack: PacGAN packing degree ``m`` (Lin et al. 2018): D scores packs of ``m`` samples,
        so its batch must be divisible by ``m``.
      conv: the DCGANs' convolution formulation, ``"fast"`` or ``"lax"`` (:mod:`jaxgan.conv`).
      d_norm: the normalisation of dcgan32/dcgan64's D, ``"batch"``, ``"layer"`` or
        ``"none"`` (the other discriminators have no BatchNorm: only ``"batch"``, their
        own layout, is accepted for them).
      num_classes: 0 (unconditional) or the number of classes of a class-conditional GAN
        (dcgan28 and the SN-ResNets): G's BatchNorms become class-conditional.
      conditioning: D's use of the class, one of ``CONDITIONINGS``: ``"projection"`` or
        ``"acgan"`` with ``num_classes > 0``; ``"none"`` with 0.
      spectral_norm: one of ``SPECTRAL_NORMS``: ``"default"`` (on in the SN-ResNets' D,
        off elsewhere), ``"none"``, ``"d"`` or ``"g_and_d"`` (dcgan28 and the SN-ResNets).
      attention: the SN-ResNets only: the resolution at which G and D get a SAGAN
        self-attention block (Zhang et al. 2019); 0: none.

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
    if conv not in CONV_FORMULATIONS:
        raise ValueError(f"unknown convolution formulation {conv!r}; known: {CONV_FORMULATIONS}")
    if d_norm not in D_NORMS:
        raise ValueError(f"unknown D normalisation {d_norm!r}; known: {D_NORMS}")
    if d_norm != "batch" and name not in ("dcgan32", "dcgan64"):
        raise ValueError(
            f"d_norm={d_norm!r} applies to dcgan32/dcgan64, whose D has BatchNorm; {name}'s D "
            "has none (keep d_norm='batch')"
        )
    _check_toolkit(name, num_classes, conditioning, spectral_norm, attention)
    g_sn = spectral_norm == "g_and_d"
    d_sn = spectral_norm in ("d", "g_and_d") or (
        spectral_norm == "default" and name in resnets.RESNET_NAMES
    )
    conditional = {"num_classes": num_classes, "conditioning": conditioning}
    if name in resnets.RESNET_NAMES:
        if pack != 1:
            raise ValueError(
                f"pack={pack}: PacGAN packing is offered in toy2d, mlp and the DCGANs, not "
                f"{name} (keep pack=1)"
            )
        nc = _require_image(name, data_shape, resnets.RESOLUTIONS[name])
        generator, discriminator, latent_dim = resnets.resnet_models(
            name, nc=nc, **conditional, attention_at=attention or None, g_spectral_norm=g_sn,
            d_spectral_norm=d_sn, conv=conv,
        )  # fmt: skip
        return GANModels(
            generator=generator,
            discriminator=discriminator,
            latent_dim=latent_dim,
            data_shape=data_shape,
            output_range=(-1.0, 1.0),
            pack=pack,
            **conditional,
        )
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
        generator = DCGAN28Generator(nc=nc, conv=conv, num_classes=num_classes, spectral_norm=g_sn)
        discriminator = DCGAN28Discriminator(
            pack=pack, conv=conv, spectral_norm=d_sn, **conditional
        )
    elif name in ("dcgan32", "dcgan64"):
        num_blocks = 3 if name == "dcgan32" else 4
        nc = _require_image(name, data_shape, 2 ** (num_blocks + 2))
        generator = DCGANGenerator(num_blocks=num_blocks, nc=nc, conv=conv)
        discriminator = DCGANDiscriminator(num_blocks=num_blocks, pack=pack, conv=conv, norm=d_norm)
    else:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    return GANModels(
        generator=generator,
        discriminator=discriminator,
        latent_dim=100,
        data_shape=data_shape,
        output_range=(-1.0, 1.0),
        pack=pack,
        **conditional,
    )


def _check_toolkit(name, num_classes, conditioning, spectral_norm, attention) -> None:
    """Refuses conditioning, spectral norm or attention a network family does not offer."""
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"unknown conditioning {conditioning!r}; known: {CONDITIONINGS}")
    if spectral_norm not in SPECTRAL_NORMS:
        raise ValueError(f"unknown spectral_norm {spectral_norm!r}; known: {SPECTRAL_NORMS}")
    if conditioning != "none" and name not in _CONDITIONAL_MODELS:
        raise ValueError(
            f"conditioning={conditioning!r}: class-conditional networks are "
            f"{', '.join(_CONDITIONAL_MODELS)}; {name} is unconditional"
        )
    if spectral_norm not in ("default", "none") and name not in _SPECTRAL_MODELS:
        raise ValueError(
            f"spectral_norm={spectral_norm!r}: spectral normalization is offered in "
            f"{', '.join(_SPECTRAL_MODELS)}, not {name} (keep spectral_norm='default')"
        )
    if attention and name not in resnets.RESNET_NAMES:
        raise ValueError(
            f"attention={attention}: self-attention blocks are offered in the SN-ResNets "
            f"({', '.join(resnets.RESNET_NAMES)}), not {name} (keep attention=0)"
        )
