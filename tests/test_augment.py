"""DiffAugment: reproducible from the key, the official operations' semantics, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import augment

POLICY = "color,translation,cutout"


def images(shape=(4, 8, 6, 3), seed=0):
    return jnp.tanh(jax.random.normal(jax.random.key(seed), shape))


def test_the_same_key_gives_the_same_transform_and_another_key_another():
    x = images()
    a = augment.diff_augment(x, jax.random.key(1), POLICY)
    b = jax.jit(lambda x, k: augment.diff_augment(x, k, POLICY))(x, jax.random.key(1))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    c = augment.diff_augment(x, jax.random.key(2), POLICY)
    assert not np.allclose(np.asarray(a), np.asarray(c))
    assert a.shape == x.shape and a.dtype == x.dtype


def test_the_empty_policy_is_the_identity_and_unknown_names_are_refused():
    x = images()
    assert augment.diff_augment(x, jax.random.key(0), "") is x
    with pytest.raises(ValueError, match="color, translation, cutout"):
        augment.diff_augment(x, jax.random.key(0), "color,flip")
    assert augment.parse_policy(" color , cutout") == ("color", "cutout")


def test_translation_shifts_each_image_by_its_offsets_with_zero_fill():
    x = jnp.arange(3 * 8 * 8, dtype=jnp.float32).reshape(3, 8, 8, 1) + 1
    key = jax.random.key(7)
    t_h, t_w = (np.asarray(t) for t in augment.translation_offsets(x, key))
    assert np.all(np.abs(t_h) <= 1) and np.all(np.abs(t_w) <= 1)  # int(8 / 8 + 0.5) = 1
    got = np.asarray(augment.translation(x, key))
    xs = np.asarray(x)
    for b in range(3):
        want = np.zeros_like(xs[b])
        for i in range(8):
            for j in range(8):
                si, sj = i + t_h[b], j + t_w[b]
                if 0 <= si < 8 and 0 <= sj < 8:
                    want[i, j] = xs[b, si, sj]
        np.testing.assert_array_equal(got[b], want)


def test_translation_draws_every_offset_of_its_range():
    x = jnp.zeros((2000, 32, 16, 1))
    t_h, t_w = augment.translation_offsets(x, jax.random.key(0))
    assert set(np.asarray(t_h).tolist()) == set(range(-4, 5))  # int(32 / 8 + 0.5) = 4
    assert set(np.asarray(t_w).tolist()) == set(range(-2, 3))


def test_cutout_zeroes_one_rectangle_of_half_the_size_clipped_at_the_border():
    x = jnp.ones((64, 8, 10, 2))
    key = jax.random.key(3)
    got = np.asarray(augment.cutout(x, key))
    o_h, o_w = (np.asarray(o) for o in augment.cutout_offsets(x, key))
    assert o_h.max() <= 8 and o_w.max() <= 10  # randint(0, size + 1 - c % 2): c = 4, 5
    for b in range(64):
        rows = [r for r in range(o_h[b] - 2, o_h[b] + 2) if 0 <= r < 8]
        cols = [c for c in range(o_w[b] - 2, o_w[b] + 3) if 0 <= c < 10]
        want = np.ones((8, 10, 2))
        want[np.ix_(rows, cols)] = 0
        np.testing.assert_array_equal(got[b], want)
    full = [b for b in range(64) if 2 <= o_h[b] <= 6 and 2 <= o_w[b] <= 7]
    assert full and all((got[b] == 0).sum() == 4 * 5 * 2 for b in full)


def test_color_on_a_constant_image_only_shifts_its_brightness():
    x = jnp.full((5, 4, 4, 3), 0.25)
    got = np.asarray(augment.color(x, jax.random.key(0)))
    # Saturation and contrast scale deviations from the mean, and a constant has none.
    for b in range(5):
        assert np.allclose(got[b], got[b, 0, 0, 0], atol=1e-6)
        assert -0.5 - 1e-6 <= got[b, 0, 0, 0] - 0.25 <= 0.5 + 1e-6
    assert len(set(np.round(got[:, 0, 0, 0], 6))) == 5  # one draw per image


def test_gradients_flow_through_the_augmentation_to_a_generator():
    key = jax.random.key(0)
    theta = jnp.full((3,), 0.1)

    def g(theta):  # a "generator": images as a function of parameters
        return jnp.tanh(theta[0] + theta[1] * images((2, 8, 8, 3)) + theta[2])

    grad = jax.grad(lambda t: jnp.sum(augment.diff_augment(g(t), key, POLICY) ** 2))(theta)
    assert np.all(np.isfinite(grad)) and np.all(grad != 0)
    dx = jax.grad(lambda x: jnp.sum(augment.diff_augment(x, key, POLICY)))(images())
    assert np.all(np.isfinite(dx)) and np.any(dx != 0)
    x = images()
    cut = jax.grad(lambda x: jnp.sum(augment.cutout(x, key)))(x)
    np.testing.assert_array_equal(np.asarray(cut), np.asarray(augment.cutout(x, key) != 0))


def test_it_vmaps_over_keys():
    x = images((2, 8, 8, 1))
    keys = jax.random.split(jax.random.key(0), 3)
    out = jax.vmap(lambda k: augment.diff_augment(x, k, POLICY))(keys)
    assert out.shape == (3, 2, 8, 8, 1)
    np.testing.assert_allclose(out[1], augment.diff_augment(x, keys[1], POLICY), atol=1e-6)
