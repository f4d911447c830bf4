"""The modern toolkit wired through the library: labels from the data to the step,
conditional and spectrally normalised networks in the jitted step (against a plain Python
reference), DiffAugment and relativistic losses in the step, truncated and class-chosen
sampling, and the combinations that are refused."""

import gzip
import os
import struct

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgan import augment, data, losses, models, sampling, steps
from jaxgan import state as state_lib

LR_D, LR_G = 0.05, 0.02


# ------------------------------------------------------------------ truncation


def test_truncation_keeps_the_coordinates_inside_and_redraws_the_others():
    m = models.build_models("dcgan28", data_shape=(28, 28, 1))
    key = jax.random.key(3)
    plain = np.asarray(m.sample_latent(key, 500))
    cut = np.asarray(m.sample_latent(key, 500, truncation=0.5))
    assert cut.shape == plain.shape and np.all(np.abs(cut) <= 0.5)
    inside = np.abs(plain) <= 0.5
    np.testing.assert_array_equal(cut[inside], plain[inside])
    assert not np.array_equal(cut[~inside], plain[~inside])
    again = np.asarray(jax.jit(lambda k: m.sample_latent(k, 500, truncation=0.5))(key))
    np.testing.assert_array_equal(again, cut)
    # Distributed as a truncated normal: its variance is far below the prior's.
    expected_var = 1 - 2 * 0.5 * np.exp(-0.125) / np.sqrt(2 * np.pi) / 0.3829249
    assert abs(cut.var() - expected_var) < 0.01


def test_truncation_of_the_uniform_prior_or_a_bad_threshold_is_refused():
    mlp = models.build_models("mlp", data_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="uniform"):
        mlp.sample_latent(jax.random.key(0), 4, truncation=1.0)
    dc = models.build_models("dcgan28", data_shape=(28, 28, 1))
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="positive threshold"):
            dc.sample_latent(jax.random.key(0), 4, truncation=bad)


# ------------------------------------------------------------------ labels from the data


def _write_idx(directory, num=12, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    for images_name, labels_name in data.IDX_FILES.values():
        images = rng.integers(0, 256, (num, 28, 28), dtype=np.uint8)
        labels = (np.arange(num) % 10).astype(np.uint8)
        with gzip.open(os.path.join(directory, images_name), "wb") as f:
            f.write(struct.pack(">IIII", 2051, num, 28, 28) + images.tobytes())
        with gzip.open(os.path.join(directory, labels_name), "wb") as f:
            f.write(struct.pack(">II", 2049, num) + labels.tobytes())
    return directory


def test_idx_data_carry_their_labels_and_sampling_keeps_the_images(tmp_path):
    ds = data.load_idx(_write_idx(str(tmp_path / "idx")), name="mnist")
    assert ds.num_classes == 10
    np.testing.assert_array_equal(ds.arrays["labels"], np.arange(12) % 10)
    key = jax.random.key(5)
    plain = data.sample_batch(ds.arrays, key, 32, dataset=ds, value_range=(-1.0, 1.0))
    images, labels = data.sample_batch(
        ds.arrays, key, 32, dataset=ds, value_range=(-1.0, 1.0), labels=True
    )
    np.testing.assert_array_equal(np.asarray(images), np.asarray(plain))
    assert labels.dtype == jnp.int32 and labels.shape == (32,)
    # Each drawn image is the one its label belongs to.
    index = np.asarray(jax.random.randint(key, (32,), 0, 12))
    np.testing.assert_array_equal(np.asarray(labels), index % 10)


def test_data_without_labels_refuses_a_conditional_draw():
    ds = data.mixture("grid25")
    with pytest.raises(data.DataError, match="no class labels"):
        data.sample_batch(
            ds.arrays, jax.random.key(0), 4, dataset=ds, value_range=(0, 1), labels=True
        )


def test_tfds_labels_come_with_the_images():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        ds = data.load_tfds("cifar10", data_dir="/nonexistent/tfds")
    assert ds.num_classes == 10 and ds.arrays["labels"].shape == (6,)
    assert ds.arrays["labels"].max() < 10


# ------------------------------------------------------------------ the step, against a reference


class CondG(nn.Module):
    """Dense -> class-conditional BatchNorm -> ReLU -> Dense to a 4x4x1 image."""

    @nn.compact
    def __call__(self, z, y, *, train):
        h = nn.Dense(8)(z)
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9, use_scale=False,
                         use_bias=False)(h)  # fmt: skip
        h = h * (1 + nn.Embed(3, 8)(y)) + nn.Embed(3, 8)(y)
        return jnp.tanh(nn.Dense(16)(nn.relu(h))).reshape(-1, 4, 4, 1)


class ProjectionD(nn.Module):
    """Spectrally normalised Dense features, a logit and a projection on the label."""

    @nn.compact
    def __call__(self, x, y, *, train):
        h = x.reshape(x.shape[0], -1)
        sn = lambda layer, h: nn.SpectralNorm(layer, collection_name="spectral")(
            h, update_stats=train
        )
        h = jnp.tanh(sn(nn.Dense(8), h))
        return sn(nn.Dense(1), h)[:, 0] + jnp.sum(nn.Embed(3, 8)(y) * h, axis=-1)


def cond_gan():
    tiny = models.GANModels(
        generator=CondG(), discriminator=ProjectionD(), latent_dim=3, data_shape=(4, 4, 1),
        output_range=(-1.0, 1.0), pack=1, num_classes=3, conditioning="projection",
    )  # fmt: skip
    return state_lib.GAN(tiny, optax.sgd(LR_G), optax.sgd(LR_D))


POLICY = "color,translation,cutout"


def reference_step(gan, st, images, labels, key, *, k, loss, r1_gamma):
    """k D updates then one G update, written out plainly: the labels, the spectral-norm
    state, DiffAugment and R1 threaded through by hand, with SGD."""
    pair = losses.get_loss(loss)
    G, D, m = gan.generator, gan.discriminator, gan.models
    d_keys, g_key = steps.step_keys(key, st.step, k)
    g_params, d_params = st.g_params, st.d_params
    g_bs, d_sn = st.g_model_state, st.d_model_state
    for i in range(k):
        z_key, _, _, _ = jax.random.split(d_keys[i], 4)
        z = m.sample_latent(z_key, images.shape[1])
        y_fake = m.sample_labels(jax.random.fold_in(d_keys[i], 1), images.shape[1])
        aug_real, aug_fake = jax.random.split(jax.random.fold_in(d_keys[i], 2))
        fake, g_bs = G.apply(
            {"params": g_params, **g_bs}, z, y_fake, train=True, mutable=["batch_stats"]
        )
        fake = jax.lax.stop_gradient(fake)

        def d_loss(p, i=i, fake=fake, y_fake=y_fake, aug_real=aug_real, aug_fake=aug_fake,
                   d_sn=d_sn):  # fmt: skip
            def d(x, y, state, key):
                return D.apply({"params": p, **state}, augment.diff_augment(x, key, POLICY), y,
                               train=True, mutable=["spectral"])  # fmt: skip

            r, s1 = d(images[i], labels[i], d_sn, aug_real)
            f, s2 = d(fake, y_fake, s1, aug_fake)
            # R1 by hand: each logit depends on its own example alone, so the gradient of
            # their sum holds every example's gradient (through the augmentation).
            r1 = jax.grad(lambda x: jnp.sum(d(x, labels[i], d_sn, aug_real)[0]))(images[i])
            penalty = 0.5 * r1_gamma * jnp.mean(jnp.sum(r1.reshape(r1.shape[0], -1) ** 2, -1))
            return jnp.mean(pair.discriminator(r, f)) + penalty, s2

        grads, d_sn = jax.grad(d_loss, has_aux=True)(d_params)
        d_params = jax.tree.map(lambda p, g: p - LR_D * g, d_params, grads)
    z_key, _ = jax.random.split(g_key)
    z = m.sample_latent(z_key, images.shape[1])
    y = m.sample_labels(jax.random.fold_in(g_key, 1), images.shape[1])
    aug_fake, aug_real = jax.random.split(jax.random.fold_in(g_key, 2))

    def g_loss(p):
        fake, bs = G.apply({"params": p, **g_bs}, z, y, train=True, mutable=["batch_stats"])
        fake = augment.diff_augment(fake, aug_fake, POLICY)
        logits, sn = D.apply({"params": d_params, **d_sn}, fake, y, train=True,
                             mutable=["spectral"])  # fmt: skip
        if getattr(pair, "relativistic", False):
            real, sn = D.apply({"params": d_params, **sn},
                               augment.diff_augment(images[-1], aug_real, POLICY), labels[-1],
                               train=True, mutable=["spectral"])  # fmt: skip
            return jnp.mean(pair.generator(logits, real)), (bs, sn)
        return jnp.mean(pair.generator(logits)), (bs, sn)

    grads, (g_bs, d_sn) = jax.grad(g_loss, has_aux=True)(g_params)
    g_params = jax.tree.map(lambda p, g: p - LR_G * g, g_params, grads)
    return g_params, d_params, g_bs, d_sn


@pytest.mark.parametrize("loss", ["hinge", "relativistic_pairing"])
def test_conditional_sn_diffaugment_r1_step_matches_the_python_reference(loss):
    gan = cond_gan()
    st = state_lib.create_state(gan, jax.random.key(0))
    assert set(st.d_model_state) == {"spectral"}
    k, batch = 2, 8
    images = jnp.tanh(jax.random.normal(jax.random.key(1), (k, batch, 4, 4, 1)))
    labels = jax.random.randint(jax.random.key(2), (k, batch), 0, 3)
    key = jax.random.key(42)
    step = jax.jit(
        steps.make_train_step(
            gan, loss=loss, d_steps=k, ema_decay=0.9, r1_gamma=0.5, augment=POLICY,
            penalty_per="pack",
        )
    )  # fmt: skip
    for _ in range(2):
        want = reference_step(gan, st, images, labels, key, k=k, loss=loss, r1_gamma=0.5)
        st, metrics = step(st, (images, labels), key)
        got = (st.g_params, st.d_params, st.g_model_state, st.d_model_state)
        for a, b in zip(got, want, strict=True):
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), a, b)
    assert float(metrics["finite"]) == 1.0


def test_augment_off_is_the_plain_step_bit_for_bit():
    gan = cond_gan()
    st = state_lib.create_state(gan, jax.random.key(0))
    images = jnp.tanh(jax.random.normal(jax.random.key(1), (1, 8, 4, 4, 1)))
    labels = jnp.zeros((1, 8), jnp.int32)
    a = jax.jit(steps.make_train_step(gan, loss="hinge"))(st, (images, labels), jax.random.key(4))
    b = jax.jit(steps.make_train_step(gan, loss="hinge", augment=""))(
        st, (images, labels), jax.random.key(4)
    )
    for x, y in zip(jax.tree.leaves(a[0]), jax.tree.leaves(b[0]), strict=True):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def test_diffaugment_reaches_g_through_the_step():
    gan = cond_gan()
    st = state_lib.create_state(gan, jax.random.key(0))
    images = jnp.tanh(jax.random.normal(jax.random.key(1), (1, 8, 4, 4, 1)))
    labels = jnp.zeros((1, 8), jnp.int32)
    new, metrics = jax.jit(steps.make_train_step(gan, loss="hinge", augment=POLICY))(
        st, (images, labels), jax.random.key(4)
    )
    assert float(metrics["g_grad_norm"]) > 0
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new.g_params, st.g_params)
    assert max(jax.tree.leaves(moved)) > 0


def test_a_conditional_step_without_labels_is_refused():
    gan = cond_gan()
    st = state_lib.create_state(gan, jax.random.key(0))
    with pytest.raises(ValueError, match="class-conditional"):
        steps.make_train_step(gan)(st, jnp.zeros((1, 8, 4, 4, 1)), jax.random.key(0))


def test_combinations_that_make_no_sense_are_refused():
    with pytest.raises(ValueError, match="DiffAugment transforms images"):
        steps.make_train_step(state_lib.build_gan(_config("toy2d"), (2,)), augment="color")
    with pytest.raises(ValueError, match=r"unknown DiffAugment operation"):
        steps.make_train_step(
            state_lib.build_gan(_config("dcgan28"), (28, 28, 1)), augment="colour"
        )
    with pytest.raises(ValueError, match="pack=2 with a class-conditional GAN"):
        config = _config("dcgan28", conditioning="projection")
        config.pack = 2
        steps.make_train_step(state_lib.build_gan(config, (28, 28, 1), 10))
    with pytest.raises(ValueError, match="no class labels"):
        state_lib.build_gan(_config("dcgan28", conditioning="projection"), (28, 28, 1), 0)
    with pytest.raises(ValueError, match="class-conditional networks are"):
        state_lib.build_gan(_config("mlp", conditioning="acgan"), (28, 28, 1), 10)
    with pytest.raises(ValueError, match="spectral normalization is offered"):
        state_lib.build_gan(_config("toy2d", spectral_norm="d"), (2,))


def _config(name, **model):
    from jaxgan.configs import default

    config = default.get_config()
    config.model.name = name
    config.model.update(model)
    return config


def test_penalties_are_allowed_through_spectral_norm_but_not_batchnorm():
    gan = state_lib.build_gan(_config("dcgan28", spectral_norm="d"), (28, 28, 1))
    steps.make_train_step(gan, r1_gamma=1.0)  # dropout and u vectors: fine
    gan = state_lib.build_gan(_config("dcgan32"), (32, 32, 3))
    with pytest.raises(ValueError, match="batch_stats"):
        steps.make_train_step(gan, r1_gamma=1.0)


# ------------------------------------------------------------------ acgan


def test_acgan_step_trains_the_class_head_and_reports_its_loss():
    config = _config("dcgan28", conditioning="acgan")
    gan = state_lib.build_gan(config, (28, 28, 1), 10)
    st = state_lib.create_state(gan, jax.random.key(0))
    images = jnp.tanh(jax.random.normal(jax.random.key(2), (1, 4, 28, 28, 1)))
    labels = jnp.arange(4, dtype=jnp.int32)[None]
    step = jax.jit(steps.make_train_step(gan, loss="non_saturating", acgan_weight=1.0))
    new, metrics = step(st, (images, labels), jax.random.key(1))
    assert np.isfinite(float(metrics["d_class_loss"]))
    assert float(metrics["d_class_loss"]) > 2 * np.log(10) * 0.5  # two cross-entropies, ~log 10
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.d_params, st.d_params)
    assert all(jax.tree.leaves(changed))


# ------------------------------------------------------------------ sampling


def test_sampler_labels_balanced_or_chosen_and_standing_stats_keep_spectral_state():
    config = _config("dcgan28", conditioning="projection", spectral_norm="g_and_d")
    gan = state_lib.build_gan(config, (28, 28, 1), 10)
    st = state_lib.create_state(gan, jax.random.key(0))
    assert "spectral" in st.g_model_state and "batch_stats" in st.g_model_state
    sampler = sampling.Sampler(gan, ema_decay=0.999, batch_size=8)
    np.testing.assert_array_equal(sampler.labels_for(12), np.arange(12) % 10)
    # At initialisation every class's gain is 1 and bias 0: move them, so labels matter.
    leaves, tree = jax.tree.flatten(st.g_ema_params)
    noise = [0.1 * jax.random.normal(jax.random.key(i), x.shape) for i, x in enumerate(leaves)]
    st = st.replace(
        g_ema_params=jax.tree.unflatten(tree, [x + n for x, n in zip(leaves, noise, strict=True)])
    )
    g_params, g_ms = sampler.variables(st)
    spectral = jax.tree.map(np.asarray, st.g_model_state["spectral"])
    jax.tree.map(
        np.testing.assert_array_equal, jax.tree.map(np.asarray, g_ms["spectral"]), spectral
    )
    balanced = sampler(g_params, g_ms, 20, 0)
    sevens = sampler(g_params, g_ms, 20, 0, labels=7)
    explicit = sampler(g_params, g_ms, 20, 0, labels=sampler.labels_for(20))
    np.testing.assert_array_equal(balanced, explicit)
    np.testing.assert_array_equal(sevens[7], balanced[7])  # sample 7 is of class 7 in both
    assert not np.array_equal(sevens[0], balanced[0])
    with pytest.raises(ValueError, match=r"in \[0, 10\)"):
        sampler(g_params, g_ms, 4, 0, labels=10)


def test_unconditional_sampler_refuses_labels():
    gan = state_lib.build_gan(_config("dcgan28"), (28, 28, 1))
    st = state_lib.create_state(gan, jax.random.key(0))
    sampler = sampling.Sampler(gan, ema_decay=0.0, batch_size=8)
    assert sampler.labels_for(4) is None
    with pytest.raises(ValueError, match="not class-conditional"):
        sampler.sample(st, 4, 0, labels=1)


def test_every_setting_together_is_one_jitted_step_and_scan_equals_unrolled():
    gan = cond_gan()
    st = state_lib.create_state(gan, jax.random.key(0))
    k = 2
    images = jnp.tanh(jax.random.normal(jax.random.key(1), (k, 8, 4, 4, 1)))
    labels = jax.random.randint(jax.random.key(2), (k, 8), 0, 3)
    settings = dict(
        loss="relativistic_pairing", d_steps=k, fresh_g_noise=False, r1_gamma=0.1,
        r2_gamma=0.1, gp_weight=1.0, augment=POLICY, ema_warmup=True,
    )  # fmt: skip
    unrolled = jax.jit(steps.make_train_step(gan, **settings))
    scanned = jax.jit(steps.make_train_step(gan, scan_d_steps=True, **settings))
    a, metrics = unrolled(st, (images, labels), jax.random.key(3))
    b, _ = scanned(st, (images, labels), jax.random.key(3))
    assert float(metrics["finite"]) == 1.0 and float(metrics["d_penalty"]) > 0
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)
    bf16 = jax.jit(
        steps.make_train_step(gan, loss="hinge", augment=POLICY, compute_dtype=jnp.bfloat16)
    )
    c, metrics = bf16(st, (images[:1], labels[:1]), jax.random.key(3))
    assert float(metrics["finite"]) == 1.0
    assert jax.tree.map(lambda x: x.dtype, c) == jax.tree.map(lambda x: x.dtype, st)
