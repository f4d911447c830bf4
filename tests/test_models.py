"""Canonical networks: pinned parameter counts (docs/MODELS.md), shapes, ranges, packing, modes."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import conv, models, resnets

SHAPES = {
    "toy2d": (2,),
    "mlp": (784,),
    "dcgan28": (28, 28, 1),
    "dcgan32": (32, 32, 3),
    "dcgan64": (64, 64, 3),
}

# (G params, G batch_stats, D params, D batch_stats). mlp, dcgan28 and dcgan64 are from
# docs/MODELS.md; toy2d and dcgan32 are counted by hand:
#   toy2d G: (2*400+400) + 3*(400*400+400) + 4*2*400 BN + (400*2+2) = 486,402; 4*2*400 stats.
#   toy2d D: (2*1000+1000) + 2*(200*1000+1000) + (200+1) = 405,201.
#   dcgan32 G: 16*(100*256 + 256*128 + 128*64 + 64*3) + 2*(256+128+64) BN = 1,068,928.
#   dcgan32 D: 16*(3*64 + 64*128 + 128*256 + 256*1) + 2*(128+256) BN = 663,296.
CANONICAL = ("toy2d", "mlp", "dcgan28", "dcgan32", "dcgan64")
PARAM_COUNTS = {
    "toy2d": (486_402, 3_200, 405_201, 0),
    "mlp": (2_503_984, 0, 1_231_441, 0),
    "dcgan28": (2_305_472, 25_472, 212_865, 0),
    "dcgan32": (1_068_928, 896, 663_296, 768),
    "dcgan64": (3_576_704, 1_920, 2_765_568, 1_792),
}
OUTPUT_RANGES = {
    "toy2d": (-math.inf, math.inf),
    "mlp": (0.0, 1.0),
    "dcgan28": (-1.0, 1.0),
    "dcgan32": (-1.0, 1.0),
    "dcgan64": (-1.0, 1.0),
}


def count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def init_both(m, batch, key=0):
    """Initialises G and D (D on G's eval-mode output)."""
    g_key, d_key, z_key = jax.random.split(jax.random.key(key), 3)
    z = m.sample_latent(z_key, batch)
    g_vars = m.generator.init(g_key, z, train=False)
    x = m.generator.apply(g_vars, z, train=False)
    d_vars = m.discriminator.init(d_key, x, train=False)
    return z, g_vars, d_vars


def test_model_names_match_registry():
    assert tuple(SHAPES) == CANONICAL  # the SN-ResNets: tests/test_resnets.py
    assert models.MODEL_NAMES == CANONICAL + resnets.RESNET_NAMES
    for name in CANONICAL:
        assert models.build_models(name, data_shape=SHAPES[name]).data_shape == SHAPES[name]


@pytest.mark.parametrize("name", CANONICAL)
def test_parameter_counts(name):
    m = models.build_models(name, data_shape=SHAPES[name])
    z = jax.ShapeDtypeStruct((2, m.latent_dim), jnp.float32)
    x = jax.ShapeDtypeStruct((2, *SHAPES[name]), jnp.float32)
    g_vars = jax.eval_shape(lambda z: m.generator.init(jax.random.key(0), z, train=False), z)
    d_vars = jax.eval_shape(lambda x: m.discriminator.init(jax.random.key(0), x, train=False), x)
    got = (
        count(g_vars["params"]),
        count(g_vars.get("batch_stats", {})),
        count(d_vars["params"]),
        count(d_vars.get("batch_stats", {})),
    )
    assert got == PARAM_COUNTS[name]
    assert set(g_vars) | set(d_vars) <= {"params", "batch_stats"}


@pytest.mark.parametrize("name", CANONICAL)
def test_train_forward_shapes_ranges_and_batch_stats(name):
    m = models.build_models(name, data_shape=SHAPES[name])
    assert m.output_range == OUTPUT_RANGES[name]
    assert m.pack == 1
    batch = 4
    z, g_vars, d_vars = init_both(m, batch)
    rngs = {"dropout": jax.random.key(7)}

    @jax.jit
    def forward(g_vars, d_vars, z):
        x, g_updates = m.generator.apply(g_vars, z, train=True, mutable=["batch_stats"])
        logits, d_updates = m.discriminator.apply(
            d_vars, x, train=True, mutable=["batch_stats"], rngs=rngs
        )
        return x, logits, g_updates, d_updates

    x, logits, g_updates, d_updates = forward(g_vars, d_vars, z)
    assert x.shape == (batch, *SHAPES[name]) and x.dtype == jnp.float32
    lo, hi = m.output_range
    assert bool(jnp.all((x >= lo) & (x <= hi))) and bool(jnp.all(jnp.isfinite(x)))
    assert logits.shape == (batch,) and bool(jnp.all(jnp.isfinite(logits)))
    # Train mode moves every running statistic away from its initial value.
    for old, new in (
        (g_vars.get("batch_stats", {}), g_updates.get("batch_stats", {})),
        (d_vars.get("batch_stats", {}), d_updates.get("batch_stats", {})),
    ):
        assert jax.tree.structure(old) == jax.tree.structure(new)
        for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new), strict=True):
            assert not np.allclose(a, b)


@pytest.mark.parametrize("name", ["dcgan28", "dcgan64"])
def test_eval_mode_uses_running_stats_and_is_deterministic(name):
    m = models.build_models(name, data_shape=SHAPES[name])
    z, g_vars, d_vars = init_both(m, 2)
    x1 = m.generator.apply(g_vars, z, train=False)
    x2 = m.generator.apply(g_vars, z[:1], train=False)
    # Running statistics, not batch statistics: a sample does not depend on its batch mates.
    np.testing.assert_allclose(x1[:1], x2, atol=1e-5)
    l1 = m.discriminator.apply(d_vars, x1, train=False)
    l2 = m.discriminator.apply(d_vars, x1, train=False)
    np.testing.assert_array_equal(l1, l2)


def test_mlp_generator_reshapes_to_image_shape():
    m = models.build_models("mlp", data_shape=(28, 28, 1))
    z, g_vars, d_vars = init_both(m, 3)
    x = m.generator.apply(g_vars, z, train=False)
    assert x.shape == (3, 28, 28, 1)
    assert m.discriminator.apply(d_vars, x, train=False).shape == (3,)
    assert count(d_vars["params"]) == PARAM_COUNTS["mlp"][2]


def test_toy2d_accepts_other_vector_sizes():
    m = models.build_models("toy2d", data_shape=(5,))
    z, g_vars, d_vars = init_both(m, 2)
    assert m.latent_dim == 2
    assert m.generator.apply(g_vars, z, train=False).shape == (2, 5)
    assert d_vars["params"]["Maxout_0"]["Dense_0"]["kernel"].shape == (5, 1000)


# ----------------------------------------------------------------------------- packing


@pytest.mark.parametrize("pack", [2, 4])
def test_toy2d_packing_concatenates_samples(pack):
    m = models.build_models("toy2d", data_shape=(2,), pack=pack)
    assert m.pack == pack
    x = jax.random.normal(jax.random.key(1), (8, 2))
    d_vars = m.discriminator.init(jax.random.key(0), x, train=True)
    assert d_vars["params"]["Maxout_0"]["Dense_0"]["kernel"].shape == (2 * pack, 1000)
    logits = m.discriminator.apply(d_vars, x, train=True)
    assert logits.shape == (8 // pack,)
    # Same as an unpacked D that sees each pack as one (2 * pack)-vector.
    unpacked = models.build_models("toy2d", data_shape=(2 * pack,)).discriminator
    expected = unpacked.apply(d_vars, x.reshape(8 // pack, 2 * pack), train=True)
    np.testing.assert_allclose(logits, expected, rtol=1e-6)


@pytest.mark.parametrize("pack", [2, 4])
def test_conv_packing_concatenates_channels(pack):
    m = models.build_models("dcgan32", data_shape=(32, 32, 3), pack=pack)
    x = jax.random.uniform(jax.random.key(1), (8, 32, 32, 3), minval=-1.0, maxval=1.0)
    d_vars = m.discriminator.init(jax.random.key(0), x, train=False)
    assert d_vars["params"]["Conv_0"]["kernel"].shape == (4, 4, 3 * pack, 64)
    logits = m.discriminator.apply(d_vars, x, train=False)
    assert logits.shape == (8 // pack,)
    # Same as an unpacked D on images whose channels are those of samples i*pack .. i*pack+pack-1.
    stacked = jnp.concatenate([x[j::pack] for j in range(pack)], axis=-1)
    unpacked = models.build_models("dcgan32", data_shape=(32, 32, 3 * pack)).discriminator
    np.testing.assert_allclose(
        logits, unpacked.apply(d_vars, stacked, train=False), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("name", CANONICAL)
def test_packing_shapes_for_all_models(name):
    m = models.build_models(name, data_shape=SHAPES[name], pack=2)
    x = jax.ShapeDtypeStruct((4, *SHAPES[name]), jnp.float32)
    d_vars = jax.eval_shape(lambda x: m.discriminator.init(jax.random.key(0), x, train=False), x)
    logits = jax.eval_shape(lambda v, x: m.discriminator.apply(v, x, train=False), d_vars, x)
    assert logits.shape == (2,)


@pytest.mark.parametrize("name", ["toy2d", "mlp", "dcgan28"])
def test_batch_not_divisible_by_pack_raises(name):
    m = models.build_models(name, data_shape=SHAPES[name], pack=4)
    x = jnp.zeros((6, *SHAPES[name]))
    with pytest.raises(ValueError, match="not divisible by the packing degree 4"):
        m.discriminator.init(jax.random.key(0), x, train=False)


# ----------------------------------------------------------------------------- dropout


def test_mlp_dropout_only_in_train_mode():
    m = models.build_models("mlp", data_shape=(784,))
    z, g_vars, d_vars = init_both(m, 4)
    x = m.generator.apply(g_vars, z, train=False)
    d = m.discriminator

    def logits(key, train, net=d):
        return net.apply(d_vars, x, train=train, rngs={"dropout": jax.random.key(key)})

    assert not np.allclose(logits(1, True), logits(2, True))
    np.testing.assert_array_equal(logits(1, False), logits(2, False))
    np.testing.assert_array_equal(d.apply(d_vars, x, train=False), logits(1, False))
    # The benchmark's dropout-free variant: train mode is then deterministic and equals eval.
    no_dropout = d.clone(dropout=False)
    np.testing.assert_array_equal(logits(1, True, no_dropout), logits(2, True, no_dropout))
    np.testing.assert_allclose(logits(1, True, no_dropout), logits(1, False), rtol=1e-6)


def test_dcgan28_dropout_only_in_train_mode():
    m = models.build_models("dcgan28", data_shape=(28, 28, 1))
    x = jax.random.uniform(jax.random.key(3), (2, 28, 28, 1), minval=-1.0, maxval=1.0)
    d_vars = m.discriminator.init(jax.random.key(0), x, train=False)

    def logits(key, train):
        return m.discriminator.apply(d_vars, x, train=train, rngs={"dropout": jax.random.key(key)})

    assert not np.allclose(logits(1, True), logits(2, True))
    np.testing.assert_array_equal(logits(1, False), logits(2, False))


# ----------------------------------------------------------------------------- layers


@pytest.mark.parametrize(("size", "stride", "torch_pad"), [(1, 1, 0), (4, 2, 1)])
def test_transposed_conv_padding_matches_torch(size, stride, torch_pad):
    """ConvTranspose(k4, pad k-1-p, transpose_kernel) is the adjoint of Conv(k4, pad p): torch's."""
    pad = 4 - 1 - torch_pad
    y = jax.random.normal(jax.random.key(0), (2, size, size, 5))
    conv_t = nn.ConvTranspose(
        3, (4, 4), (stride, stride), ((pad, pad), (pad, pad)), use_bias=False, transpose_kernel=True
    )
    params = conv_t.init(jax.random.key(1), y)
    out = conv_t.apply(params, y)
    out_size = (size - 1) * stride - 2 * torch_pad + 4  # torch's output-size formula
    assert out.shape == (2, out_size, out_size, 3)
    conv = nn.Conv(5, (4, 4), (stride, stride), ((torch_pad, torch_pad),) * 2, use_bias=False)
    x = jnp.zeros((2, out_size, out_size, 3))
    _, vjp = jax.vjp(lambda x: conv.apply(params, x), x)
    np.testing.assert_allclose(out, vjp(y)[0], rtol=1e-5, atol=1e-5)


def test_maxout_groups_consecutive_columns():
    layer = models.Maxout(units=2, pieces=3)
    x = jnp.eye(4)
    params = layer.init(jax.random.key(0), x)
    pre = x @ params["params"]["Dense_0"]["kernel"]
    expected = jnp.stack([pre[:, 0:3].max(-1), pre[:, 3:6].max(-1)], axis=-1)
    np.testing.assert_allclose(layer.apply(params, x), expected, rtol=1e-6)


def test_initializers():
    def params(name):
        m = models.build_models(name, data_shape=SHAPES[name])
        return init_both(m, 2)[1:]

    g, d = params("mlp")
    g_k = np.asarray(g["params"]["Dense_1"]["kernel"])
    d_k = np.asarray(d["params"]["Maxout_0"]["Dense_0"]["kernel"])
    assert 0.045 < np.abs(g_k).max() <= 0.05 and 0.0045 < np.abs(d_k).max() <= 0.005
    assert np.all(np.asarray(g["params"]["Dense_0"]["bias"]) == 0)
    g, d = params("dcgan64")
    conv_k = np.asarray(g["params"]["ConvTranspose_1"]["kernel"])
    assert abs(conv_k.std() - 0.02) < 0.001 and abs(conv_k.mean()) < 0.001
    scale = np.asarray(d["params"]["BatchNorm_2"]["scale"])  # 512 values ~ N(1, 0.02²)
    assert abs(scale.mean() - 1.0) < 0.005 and 0.015 < scale.std() < 0.025
    g, d = params("toy2d")
    kernel = np.asarray(g["params"]["Dense_1"]["kernel"])
    assert abs(kernel.std() - 0.02) < 0.001


def test_init_is_deterministic_for_the_same_key():
    m = models.build_models("dcgan32", data_shape=(32, 32, 3))
    _, g1, d1 = init_both(m, 2, key=0)
    _, g2, d2 = init_both(m, 2, key=0)
    _, g3, _ = init_both(m, 2, key=1)
    jax.tree.map(np.testing.assert_array_equal, (g1, d1), (g2, d2))
    assert not np.allclose(
        g1["params"]["ConvTranspose_0"]["kernel"], g3["params"]["ConvTranspose_0"]["kernel"]
    )


# ----------------------------------------------------------------------------- latents


@pytest.mark.parametrize("name", CANONICAL)
def test_sample_latent(name):
    m = models.build_models(name, data_shape=SHAPES[name])
    z = m.sample_latent(jax.random.key(0), 4000)
    assert z.shape == (4000, m.latent_dim) and z.dtype == jnp.float32
    assert abs(float(z.mean())) < 0.05 and abs(float(z.var()) - 1.0) < 0.05
    np.testing.assert_array_equal(z, m.sample_latent(jax.random.key(0), 4000))
    if name == "mlp":
        assert float(jnp.abs(z).max()) <= math.sqrt(3.0)
        assert float(jnp.abs(z).max()) > 1.7
    else:
        assert float(jnp.abs(z).max()) > 3.0  # normal tails, not uniform


# ----------------------------------------------------------------------------- errors


def test_unknown_name_raises():
    with pytest.raises(ValueError, match=r"unknown model 'wgan'.*dcgan64"):
        models.build_models("wgan", data_shape=(2,))


@pytest.mark.parametrize(
    ("name", "data_shape"),
    [
        ("toy2d", (2, 2)),
        ("toy2d", ()),
        ("mlp", (28, 28, 3)),
        ("mlp", (1000,)),
        ("dcgan28", (32, 32, 1)),
        ("dcgan28", (28, 28)),
        ("dcgan32", (28, 28, 3)),
        ("dcgan64", (32, 32, 3)),
        ("dcgan64", (64, 32, 3)),
    ],
)
def test_bad_data_shape_raises(name, data_shape):
    with pytest.raises(ValueError, match=name):
        models.build_models(name, data_shape=data_shape)


@pytest.mark.parametrize("pack", [0, -1])
def test_bad_pack_raises(pack):
    with pytest.raises(ValueError, match="pack"):
        models.build_models("toy2d", data_shape=(2,), pack=pack)


# ----------------------------------------------------------------------------- fast convolutions
# Every transposed conv of dcgan28/32/64 as (input size, in features, features, kernel, stride,
# padding in lax.conv_transpose terms, transpose_kernel).
CONV_T_CONFIGS = {
    "dcgan28_0": (7, 256, 128, 5, 1, "SAME", False),
    "dcgan28_1": (7, 128, 64, 5, 2, "SAME", False),
    "dcgan28_2": (14, 64, 1, 5, 2, "SAME", False),
    "dcgan64_0": (1, 100, 512, 4, 1, ((3, 3), (3, 3)), True),
    "dcgan64_1": (4, 512, 256, 4, 2, ((2, 2), (2, 2)), True),
    "dcgan64_2": (8, 256, 128, 4, 2, ((2, 2), (2, 2)), True),
    "dcgan64_3": (16, 128, 64, 4, 2, ((2, 2), (2, 2)), True),
    "dcgan64_4": (32, 64, 3, 4, 2, ((2, 2), (2, 2)), True),
    "dcgan32_0": (1, 100, 256, 4, 1, ((3, 3), (3, 3)), True),
    "dcgan32_1": (4, 256, 128, 4, 2, ((2, 2), (2, 2)), True),
    "dcgan32_2": (8, 128, 64, 4, 2, ((2, 2), (2, 2)), True),
    "dcgan32_3": (16, 64, 3, 4, 2, ((2, 2), (2, 2)), True),
}
# Every convolution of the DCGAN discriminators: (input size, in, features, kernel, stride,
# padding, bias).
CONV_CONFIGS = {
    "dcgan28_0": (28, 1, 64, 5, 2, "SAME", True),
    "dcgan28_1": (14, 64, 128, 5, 2, "SAME", True),
    "dcgan64_0": (64, 3, 64, 4, 2, ((1, 1), (1, 1)), False),
    "dcgan64_1": (32, 64, 128, 4, 2, ((1, 1), (1, 1)), False),
    "dcgan64_2": (16, 128, 256, 4, 2, ((1, 1), (1, 1)), False),
    "dcgan64_3": (8, 256, 512, 4, 2, ((1, 1), (1, 1)), False),
    "dcgan64_4": (4, 512, 1, 4, 1, "VALID", False),
    "dcgan32_0": (32, 3, 64, 4, 2, ((1, 1), (1, 1)), False),
    "dcgan32_3": (4, 256, 1, 4, 1, "VALID", False),
}


def _assert_same_layer(ours, plain, x):
    """Same parameters, outputs and gradients (input and parameters) as the plain layer."""
    variables = plain.init(jax.random.key(1), x)
    ours_vars = ours.init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, ours_vars) == jax.tree.map(jnp.shape, variables)
    jax.tree.map(np.testing.assert_array_equal, ours_vars, variables)  # same initialisation
    if "bias" in variables["params"]:  # a nonzero bias, so its gradient path is exercised
        variables["params"]["bias"] = jnp.linspace(-1.0, 1.0, variables["params"]["bias"].size)

    def loss(layer):
        def f(variables, x):
            y = layer.apply(variables, x)
            weights = jnp.cos(jnp.arange(y.size, dtype=jnp.float32)).reshape(y.shape)
            return jnp.sum(y * weights), y

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))

    (_, y_ours), (gv_ours, gx_ours) = loss(ours)(variables, x)
    (_, y_plain), (gv_plain, gx_plain) = loss(plain)(variables, x)
    assert y_ours.shape == y_plain.shape

    def close(a, b):
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)

    close(y_ours, y_plain)
    close(gx_ours, gx_plain)
    jax.tree.map(close, gv_ours, gv_plain)


@pytest.mark.parametrize("config", sorted(CONV_T_CONFIGS))
@pytest.mark.parametrize("formulation", ["fast", "lax"])
def test_conv_transpose_matches_flax(config, formulation):
    size, c_in, features, k, stride, padding, transpose_kernel = CONV_T_CONFIGS[config]
    kw = dict(
        features=features,
        kernel_size=(k, k),
        strides=(stride, stride),
        padding=padding,
        use_bias=False,
        kernel_init=nn.initializers.normal(0.05),
        transpose_kernel=transpose_kernel,
    )
    x = jax.random.normal(jax.random.key(0), (2, size, size, c_in))
    _assert_same_layer(
        models.ConvTranspose(**kw, formulation=formulation), nn.ConvTranspose(**kw), x
    )


@pytest.mark.parametrize("config", sorted(CONV_CONFIGS))
@pytest.mark.parametrize("formulation", ["fast", "lax"])
def test_conv_matches_flax(config, formulation):
    size, c_in, features, k, stride, padding, bias = CONV_CONFIGS[config]
    kw = dict(
        features=features,
        kernel_size=(k, k),
        strides=(stride, stride),
        padding=padding,
        use_bias=bias,
        kernel_init=nn.initializers.normal(0.05),
    )
    x = jax.random.normal(jax.random.key(0), (2, size, size, c_in))
    _assert_same_layer(models.Conv(**kw, formulation=formulation), nn.Conv(**kw), x)


def test_conv_transpose_phases_matches_lax_on_odd_shapes():
    """The sub-pixel decomposition on a stride, kernel and padding no DCGAN uses."""
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 4))
    kernel = jax.random.normal(jax.random.key(1), (6, 3, 4, 7))
    pads = ((3, 4), (1, 2))  # output 15 x 12: a whole number of phases
    want = jax.lax.conv_transpose(x, kernel, (3, 2), pads, dimension_numbers=conv._NHWC)
    got = conv.conv_transpose_phases(x, kernel, (3, 2), pads)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="phase"):  # output 13 x 11: not a whole number
        conv.conv_transpose_phases(x, kernel, (3, 2), ((2, 3), (1, 1)))


@pytest.mark.parametrize("name", ["dcgan28", "dcgan32", "dcgan64"])
def test_fast_and_lax_networks_agree(name):
    """Whole networks, both formulations: the same parameters, outputs and gradients."""
    m = models.build_models(name, data_shape=SHAPES[name])
    z, g_vars, d_vars = init_both(m, 4)
    nets = {
        conv: (m.generator.clone(conv=conv), m.discriminator.clone(conv=conv))
        for conv in ("fast", "lax")
    }

    def loss(g_params, d_params, z, conv):
        generator, discriminator = nets[conv]
        x, _ = generator.apply(
            {**g_vars, "params": g_params}, z, train=True, mutable=["batch_stats"]
        )
        logits = discriminator.apply({**d_vars, "params": d_params}, x, train=False)
        return jnp.mean(jax.nn.softplus(-logits))

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=3)
    fast, lax_ = (
        grad(g_vars["params"], d_vars["params"], z, "fast"),
        grad(g_vars["params"], d_vars["params"], z, "lax"),
    )
    np.testing.assert_allclose(fast[0], lax_[0], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(fast[1]), jax.tree.leaves(lax_[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5 * float(jnp.max(jnp.abs(b))))


def test_fast_conv_second_order_gradients():
    """R1/WGAN-GP differentiate D's input gradient again: the custom VJPs support that."""
    m = models.build_models("dcgan32", data_shape=SHAPES["dcgan32"])
    x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), minval=-1.0, maxval=1.0)
    d_vars = m.discriminator.init(jax.random.key(0), x, train=False)

    def r1(params, conv):
        d = m.discriminator.clone(conv=conv)
        f = lambda x: jnp.sum(d.apply({**d_vars, "params": params}, x, train=False))
        return jnp.sum(jax.grad(f)(x) ** 2)

    fast = jax.grad(r1)(d_vars["params"], "fast")
    want = jax.grad(r1)(d_vars["params"], "lax")
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_unknown_conv_formulation_raises():
    layer = models.ConvTranspose(3, (4, 4), (2, 2), formulation="winograd")
    with pytest.raises(ValueError, match="winograd"):
        layer.init(jax.random.key(0), jnp.zeros((1, 4, 4, 2)))


@pytest.mark.parametrize("name,shape", [("dcgan28", (28, 28, 1)), ("dcgan32", (32, 32, 3))])
def test_forward_mode_autodiff_matches_lax_formulation(name, shape):
    """jax.jvp and Hessian-vector products work through the fast layers, equal to lax's."""
    results = {}
    for formulation in ("fast", "lax"):
        m = models.build_models(name, data_shape=shape, conv=formulation)
        z = jax.random.normal(jax.random.key(0), (2, m.latent_dim))
        gv = m.generator.init(jax.random.key(1), z, train=False)
        dv = m.discriminator.init(
            jax.random.key(2), m.generator.apply(gv, z, train=False), train=False
        )

        def f(gp, z, m=m, gv=gv, dv=dv):
            x = m.generator.apply({**gv, "params": gp}, z, train=False)
            return jnp.sum(m.discriminator.apply(dv, x, train=False) ** 2)

        t = jax.tree.map(lambda a: jax.random.normal(jax.random.key(3), a.shape), gv["params"])
        _, jvp = jax.jvp(f, (gv["params"], z), (t, jnp.ones_like(z)))
        hvp = jax.jvp(lambda p, f=f, z=z: jax.grad(f)(p, z), (gv["params"],), (t,))[1]
        results[formulation] = (jvp, hvp)
    for a, b in zip(jax.tree.leaves(results["fast"]), jax.tree.leaves(results["lax"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3 * float(jnp.abs(b).max()) + 1e-12)
