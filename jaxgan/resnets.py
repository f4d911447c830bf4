"""SNGAN's ResNets (Miyato et al. 2018) as Mimicry lays them out, with the parts of the
GANs trained today: spectral normalization, self-attention (SAGAN), class-conditional
BatchNorm and the projection discriminator (Miyato & Koyama 2018), an ACGAN head.

The layouts are those of Mimicry (Lee & Town 2020, ``torch_mimicry/nets/sngan/sngan_32.py``,
``sngan_48.py``, ``sngan_64.py`` and ``modules/resblocks.py``), which follow the official
Chainer SNGAN code: residual blocks of two 3x3 convolutions with a learnable 1x1 shortcut;
G upsamples by 2 (bilinear, ``align_corners=False``) before its first convolution, D
average-pools by 2 after its second; ReLU throughout; D ends in ReLU, a global **sum**
pooling and a Dense logit. Initialisation as Mimicry: Xavier-uniform kernels (gain √2 in
the blocks' 3x3 convolutions, 1 elsewhere), PyTorch's default biases
``U(±1/√fan_in)``, BatchNorm momentum 0.9 (torch's 0.1) and epsilon 1e-5.

Spectral normalization is flax's ``nn.SpectralNorm`` (one power iteration per application
in train mode, as ``torch.nn.utils.spectral_norm``) with its ``u`` vectors and σ in the
collection :data:`SPECTRAL_COLLECTION`, so a run's checkpoints hold them. This module does
no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.conv import Conv

__all__ = [
    "RESNET_NAMES",
    "RESOLUTIONS",
    "SPECTRAL_COLLECTION",
    "ConditionalBatchNorm",
    "DBlock",
    "GBlock",
    "SNResNetDiscriminator",
    "SNResNetGenerator",
    "SelfAttention",
    "resnet_models",
    "spectral_normed",
]

SPECTRAL_COLLECTION = "spectral"
"""The collection of spectral norm's ``u`` vectors and σ (a part of the model state)."""

RESNET_NAMES = ("sngan32", "sngan48", "sngan64")
RESOLUTIONS = {"sngan32": 32, "sngan48": 48, "sngan64": 64}

# Mimicry's layouts: G's Dense width ngf at bottom x bottom, then its GBlocks' widths (each
# upsampling 2x); D's blocks (width, downsample), the first a DBlockOptimized.
_LAYOUTS = {
    "sngan32": {
        "ngf": 256, "bottom": 4, "g_blocks": (256, 256, 256),
        "d_blocks": ((128, True), (128, True), (128, False), (128, False)),
    },
    "sngan48": {
        "ngf": 512, "bottom": 6, "g_blocks": (256, 128, 64),
        "d_blocks": ((64, True), (128, True), (256, True), (512, True), (1024, False)),
    },
    "sngan64": {
        "ngf": 1024, "bottom": 4, "g_blocks": (512, 256, 128, 64),
        "d_blocks": ((64, True), (128, True), (256, True), (512, True), (1024, True)),
    },
}  # fmt: skip
LATENT_DIM = 128


def _xavier(gain: float = 1.0) -> Callable[..., jax.Array]:
    """``torch.nn.init.xavier_uniform_(w, gain)`` for flax kernels (fan_in, fan_out alike)."""
    return nn.initializers.variance_scaling(gain**2, "fan_avg", "uniform")


def _torch_bias(fan_in: int) -> Callable[..., jax.Array]:
    """PyTorch's default bias of Linear and Conv2d: ``U(-1/√fan_in, 1/√fan_in)``."""
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
        key, shape, dtype, -bound, bound
    )


def spectral_normed(layer: nn.Module, *inputs, enabled: bool, train: bool):
    """``layer(*inputs)``, spectrally normalised when ``enabled`` (Miyato et al. 2018).

    The kernel is divided by its largest singular value σ, estimated by power iteration
    on the kernel reshaped to ``(-1, out)`` (a convolution's ``(kh·kw·in, out)``: the same
    σ as PyTorch's ``(out, in·kh·kw)``); in train mode one iteration per call updates
    ``u`` and σ in :data:`SPECTRAL_COLLECTION`, in eval mode they are used as stored.
    """
    if not enabled:
        return layer(*inputs)
    return nn.SpectralNorm(layer, collection_name=SPECTRAL_COLLECTION)(*inputs, update_stats=train)


def _conv(features: int, kernel: int, fan_in: int, gain: float, conv: str, use_bias=True):
    pad = (kernel - 1) // 2
    return Conv(
        features, (kernel, kernel), (1, 1), ((pad, pad), (pad, pad)), use_bias=use_bias,
        kernel_init=_xavier(gain), bias_init=_torch_bias(fan_in * kernel * kernel),
        formulation=conv,
    )  # fmt: skip


def _upsample(x: jax.Array) -> jax.Array:
    """2x bilinear upsampling, ``F.interpolate(scale_factor=2, mode='bilinear',
    align_corners=False)`` (half-pixel centres, edge-clamped)."""
    batch, height, width, channels = x.shape
    return jax.image.resize(x, (batch, 2 * height, 2 * width, channels), "bilinear")


def _avg_pool(x: jax.Array) -> jax.Array:
    return nn.avg_pool(x, (2, 2), (2, 2))


class ConditionalBatchNorm(nn.Module):
    """Class-conditional BatchNorm (Miyato & Koyama 2018; de Vries et al. 2017; BigGAN):
    BatchNorm without its own scale and offset, then a per-class gain and offset looked
    up from the labels (Mimicry's ``ConditionalBatchNorm2d``: gain N(1, 0.02²), offset 0).

    Attributes:
      num_classes: number of classes.
      momentum: running-average momentum (flax's convention: 0.9 is torch's 0.1).
      epsilon: added to the variance.
    """

    num_classes: int
    momentum: float = 0.9
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array, *, train: bool) -> jax.Array:
        """Normalises ``x`` (B, ..., C) with batch (train) or running (eval) statistics,
        then ``gain[y] * x + offset[y]`` for integer labels ``y`` (B,)."""
        h = nn.BatchNorm(
            use_running_average=not train, momentum=self.momentum, epsilon=self.epsilon,
            use_scale=False, use_bias=False,
        )(x)  # fmt: skip
        channels = x.shape[-1]
        shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (channels,)
        gain_init = lambda key, shape, dtype=jnp.float32: (
            1.0 + 0.02 * jax.random.normal(key, shape, dtype)
        )
        gain = nn.Embed(self.num_classes, channels, embedding_init=gain_init, name="gain")(y)
        offset = nn.Embed(
            self.num_classes, channels, embedding_init=nn.initializers.zeros, name="offset"
        )(y)
        return h * gain.reshape(shape) + offset.reshape(shape)


class SelfAttention(nn.Module):
    """SAGAN's self-attention block (Zhang et al. 2019) as Mimicry and BigGAN write it:
    1x1 convolutions θ, φ to C/8 and g to C/2 (no biases), φ and g max-pooled 2x2, softmax
    attention of every position over the pooled ones, a 1x1 convolution o back to C, and
    ``x + γ · o`` with γ a learnable scalar that starts at 0 (the block starts as the
    identity).

    Attributes:
      spectral_norm: spectrally normalise the four convolutions.
      conv: the convolution formulation (:class:`jaxgan.conv.Conv`).
    """

    spectral_norm: bool = False
    conv: str = "fast"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        batch, height, width, channels = x.shape
        sn = lambda layer, h: spectral_normed(layer, h, enabled=self.spectral_norm, train=train)
        one = lambda features, name: Conv(
            features, (1, 1), use_bias=False, kernel_init=_xavier(1.0), formulation=self.conv,
            name=name,
        )  # fmt: skip
        theta = sn(one(channels // 8, "theta"), x).reshape(batch, height * width, -1)
        phi = nn.max_pool(sn(one(channels // 8, "phi"), x), (2, 2), (2, 2))
        g = nn.max_pool(sn(one(channels // 2, "g"), x), (2, 2), (2, 2))
        phi = phi.reshape(batch, -1, phi.shape[-1])
        g = g.reshape(batch, -1, g.shape[-1])
        attention = jax.nn.softmax(jnp.einsum("bnc,bmc->bnm", theta, phi), axis=-1)
        attended = jnp.einsum("bnm,bmc->bnc", attention, g).reshape(batch, height, width, -1)
        out = sn(one(channels, "o"), attended)
        gamma = self.param("gamma", nn.initializers.zeros, ())
        return x + gamma * out


class GBlock(nn.Module):
    """Mimicry's generator block: BN, ReLU, (2x up), conv3x3, BN, ReLU, conv3x3, plus a
    1x1 convolution shortcut (of the upsampled input) when the width changes or it upsamples.

    Attributes: ``features`` (out), ``upsample``, ``num_classes`` (> 0: conditional BN),
    ``spectral_norm``, ``conv``.
    """

    features: int
    upsample: bool = True
    num_classes: int = 0
    spectral_norm: bool = False
    conv: str = "fast"

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array | None, *, train: bool) -> jax.Array:
        in_features = x.shape[-1]
        sn = lambda layer, h: spectral_normed(layer, h, enabled=self.spectral_norm, train=train)

        def norm(h):
            if self.num_classes:
                return ConditionalBatchNorm(self.num_classes)(h, y, train=train)
            return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(h)

        up = _upsample if self.upsample else (lambda h: h)
        h = up(nn.relu(norm(x)))
        h = sn(_conv(self.features, 3, in_features, math.sqrt(2.0), self.conv), h)
        h = nn.relu(norm(h))
        h = sn(_conv(self.features, 3, self.features, math.sqrt(2.0), self.conv), h)
        shortcut = x
        if in_features != self.features or self.upsample:
            shortcut = sn(_conv(self.features, 1, in_features, 1.0, self.conv), up(x))
        return h + shortcut


class DBlock(nn.Module):
    """Mimicry's discriminator block: ReLU, conv3x3 (to the input's width), ReLU, conv3x3,
    (2x average pool), plus a 1x1 convolution shortcut (then pooled) when the width changes
    or it downsamples. ``optimized``: the first block (DBlockOptimized): conv3x3, ReLU,
    conv3x3, pool, with the shortcut conv1x1 of the pooled input, and no ReLU first.

    Attributes: ``features`` (out), ``downsample``, ``optimized``, ``spectral_norm``, ``conv``.
    """

    features: int
    downsample: bool = True
    optimized: bool = False
    spectral_norm: bool = True
    conv: str = "fast"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        in_features = x.shape[-1]
        sn = lambda layer, h: spectral_normed(layer, h, enabled=self.spectral_norm, train=train)
        hidden = self.features if self.optimized else in_features
        h = x if self.optimized else nn.relu(x)
        h = sn(_conv(hidden, 3, in_features, math.sqrt(2.0), self.conv), h)
        h = sn(_conv(self.features, 3, hidden, math.sqrt(2.0), self.conv), nn.relu(h))
        if self.downsample:
            h = _avg_pool(h)
        if self.optimized:
            shortcut = sn(_conv(self.features, 1, in_features, 1.0, self.conv), _avg_pool(x))
        elif in_features != self.features or self.downsample:
            shortcut = sn(_conv(self.features, 1, in_features, 1.0, self.conv), x)
            shortcut = _avg_pool(shortcut) if self.downsample else shortcut
        else:
            shortcut = x
        return h + shortcut


def _check_labels(name: str, y, needed: bool) -> None:
    if needed and y is None:
        raise ValueError(f"{name} is class-conditional: call it with labels y (B,) int")
    if not needed and y is not None:
        raise ValueError(f"{name} takes no labels (it is not conditioned on them)")


class SNResNetGenerator(nn.Module):
    """SNGAN's ResNet generator (Miyato et al. 2018) in Mimicry's layouts.

    Dense z → bottom² · ngf, reshape, the GBlocks (each upsampling 2x), BatchNorm, ReLU,
    conv3x3 to ``nc``, tanh. 32: ngf 256, bottom 4, three blocks of 256; 48: ngf 512,
    bottom 6, blocks 256, 128, 64 (ngf/2, /4, /8); 64: ngf 1024, bottom 4, blocks 512, 256,
    128, 64. Parameters for nc = 3: 4,276,739 (32) / 4,878,083 (48) / 12,220,675 (64), those
    of Mimicry's modules (tests/test_resnets.py counts them from its layer list).

    Attributes:
      resolution: 32, 48 or 64.
      nc: output channels.
      num_classes: > 0: every block's BatchNorms are class-conditional and G takes ``y``.
      attention_at: the resolution after whose block a :class:`SelfAttention` sits.
      spectral_norm: spectrally normalise every Dense and convolution (BigGAN's G does).
      conv: the convolution formulation (:class:`jaxgan.conv.Conv`).
    """

    resolution: int = 32
    nc: int = 3
    num_classes: int = 0
    attention_at: int | None = None
    spectral_norm: bool = False
    conv: str = "fast"

    @nn.compact
    def __call__(self, z: jax.Array, y: jax.Array | None = None, *, train: bool) -> jax.Array:
        """Maps latents ``(B, 128)`` (and labels ``(B,)``) to images ``(B, R, R, nc)`` in
        [-1, 1]."""
        _check_labels(type(self).__name__, y, self.num_classes > 0)
        layout = _LAYOUTS[f"sngan{self.resolution}"]
        ngf, bottom = layout["ngf"], layout["bottom"]
        sn = lambda layer, h: spectral_normed(layer, h, enabled=self.spectral_norm, train=train)
        dense = nn.Dense(
            bottom * bottom * ngf, kernel_init=_xavier(1.0), bias_init=_torch_bias(z.shape[-1])
        )
        # (torch views the Dense's output as NCHW: the same layer up to a permutation.)
        h = sn(dense, z).reshape(z.shape[0], bottom, bottom, ngf)
        size = bottom
        for features in layout["g_blocks"]:
            h = GBlock(features, True, self.num_classes, self.spectral_norm, self.conv)(
                h, y, train=train
            )
            size *= 2
            if self.attention_at == size:
                h = SelfAttention(self.spectral_norm, self.conv)(h, train=train)
        h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(h))
        h = sn(_conv(self.nc, 3, h.shape[-1], 1.0, self.conv), h)
        return jnp.tanh(h)


class SNResNetDiscriminator(nn.Module):
    """SNGAN's ResNet discriminator (Miyato et al. 2018) in Mimicry's layouts, with a
    projection (Miyato & Koyama 2018) or ACGAN (Odena et al. 2017) head.

    DBlockOptimized, the DBlocks, ReLU, global sum pooling to φ(x), Dense 1: the logit
    ψ(φ). 32: ndf 128, blocks 128 (down), 128 (down), 128, 128; 48: ndf 1024, 64 (down), 128
    (down), 256 (down), 512 (down), 1024; 64: 64, 128, 256, 512, 1024, all down.
    Unconditional parameters: 1,053,825 (32) / 10,141,441 (48) / 10,141,441 (64; the same
    widths as 48, one more downsampling), those of Mimicry's modules.

    Attributes:
      resolution: 32, 48 or 64.
      num_classes: the number of classes of a conditional D.
      conditioning: ``"none"``; ``"projection"``: logit ``ψ(φ) + ⟨embed(y), φ⟩`` with a
        (spectrally normalised) embedding, D takes ``y``; ``"acgan"``: D returns
        ``(logits, class_logits (B, C))`` from a Dense head on φ.
      attention_at: the resolution of the block after which a :class:`SelfAttention` sits.
      spectral_norm: spectrally normalise every layer (SNGAN's D: on).
      conv: the convolution formulation.
    """

    resolution: int = 32
    num_classes: int = 0
    conditioning: str = "none"
    attention_at: int | None = None
    spectral_norm: bool = True
    conv: str = "fast"

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array | None = None, *, train: bool):
        """Maps images ``(B, R, R, C)`` (and labels for a projection D) to logits ``(B,)``;
        an ACGAN D returns ``(logits, class_logits)``."""
        _check_labels(type(self).__name__, y, self.conditioning == "projection")
        layout = _LAYOUTS[f"sngan{self.resolution}"]
        sn = lambda layer, h: spectral_normed(layer, h, enabled=self.spectral_norm, train=train)
        h, size, attended = x, self.resolution, False
        for i, (features, down) in enumerate(layout["d_blocks"]):
            h = DBlock(features, down, i == 0, self.spectral_norm, self.conv)(h, train=train)
            size = size // 2 if down else size
            if self.attention_at == size and not attended:  # after the first block at it
                h = SelfAttention(self.spectral_norm, self.conv)(h, train=train)
                attended = True
        phi = jnp.sum(nn.relu(h), axis=(1, 2))  # global sum pooling
        self.sow("intermediates", "features", phi)  # φ(x), for whoever asks (mutable)
        width = phi.shape[-1]
        dense = lambda n: nn.Dense(n, kernel_init=_xavier(1.0), bias_init=_torch_bias(width))
        logits = sn(dense(1), phi).reshape(-1)
        if self.conditioning == "projection":
            embed = nn.Embed(self.num_classes, width, embedding_init=_xavier(1.0))
            return logits + jnp.sum(sn(embed, y) * phi, axis=-1)
        if self.conditioning == "acgan":
            return logits, sn(dense(self.num_classes), phi)
        return logits


def resnet_models(
    name: str,
    *,
    nc: int = 3,
    num_classes: int = 0,
    conditioning: str = "none",
    attention_at: int | None = None,
    g_spectral_norm: bool = False,
    d_spectral_norm: bool = True,
    conv: str = "fast",
) -> tuple[SNResNetGenerator, SNResNetDiscriminator, int]:
    """``(G, D, latent_dim)`` of ``sngan32``, ``sngan48`` or ``sngan64``.

    Raises:
      ValueError: an unknown name, or an attention resolution the network never has.
    """
    if name not in RESNET_NAMES:
        raise ValueError(f"unknown SN-ResNet {name!r}; known: {RESNET_NAMES}")
    resolution = RESOLUTIONS[name]
    layout = _LAYOUTS[name]
    g_sizes = {layout["bottom"] * 2 ** (i + 1) for i in range(len(layout["g_blocks"]))}
    d_sizes, size = set(), resolution
    for _, down in layout["d_blocks"]:
        size = size // 2 if down else size
        d_sizes.add(size)
    sizes = sorted((g_sizes & d_sizes) - {resolution})
    if attention_at is not None and attention_at not in sizes:
        raise ValueError(
            f"attention_at={attention_at}: {name}'s G and D both have blocks at resolutions "
            f"{sizes}; a SAGAN self-attention block goes at one of them"
        )
    generator = SNResNetGenerator(
        resolution=resolution, nc=nc, num_classes=num_classes, attention_at=attention_at,
        spectral_norm=g_spectral_norm, conv=conv,
    )  # fmt: skip
    discriminator = SNResNetDiscriminator(
        resolution=resolution, num_classes=num_classes, conditioning=conditioning,
        attention_at=attention_at, spectral_norm=d_spectral_norm, conv=conv,
    )  # fmt: skip
    return generator, discriminator, LATENT_DIM
