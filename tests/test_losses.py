"""Losses checked against hand-computed values and against the theory of Goodfellow et al."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxgan import losses

LOG4 = math.log(4.0)
D_LOSSES = [
    losses.minimax_discriminator_loss,
    losses.wasserstein_discriminator_loss,
    losses.hinge_discriminator_loss,
    losses.least_squares_discriminator_loss,
]
G_LOSSES = [
    losses.minimax_generator_loss,
    losses.non_saturating_generator_loss,
    losses.wasserstein_generator_loss,
    losses.hinge_generator_loss,
    losses.least_squares_generator_loss,
]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------- hand-computed values


def test_minimax_discriminator_hand_values():
    r, f = np.array([2.0, -1.0]), np.array([0.5, -3.0])
    expected = -np.log(sigmoid(r)) - np.log(1.0 - sigmoid(f))
    np.testing.assert_allclose(losses.minimax_discriminator_loss(r, f), expected, rtol=1e-6)


def test_generator_losses_hand_values():
    f = np.array([1.5, -2.0, 0.0])
    np.testing.assert_allclose(
        losses.minimax_generator_loss(f), np.log(1.0 - sigmoid(f)), rtol=1e-6
    )
    np.testing.assert_allclose(
        losses.non_saturating_generator_loss(f), -np.log(sigmoid(f)), rtol=1e-6
    )
    np.testing.assert_allclose(losses.wasserstein_generator_loss(f), -f)
    np.testing.assert_allclose(losses.hinge_generator_loss(f), -f)
    np.testing.assert_allclose(losses.least_squares_generator_loss(f), 0.5 * (f - 1.0) ** 2)
    np.testing.assert_allclose(
        losses.least_squares_generator_loss(f, target=0.5), 0.5 * (f - 0.5) ** 2
    )


def test_symmetric_discriminator_losses_hand_values():
    r, f = np.array([0.3, 2.0]), np.array([-0.2, 1.5])
    np.testing.assert_allclose(losses.wasserstein_discriminator_loss(r, f), f - r)
    np.testing.assert_allclose(
        losses.hinge_discriminator_loss(r, f), np.maximum(0, 1 - r) + np.maximum(0, 1 + f)
    )
    np.testing.assert_allclose(
        losses.least_squares_discriminator_loss(r, f),
        0.5 * (r - 1.0) ** 2 + 0.5 * f**2,
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        losses.least_squares_discriminator_loss(r, f, real_target=1.0, fake_target=-1.0),
        0.5 * (r - 1.0) ** 2 + 0.5 * (f + 1.0) ** 2,
        rtol=1e-6,
    )


def test_value_at_half_is_minus_log4():
    zeros = jnp.zeros(7)
    np.testing.assert_allclose(losses.minimax_discriminator_loss(zeros, zeros), LOG4, rtol=1e-6)
    np.testing.assert_allclose(losses.value_from_logits(zeros, zeros), -LOG4, rtol=1e-6)


def test_no_hidden_label_smoothing():
    # A perfect D (huge logits the right way) has loss 0: no smoothed targets inside.
    big = jnp.full(3, 60.0)
    np.testing.assert_allclose(losses.minimax_discriminator_loss(big, -big), 0.0, atol=1e-12)
    np.testing.assert_allclose(losses.non_saturating_generator_loss(big), 0.0, atol=1e-12)


# ---------------------------------------------------------------- theory: D*, V, JSD


def _gaussian(x, mean, std):
    return jnp.exp(-0.5 * ((x - mean) / std) ** 2) / (std * jnp.sqrt(2 * jnp.pi))


@pytest.mark.parametrize(("mean_g", "std_g"), [(0.0, 1.0), (1.0, 1.0), (2.0, 0.5), (-3.0, 2.0)])
def test_value_at_optimal_d_is_2jsd_minus_log4(mean_g, std_g):
    # float64 quadrature: in float32, D* rounds to 1 in the far tails where p_g is still
    # positive, and log(1 - D*) becomes -inf.
    with jax.enable_x64(True):
        _check_value_at_optimum(mean_g, std_g)


def _check_value_at_optimum(mean_g, std_g):
    x = jnp.linspace(-25.0, 25.0, 100_001)
    dx = 50.0 / 100_000
    p_data = _gaussian(x, 0.0, 1.0)
    p_g = _gaussian(x, mean_g, std_g)
    d_star = losses.optimal_discriminator(p_data, p_g)
    # Far in the tails D* rounds to exactly 1 (or 0) while the other density is still a
    # positive 1e-300: log(1 - D*) = -inf times a weight that is numerically nil.
    d_star = jnp.clip(d_star, 1e-15, 1 - 1e-15)
    value = losses.value_from_densities(d_star, p_data, p_g, dx)
    jsd = losses.jensen_shannon_divergence(p_data, p_g, dx)
    np.testing.assert_allclose(value, 2.0 * jsd - LOG4, atol=1e-3)
    assert 0.0 <= float(jsd) <= math.log(2.0) + 1e-6

    # Any perturbation of D* lowers V (D* maximizes V for fixed G).
    for bump in (lambda x: 0.2 * jnp.sin(x), lambda x: 0.1 * jnp.ones_like(x)):
        logit = jax.scipy.special.logit(jnp.clip(d_star, 1e-7, 1 - 1e-7))
        d_other = jax.nn.sigmoid(logit + bump(x))
        assert float(losses.value_from_densities(d_other, p_data, p_g, dx)) < float(value) - 1e-4


def test_identical_distributions_optimum():
    x = jnp.linspace(-20.0, 20.0, 40_001)
    dx = 40.0 / 40_000
    p = _gaussian(x, 0.5, 1.3)
    d_star = losses.optimal_discriminator(p, p)
    np.testing.assert_allclose(d_star[jnp.abs(x) < 5], 0.5, rtol=1e-6)
    np.testing.assert_allclose(losses.value_from_densities(d_star, p, p, dx), -LOG4, atol=1e-4)
    np.testing.assert_allclose(losses.jensen_shannon_divergence(p, p, dx), 0.0, atol=1e-6)


def test_disjoint_supports_jsd_is_log2():
    p = jnp.array([0.5, 0.5, 0.0, 0.0])
    q = jnp.array([0.0, 0.0, 0.5, 0.5])
    np.testing.assert_allclose(losses.jensen_shannon_divergence(p, q, 1.0), math.log(2), rtol=1e-6)
    np.testing.assert_allclose(losses.optimal_discriminator(p, q), [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(losses.optimal_discriminator(jnp.zeros(2), jnp.zeros(2)), 0.5)


def test_value_from_logits_matches_densities_by_monte_carlo():
    # D(x) = sigmoid(a x): the sample estimate converges to the quadrature value.
    key_r, key_f = jax.random.split(jax.random.key(0))
    real = jax.random.normal(key_r, (200_000,))
    fake = 1.0 + jax.random.normal(key_f, (200_000,))
    a = 0.7
    mc = losses.value_from_logits(a * real, a * fake)
    x = jnp.linspace(-12, 12, 48_001)
    quad = losses.value_from_densities(
        jax.nn.sigmoid(a * x), _gaussian(x, 0, 1), _gaussian(x, 1, 1), 24.0 / 48_000
    )
    np.testing.assert_allclose(mc, quad, atol=1e-2)


# ---------------------------------------------------------------- gradients


def test_minimax_generator_saturates_non_saturating_does_not():
    # D confidently rejects the fakes: D(G(z)) -> 0, i.e. logit -> -inf.
    fake_logit = jnp.array(-20.0)
    g_minimax = jax.grad(lambda f: losses.minimax_generator_loss(f).sum())(fake_logit)
    g_ns = jax.grad(lambda f: losses.non_saturating_generator_loss(f).sum())(fake_logit)
    assert abs(float(g_minimax)) < 1e-8
    np.testing.assert_allclose(g_ns, -1.0, rtol=1e-6)


@pytest.mark.parametrize("logit", [-100.0, 100.0, -1e4, 1e4])
def test_finite_values_and_grads_at_extreme_logits(logit):
    x = jnp.full(3, logit)
    for loss in D_LOSSES:
        value, grads = jax.value_and_grad(lambda r, f, loss=loss: loss(r, f).sum(), (0, 1))(x, -x)
        assert jnp.all(jnp.isfinite(value)), loss.__name__
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads), loss.__name__
    for loss in G_LOSSES:
        value, grad = jax.value_and_grad(lambda f, loss=loss: loss(f).sum())(x)
        assert jnp.isfinite(value) and jnp.all(jnp.isfinite(grad)), loss.__name__


@pytest.mark.parametrize("loss", D_LOSSES)
def test_check_grads_discriminator(loss):
    r = jnp.array([0.3, -1.2, 2.5])
    f = jnp.array([-0.7, 0.4, 1.1])
    check_grads(
        lambda a, b: loss(a, b), (r, f), order=2, modes=["fwd", "rev"], atol=1e-2, rtol=1e-2
    )


@pytest.mark.parametrize("loss", G_LOSSES)
def test_check_grads_generator(loss):
    f = jnp.array([-0.7, 0.4, 1.1])
    check_grads(loss, (f,), order=2, modes=["fwd", "rev"], atol=1e-2, rtol=1e-2)


# ---------------------------------------------------------------- jit, shapes, errors


@pytest.mark.parametrize("loss", D_LOSSES)
def test_jit_matches_eager_and_keeps_shape(loss):
    key_r, key_f = jax.random.split(jax.random.key(1))
    r = 3 * jax.random.normal(key_r, (4, 5))
    f = 3 * jax.random.normal(key_f, (4, 5))
    eager = loss(r, f)
    assert eager.shape == (4, 5)
    np.testing.assert_allclose(jax.jit(loss)(r, f), eager, rtol=1e-6, atol=1e-6)


def test_jit_does_not_recompile():
    fn = jax.jit(losses.minimax_discriminator_loss)
    fn(jnp.zeros(3), jnp.ones(3))
    size = fn._cache_size()
    fn(jnp.ones(3), jnp.zeros(3))
    assert fn._cache_size() == size


@pytest.mark.parametrize("loss", D_LOSSES)
def test_mismatched_shapes_raise(loss):
    with pytest.raises(ValueError, match="same shape"):
        loss(jnp.zeros(3), jnp.zeros(4))


@pytest.mark.parametrize("loss", D_LOSSES)
def test_integer_input_raises(loss):
    with pytest.raises(ValueError, match="floating-point"):
        loss(jnp.zeros(3, jnp.int32), jnp.zeros(3))


@pytest.mark.parametrize("loss", G_LOSSES)
def test_integer_input_raises_generator(loss):
    with pytest.raises(ValueError, match="floating-point"):
        loss(np.arange(3))


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="Unknown loss"):
        losses.get_loss("vanilla")
    for name, pair in losses.LOSSES.items():
        assert losses.get_loss(name) is pair


# ---------------------------------------------------------------- symmetry


def test_swapping_real_and_fake_mirrors_symmetric_losses():
    r = jnp.array([0.3, -1.2, 2.5])
    f = jnp.array([-0.7, 0.4, 1.1])
    # -log s(r) - log(1 - s(f)) is symmetric under (r, f) -> (-f, -r).
    np.testing.assert_allclose(
        losses.minimax_discriminator_loss(r, f),
        losses.minimax_discriminator_loss(-f, -r),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        losses.hinge_discriminator_loss(r, f), losses.hinge_discriminator_loss(-f, -r), rtol=1e-6
    )
    # Wasserstein: swapping the roles flips the sign.
    np.testing.assert_allclose(
        losses.wasserstein_discriminator_loss(r, f), -losses.wasserstein_discriminator_loss(f, r)
    )
    # Least squares with targets (1, 0) swapped to (0, 1) mirrors.
    np.testing.assert_allclose(
        losses.least_squares_discriminator_loss(r, f),
        losses.least_squares_discriminator_loss(f, r, real_target=0.0, fake_target=1.0),
        rtol=1e-6,
    )


# ---------------------------------------------------------------- penalties


def test_wgan_gp_zero_for_unit_norm_linear_critic():
    w = jnp.array([0.6, 0.0, 0.8])  # unit norm: a 1-Lipschitz linear critic
    critic = lambda x: x @ w
    key_r, key_f, key_e = jax.random.split(jax.random.key(2), 3)
    real = jax.random.normal(key_r, (16, 3))
    fake = jax.random.normal(key_f, (16, 3))
    penalty = losses.wgan_gp_penalty(critic, real, fake, key_e)
    assert penalty.shape == (16,)
    np.testing.assert_allclose(penalty, 0.0, atol=1e-10)
    # A critic of slope 3 is penalised (3 - 1)^2 = 4 everywhere.
    np.testing.assert_allclose(
        losses.wgan_gp_penalty(lambda x: 3.0 * critic(x), real, fake, key_e), 4.0, rtol=1e-5
    )


def test_wgan_gp_image_shaped_input_and_gradient():
    critic = lambda x, s: s * jnp.sum(x, axis=(1, 2, 3))
    real = jnp.ones((2, 4, 4, 1))
    fake = jnp.zeros((2, 4, 4, 1))
    penalty = losses.wgan_gp_penalty(lambda x: critic(x, 0.5), real, fake, jax.random.key(0))
    np.testing.assert_allclose(penalty, (0.5 * 4.0 - 1.0) ** 2, rtol=1e-6)  # ||grad|| = 0.5 * 4
    grad = jax.grad(
        lambda s: losses.wgan_gp_penalty(
            lambda x: critic(x, s), real, fake, jax.random.key(0)
        ).sum()
    )(0.5)
    np.testing.assert_allclose(grad, 2 * 2 * (0.5 * 4 - 1) * 4, rtol=1e-5)


def test_r1_r2_penalties_quadratic_critic():
    # D(x) = sum x^2 -> grad 2x -> ||grad||^2 = 4 ||x||^2.
    critic = lambda x: jnp.sum(x**2, axis=-1)
    x = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    np.testing.assert_allclose(losses.r1_penalty(critic, x), [20.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(losses.r2_penalty(critic, x), [20.0, 4.0], rtol=1e-6)


def test_penalty_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        losses.wgan_gp_penalty(
            lambda x: x[:, 0], jnp.zeros((2, 3)), jnp.zeros((3, 3)), jax.random.key(0)
        )
