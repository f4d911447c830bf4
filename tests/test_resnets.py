"""The SN-ResNets and their parts: Mimicry's parameter counts, spectral norm's σ against
the SVD, self-attention, class-conditional BatchNorm and the projection discriminator."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import models, resnets


# --------------------------------------------------------------- Mimicry's layouts, counted
# Written from Mimicry's PyTorch modules (kwotsin/mimicry: torch_mimicry/nets/sngan/
# sngan_32.py, sngan_48.py, sngan_64.py; torch_mimicry/modules/resblocks.py), layer by layer
# as torch counts trainable parameters (BatchNorm's weight and bias; not its running
# statistics, not spectral norm's u), independently of jaxgan's modules.
def conv(i, o, k):
    return i * o * k * k + o  # Conv2d with bias


def bn(c):
    return 2 * c


def gblock(i, o):  # BN(i), conv3x3(i, o), BN(o), conv3x3(o, o), 1x1 shortcut (upsampling)
    return bn(i) + conv(i, o, 3) + bn(o) + conv(o, o, 3) + conv(i, o, 1)


def dblock(i, o, down):  # hidden = i: conv3x3(i, i), conv3x3(i, o), shortcut if needed
    return conv(i, i, 3) + conv(i, o, 3) + (conv(i, o, 1) if (i != o or down) else 0)


def dblock_optimized(i, o):
    return conv(i, o, 3) + conv(o, o, 3) + conv(i, o, 1)


def mimicry_g(nz, ngf, bottom, widths):
    total, channels = nz * bottom * bottom * ngf + bottom * bottom * ngf, ngf
    for width in widths:
        total += gblock(channels, width)
        channels = width
    return total + bn(channels) + conv(channels, 3, 3)


def mimicry_d(blocks):
    (first, _), *rest = blocks
    total, channels = dblock_optimized(3, first), first
    for width, down in rest:
        total += dblock(channels, width, down)
        channels = width
    return total + channels + 1  # SNLinear(ndf, 1)


MIMICRY = {
    "sngan32": (
        mimicry_g(128, 256, 4, (256, 256, 256)),
        mimicry_d(((128, 1), (128, 1), (128, 0), (128, 0))),
    ),
    "sngan48": (
        mimicry_g(128, 512, 6, (256, 128, 64)),
        mimicry_d(((64, 1), (128, 1), (256, 1), (512, 1), (1024, 0))),
    ),
    "sngan64": (
        mimicry_g(128, 1024, 4, (512, 256, 128, 64)),
        mimicry_d(((64, 1), (128, 1), (256, 1), (512, 1), (1024, 1))),
    ),
}
PINNED = {  # the same numbers, written out
    "sngan32": (4_276_739, 1_053_825),
    "sngan48": (4_878_083, 10_141_441),
    "sngan64": (12_220_675, 10_141_441),
}


def count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def variables(module, *inputs):
    return jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs, train=False))


@pytest.mark.parametrize("name", resnets.RESNET_NAMES)
def test_parameter_counts_are_mimicrys(name):
    size = resnets.RESOLUTIONS[name]
    m = models.build_models(name, data_shape=(size, size, 3))
    g = variables(m.generator, jnp.zeros((2, 128)))
    d = variables(m.discriminator, jnp.zeros((2, size, size, 3)))
    assert (count(g["params"]), count(d["params"])) == MIMICRY[name] == PINNED[name]
    assert set(d) == {"params", resnets.SPECTRAL_COLLECTION}  # SNGAN's D: spectral norm on
    assert set(g) == {"params", "batch_stats"}
    x = jnp.zeros((2, size, size, 3))
    assert jax.eval_shape(lambda d: m.discriminator.apply(d, x, train=False), d).shape == (2,)
    out = jax.eval_shape(lambda g: m.generator.apply(g, jnp.zeros((2, 128)), train=False), g)
    assert out.shape == (2, size, size, 3)


def test_conditional_counts_add_the_embeddings():
    m = models.build_models(
        "sngan32", data_shape=(32, 32, 3), num_classes=10, conditioning="projection"
    )
    y = jnp.zeros((2,), jnp.int32)
    g = variables(m.generator, jnp.zeros((2, 128)), y)
    d = variables(m.discriminator, jnp.zeros((2, 32, 32, 3)), y)
    # Each GBlock's 2 BatchNorms lose their affine (2·256) for class gains and offsets (2·10·256).
    g_plain, d_plain = PINNED["sngan32"]
    assert count(g["params"]) == g_plain + 3 * 2 * (2 * 10 * 256 - 2 * 256)
    assert count(d["params"]) == d_plain + 10 * 128  # the projection's embedding
    acgan = models.build_models("sngan32", data_shape=(32, 32, 3), num_classes=10,
                                conditioning="acgan")  # fmt: skip
    d = variables(acgan.discriminator, jnp.zeros((2, 32, 32, 3)))
    assert count(d["params"]) == d_plain + 128 * 10 + 10
    logits, classes = jax.eval_shape(
        lambda d: acgan.discriminator.apply(d, jnp.zeros((2, 32, 32, 3)), train=False), d
    )
    assert logits.shape == (2,) and classes.shape == (2, 10)


# --------------------------------------------------------------- spectral norm


def test_sigma_converges_to_the_largest_singular_value_and_eval_mode_keeps_it():
    layer = nn.Conv(16, (3, 3))

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, *, train):
            return resnets.spectral_normed(layer, x, enabled=True, train=train)

    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 5))
    v = Net().init(jax.random.key(1), x, train=False)
    step = jax.jit(lambda v: Net().apply(v, x, train=True, mutable=["spectral"])[1])
    for _ in range(100):
        v = {**v, **step(v)}
    conv_params = v["params"]["SpectralNorm_0"]["layer_instance"]
    kernel = conv_params["kernel"]
    want = np.linalg.svd(np.asarray(kernel).reshape(-1, 16), compute_uv=False)[0]
    (sigma,) = [s for p, s in jax.tree_util.tree_leaves_with_path(v["spectral"])
                if "sigma" in jax.tree_util.keystr(p)]  # fmt: skip
    assert float(sigma) == pytest.approx(float(want), rel=1e-3)
    # Eval mode leaves u and σ alone, and the normalised layer has spectral norm 1.
    out, state = Net().apply(v, x, train=False, mutable=["spectral"])
    jax.tree.map(np.testing.assert_array_equal, state["spectral"], v["spectral"])
    plain = layer.apply({"params": conv_params}, x)
    bias = conv_params["bias"].reshape(1, 1, 1, -1)
    np.testing.assert_allclose(out - bias, (plain - bias) / sigma, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------- the parts


def test_conditional_batchnorm_starts_near_plain_batchnorm_and_follows_the_label():
    x = jax.random.normal(jax.random.key(0), (6, 3, 3, 4))
    y = jnp.array([0, 1, 2, 0, 1, 2])
    cbn = resnets.ConditionalBatchNorm(3)
    v = cbn.init(jax.random.key(1), x, y, train=False)
    gain = v["params"]["gain"]["embedding"]
    assert np.allclose(gain, 1.0, atol=0.1) and np.all(v["params"]["offset"]["embedding"] == 0)
    out, _ = cbn.apply(v, x, y, train=True, mutable=["batch_stats"])
    plain = nn.BatchNorm(use_running_average=False, use_scale=False, use_bias=False)
    normed, _ = plain.apply(plain.init(jax.random.key(0), x), x, mutable=["batch_stats"])
    np.testing.assert_allclose(out, normed * gain[y][:, None, None, :], rtol=1e-5, atol=1e-5)
    moved = jax.tree.map(lambda a: a + 0.5 * jnp.arange(a.size).reshape(a.shape), v["params"])
    a, _ = cbn.apply({**v, "params": moved}, x, y, train=True, mutable=["batch_stats"])
    b, _ = cbn.apply({**v, "params": moved}, x, (y + 1) % 3, train=True, mutable=["batch_stats"])
    assert not np.allclose(a, b)


def test_self_attention_starts_as_the_identity_and_sits_where_asked():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
    block = resnets.SelfAttention()
    v = block.init(jax.random.key(1), x, train=False)
    np.testing.assert_array_equal(block.apply(v, x, train=False), x)
    v = {"params": {**v["params"], "gamma": jnp.float32(0.5)}}
    assert not np.allclose(block.apply(v, x, train=False), x)
    m = models.build_models("sngan32", data_shape=(32, 32, 3), attention=16)
    g = variables(m.generator, jnp.zeros((2, 128)))
    d = variables(m.discriminator, jnp.zeros((2, 32, 32, 3)))
    assert "SelfAttention_0" in g["params"] and "SelfAttention_0" in d["params"]

    # In G after the block making 16x16 (the second), in D after the first (32 -> 16).
    def attended_shape(module, *inputs):
        _, state = module.apply(
            module.init(jax.random.key(0), *inputs, train=False), *inputs, train=False,
            capture_intermediates=lambda mdl, _: isinstance(mdl, resnets.SelfAttention),
            mutable=["intermediates"],
        )  # fmt: skip
        return state["intermediates"]["SelfAttention_0"]["__call__"][0].shape

    assert attended_shape(m.generator, jnp.zeros((1, 128))) == (1, 16, 16, 256)
    assert attended_shape(m.discriminator, jnp.zeros((1, 32, 32, 3))) == (1, 16, 16, 128)
    with pytest.raises(ValueError, match="attention_at=32"):
        models.build_models("sngan32", data_shape=(32, 32, 3), attention=32)


def test_projection_logit_is_psi_plus_the_label_embedding_dot_phi():
    kwargs = {"data_shape": (32, 32, 3), "num_classes": 4, "conditioning": "projection"}
    d = models.build_models("sngan32", **kwargs).discriminator
    plain = models.build_models("sngan32", data_shape=(32, 32, 3)).discriminator
    x = jax.random.normal(jax.random.key(0), (3, 32, 32, 3))
    y = jnp.array([0, 3, 1])
    v = d.init(jax.random.key(1), x, y, train=False)
    logits, state = d.apply(v, x, y, train=False, mutable=["intermediates"])
    (phi,) = state["intermediates"]["features"]
    # ψ(φ): the unconditional D with the same variables (all but the embedding's).
    names = {c: set(tree) for c, tree in variables(plain, x).items()}
    psi = plain.apply({c: {k: t for k, t in v[c].items() if k in names[c]} for c in names}, x,
                      train=False)  # fmt: skip
    (extra,) = set(v["spectral"]) - names["spectral"]
    embedding = v["params"]["Embed_0"]["embedding"]
    (sigma,) = [s for p, s in jax.tree_util.tree_leaves_with_path(v["spectral"][extra])
                if "sigma" in jax.tree_util.keystr(p)]  # fmt: skip
    want = psi + jnp.sum((embedding / sigma)[y] * phi, axis=-1)
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-3)
    assert not np.allclose(logits, psi)


@pytest.mark.parametrize("conditioning", ["none", "projection"])
def test_lax_and_fast_formulations_agree_and_input_gradients_are_finite(conditioning):
    kwargs = {"num_classes": 10, "conditioning": conditioning} if conditioning != "none" else {}
    fast = models.build_models("sngan32", data_shape=(32, 32, 3), **kwargs)
    lax = models.build_models("sngan32", data_shape=(32, 32, 3), conv="lax", **kwargs)
    y = jnp.arange(2, dtype=jnp.int32)
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    d_in = (x, y) if conditioning == "projection" else (x,)
    v = fast.discriminator.init(jax.random.key(1), *d_in, train=False)
    a = fast.discriminator.apply(v, *d_in, train=False)
    b = lax.discriminator.apply(v, *d_in, train=False)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    grad = jax.grad(lambda x: jnp.sum(fast.discriminator.apply(v, x, *d_in[1:], train=False)))(x)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_labels_are_required_exactly_when_conditional():
    m = models.build_models("sngan32", data_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="takes no labels"):
        m.generator.init(jax.random.key(0), jnp.zeros((2, 128)), jnp.zeros(2, jnp.int32),
                         train=False)  # fmt: skip
    c = models.build_models("sngan32", data_shape=(32, 32, 3), num_classes=3,
                            conditioning="projection")  # fmt: skip
    with pytest.raises(ValueError, match="class-conditional"):
        c.generator.init(jax.random.key(0), jnp.zeros((2, 128)), train=False)
