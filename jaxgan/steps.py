"""The training step and the sampler: pure, jit-able functions with no I/O.

One call of ``train_step`` is one iteration of Algorithm 1 of Goodfellow et al. 2014:
k discriminator updates (unrolled, or a ``lax.scan`` with ``scan_d_steps``; each on
its own real minibatch and fresh noise), then one generator update against the
*updated* discriminator, then the EMA of the generator's parameters. All randomness comes from
``fold_in(key, state.step)``, so a resumed run sees the same random numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxgan import augment as augment_lib
from jaxgan import data as data_lib
from jaxgan import losses as losses_lib
from jaxgan.data import Dataset
from jaxgan.state import GAN, GANState, compute_dtype, prng_key

__all__ = [
    "STANDING_STATS_BATCHES",
    "STANDING_STATS_SEED",
    "all_finite",
    "apply_model",
    "balanced_labels",
    "ema_decay_schedule",
    "make_batch_sampler",
    "make_discriminator_fn",
    "make_ema_model_state_fn",
    "make_generate_fn",
    "make_sample_fn",
    "make_score_fn",
    "make_standing_stats_fn",
    "make_train_step",
    "make_train_step_for",
    "standing_stats_noise",
    "step_keys",
]

Metrics = dict[str, jax.Array]


def _cast_floats(tree, dtype):
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def apply_model(
    module, params, model_state, *inputs, train: bool, dropout_key=None, compute_dtype=None
):
    """Applies a Linen module to ``inputs`` (``x``, or ``z, labels`` for a conditional G);
    returns ``(output, new_model_state)``.

    In train mode the non-parameter collections (BatchNorm statistics, spectral norm's
    ``u`` and σ) are mutable and come back updated; in eval mode they come back unchanged.

    With ``compute_dtype`` (e.g. ``jnp.bfloat16``: mixed precision) the parameters and
    the floating-point inputs are cast to it for the computation only: the output and
    the updated model state come back in their own (float32) dtypes, and gradients flow
    to the float32 parameters through the cast. Integer inputs (labels) are not cast.
    """
    variables = {"params": params, **model_state}
    if compute_dtype is not None:
        variables = {"params": _cast_floats(params, compute_dtype), **model_state}
        inputs = tuple(_cast_floats(x, compute_dtype) for x in inputs)
    rngs = {"dropout": dropout_key} if dropout_key is not None else None
    if train and model_state:
        out, new_state = module.apply(
            variables, *inputs, train=True, rngs=rngs, mutable=list(model_state)
        )
        new_state = jax.tree.map(lambda new, old: new.astype(old.dtype), new_state, model_state)
    else:
        out, new_state = module.apply(variables, *inputs, train=train, rngs=rngs), model_state
    if compute_dtype is not None:
        out = _cast_floats(out, jnp.float32)
    return out, new_state


# Random streams added after jaxgan 0.2, folded into a D update's (or the G update's) key,
# so that the draws of every earlier setting stay what they were.
_LABEL_STREAM = 1  # the fake examples' class labels
_AUGMENT_STREAM = 2  # DiffAugment's transforms (real, fake)
_REAL_DROPOUT_STREAM = 3  # dropout of D's real pass in a relativistic G update


def _generator_inputs(models, z, labels):
    return (z, labels) if models.conditional else (z,)


def _discriminator_inputs(models, x, labels):
    return (x, labels) if models.d_takes_labels else (x,)


def _split_real(real_batches, models, d_steps):
    """``(images [k, B, ...], labels [k, B] or None)`` of a step's real batches, checked."""
    images, labels = (
        tuple(real_batches) if isinstance(real_batches, (tuple, list)) else (real_batches, None)
    )
    if images.shape[0] != d_steps:
        raise ValueError(
            f"real_batches must have a leading axis of d_steps={d_steps} minibatches, "
            f"got shape {images.shape}."
        )
    if models.conditional and labels is None:
        raise ValueError(
            "this GAN is class-conditional: real_batches must be (images [k, B, ...], labels "
            "[k, B]) (make_batch_sampler(..., labels=True) draws them)"
        )
    if labels is not None and tuple(labels.shape) != tuple(images.shape[:2]):
        raise ValueError(f"labels must have shape {images.shape[:2]}, got {labels.shape}")
    return images, (labels if models.conditional else None)


def make_discriminator_fn(gan: GAN, run_model, *, augment: str = ""):
    """``d_apply(d_params, d_model_state, x, labels, dropout_key, augment_key) -> (logits,
    class_logits or None, new d_model_state)``: D in train mode on DiffAugment's transform
    of ``x`` (when a policy is given), with the labels a projection D takes; ACGAN's D
    also returns its class logits."""
    models = gan.models

    def d_apply(d_params, d_model_state, x, labels, dropout_key, augment_key):
        if augment:
            x = augment_lib.diff_augment(x, augment_key, augment)
        out, ms = run_model(
            models.discriminator, d_params, d_model_state,
            *_discriminator_inputs(models, x, labels), train=True, dropout_key=dropout_key,
        )  # fmt: skip
        if models.conditioning == "acgan":
            return out[0], out[1], ms
        return out, None, ms

    return d_apply


def _class_loss(class_logits, labels):
    """ACGAN's auxiliary loss: the mean cross-entropy of the class logits."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(class_logits, labels))


def step_keys(key: jax.Array, step: jax.Array, d_steps: int) -> tuple[jax.Array, jax.Array]:
    """The keys of one iteration: ``(d_keys [d_steps], g_key)`` from ``fold_in(key, step)``."""
    keys = jax.random.split(jax.random.fold_in(key, step), d_steps + 1)
    return keys[:d_steps], keys[d_steps]


def all_finite(tree) -> jax.Array:
    """True if every floating-point leaf of ``tree`` is finite (integer leaves are)."""
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


# What a train step updates, and a skipped one keeps.
_UPDATED_FIELDS = (
    "g_params",
    "g_opt_state",
    "g_ema_params",
    "g_model_state",
    "d_params",
    "d_opt_state",
    "d_model_state",
)


def make_train_step(
    gan: GAN,
    *,
    loss: str = "non_saturating",
    d_steps: int = 1,
    ema_decay: float = 0.999,
    ema_warmup: bool = False,
    fresh_g_noise: bool = True,
    gp_weight: float = 0.0,
    r1_gamma: float = 0.0,
    r2_gamma: float = 0.0,
    penalty_per: str = "pack",
    skip_nonfinite: bool = True,
    scan_d_steps: bool = False,
    compute_dtype: Any = None,
    augment: str = "",
    acgan_weight: float = 1.0,
) -> Callable[[GANState, jax.Array, jax.Array], tuple[GANState, Metrics]]:
    """Builds ``train_step(state, real_batches, key) -> (state, metrics)``.

    Args:
      gan: networks and optimizers.
      loss: a name from :data:`jaxgan.losses.LOSSES`.
      d_steps: k, the number of discriminator updates per iteration.
      ema_decay: decay of the generator EMA (0 makes the EMA equal the parameters).
      ema_warmup: at iteration t (0-based) decay by ``min(ema_decay, (1 + t) / (10 + t))``
        (as big_vision and others): early on the EMA follows G instead of remembering
        its random initialisation (with 0.999 and no warm-up, 74 % of the EMA after 300
        steps is still the initialisation); ``config.ema_warmup`` turns it on for
        train.py's runs. False (the default here): ``ema_decay`` from the start.
      fresh_g_noise: draw new noise and run G again for the generator update
        (Algorithm 1 of Goodfellow et al.); if False, the generator update reuses the
        fake batch of the last D update, as pytorch/examples' DCGAN does: G runs
        forward once per D update, and the G update back-propagates through the last
        of those forwards (``jax.vjp``), so it costs no extra G forward. BatchNorm
        running statistics of G then move once per D update (k times per iteration)
        and not again in the G update; with fresh noise they move k + 1 times.
      gp_weight: weight λ of the WGAN-GP penalty (0: off).
      r1_gamma: γ of the R1 penalty, added as ``γ/2 · mean(R1)`` (0: off).
      r2_gamma: γ of the R2 penalty, likewise (0: off).
      penalty_per: ``"pack"``: with PacGAN packing, the penalties are those of the packed
        D, whose input is a pack (R1/R2 per pack, one WGAN-GP ε per pack), as the papers
        define them for a D's input; ``"sample"``: per sample (jaxgan <= 0.2), which makes
        R1/R2 γ/m in the papers' terms. The same for ``pack = 1``. Penalties need a D
        whose scores each depend on their own input alone: a D with BatchNorm (in train
        mode, batch statistics) is refused.
      skip_nonfinite: if a loss, a gradient or a BatchNorm statistic of either network
        is not finite, keep the old parameters, optimizer states, EMA and BatchNorm
        statistics of both networks (the step counter and ``state.skipped`` still
        advance). The test comes before G's optimizer update, so an update that itself
        overflows from finite gradients is not caught there; the next step's losses are
        then non-finite and it is skipped.
      scan_d_steps: run the k D updates as a ``lax.scan`` (compile time independent
        of k) instead of unrolling them (the default: XLA:CPU runs convolution
        gradients inside a loop 10-40x slower). Same arithmetic either way.
      compute_dtype: e.g. ``jnp.bfloat16`` for mixed precision: both networks compute in
        it, while parameters, optimizer states, BatchNorm statistics, losses and
        gradients stay float32 (see :func:`apply_model`). None: float32 throughout.
      augment: a DiffAugment policy (Zhao et al. 2020; :mod:`jaxgan.augment`), e.g.
        ``"color,translation,cutout"``: every D evaluation (D's updates and G's) sees real
        and fake images through random transforms from the step's keys; penalties are
        taken through it. ``""``: off, the step without it bit for bit.
      acgan_weight: weight of ACGAN's class loss (Odena et al. 2017) when
        ``models.conditioning == "acgan"``: D's on real and fake examples, G's on fakes.

    A class-conditional GAN's fake labels are uniform over the classes; a relativistic
    loss's G update also scores the iteration's last real batch.

    Returns:
      A pure function. ``real_batches`` has shape ``[d_steps, B, *data_shape]``: one
      real minibatch per D update; for a conditional GAN it is the pair ``(images,
      labels [d_steps, B])``. ``key`` is the run's training key; the function
      folds in ``state.step`` itself. Jit it (with ``donate_argnums=0``) yourself.
    """
    _check_combination(gan, d_steps=d_steps, augment=augment, acgan_weight=acgan_weight,
                       penalty_per=penalty_per)  # fmt: skip
    _check_penalties(gan, gp_weight=gp_weight, r1_gamma=r1_gamma, r2_gamma=r2_gamma)
    penalty_pack = gan.models.pack if penalty_per == "pack" else 1
    loss_pair = losses_lib.get_loss(loss)
    run_model = functools.partial(apply_model, compute_dtype=compute_dtype)
    d_apply = make_discriminator_fn(gan, run_model, augment=augment)
    d_updates = _make_d_updates(
        gan, loss_pair, run_model, d_apply, d_steps=d_steps, fresh_g_noise=fresh_g_noise,
        scan_d_steps=scan_d_steps, gp_weight=gp_weight, r1_gamma=r1_gamma, r2_gamma=r2_gamma,
        pack=penalty_pack, acgan_weight=acgan_weight, augment=bool(augment),
    )  # fmt: skip
    g_gradients = _make_g_gradients(
        gan, loss_pair, run_model, d_apply, fresh_g_noise=fresh_g_noise, augment=bool(augment),
        acgan_weight=acgan_weight,
    )  # fmt: skip
    ema_decay_at = functools.partial(ema_decay_schedule, ema_decay, warmup=ema_warmup)

    def train_step(state: GANState, real_batches: jax.Array, key: jax.Array):
        real_images, real_labels = _split_real(real_batches, gan.models, d_steps)
        d_keys, g_key = step_keys(key, state.step, d_steps)
        # ---- k discriminator updates, G fixed.
        d_state, g_model_state, d_metrics, d_finite, last_fake = d_updates(
            state, real_images, real_labels, d_keys
        )
        d_params, d_model_state, d_opt_state = d_state
        # ---- one generator update against the updated discriminator.
        last_real = (real_images[-1], None if real_labels is None else real_labels[-1])
        g_loss, g_grads, g_ms, d_ms = g_gradients(
            state.g_params, g_model_state, d_params, d_model_state, g_key,
            real_images.shape[1], last_fake, last_real,
        )  # fmt: skip
        # Decided before G's optimizer update, from the losses, gradients and BatchNorm
        # statistics, so that the update runs inside the `lax.cond` and is simply not run
        # when skipped. Deciding after it from the new parameters and selecting element by
        # element wrote every buffer twice: half of mlp's step (docs/BENCHMARKS.md).
        finite = d_finite & all_finite(g_grads) & jnp.isfinite(g_loss) & all_finite((g_ms, d_ms))

        def updated(_):
            g_updates, g_opt_state = gan.g_tx.update(g_grads, state.g_opt_state, state.g_params)
            g_params = optax.apply_updates(state.g_params, g_updates)
            return {
                "g_params": g_params,
                "g_opt_state": g_opt_state,
                "g_ema_params": optax.incremental_update(
                    g_params, state.g_ema_params, 1.0 - ema_decay_at(state.step)
                ),
                "g_model_state": g_ms,
                "d_params": d_params,
                "d_opt_state": d_opt_state,
                "d_model_state": d_ms,
            }

        def unchanged(_):
            return {name: getattr(state, name) for name in _UPDATED_FIELDS}

        if skip_nonfinite:
            new = state.replace(**jax.lax.cond(finite, updated, unchanged, None))
        else:
            new = state.replace(**updated(None))
        skipped_now = jnp.logical_not(finite).astype(jnp.int32)
        new = new.replace(
            step=state.step + 1,
            skipped=state.skipped + skipped_now,
            skip_streak=(state.skip_streak + 1) * skipped_now,
        )
        return new, _step_metrics(d_metrics, g_loss, g_grads, new, finite)

    return train_step


def _step_metrics(d_metrics, g_loss, g_grads, new: GANState, finite) -> Metrics:
    """The metrics of one iteration: D's (means over its k updates), then G's and the state's."""
    return {
        **d_metrics,
        "g_loss": g_loss,
        "g_grad_norm": optax.tree.norm(g_grads),
        "g_param_norm": optax.tree.norm(new.g_params),
        "d_param_norm": optax.tree.norm(new.d_params),
        "finite": finite.astype(jnp.float32),
        "skipped": new.skipped,
        "skip_streak": new.skip_streak,
    }


def make_batch_sampler(
    dataset: Dataset,
    *,
    d_steps: int,
    batch_size: int,
    value_range: tuple[float, float],
    labels: bool = False,
) -> Callable[[Any, jax.Array], Any]:
    """Builds ``draw(arrays, key) -> real_batches [d_steps, batch_size, *shape]``: the real
    minibatches one train step takes, drawn on the device (:func:`jaxgan.data.sample_batch`,
    i.i.d. with replacement). Pure and jit-able; the trainer draws with
    ``fold_in(data_key, step)``. With ``labels`` (a class-conditional GAN) it returns
    ``(images, labels [d_steps, batch_size])``, the images being those drawn without."""

    def draw(arrays, key):
        num = d_steps * batch_size
        real = data_lib.sample_batch(
            arrays, key, num, dataset=dataset, value_range=value_range, labels=labels
        )
        if labels:
            images, classes = real
            return (
                images.reshape(d_steps, batch_size, *dataset.shape),
                classes.reshape(d_steps, batch_size),
            )
        return real.reshape(d_steps, batch_size, *dataset.shape)

    return draw


def ema_decay_schedule(ema_decay: float, step: jax.Array, *, warmup: bool = True):
    """The EMA's decay at iteration ``step`` (0-based): ``min(ema_decay, (1 + t) / (10 + t))``
    with ``warmup``, else ``ema_decay`` (a Python float, as jaxgan <= 0.2 used it)."""
    if not warmup or ema_decay == 0:
        return ema_decay
    t = step.astype(jnp.float32)
    return jnp.minimum(jnp.float32(ema_decay), (1.0 + t) / (10.0 + t))


def make_train_step_for(gan: GAN, config: Any):
    """:func:`make_train_step` with every setting from a run config (a preset's
    ``get_config()``): the step ``train.py`` runs, in one call."""
    return make_train_step(
        gan,
        loss=config.loss,
        d_steps=config.d_steps,
        ema_decay=config.ema_decay,
        ema_warmup=config.get("ema_warmup", False),
        fresh_g_noise=config.fresh_g_noise,
        gp_weight=config.gp_weight,
        r1_gamma=config.r1_gamma,
        r2_gamma=config.r2_gamma,
        penalty_per=config.get("penalty_per", "sample"),
        scan_d_steps=config.scan_d_steps,
        compute_dtype=compute_dtype(config),
        augment=config.get("augment", ""),
        acgan_weight=config.get("acgan_weight", 1.0),
    )


PENALTY_UNITS = ("pack", "sample")


def _check_penalties(gan: GAN, *, gp_weight: float, r1_gamma: float, r2_gamma: float) -> None:
    """Refuses negative weights, and penalties through a D with BatchNorm statistics."""
    weights = {"gp_weight": gp_weight, "r1_gamma": r1_gamma, "r2_gamma": r2_gamma}
    for name, value in weights.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0 (0 turns the penalty off), got {value}")
    if not any(weights.values()):
        return
    models = gan.models
    x = jax.ShapeDtypeStruct((models.pack, *models.data_shape), jnp.float32)
    y = jax.ShapeDtypeStruct((models.pack,), jnp.int32)
    variables = jax.eval_shape(
        lambda x, y: models.discriminator.init(
            jax.random.key(0), *_discriminator_inputs(models, x, y), train=False
        ),
        x,
        y,
    )
    if "batch_stats" in variables:
        names = ", ".join(n for n, v in weights.items() if v)
        raise ValueError(
            f"{names}: a gradient penalty needs a discriminator whose scores each depend on "
            "their own input alone, but this D keeps batch_stats "
            "(BatchNorm couples the examples of a batch): use a D without BatchNorm, e.g. "
            "--config.model.d_norm=layer for dcgan32/dcgan64 (Gulrajani et al. 2017 replace "
            "BatchNorm with layer normalization in the critic)"
        )


def _check_combination(gan: GAN, *, d_steps, augment, acgan_weight, penalty_per) -> None:
    """Refuses settings out of range, or that make no sense together, saying what to change."""
    models = gan.models
    if d_steps < 1:
        raise ValueError(f"d_steps must be >= 1, got {d_steps}.")
    if penalty_per not in PENALTY_UNITS:
        raise ValueError(f"penalty_per must be one of {PENALTY_UNITS}, got {penalty_per!r}")
    if augment:
        augment_lib.parse_policy(augment)
        if len(models.data_shape) != 3:
            raise ValueError(
                f"augment={augment!r}: DiffAugment transforms images (H, W, C), but this "
                f"GAN's data has shape {models.data_shape}; turn it off (augment='')"
            )
    if models.conditional and models.pack > 1:
        raise ValueError(
            f"pack={models.pack} with a class-conditional GAN: a packed D judges several "
            "samples together, but each has its own label; use pack=1"
        )
    if not acgan_weight >= 0:
        raise ValueError(f"acgan_weight must be >= 0, got {acgan_weight}")


def _make_d_update(
    gan: GAN, loss_pair, d_apply, *, gp_weight, r1_gamma, r2_gamma, pack, acgan_weight
):
    """``d_update((d_params, d_model_state, d_opt_state), (real, labels), (fake, labels),
    keys) -> (carry, metrics)``: one discriminator update on a real and a (detached) fake
    batch."""
    acgan = gan.models.conditioning == "acgan"

    def d_update(carry, real, fake, keys):
        d_params, d_model_state, d_opt_state = carry
        (real_x, real_y), (fake_x, fake_y) = real, fake
        drop_real, drop_fake, gp_key, aug_real, aug_fake = keys

        def d_loss_fn(d_params):
            real_logits, real_class, ms = d_apply(
                d_params, d_model_state, real_x, real_y, drop_real, aug_real
            )
            fake_logits, fake_class, ms = d_apply(d_params, ms, fake_x, fake_y, drop_fake, aug_fake)
            d_loss = jnp.mean(loss_pair.discriminator(real_logits, fake_logits))
            penalty = jnp.zeros((), d_loss.dtype)
            class_loss = jnp.zeros((), d_loss.dtype)
            if acgan:
                class_loss = _class_loss(real_class, real_y) + _class_loss(fake_class, fake_y)

            def d_fn(x, y, dropout_key, augment_key):
                return d_apply(d_params, d_model_state, x, y, dropout_key, augment_key)[0]

            real_d = lambda x: d_fn(x, real_y, drop_real, aug_real)
            if gp_weight:
                gp = losses_lib.wgan_gp_penalty(real_d, real_x, fake_x, gp_key, pack=pack)
                penalty += gp_weight * jnp.mean(gp)
            if r1_gamma:
                r1 = losses_lib.r1_penalty(real_d, real_x, pack=pack)
                penalty += 0.5 * r1_gamma * jnp.mean(r1)
            if r2_gamma:
                fake_d = lambda x: d_fn(x, fake_y, drop_fake, aug_fake)
                r2 = losses_lib.r2_penalty(fake_d, fake_x, pack=pack)
                penalty += 0.5 * r2_gamma * jnp.mean(r2)
            total = d_loss + penalty + acgan_weight * class_loss
            return total, (ms, real_logits, fake_logits, d_loss, penalty, class_loss)

        grads, (d_model_state, real_logits, fake_logits, d_loss, penalty, class_loss) = jax.grad(
            d_loss_fn, has_aux=True
        )(d_params)
        updates, d_opt_state = gan.d_tx.update(grads, d_opt_state, d_params)
        d_params = optax.apply_updates(d_params, updates)
        metrics = {
            "d_loss": d_loss,
            "d_penalty": penalty,
            "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
            "d_acc_real": jnp.mean((real_logits > 0).astype(jnp.float32)),
            "d_acc_fake": jnp.mean((fake_logits < 0).astype(jnp.float32)),
            "d_grad_norm": optax.tree.norm(grads),
            "d_finite": all_finite(grads) & jnp.isfinite(d_loss + penalty + class_loss),
        }
        if acgan:
            metrics["d_class_loss"] = class_loss
        return (d_params, d_model_state, d_opt_state), metrics

    return d_update


def _make_d_updates(
    gan: GAN, loss_pair, run_model, d_apply, *, d_steps, fresh_g_noise, scan_d_steps, augment,
    **settings,
):  # fmt: skip
    """``d_updates(state, real_images, real_labels, d_keys) -> ((d_params, d_model_state,
    d_opt_state), g_model_state, mean D metrics, all finite, (last fake, its G vjp, its
    labels) or None)``: the k discriminator updates of one iteration, each on its own real
    batch and fresh noise."""
    models = gan.models
    d_update = _make_d_update(gan, loss_pair, d_apply, **settings)

    def d_updates(state: GANState, real_images, real_labels, d_keys: jax.Array):
        batch_size = real_images.shape[1]

        def g_forward(g_params, g_model_state, z, labels):
            inputs = _generator_inputs(models, z, labels)
            return run_model(models.generator, g_params, g_model_state, *inputs, train=True)

        def one_d_update(carry, real, real_y, d_key, keep_vjp=False):
            d_carry, g_model_state = carry
            z_key, drop_real, drop_fake, gp_key = jax.random.split(d_key, 4)
            z = models.sample_latent(z_key, batch_size)
            fake_y = None
            if models.conditional:
                label_key = jax.random.fold_in(d_key, _LABEL_STREAM)
                fake_y = models.sample_labels(label_key, batch_size)
            aug_real = aug_fake = None
            if augment:
                aug_real, aug_fake = jax.random.split(jax.random.fold_in(d_key, _AUGMENT_STREAM))
            g_vjp = None
            if keep_vjp:  # the one G forward whose fake also serves the G update
                fake, g_vjp, g_model_state = jax.vjp(
                    lambda p: g_forward(p, g_model_state, z, fake_y), state.g_params, has_aux=True
                )
            else:
                fake, g_model_state = g_forward(state.g_params, g_model_state, z, fake_y)
            keys = (drop_real, drop_fake, gp_key, aug_real, aug_fake)
            d_carry, metrics = d_update(
                d_carry, (real, real_y), (jax.lax.stop_gradient(fake), fake_y), keys
            )
            return (d_carry, g_model_state), metrics, (fake, g_vjp, fake_y)

        carry = ((state.d_params, state.d_model_state, state.d_opt_state), state.g_model_state)
        labels_at = lambda i: None if real_labels is None else real_labels[i]
        # With reused noise the last D update keeps G's vjp, so it runs outside the loop.
        looped = d_steps if fresh_g_noise else d_steps - 1
        if scan_d_steps:
            carry, stacked = jax.lax.scan(
                lambda c, xs: one_d_update(c, *xs)[:2],
                carry,
                (real_images[:looped], labels_at(slice(None, looped)), d_keys[:looped]),
            )
            per_update = [jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(looped)]
        else:
            # A Python loop by default: XLA:CPU runs the convolution gradients inside a
            # while loop 10-40x slower (docs/BENCHMARKS.md); compile time grows with k.
            per_update = []
            for i in range(looped):
                carry, metrics, _ = one_d_update(carry, real_images[i], labels_at(i), d_keys[i])
                per_update.append(metrics)
        last_fake = None
        if not fresh_g_noise:
            carry, metrics, last_fake = one_d_update(
                carry, real_images[-1], labels_at(-1), d_keys[-1], keep_vjp=True
            )
            per_update.append(metrics)
        d_state, g_model_state = carry
        d_metrics = jax.tree.map(lambda *xs: jnp.stack(xs), *per_update)
        d_finite = jnp.all(d_metrics.pop("d_finite"))
        return d_state, g_model_state, jax.tree.map(jnp.mean, d_metrics), d_finite, last_fake

    return d_updates


def _make_g_gradients(
    gan: GAN, loss_pair, run_model, d_apply, *, fresh_g_noise, augment, acgan_weight
):
    """``g_gradients(g_params, g_model_state, d_params, d_model_state, g_key, batch_size,
    last_fake, last_real) -> (g_loss, g_grads, g_model_state, d_model_state)`` against the
    updated D: through a fresh G forward, or back through the last D update's
    (``last_fake``). A relativistic loss also scores ``last_real`` (images, labels)."""
    models = gan.models
    relativistic = bool(getattr(loss_pair, "relativistic", False))
    acgan = models.conditioning == "acgan"

    def g_gradients(g_params, g_model_state, d_params, d_model_state, g_key, batch_size, last,
                    last_real):  # fmt: skip
        z_key, drop_key = jax.random.split(g_key)
        aug_fake = aug_real = None
        if augment:
            aug_fake, aug_real = jax.random.split(jax.random.fold_in(g_key, _AUGMENT_STREAM))

        def loss_of_fake(fake, labels):
            fake_logits, fake_class, d_ms = d_apply(
                d_params, d_model_state, fake, labels, drop_key, aug_fake
            )
            if relativistic:
                real_x, real_y = last_real
                real_logits, _, d_ms = d_apply(
                    d_params, d_ms, real_x, real_y,
                    jax.random.fold_in(g_key, _REAL_DROPOUT_STREAM), aug_real,
                )  # fmt: skip
                g_loss = jnp.mean(loss_pair.generator(fake_logits, real_logits))
            else:
                g_loss = jnp.mean(loss_pair.generator(fake_logits))
            if acgan:
                g_loss += acgan_weight * _class_loss(fake_class, labels)
            return g_loss, d_ms

        if fresh_g_noise:
            z = models.sample_latent(z_key, batch_size)
            labels = None
            if models.conditional:
                labels = models.sample_labels(jax.random.fold_in(g_key, _LABEL_STREAM), batch_size)
            inputs = _generator_inputs(models, z, labels)

            def g_loss_fn(g_params):
                fake, g_ms = run_model(
                    models.generator, g_params, g_model_state, *inputs, train=True
                )
                g_loss, d_ms = loss_of_fake(fake, labels)
                return g_loss, (g_ms, d_ms)

            (g_loss, (g_ms, d_ms)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g_params)
            return g_loss, g_grads, g_ms, d_ms
        # Back-propagate d g_loss / d fake through the G forward of the last D update.
        fake, g_vjp, labels = last
        (g_loss, d_ms), fake_grad = jax.value_and_grad(loss_of_fake, has_aux=True)(fake, labels)
        (g_grads,) = g_vjp(fake_grad)
        return g_loss, g_grads, g_model_state, d_ms

    return g_gradients


def make_generate_fn(gan: GAN, compute_dtype: Any = None) -> Callable[..., jax.Array]:
    """Builds ``generate(g_params, g_model_state, z, labels=None) -> samples`` (G in eval
    mode; ``labels`` (B,) int for a class-conditional G, which needs them).

    In eval mode BatchNorm uses its running statistics, so each sample depends on
    its own noise vector alone.
    """
    models = gan.models

    def generate(g_params, g_model_state, z, labels=None):
        if models.conditional and labels is None:
            raise ValueError("this generator is class-conditional: pass labels (B,) in [0, C)")
        return apply_model(
            models.generator, g_params, g_model_state, *_generator_inputs(models, z, labels),
            train=False, compute_dtype=compute_dtype,
        )[0]  # fmt: skip

    return generate


def make_score_fn(gan: GAN, compute_dtype: Any = None) -> Callable[..., jax.Array]:
    """Builds ``score(d_params, d_model_state, x) -> logits [B]``: D in eval mode, one logit
    per example, for discriminator-guided sampling (:mod:`jaxgan.guided`).

    A packed D (PacGAN, ``pack = m``) scores each example as a pack of ``m`` copies of
    itself and returns the logit divided by ``m``: the optimal packed D's logit is the sum
    of its members' ``log p_data / p_g``, so this is the per-example log ratio for the
    optimal D (the calibration of :func:`jaxgan.guided.fit_calibration` fits the rest).
    A D that takes class labels is refused: guided sampling is unconditional.
    """
    models = gan.models
    if models.d_takes_labels:
        raise ValueError(
            "guided sampling of a class-conditional D is not supported: its logit is a "
            "density ratio per class (sample with method plain)"
        )

    def score(d_params, d_model_state, x):
        packed = jnp.repeat(x, models.pack, axis=0) if models.pack > 1 else x
        out = apply_model(
            models.discriminator, d_params, d_model_state, packed,
            train=False, compute_dtype=compute_dtype,
        )[0]  # fmt: skip
        if models.conditioning == "acgan":
            out = out[0]
        return out.reshape(x.shape[0]).astype(jnp.float32) / models.pack

    return score


def balanced_labels(num: int, num_classes: int) -> jax.Array:
    """``[0, 1, ..., C-1, 0, 1, ...]``: ``num`` labels balanced over ``num_classes``."""
    return jnp.arange(num, dtype=jnp.int32) % num_classes


def make_sample_fn(
    gan: GAN, compute_dtype: Any = None
) -> Callable[[Any, Any, jax.Array, int], jax.Array]:
    """Builds ``sample(g_params, g_model_state, key, num) -> samples``.

    Noise from the model's prior, then :func:`make_generate_fn`; a class-conditional G
    gets labels balanced over the classes (:func:`balanced_labels`). Jit with ``num``
    static (``static_argnums=3``).
    """
    generate = make_generate_fn(gan, compute_dtype)
    models = gan.models

    def sample(g_params, g_model_state, key, num: int):
        labels = balanced_labels(num, models.num_classes) if models.conditional else None
        return generate(g_params, g_model_state, models.sample_latent(key, num), labels)

    return sample


STANDING_STATS_SEED = 0
"""Seed of the fixed noise from which evaluation recomputes the EMA generator's statistics."""

STANDING_STATS_BATCHES = 16
"""Noise batches (of the training batch size) for the EMA generator's statistics."""


def make_standing_stats_fn(
    gan: GAN, compute_dtype: Any = None
) -> Callable[[Any, Any, jax.Array], Any]:
    """Builds ``standing(g_params, g_model_state, z_batches) -> g_model_state`` for G's EMA.

    G's BatchNorm running statistics are averages of what G's *training* parameters
    produced; the EMA of those parameters produces other activations, so sampling the
    EMA generator with them mixes two networks (measured: FID 157 against 91 for the raw
    G on MNIST after 2,000 DCGAN steps). This recomputes the statistics for the given
    parameters ("standing statistics"): for noise ``z_batches`` of shape
    ``[num_batches, B, latent_dim]`` (B the training batch, so that each batch's
    statistics are those a training step sees), the mean over batches of each
    BatchNorm layer's per-batch mean and variance. A class-conditional G sees labels
    balanced over the classes in each batch (:func:`balanced_labels`).

    It works for any Flax ``BatchNorm`` without knowing its momentum m: a train-mode
    pass from zeroed statistics returns ``(1 - m) · b`` for batch statistics ``b``, and
    one from statistics of one returns ``m + (1 - m) · b``; their difference is ``m``.
    Only the ``batch_stats`` collection is recomputed (spectral norm's ``u`` and σ are
    kept); a generator without BatchNorm gets its state back unchanged.
    """
    models = gan.models

    def after_one_pass(g_params, g_model_state, z, fill):
        stats = jax.tree.map(lambda x: jnp.full_like(x, fill), g_model_state["batch_stats"])
        labels = balanced_labels(z.shape[0], models.num_classes) if models.conditional else None
        return apply_model(
            models.generator, g_params, {**g_model_state, "batch_stats": stats},
            *_generator_inputs(models, z, labels), train=True, compute_dtype=compute_dtype,
        )[1]["batch_stats"]  # fmt: skip

    def standing(g_params, g_model_state, z_batches):
        if not jax.tree.leaves(g_model_state.get("batch_stats", {})):
            return g_model_state
        stats = g_model_state["batch_stats"]
        probe = z_batches[0, :2]
        from_zero = after_one_pass(g_params, g_model_state, probe, 0.0)
        from_one = after_one_pass(g_params, g_model_state, probe, 1.0)
        one_minus_m = jax.tree.map(lambda a, b: 1.0 - (b - a), from_zero, from_one)

        def add_batch(total, z):
            scaled = after_one_pass(g_params, g_model_state, z, 0.0)  # (1 - m) · b
            return jax.tree.map(jnp.add, total, scaled), None

        zero = jax.tree.map(jnp.zeros_like, stats)
        total, _ = jax.lax.scan(add_batch, zero, z_batches)
        num = z_batches.shape[0]
        new = jax.tree.map(
            lambda t, s, old: (t / (s * num)).astype(old.dtype), total, one_minus_m, stats
        )
        return {**g_model_state, "batch_stats": new}

    return standing


def make_ema_model_state_fn(
    gan: GAN, *, ema_decay: float, batch_size: int, compute_dtype: Any = None
) -> Callable[[Any, Any], Any]:
    """Builds ``(g_ema_params, g_model_state) -> the model state to sample the EMA with``.

    Standing statistics (:func:`make_standing_stats_fn`) on the fixed noise of
    :func:`standing_stats_noise`; with ``ema_decay`` 0 the "EMA" is G itself, whose
    running statistics fit, and they come back unchanged.
    """
    if ema_decay == 0:
        return lambda g_ema_params, g_model_state: g_model_state
    standing = make_standing_stats_fn(gan, compute_dtype)
    noise = standing_stats_noise(gan, batch_size)
    return lambda g_ema_params, g_model_state: standing(g_ema_params, g_model_state, noise)


def standing_stats_noise(gan: GAN, batch_size: int, num_batches: int = STANDING_STATS_BATCHES):
    """The fixed noise ``[num_batches, batch_size, latent_dim]`` that evaluation uses."""
    key = prng_key(STANDING_STATS_SEED)
    z = gan.models.sample_latent(key, num_batches * batch_size)
    return z.reshape(num_batches, batch_size, *z.shape[1:])
