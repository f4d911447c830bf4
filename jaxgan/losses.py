"""Pure GAN losses, penalties and theory helpers.

Every loss takes discriminator *logits* (pre-sigmoid scores) and returns one value
per example: the caller reduces (usually with ``jnp.mean``). Nothing here has a
hidden default such as label smoothing, and the log-probabilities are computed
with ``log_sigmoid``/``softplus``, never ``log(sigmoid(x))``, so the losses and
their gradients stay finite at logits of ±100 and beyond.

Notation: ``D(x) = sigmoid(logit(x))`` is the probability the discriminator gives
to ``x`` being real, ``log D = log_sigmoid(logit)`` and
``log(1 - D) = log_sigmoid(-logit)``.

References:
  Goodfellow et al., Generative Adversarial Nets, 2014 (arXiv 1406.2661).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = [
    "LOSSES",
    "LossPair",
    "get_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "jensen_shannon_divergence",
    "least_squares_discriminator_loss",
    "least_squares_generator_loss",
    "minimax_discriminator_loss",
    "minimax_generator_loss",
    "non_saturating_generator_loss",
    "optimal_discriminator",
    "r1_penalty",
    "r2_penalty",
    "relativistic_average_discriminator_loss",
    "relativistic_average_generator_loss",
    "relativistic_pairing_discriminator_loss",
    "relativistic_pairing_generator_loss",
    "value_from_densities",
    "value_from_logits",
    "wasserstein_discriminator_loss",
    "wasserstein_generator_loss",
    "wgan_gp_penalty",
]


# ----------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------


def _as_float(name: str, x: ArrayLike) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array of logits, got dtype {x.dtype}.")
    return x


def _as_float_pair(real_logits: ArrayLike, fake_logits: ArrayLike) -> tuple[jax.Array, jax.Array]:
    real = _as_float("real_logits", real_logits)
    fake = _as_float("fake_logits", fake_logits)
    if real.shape != fake.shape:
        raise ValueError(
            "real_logits and fake_logits must have the same shape (one logit per example), "
            f"got {real.shape} and {fake.shape}."
        )
    return real, fake


# ----------------------------------------------------------------------------
# Minimax and non-saturating (Goodfellow et al. 2014)
# ----------------------------------------------------------------------------


def minimax_discriminator_loss(real_logits: ArrayLike, fake_logits: ArrayLike) -> jax.Array:
    r"""Discriminator loss of the minimax game: minus the value per example pair.

    .. math::
      \ell_D = -\log D(x) - \log(1 - D(G(z)))

    Minimizing it maximizes ``V(D, G) = E[log D(x)] + E[log(1 - D(G(z)))]``. This is
    also the discriminator loss of the non-saturating GAN.

    Args:
      real_logits: logits of D on real samples, shape ``[...]``.
      fake_logits: logits of D on generated samples, the same shape.

    Returns:
      Per-example losses, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> loss = losses.minimax_discriminator_loss(jnp.zeros(3), jnp.zeros(3))
      >>> print(jnp.round(loss, 4))  # D = 1/2 everywhere: log 4
      [1.3863 1.3863 1.3863]

    References:
      Goodfellow et al., Generative Adversarial Nets, 2014, eq. (1).
    """
    real, fake = _as_float_pair(real_logits, fake_logits)
    return -jax.nn.log_sigmoid(real) - jax.nn.log_sigmoid(-fake)


def minimax_generator_loss(fake_logits: ArrayLike) -> jax.Array:
    r"""Generator loss of the minimax game (the saturating form).

    .. math::
      \ell_G = \log(1 - D(G(z)))

    Its gradient vanishes when D confidently rejects the samples (``D(G(z)) → 0``),
    which is why Goodfellow et al. suggest the non-saturating form in practice.

    Args:
      fake_logits: logits of D on generated samples, shape ``[...]``.

    Returns:
      Per-example losses, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> print(jnp.round(losses.minimax_generator_loss(jnp.zeros(2)), 4))
      [-0.6931 -0.6931]

    References:
      Goodfellow et al., Generative Adversarial Nets, 2014, eq. (1) and Algorithm 1.
    """
    fake = _as_float("fake_logits", fake_logits)
    return jax.nn.log_sigmoid(-fake)


def non_saturating_generator_loss(fake_logits: ArrayLike) -> jax.Array:
    r"""Non-saturating generator loss: maximize ``log D(G(z))``.

    .. math::
      \ell_G = -\log D(G(z))

    Args:
      fake_logits: logits of D on generated samples, shape ``[...]``.

    Returns:
      Per-example losses, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> print(jnp.round(losses.non_saturating_generator_loss(jnp.zeros(2)), 4))
      [0.6931 0.6931]

    References:
      Goodfellow et al., Generative Adversarial Nets, 2014, section 3.
    """
    fake = _as_float("fake_logits", fake_logits)
    return -jax.nn.log_sigmoid(fake)


# ----------------------------------------------------------------------------
# Wasserstein, hinge, least squares
# ----------------------------------------------------------------------------


def wasserstein_discriminator_loss(real_logits: ArrayLike, fake_logits: ArrayLike) -> jax.Array:
    r"""Wasserstein critic loss.

    .. math::
      \ell_D = f(G(z)) - f(x)

    Pair it with a Lipschitz constraint, e.g. :func:`wgan_gp_penalty`.

    Args:
      real_logits: critic scores on real samples, shape ``[...]``.
      fake_logits: critic scores on generated samples, the same shape.

    Returns:
      Per-example losses, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> print(losses.wasserstein_discriminator_loss(jnp.array([2.0]), jnp.array([0.5])))
      [-1.5]

    References:
      Arjovsky et al., Wasserstein GAN, 2017 (arXiv 1701.07875).
    """
    real, fake = _as_float_pair(real_logits, fake_logits)
    return fake - real


def wasserstein_generator_loss(fake_logits: ArrayLike) -> jax.Array:
    r"""Wasserstein generator loss ``-f(G(z))``.

    Args:
      fake_logits: critic scores on generated samples, shape ``[...]``.

    Returns:
      Per-example losses, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> print(losses.wasserstein_generator_loss(jnp.array([0.5])))
      [-0.5]

    References:
      Arjovsky et al., Wasserstein GAN, 2017 (arXiv 1701.07875).
    """
    return -_as_float("fake_logits", fake_logits)


def hinge_discriminator_loss(real_logits: ArrayLike, fake_logits: ArrayLike) -> jax.Array:
    r"""Hinge discriminator loss.

    .. math::
      \ell_D = \max(0, 1 - f(x)) + \max(0, 1 + f(G(z)))

    Args:
      real_logits: discriminator scores on real samples, shape ``[...]``.
      fake_logits: discriminator scores on generated samples, the same shape.

    Returns:
      Per-example losses, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> print(losses.hinge_discriminator_loss(jnp.array([0.5, 2.0]), jnp.array([-2.0, 0.0])))
      [0.5 1. ]

    References:
      Lim & Ye, Geometric GAN, 2017 (arXiv 1705.02894); Miyato et al., 2018.
    """
    real, fake = _as_float_pair(real_logits, fake_logits)
    return jax.nn.relu(1.0 - real) + jax.nn.relu(1.0 + fake)


def hinge_generator_loss(fake_logits: ArrayLike) -> jax.Array:
    r"""Hinge generator loss ``-f(G(z))``.

    Args:
      fake_logits: discriminator scores on generated samples, shape ``[...]``.

    Returns:
      Per-example losses, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> print(losses.hinge_generator_loss(jnp.array([1.5])))
      [-1.5]

    References:
      Lim & Ye, Geometric GAN, 2017 (arXiv 1705.02894).
    """
    return -_as_float("fake_logits", fake_logits)


def least_squares_discriminator_loss(
    real_logits: ArrayLike,
    fake_logits: ArrayLike,
    *,
    real_target: float = 1.0,
    fake_target: float = 0.0,
) -> jax.Array:
    r"""Least-squares (LSGAN) discriminator loss on raw scores.

    .. math::
      \ell_D = \tfrac12 (f(x) - b)^2 + \tfrac12 (f(G(z)) - a)^2

    with ``b = real_target`` and ``a = fake_target`` (the paper's 0-1 coding).

    Args:
      real_logits: discriminator scores on real samples, shape ``[...]``.
      fake_logits: discriminator scores on generated samples, the same shape.
      real_target: target score ``b`` for real samples.
      fake_target: target score ``a`` for generated samples.

    Returns:
      Per-example losses, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> print(losses.least_squares_discriminator_loss(jnp.array([1.0]), jnp.array([2.0])))
      [2.]

    References:
      Mao et al., Least Squares Generative Adversarial Networks, 2017 (arXiv 1611.04076).
    """
    real, fake = _as_float_pair(real_logits, fake_logits)
    return 0.5 * jnp.square(real - real_target) + 0.5 * jnp.square(fake - fake_target)


def least_squares_generator_loss(fake_logits: ArrayLike, *, target: float = 1.0) -> jax.Array:
    r"""Least-squares (LSGAN) generator loss ``½ (f(G(z)) - c)²``.

    Args:
      fake_logits: discriminator scores on generated samples, shape ``[...]``.
      target: the score ``c`` the generator wants D to give its samples.

    Returns:
      Per-example losses, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> print(losses.least_squares_generator_loss(jnp.array([0.0, 1.0])))
      [0.5 0. ]

    References:
      Mao et al., Least Squares Generative Adversarial Networks, 2017 (arXiv 1611.04076).
    """
    fake = _as_float("fake_logits", fake_logits)
    return 0.5 * jnp.square(fake - target)


# ----------------------------------------------------------------------------
# Relativistic losses (Jolicoeur-Martineau 2018)
# ----------------------------------------------------------------------------


def relativistic_pairing_discriminator_loss(
    real_logits: ArrayLike, fake_logits: ArrayLike
) -> jax.Array:
    r"""RpGAN's discriminator loss: how much more real D finds each real example than its
    paired fake.

    .. math::
      \ell_D = -\log \sigma(f(x_i) - f(G(z_i))) = \operatorname{softplus}(f(G(z_i)) - f(x_i))

    Pair ``i`` is real example ``i`` with fake example ``i``. With R1 and R2 this is the
    objective of R3GAN (Huang et al. 2025), whose analysis shows it converges locally and
    has no mode-dropping solutions of the non-relativistic loss.

    Args:
      real_logits: discriminator scores on real samples, shape ``[...]``.
      fake_logits: discriminator scores on generated samples, the same shape.

    Returns:
      Per-pair losses, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> print(losses.relativistic_pairing_discriminator_loss(jnp.array([1.0]), jnp.array([1.0])))
      [0.6931472]

    References:
      Jolicoeur-Martineau, The relativistic discriminator, 2018 (arXiv 1807.00734);
      Huang et al., The GAN is dead; long live the GAN!, 2025 (arXiv 2501.05441).
    """
    real, fake = _as_float_pair(real_logits, fake_logits)
    return jax.nn.softplus(fake - real)


def relativistic_pairing_generator_loss(
    fake_logits: ArrayLike, real_logits: ArrayLike
) -> jax.Array:
    r"""RpGAN's generator loss, D's loss with the roles swapped:
    :math:`\operatorname{softplus}(f(x_i) - f(G(z_i)))`.

    Args:
      fake_logits: discriminator scores on generated samples, shape ``[...]``.
      real_logits: discriminator scores on the paired real samples, the same shape.

    Returns:
      Per-pair losses, shape ``[...]``.

    References:
      Jolicoeur-Martineau, 2018 (arXiv 1807.00734).
    """
    real, fake = _as_float_pair(real_logits, fake_logits)
    return jax.nn.softplus(real - fake)


def relativistic_average_discriminator_loss(
    real_logits: ArrayLike, fake_logits: ArrayLike
) -> jax.Array:
    r"""RaGAN's (RaSGAN's) discriminator loss, against the batch's average opposite score.

    .. math::
      \ell_D = \operatorname{softplus}(-(f(x_i) - \overline{f(G(z))}))
              + \operatorname{softplus}(f(G(z_i)) - \overline{f(x)})

    The means are over the whole batch (every axis), so each example's loss depends on the
    others' scores: per example, but coupling the batch.

    Args:
      real_logits: discriminator scores on real samples, shape ``[...]``.
      fake_logits: discriminator scores on generated samples, the same shape.

    Returns:
      Per-example losses, shape ``[...]``.

    References:
      Jolicoeur-Martineau, 2018 (arXiv 1807.00734), RaSGAN.
    """
    real, fake = _as_float_pair(real_logits, fake_logits)
    return jax.nn.softplus(jnp.mean(fake) - real) + jax.nn.softplus(fake - jnp.mean(real))


def relativistic_average_generator_loss(
    fake_logits: ArrayLike, real_logits: ArrayLike
) -> jax.Array:
    r"""RaGAN's generator loss, D's with real and fake swapped:
    :math:`\operatorname{softplus}(\overline{f(x)} - f(G(z_i))) +
    \operatorname{softplus}(f(x_i) - \overline{f(G(z))})`.

    References:
      Jolicoeur-Martineau, 2018 (arXiv 1807.00734), RaSGAN.
    """
    return relativistic_average_discriminator_loss(fake_logits, real_logits)


class LossPair(NamedTuple):
    """A discriminator loss ``(real_logits, fake_logits) -> [...]`` and a generator loss
    ``fake_logits -> [...]``, both per example. A ``relativistic`` pair's generator loss
    also takes the real logits: ``generator(fake_logits, real_logits)``."""

    discriminator: Callable[[jax.Array, jax.Array], jax.Array]
    generator: Callable[..., jax.Array]
    relativistic: bool = False


LOSSES: dict[str, LossPair] = {
    "minimax": LossPair(minimax_discriminator_loss, minimax_generator_loss),
    "non_saturating": LossPair(minimax_discriminator_loss, non_saturating_generator_loss),
    "wasserstein": LossPair(wasserstein_discriminator_loss, wasserstein_generator_loss),
    "hinge": LossPair(hinge_discriminator_loss, hinge_generator_loss),
    "least_squares": LossPair(least_squares_discriminator_loss, least_squares_generator_loss),
    "relativistic_pairing": LossPair(
        relativistic_pairing_discriminator_loss, relativistic_pairing_generator_loss, True
    ),
    "relativistic_average": LossPair(
        relativistic_average_discriminator_loss, relativistic_average_generator_loss, True
    ),
}


def get_loss(name: str) -> LossPair:
    """Returns the discriminator and generator losses registered under ``name``.

    Args:
      name: one of ``minimax``, ``non_saturating``, ``wasserstein``, ``hinge``,
        ``least_squares``, ``relativistic_pairing``, ``relativistic_average`` (these two
        are ``relativistic``: G's loss takes the real logits too).

    Returns:
      A :class:`LossPair`.

    Example:
      >>> from jaxgan import losses
      >>> losses.get_loss("hinge").generator is losses.hinge_generator_loss
      True
    """
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"Unknown loss {name!r}; choose one of {sorted(LOSSES)}.") from None


# ----------------------------------------------------------------------------
# Gradient penalties
# ----------------------------------------------------------------------------


def _check_pack(x: jax.Array, pack: int) -> int:
    if not isinstance(pack, int) or pack < 1 or x.shape[0] % pack:
        raise ValueError(f"batch {x.shape[0]} is not a whole number of packs of {pack!r}")
    return x.shape[0] // pack


def _input_grad_sq_norm(
    discriminator_fn: Callable[[jax.Array], jax.Array], x: jax.Array, pack: int = 1
):
    """Squared norm of the gradient of each score with respect to its input, ``[B // pack]``.

    D maps ``(B, ...)`` to one score per pack of ``pack`` consecutive examples; a score's
    input is its whole pack, so its gradient's squared norm sums over the pack's members.
    """
    x = _as_float("x", x)
    packs = _check_pack(x, pack)
    grads = jax.grad(lambda inputs: jnp.sum(discriminator_fn(inputs)))(x)
    return jnp.sum(jnp.square(grads).reshape(packs, -1), axis=-1)


def wgan_gp_penalty(
    discriminator_fn: Callable[[jax.Array], jax.Array],
    real: ArrayLike,
    fake: ArrayLike,
    key: jax.Array,
    *,
    pack: int = 1,
) -> jax.Array:
    r"""WGAN-GP gradient penalty on random interpolates.

    .. math::
      \hat x = \epsilon x + (1 - \epsilon) \tilde x,\ \epsilon \sim U[0, 1];\quad
      p = (\lVert \nabla_{\hat x} f(\hat x) \rVert_2 - 1)^2

    The caller multiplies by the weight (λ = 10 in the paper) and reduces.
    ``discriminator_fn`` must score each example independently (no BatchNorm in
    train mode): the gradient is taken of the sum of scores.

    With PacGAN packing (``pack = m``: D scores packs of ``m`` consecutive examples),
    the critic's input is the pack: one ε per pack interpolates the whole real pack
    with the fake one, and the norm is that of the gradient with respect to the pack.

    Args:
      discriminator_fn: maps a batch ``[B, ...]`` to scores ``[B // pack]``.
      real: real samples ``[B, ...]``.
      fake: generated samples, the same shape.
      key: PRNG key for the interpolation weights.
      pack: the packing degree ``m`` of the critic.

    Returns:
      Per-pack penalties, shape ``[B // pack]`` (per example for ``pack = 1``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgan import losses
      >>> critic = lambda x: x @ jnp.array([0.6, 0.8])  # 1-Lipschitz, unit-norm weights
      >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 2))
      >>> print(losses.wgan_gp_penalty(critic, x, y, jax.random.key(0)))
      [0. 0. 0. 0.]

    References:
      Gulrajani et al., Improved Training of Wasserstein GANs, 2017 (arXiv 1704.00028).
    """
    real = _as_float("real", real)
    fake = _as_float("fake", fake)
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {real.shape}, {fake.shape}.")
    packs = _check_pack(real, pack)
    eps_shape = (packs,) + (1,) * (real.ndim - 1)
    eps = jax.random.uniform(key, eps_shape, dtype=real.dtype)
    if pack > 1:
        eps = jnp.repeat(eps, pack, axis=0)  # one ε for every member of a pack
    interpolates = eps * real + (1.0 - eps) * fake
    sq_norm = _input_grad_sq_norm(discriminator_fn, interpolates, pack)
    # sqrt(0) has an infinite derivative; a tiny floor keeps the penalty's gradient finite.
    norm = jnp.sqrt(sq_norm + jnp.finfo(sq_norm.dtype).tiny)
    return jnp.square(norm - 1.0)


def r1_penalty(
    discriminator_fn: Callable[[jax.Array], jax.Array], real: ArrayLike, *, pack: int = 1
) -> jax.Array:
    r"""R1 penalty: squared gradient norm of D at real data.

    .. math::
      p = \lVert \nabla_x D(x) \rVert_2^2,\ x \sim p_{data}

    The caller multiplies by ``γ / 2`` and reduces. With PacGAN packing (``pack = m``)
    D's input is a pack of ``m`` examples, and the norm is that of the gradient with
    respect to the pack (Mescheder et al.'s R1 of the packed D).

    Args:
      discriminator_fn: maps a batch ``[B, ...]`` to logits ``[B // pack]``.
      real: real samples ``[B, ...]``.
      pack: the packing degree ``m`` of D.

    Returns:
      Per-pack penalties, shape ``[B // pack]`` (per example for ``pack = 1``).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> print(losses.r1_penalty(lambda x: 3.0 * x[:, 0], jnp.ones((2, 2))))
      [9. 9.]

    References:
      Mescheder et al., Which Training Methods for GANs do actually Converge?, 2018
      (arXiv 1801.04406).
    """
    return _input_grad_sq_norm(discriminator_fn, real, pack)


def r2_penalty(
    discriminator_fn: Callable[[jax.Array], jax.Array], fake: ArrayLike, *, pack: int = 1
) -> jax.Array:
    r"""R2 penalty: squared gradient norm of D at generated data.

    .. math::
      p = \lVert \nabla_{\tilde x} D(\tilde x) \rVert_2^2,\ \tilde x \sim p_g

    Packing as in :func:`r1_penalty`.

    Args:
      discriminator_fn: maps a batch ``[B, ...]`` to logits ``[B // pack]``.
      fake: generated samples ``[B, ...]`` (pass them through ``stop_gradient``).
      pack: the packing degree ``m`` of D.

    Returns:
      Per-pack penalties, shape ``[B // pack]`` (per example for ``pack = 1``).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> print(losses.r2_penalty(lambda x: jnp.sum(x, axis=1), jnp.ones((2, 3))))
      [3. 3.]

    References:
      Mescheder et al., Which Training Methods for GANs do actually Converge?, 2018
      (arXiv 1801.04406).
    """
    return _input_grad_sq_norm(discriminator_fn, fake, pack)


# ----------------------------------------------------------------------------
# Theory helpers
# ----------------------------------------------------------------------------


def optimal_discriminator(p_data: ArrayLike, p_g: ArrayLike) -> jax.Array:
    r"""The optimal discriminator for a fixed generator.

    .. math::
      D^*(x) = \frac{p_{data}(x)}{p_{data}(x) + p_g(x)}

    Where both densities are zero the value is 1/2 (the limit along p_data = p_g).

    Args:
      p_data: data density at some points, shape ``[...]``.
      p_g: generator density at the same points.

    Returns:
      ``D*(x)`` at those points, shape ``[...]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> print(losses.optimal_discriminator(jnp.array([1.0, 3.0]), jnp.array([1.0, 1.0])))
      [0.5  0.75]

    References:
      Goodfellow et al., Generative Adversarial Nets, 2014, Proposition 1.
    """
    p_data = _as_float("p_data", p_data)
    p_g = _as_float("p_g", p_g)
    total = p_data + p_g
    safe_total = jnp.where(total > 0, total, 1.0)
    return jnp.where(total > 0, p_data / safe_total, 0.5)


def _xlogy(x: jax.Array, y: jax.Array) -> jax.Array:
    """x * log(y) with 0 * log(0) = 0."""
    return jax.scipy.special.xlogy(x, y)


def value_from_densities(
    d: ArrayLike, p_data: ArrayLike, p_g: ArrayLike, dx: float | ArrayLike
) -> jax.Array:
    r"""The GAN value ``V(D, G)`` by quadrature on a grid.

    .. math::
      V(D, G) = \int p_{data}(x) \log D(x) + p_g(x) \log(1 - D(x))\, dx

    Where ``d`` is exactly 0 or 1 at a point whose weighting density is positive the
    integrand is ``-inf``, as the math says; in the far tails of a quadrature grid that
    is usually rounding, so clip ``d`` to ``[eps, 1 - eps]`` there.

    Args:
      d: discriminator probabilities ``D(x)`` at the grid points, shape ``[N]``.
      p_data: data density at the grid points, shape ``[N]``.
      p_g: generator density at the grid points, shape ``[N]``.
      dx: grid spacing (a scalar, or per-point cell volumes of shape ``[N]``).

    Returns:
      The scalar value.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> x = jnp.linspace(-10, 10, 2001)
      >>> p = jnp.exp(-x**2 / 2) / jnp.sqrt(2 * jnp.pi)
      >>> v = losses.value_from_densities(jnp.full_like(x, 0.5), p, p, x[1] - x[0])
      >>> print(jnp.round(v, 4))  # -log 4
      -1.3863

    References:
      Goodfellow et al., Generative Adversarial Nets, 2014, eq. (1) and Theorem 1.
    """
    d = _as_float("d", d)
    p_data = _as_float("p_data", p_data)
    p_g = _as_float("p_g", p_g)
    if not (d.shape == p_data.shape == p_g.shape):
        raise ValueError(
            f"d, p_data, p_g must share a shape: {d.shape}, {p_data.shape}, {p_g.shape}."
        )
    integrand = _xlogy(p_data, d) + _xlogy(p_g, 1.0 - d)
    return jnp.sum(integrand * dx)


def value_from_logits(real_logits: ArrayLike, fake_logits: ArrayLike) -> jax.Array:
    r"""Monte-Carlo estimate of ``V(D, G)`` from D's logits on samples.

    .. math::
      \hat V = \frac1m \sum_i \log D(x_i) + \frac1n \sum_j \log(1 - D(G(z_j)))

    Args:
      real_logits: logits on real samples, shape ``[M]``.
      fake_logits: logits on generated samples, shape ``[N]`` (may differ from M).

    Returns:
      The scalar estimate.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> print(jnp.round(losses.value_from_logits(jnp.zeros(5), jnp.zeros(3)), 4))
      -1.3863
    """
    real = _as_float("real_logits", real_logits)
    fake = _as_float("fake_logits", fake_logits)
    return jnp.mean(jax.nn.log_sigmoid(real)) + jnp.mean(jax.nn.log_sigmoid(-fake))


def jensen_shannon_divergence(p: ArrayLike, q: ArrayLike, dx: float | ArrayLike) -> jax.Array:
    r"""Jensen–Shannon divergence of two densities on a grid (natural log).

    .. math::
      \mathrm{JSD}(p \| q) = \tfrac12 \mathrm{KL}(p \| m) + \tfrac12 \mathrm{KL}(q \| m),
      \quad m = (p + q) / 2

    Args:
      p: first density at the grid points, shape ``[N]``.
      q: second density at the grid points, shape ``[N]``.
      dx: grid spacing (a scalar, or per-point cell volumes of shape ``[N]``).

    Returns:
      The scalar divergence, in ``[0, log 2]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgan import losses
      >>> p, q = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
      >>> print(jnp.round(losses.jensen_shannon_divergence(p, q, 1.0), 4))  # log 2
      0.6931

    References:
      Goodfellow et al., 2014, Theorem 1: ``V(D*, G) = 2 JSD(p_data || p_g) - log 4``.
    """
    p = _as_float("p", p)
    q = _as_float("q", q)
    if p.shape != q.shape:
        raise ValueError(f"p and q must share a shape: {p.shape}, {q.shape}.")
    m = 0.5 * (p + q)
    safe_m = jnp.where(m > 0, m, 1.0)
    kl_pm = _xlogy(p, p) - _xlogy(p, safe_m)
    kl_qm = _xlogy(q, q) - _xlogy(q, safe_m)
    return 0.5 * jnp.sum((kl_pm + kl_qm) * dx)
