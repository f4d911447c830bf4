"""The relativistic losses: values by hand, their theory, stability and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxgan import losses

RP = losses.get_loss("relativistic_pairing")
RA = losses.get_loss("relativistic_average")


def softplus(x):
    return np.log1p(np.exp(x))


def test_values_by_hand():
    r, f = np.array([1.0, -0.5, 2.0]), np.array([0.0, 0.5, 2.0])
    np.testing.assert_allclose(RP.discriminator(r, f), softplus(f - r), rtol=1e-6)
    np.testing.assert_allclose(RP.generator(f, r), softplus(r - f), rtol=1e-6)
    want_d = softplus(f.mean() - r) + softplus(f - r.mean())
    want_g = softplus(r.mean() - f) + softplus(r - f.mean())
    np.testing.assert_allclose(RA.discriminator(r, f), want_d, rtol=1e-6)
    np.testing.assert_allclose(RA.generator(f, r), want_g, rtol=1e-6)
    assert RP.relativistic and RA.relativistic and not losses.get_loss("hinge").relativistic


def test_theory_log2_at_a_tie_mirror_and_monotone():
    x = jnp.linspace(-3, 3, 7)
    np.testing.assert_allclose(RP.discriminator(x, x), np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(RA.discriminator(x * 0, x * 0), 2 * np.log(2.0), rtol=1e-6)
    r, f = jnp.array([0.3, 1.0]), jnp.array([-2.0, 0.7])
    np.testing.assert_allclose(RP.generator(f, r), RP.discriminator(f, r))  # roles swapped
    gaps = jnp.linspace(-5, 5, 11)
    d = RP.discriminator(gaps, jnp.zeros_like(gaps))
    assert np.all(np.diff(np.asarray(d)) < 0)  # D's loss falls as real outscores fake


def test_pairing_loss_is_invariant_to_a_shift_of_every_logit():
    r, f = jnp.array([0.3, 1.0, -1.0]), jnp.array([-2.0, 0.7, 0.1])
    for pair in (RP, RA):
        np.testing.assert_allclose(
            pair.discriminator(r + 5.0, f + 5.0), pair.discriminator(r, f), rtol=1e-5
        )


@pytest.mark.parametrize("scale", [100.0, 1e4])
def test_finite_at_extreme_logits(scale):
    r = jnp.array([scale, -scale, scale, -scale], jnp.float32)
    f = jnp.array([-scale, scale, scale, -scale], jnp.float32)
    for pair in (RP, RA):
        d = lambda r, f, pair=pair: jnp.sum(pair.discriminator(r, f))
        g = lambda f, r, pair=pair: jnp.sum(pair.generator(f, r))
        for value in (d(r, f), g(f, r)):
            assert np.isfinite(float(value))
        for grads in (jax.grad(d, argnums=(0, 1))(r, f), jax.grad(g, argnums=(0, 1))(f, r)):
            assert all(np.all(np.isfinite(x)) for x in grads)


def test_gradients_check():
    r = jnp.array([0.3, 1.0, -1.0])
    f = jnp.array([-2.0, 0.7, 0.1])
    for pair in (RP, RA):
        check_grads(lambda r, f, pair=pair: jnp.sum(pair.discriminator(r, f)), (r, f), order=2,
                    modes=["rev"], atol=1e-2, rtol=1e-2)  # fmt: skip
        check_grads(lambda f, r, pair=pair: jnp.sum(pair.generator(f, r)), (f, r), order=2,
                    modes=["rev"], atol=1e-2, rtol=1e-2)  # fmt: skip


def test_shape_mismatch_and_integer_logits_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        RP.discriminator(jnp.zeros(3), jnp.zeros(4))
    with pytest.raises(ValueError, match="floating-point"):
        RA.generator(jnp.zeros(3, jnp.int32), jnp.zeros(3))
