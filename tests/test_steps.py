"""The train step: update order against a plain Python reference, purity, learning."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxgan import losses, models, steps
from jaxgan import state as state_lib

LR_D, LR_G = 0.05, 0.02


class TinyG(nn.Module):
    """Dense -> BatchNorm -> ReLU -> Dense: exercises the model-state path."""

    @nn.compact
    def __call__(self, z, *, train):
        h = nn.Dense(8)(z)
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
        return nn.Dense(2)(nn.relu(h))


class TinyD(nn.Module):
    """Dense -> tanh -> Dropout -> Dense logit: exercises the dropout path."""

    @nn.compact
    def __call__(self, x, *, train):
        h = jnp.tanh(nn.Dense(8)(x))
        h = nn.Dropout(0.3, deterministic=not train)(h)
        return nn.Dense(1)(h)[:, 0]


def tiny_gan(g_tx=None, d_tx=None):
    tiny = models.GANModels(
        generator=TinyG(),
        discriminator=TinyD(),
        latent_dim=3,
        data_shape=(2,),
        output_range=(-float("inf"), float("inf")),
        pack=1,
    )
    return state_lib.GAN(tiny, g_tx or optax.sgd(LR_G), d_tx or optax.sgd(LR_D))


def real_batches(k, batch=16, seed=7):
    return 1.0 + 0.5 * jax.random.normal(jax.random.key(seed), (k, batch, 2))


# ------------------------------------------------------------------ the Python reference


def reference_step(gan, st, batches, key, *, k, ema_decay, loss="non_saturating"):
    """k D updates then one G update, written out plainly with SGD and Python loops."""
    pair = losses.get_loss(loss)
    G, D = gan.generator, gan.discriminator
    d_keys, g_key = steps.step_keys(key, st.step, k)
    g_params, d_params = st.g_params, st.d_params
    g_bs = st.g_model_state
    for i in range(k):
        z_key, drop_real, drop_fake, _ = jax.random.split(d_keys[i], 4)
        z = gan.models.sample_latent(z_key, batches.shape[1])
        fake, g_bs = G.apply({"params": g_params, **g_bs}, z, train=True, mutable=["batch_stats"])

        def d_loss(p, fake=fake, drop_real=drop_real, drop_fake=drop_fake, i=i):
            r = D.apply({"params": p}, batches[i], train=True, rngs={"dropout": drop_real})
            f = D.apply({"params": p}, fake, train=True, rngs={"dropout": drop_fake})
            return jnp.mean(pair.discriminator(r, f))

        grads = jax.grad(d_loss)(d_params)
        d_params = jax.tree.map(lambda p, g: p - LR_D * g, d_params, grads)
    z_key, drop_key = jax.random.split(g_key)
    z = gan.models.sample_latent(z_key, batches.shape[1])

    def g_loss(p):
        fake, bs = G.apply({"params": p, **g_bs}, z, train=True, mutable=["batch_stats"])
        logits = D.apply({"params": d_params}, fake, train=True, rngs={"dropout": drop_key})
        return jnp.mean(pair.generator(logits)), bs

    grads, g_bs = jax.grad(g_loss, has_aux=True)(g_params)
    g_params = jax.tree.map(lambda p, g: p - LR_G * g, g_params, grads)
    ema = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, st.g_ema_params, g_params)
    return g_params, d_params, g_bs, ema


@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("loss", ["non_saturating", "minimax", "hinge"])
def test_jitted_step_matches_python_reference(k, loss):
    gan = tiny_gan()
    st = state_lib.create_state(gan, jax.random.key(0))
    key = jax.random.key(42)
    batches = real_batches(k)
    step = jax.jit(steps.make_train_step(gan, loss=loss, d_steps=k, ema_decay=0.9))
    for _ in range(2):  # two iterations: the second starts from a nonzero step
        ref = reference_step(gan, st, batches, key, k=k, ema_decay=0.9, loss=loss)
        st, metrics = step(st, batches, key)
        for got, want in zip(
            (st.g_params, st.d_params, st.g_model_state, st.g_ema_params), ref, strict=True
        ):
            jax.tree.map(
                lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), got, want
            )
    assert int(st.step) == 2
    assert float(metrics["finite"]) == 1.0


@pytest.mark.parametrize("fresh", [True, False])
def test_scanned_d_updates_equal_unrolled(fresh):
    gan = tiny_gan(optax.adam(1e-3), optax.adam(1e-3))
    st = state_lib.create_state(gan, jax.random.key(0))
    args = (st, real_batches(3), jax.random.key(6))
    kwargs = dict(d_steps=3, fresh_g_noise=fresh)
    unrolled = jax.jit(steps.make_train_step(gan, **kwargs))(*args)
    scanned = jax.jit(steps.make_train_step(gan, scan_d_steps=True, **kwargs))(*args)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), unrolled, scanned
    )


def test_bfloat16_compute_keeps_float32_state_and_tracks_float32():
    gan = tiny_gan(optax.adam(1e-3), optax.adam(1e-3))
    st = state_lib.create_state(gan, jax.random.key(0))
    args = (st, real_batches(1), jax.random.key(8))
    full, m_full = jax.jit(steps.make_train_step(gan))(*args)
    mixed, m_mixed = jax.jit(steps.make_train_step(gan, compute_dtype=jnp.bfloat16))(*args)
    assert jax.tree.structure(mixed) == jax.tree.structure(full)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(mixed), strict=True):
        assert a.dtype == b.dtype  # parameters, optimizer and BatchNorm states stay float32
    assert m_mixed["d_loss"].dtype == jnp.float32 and float(m_mixed["finite"]) == 1.0
    np.testing.assert_allclose(m_mixed["d_loss"], m_full["d_loss"], rtol=2e-2)
    assert not np.array_equal(m_mixed["d_loss"], m_full["d_loss"])  # it did compute in bf16


def test_d_updates_do_not_touch_g_params():
    gan = tiny_gan()
    st = state_lib.create_state(gan, jax.random.key(0))
    # With a zero generator learning rate, only the D updates can change anything of G's.
    gan0 = state_lib.GAN(gan.models, optax.sgd(0.0), gan.d_tx)
    new, _ = jax.jit(steps.make_train_step(gan0, d_steps=3))(st, real_batches(3), jax.random.key(1))
    jax.tree.map(np.testing.assert_array_equal, new.g_params, st.g_params)
    assert not np.allclose(new.d_params["Dense_0"]["kernel"], st.d_params["Dense_0"]["kernel"])


def test_g_update_sees_the_updated_discriminator():
    # Same G, two runs: with a D learning rate of zero the G gradient differs from the
    # run where D moved first; so G is trained against the updated D, not the stale one.
    gan = tiny_gan()
    st = state_lib.create_state(gan, jax.random.key(0))
    args = (st, real_batches(2), jax.random.key(3))
    moved, _ = steps.make_train_step(gan, d_steps=2)(*args)
    frozen_d = state_lib.GAN(gan.models, gan.g_tx, optax.sgd(0.0))
    stale, _ = steps.make_train_step(frozen_d, d_steps=2)(*args)
    assert not np.allclose(moved.g_params["Dense_1"]["kernel"], stale.g_params["Dense_1"]["kernel"])


def test_second_call_does_not_recompile_and_is_bitwise_deterministic():
    gan = tiny_gan(optax.adam(1e-3), optax.adam(1e-3))
    st = state_lib.create_state(gan, jax.random.key(0))
    step = jax.jit(steps.make_train_step(gan, d_steps=2))
    batches, key = real_batches(2), jax.random.key(5)
    a1, _ = step(st, batches, key)
    size = step._cache_size()
    a2, m2 = step(a1, batches, key)
    assert step._cache_size() == size == 1
    b1, _ = step(st, batches, key)
    b2, n2 = step(b1, batches, key)
    for x, y in ((a2, b2), (m2, n2)):
        jax.tree.map(np.testing.assert_array_equal, x, y)


def test_state_keeps_structure_shapes_and_dtypes():
    gan = tiny_gan(optax.adam(1e-3), optax.adam(1e-3))
    st = state_lib.create_state(gan, jax.random.key(0))
    new, metrics = jax.jit(steps.make_train_step(gan, d_steps=3))(
        st, real_batches(3), jax.random.key(0)
    )
    assert jax.tree.structure(new) == jax.tree.structure(st)
    jax.tree.map(lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype) or pytest.fail(), new, st)
    assert set(metrics) >= {
        "d_loss", "g_loss", "d_real", "d_fake", "d_acc_real", "d_acc_fake",
        "d_grad_norm", "g_grad_norm", "d_param_norm", "g_param_norm",
    }  # fmt: skip
    assert all(jnp.shape(v) == () for v in metrics.values())


def test_fresh_g_noise_false_reuses_last_d_noise():
    gan = tiny_gan()
    st = state_lib.create_state(gan, jax.random.key(0))
    args = (st, real_batches(1), jax.random.key(9))
    fresh, _ = steps.make_train_step(gan, fresh_g_noise=True)(*args)
    reuse, _ = steps.make_train_step(gan, fresh_g_noise=False)(*args)
    jax.tree.map(np.testing.assert_array_equal, fresh.d_params, reuse.d_params)
    assert not np.allclose(fresh.g_params["Dense_1"]["kernel"], reuse.g_params["Dense_1"]["kernel"])


def test_nonfinite_update_is_skipped_jointly():
    gan = tiny_gan(optax.adam(1e-3), optax.adam(1e-3))
    st = state_lib.create_state(gan, jax.random.key(0))
    step = jax.jit(steps.make_train_step(gan))
    bad = real_batches(1).at[0, 0, 0].set(jnp.nan)
    new, metrics = step(st, bad, jax.random.key(0))
    assert float(metrics["finite"]) == 0.0 and int(new.skipped) == 1 and int(new.skip_streak) == 1
    kept = ("g_params", "d_params", "g_opt_state", "d_opt_state", "g_ema_params")
    kept += ("g_model_state", "d_model_state")  # G's BatchNorm statistics too
    assert jax.tree.leaves(st.g_model_state)
    for name in kept:
        jax.tree.map(np.testing.assert_array_equal, getattr(new, name), getattr(st, name))
    assert int(new.step) == 1
    new, _ = step(new, bad, jax.random.key(0))
    assert int(new.skip_streak) == 2
    new, _ = step(new, real_batches(1), jax.random.key(0))
    assert int(new.skipped) == 2 and int(new.skip_streak) == 0
    assert not np.array_equal(new.g_params["Dense_0"]["kernel"], st.g_params["Dense_0"]["kernel"])


@pytest.mark.parametrize("fresh_g_noise", [True, False])
def test_guard_leaves_finite_steps_unchanged(fresh_g_noise):
    # The guard decides before G's optimizer update and runs it inside a lax.cond; a
    # finite step must be the unguarded one (jitted, as train.py runs it). XLA may fuse
    # the update differently inside the cond: equal to float rounding, not bit for bit.
    gan = tiny_gan(optax.adam(1e-3), optax.adam(1e-3))
    st = state_lib.create_state(gan, jax.random.key(0))
    outs = []
    for skip in (True, False):
        step = jax.jit(steps.make_train_step(gan, fresh_g_noise=fresh_g_noise, skip_nonfinite=skip))
        s = st
        for i in range(3):
            s, metrics = step(s, real_batches(1, seed=i), jax.random.key(1))
        assert float(metrics["finite"]) == 1.0
        outs.append(s)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9), *outs)


def test_wrong_number_of_minibatches_raises():
    gan = tiny_gan()
    st = state_lib.create_state(gan, jax.random.key(0))
    with pytest.raises(ValueError, match="d_steps=3"):
        steps.make_train_step(gan, d_steps=3)(st, real_batches(2), jax.random.key(0))
    with pytest.raises(ValueError, match="d_steps must be"):
        steps.make_train_step(gan, d_steps=0)


@pytest.mark.parametrize("penalty", ["gp_weight", "r1_gamma", "r2_gamma"])
def test_penalties_change_d_update_and_stay_finite(penalty):
    gan = tiny_gan()
    st = state_lib.create_state(gan, jax.random.key(0))
    args = (st, real_batches(1), jax.random.key(4))
    plain, _ = steps.make_train_step(gan, loss="wasserstein")(*args)
    pen, metrics = steps.make_train_step(gan, loss="wasserstein", **{penalty: 10.0})(*args)
    assert float(metrics["d_penalty"]) > 0 and float(metrics["finite"]) == 1.0
    assert not np.allclose(plain.d_params["Dense_0"]["kernel"], pen.d_params["Dense_0"]["kernel"])


def test_optimizer_from_config():
    adam = ml_collections.ConfigDict(dict(name="adam", b1=0.5, b2=0.999, eps=1e-8))
    sgd = ml_collections.ConfigDict(
        dict(name="sgd", momentum=0.5, final_momentum=0.7, momentum_ramp_steps=10, lr_decay=0.5)
    )
    params = {"w": jnp.ones(2)}
    tx = state_lib.make_optimizer(sgd, 0.1)
    opt = tx.init(params)
    for _ in range(3):
        _, opt = tx.update({"w": jnp.ones(2)}, opt, params)
    # inject_hyperparams records the values used by the last (third) update: schedule(2).
    np.testing.assert_allclose(opt.hyperparams["learning_rate"], 0.1 * 0.5**2, rtol=1e-6)
    np.testing.assert_allclose(opt.hyperparams["momentum"], 0.5 + 0.2 * 2 / 10, rtol=1e-6)
    assert float(state_lib.make_optimizer(adam, 2e-4).init(params).hyperparams["b1"]) == 0.5
    with pytest.raises(ValueError, match="Unknown optimizer"):
        state_lib.make_optimizer(ml_collections.ConfigDict({"name": "rmsprop"}), 0.1)


# ------------------------------------------------------------------ it learns


class AffineG(nn.Module):
    @nn.compact
    def __call__(self, z, *, train):
        return nn.Dense(1)(z)


class MLPD(nn.Module):
    @nn.compact
    def __call__(self, x, *, train):
        h = nn.leaky_relu(nn.Dense(32)(x), 0.2)
        h = nn.leaky_relu(nn.Dense(32)(h), 0.2)
        return nn.Dense(1)(h)[:, 0]


def test_learns_a_1d_gaussian():
    """G(z) = a z + b with z ~ N(0, 1) learns N(3, 0.5²): mean and std within 0.15."""
    mean, std, batch, k = 3.0, 0.5, 256, 2
    gan = state_lib.GAN(
        models.GANModels(AffineG(), MLPD(), 1, (1,), (-np.inf, np.inf), 1),
        optax.adam(2e-3, b1=0.5),
        optax.adam(2e-3, b1=0.5),
    )
    st = state_lib.create_state(gan, jax.random.key(0))
    train_step = steps.make_train_step(gan, d_steps=k, ema_decay=0.99)

    @functools.partial(jax.jit, static_argnums=2)
    def run(st, key, n):
        def body(st, _):
            data_key = jax.random.fold_in(jax.random.fold_in(key, 1), st.step)
            real = mean + std * jax.random.normal(data_key, (k, batch, 1))
            return train_step(st, real, key)[0], None

        return jax.lax.scan(body, st, None, length=n)[0]

    st = run(st, jax.random.key(1), 3000)
    sample = jax.jit(steps.make_sample_fn(gan), static_argnums=3)
    x = sample(st.g_ema_params, st.g_model_state, jax.random.key(2), 20_000)
    assert abs(float(x.mean()) - mean) < 0.15, float(x.mean())
    assert abs(float(x.std()) - std) < 0.15, float(x.std())


# ------------------------------------------------------------------ reused noise: one G forward


def reuse_reference(gan, st, batches, key, *, k, ema_decay):
    """fresh_g_noise=False written out: the G update re-runs G on the last D update's noise."""
    pair = losses.get_loss("non_saturating")
    G, D = gan.generator, gan.discriminator
    d_keys, g_key = steps.step_keys(key, st.step, k)
    d_params, g_bs = st.d_params, st.g_model_state
    for i in range(k):
        z_key, drop_real, drop_fake, _ = jax.random.split(d_keys[i], 4)
        z = gan.models.sample_latent(z_key, batches.shape[1])
        fake, g_bs_after = G.apply(
            {"params": st.g_params, **g_bs}, z, train=True, mutable=["batch_stats"]
        )

        def d_loss(p, fake=fake, drop_real=drop_real, drop_fake=drop_fake, i=i):
            r = D.apply({"params": p}, batches[i], train=True, rngs={"dropout": drop_real})
            f = D.apply({"params": p}, fake, train=True, rngs={"dropout": drop_fake})
            return jnp.mean(pair.discriminator(r, f))

        grads = jax.grad(d_loss)(d_params)
        d_params = jax.tree.map(lambda p, g: p - LR_D * g, d_params, grads)
        last_z, g_bs_before, g_bs = z, g_bs, g_bs_after
    _, drop_key = jax.random.split(g_key)

    def g_loss(p):
        fake, _ = G.apply({"params": p, **g_bs_before}, last_z, train=True, mutable=["batch_stats"])
        logits = D.apply({"params": d_params}, fake, train=True, rngs={"dropout": drop_key})
        return jnp.mean(pair.generator(logits))

    grads = jax.grad(g_loss)(st.g_params)
    g_params = jax.tree.map(lambda p, g: p - LR_G * g, st.g_params, grads)
    ema = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, st.g_ema_params, g_params)
    # One G forward per D update: the running statistics move k times, not k + 1.
    return g_params, d_params, g_bs, ema


@pytest.mark.parametrize("k", [1, 3])
def test_reused_noise_backpropagates_through_the_d_steps_g_forward(k):
    gan = tiny_gan()
    st = state_lib.create_state(gan, jax.random.key(0))
    batches, key = real_batches(k), jax.random.key(11)
    step = jax.jit(steps.make_train_step(gan, d_steps=k, ema_decay=0.9, fresh_g_noise=False))
    for _ in range(2):
        ref = reuse_reference(gan, st, batches, key, k=k, ema_decay=0.9)
        st, metrics = step(st, batches, key)
        for got, want in zip(
            (st.g_params, st.d_params, st.g_model_state, st.g_ema_params), ref, strict=True
        ):
            jax.tree.map(
                lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), got, want
            )
    assert float(metrics["finite"]) == 1.0


def _count_dots(jaxpr, lhs_shape, rhs_shape):
    """Number of dot_generals with these operand shapes in a jaxpr and its sub-jaxprs."""
    total = 0
    for eqn in jaxpr.eqns:
        shapes = [getattr(v.aval, "shape", None) for v in eqn.invars]
        if eqn.primitive.name == "dot_general" and shapes == [lhs_shape, rhs_shape]:
            total += 1
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)  # ClosedJaxpr -> Jaxpr
            if hasattr(inner, "eqns"):
                total += _count_dots(inner, lhs_shape, rhs_shape)
    return total


def test_reused_noise_runs_g_forward_once():
    """Reused noise: one G forward per D update; fresh noise: one more for the G update."""
    gan = tiny_gan()
    st = state_lib.create_state(gan, jax.random.key(0))
    args = (st, real_batches(1), jax.random.key(0))
    forwards = {}
    for fresh in (True, False):
        jaxpr = jax.make_jaxpr(steps.make_train_step(gan, fresh_g_noise=fresh))(*args).jaxpr
        # TinyG's first Dense maps the (16, 3) latents to 8 units: its forward matmuls.
        forwards[fresh] = _count_dots(jaxpr, (16, 3), (3, 8))
    assert forwards == {False: 1, True: 2}, forwards


# ---------------------------------------------------------------- standing statistics
def _gan_with_bn(name="toy2d", shape=(2,)):
    config = ml_collections.ConfigDict(
        {
            "model": {"name": name},
            "pack": 1,
            "g_lr": 1e-4,
            "d_lr": 1e-4,
            "optimizer": {"name": "adam", "b1": 0.5, "b2": 0.999, "eps": 1e-8},
        }
    )
    gan = state_lib.build_gan(config, shape)
    return gan, state_lib.create_state(gan, jax.random.key(0))


def test_standing_stats_of_one_batch_make_eval_mode_equal_train_mode():
    gan, state = _gan_with_bn()
    # Parameters unlike those that made the running statistics (as an EMA is).
    params = jax.tree.map(lambda p: p * 1.5 + 0.01, state.g_params)
    z = gan.models.sample_latent(jax.random.key(1), 32)
    standing = jax.jit(steps.make_standing_stats_fn(gan))(params, state.g_model_state, z[None])
    generate = steps.make_generate_fn(gan)
    train_mode, _ = steps.apply_model(
        gan.models.generator, params, state.g_model_state, z, train=True
    )
    np.testing.assert_allclose(generate(params, standing, z), train_mode, rtol=2e-3, atol=2e-4)
    # ... which the old running statistics do not give.
    assert not np.allclose(generate(params, state.g_model_state, z), train_mode, atol=1e-2)


def test_standing_stats_average_the_batches():
    gan, state = _gan_with_bn()
    standing = jax.jit(steps.make_standing_stats_fn(gan))
    z = steps.standing_stats_noise(gan, batch_size=16, num_batches=3)
    assert z.shape == (3, 16, gan.models.latent_dim)
    together = standing(state.g_params, state.g_model_state, z)
    apart = [standing(state.g_params, state.g_model_state, z[i : i + 1]) for i in range(3)]
    mean = jax.tree.map(lambda *xs: sum(xs) / 3, *apart)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), together, mean
    )
    # The fixed noise is a function of its sizes alone.
    np.testing.assert_array_equal(z, steps.standing_stats_noise(gan, 16, 3))


def test_standing_stats_leave_a_generator_without_batchnorm_alone():
    gan, state = _gan_with_bn("mlp", (28, 28, 1))
    z = gan.models.sample_latent(jax.random.key(1), 8)[None]
    assert steps.make_standing_stats_fn(gan)(state.g_params, state.g_model_state, z) == (
        state.g_model_state
    )
