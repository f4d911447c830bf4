"""GANState, optimizers, the key and dtype rules, and state creation (for one seed or S).

The state is one immutable pytree of arrays. Everything static (modules, optimizers,
loss choice) lives in :class:`GAN` or is closed over by the step factory, never in
the state, so the state can be checkpointed, donated, sharded and vmapped as is.

Keys: every key of a run comes from :func:`prng_key` (an explicit ``threefry2x32``, so
that no global default can change a run's random numbers), and the run's root keys from
:func:`make_keys`. A run of ``num_seeds`` seeds holds their states stacked along a leading
axis (:func:`make_init_fn`, :func:`seed_state`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxgan import hardware
from jaxgan import models as models_lib

__all__ = [
    "COMPUTE_DTYPES",
    "GAN",
    "GANState",
    "build_gan",
    "compute_dtype",
    "create_state",
    "make_init_fn",
    "make_keys",
    "make_optimizer",
    "pack_of",
    "prng_key",
    "seed_state",
]

PyTree = Any


PRNG_IMPL = "threefry2x32"


def prng_key(seed: int | jax.Array) -> jax.Array:
    """``jax.random.key(seed)`` with the PRNG named (``threefry2x32``), so that a global
    default (``jax_default_prng_impl``) cannot change a run's random numbers."""
    return jax.random.key(seed, impl=PRNG_IMPL)


def make_keys(seed: int | jax.Array) -> dict[str, jax.Array]:
    """The run's root keys, from the seed alone: ``init``, ``train``, ``data``, ``eval``."""
    init, train, data, evaluation = jax.random.split(prng_key(seed), 4)
    return {"init": init, "train": train, "data": data, "eval": evaluation}


COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}
"""``config.compute_dtype`` names and the networks' computation dtype (None: float32)."""


def compute_dtype(config: Any):
    """The networks' computation dtype of a config (None: float32 throughout)."""
    return COMPUTE_DTYPES[config.get("compute_dtype", "float32")]


class GANState(struct.PyTreeNode):
    """Everything that changes during training, as one pytree of arrays.

    Attributes:
      step: number of completed training iterations (k D updates + 1 G update), int32.
      g_params, d_params: the networks' parameters.
      g_model_state, d_model_state: the networks' other variables, e.g.
        ``{"batch_stats": ...}`` for BatchNorm; ``{}`` when there are none.
      g_opt_state, d_opt_state: the optax states of each network's optimizer.
      g_ema_params: exponential moving average of ``g_params``.
      skipped: number of iterations whose update was skipped for non-finite values.
      skip_streak: number of consecutive skipped iterations up to this step.
    """

    step: jax.Array
    g_params: PyTree
    d_params: PyTree
    g_model_state: PyTree
    d_model_state: PyTree
    g_opt_state: PyTree
    d_opt_state: PyTree
    g_ema_params: PyTree
    skipped: jax.Array
    skip_streak: jax.Array


@dataclasses.dataclass(frozen=True)
class GAN:
    """The static half of a GAN: networks and optimizers (nothing that changes)."""

    models: models_lib.GANModels
    g_tx: optax.GradientTransformation
    d_tx: optax.GradientTransformation

    @property
    def generator(self):
        return self.models.generator

    @property
    def discriminator(self):
        return self.models.discriminator


def make_optimizer(
    opt_config: Any, learning_rate: float, *, updates_per_iteration: int = 1
) -> optax.GradientTransformation:
    """Builds an optax optimizer from an optimizer config.

    Args:
      opt_config: a ConfigDict (or object with attributes) with ``name`` ("adam" or
        "sgd"); for adam ``b1``, ``b2``, ``eps``; for sgd ``momentum`` and optionally
        ``final_momentum`` with ``momentum_ramp_steps`` (a linear ramp, as in
        Goodfellow et al. 2014); for both, optional ``lr_decay``: the learning rate is
        multiplied by it after every iteration (1.0 keeps it constant), or
        ``linear_decay_steps``: it falls linearly to 0 over that many iterations (SNGAN,
        Miyato et al. 2018; 0: off). Not both.
      learning_rate: the initial learning rate.
      updates_per_iteration: optimizer updates per training iteration (``d_steps`` for
        D): the schedules advance once per iteration, after that many updates.

    Returns:
      An ``optax.GradientTransformation`` whose hyperparameters are visible in its
      state (``optax.inject_hyperparams``).
    """
    name = opt_config.name
    decay = float(getattr(opt_config, "lr_decay", 1.0) or 1.0)
    linear = int(getattr(opt_config, "linear_decay_steps", 0) or 0)
    per_iteration = _per_iteration(updates_per_iteration)
    if linear < 0 or (linear and decay != 1.0):
        raise ValueError(
            f"optimizer.linear_decay_steps={linear} with lr_decay={decay}: choose one schedule "
            "(linear_decay_steps >= 0; lr_decay 1.0 turns the exponential one off)"
        )
    if linear:
        lr: Any = per_iteration(optax.linear_schedule(float(learning_rate), 0.0, linear))
    elif decay == 1.0:
        lr = float(learning_rate)
    else:
        lr = per_iteration(
            optax.exponential_decay(float(learning_rate), transition_steps=1, decay_rate=decay)
        )
    if name == "adam":
        return optax.inject_hyperparams(optax.adam)(
            learning_rate=lr, b1=opt_config.b1, b2=opt_config.b2, eps=opt_config.eps
        )
    if name == "sgd":
        momentum: Any = float(opt_config.momentum)
        final = getattr(opt_config, "final_momentum", None)
        ramp = int(getattr(opt_config, "momentum_ramp_steps", 0) or 0)
        if final is not None and ramp > 0:
            momentum = per_iteration(optax.linear_schedule(momentum, float(final), ramp))
        return optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)
    raise ValueError(f"Unknown optimizer {name!r}; choose 'adam' or 'sgd'.")


def _per_iteration(updates_per_iteration: int):
    """Wraps a schedule of the update count into one of the iteration count."""
    k = int(updates_per_iteration)
    if k < 1:
        raise ValueError(f"updates_per_iteration must be >= 1, got {k}")
    if k == 1:
        return lambda schedule: schedule
    return lambda schedule: lambda count: schedule(count // k)


def pack_of(config: Any) -> int:
    """The PacGAN packing degree: ``pack`` (``model.pack`` in older run folders)."""
    return int(config.get("pack", None) or config.model.get("pack", 1))


def conv_of(config: Any) -> str:
    """The convolution formulation a config trains with: ``model.conv``, with ``auto``
    resolved for this platform (:func:`jaxgan.hardware.choose_conv`)."""
    conv = config.model.get("conv", "fast")
    return hardware.choose_conv(config.model.name)[0] if conv == "auto" else conv


def build_gan(config: Any, data_shape: tuple[int, ...], num_classes: int = 0) -> GAN:
    """Builds the networks and optimizers named by a config.

    Args:
      config: the run config (fields ``model.name``, ``model.conv``, ``model.d_norm``,
        ``model.conditioning``, ``model.spectral_norm``, ``model.attention``, ``pack``,
        ``optimizer`` (with ``schedule_per``), ``g_lr``, ``d_lr``, ``d_steps``;
        see ``jaxgan/configs/default.py``). Fields absent from an older config take
        the value of the jaxgan that wrote it.
      data_shape: shape of one data example, e.g. ``(2,)`` or ``(28, 28, 1)``.
      num_classes: the dataset's number of classes (``Dataset.num_classes``), which a
        class-conditional config (``model.conditioning`` other than ``"none"``) needs.

    Returns:
      A :class:`GAN`.

    Raises:
      ValueError: the config asks for what the networks or the data cannot do (e.g. a
        conditional GAN on data without labels); the message says what to change.
    """
    conditioning = config.model.get("conditioning", "none")
    if conditioning != "none" and num_classes < 1:
        raise ValueError(
            f"model.conditioning={conditioning!r} trains a class-conditional GAN, but this "
            "data has no class labels (MNIST-family IDX files and tfds datasets with a "
            "'label' feature have them); use --config.model.conditioning=none"
        )
    models = models_lib.build_models(
        config.model.name,
        data_shape=tuple(data_shape),
        pack=pack_of(config),
        conv=conv_of(config),
        d_norm=config.model.get("d_norm", "batch"),
        num_classes=num_classes if conditioning != "none" else 0,
        conditioning=conditioning,
        spectral_norm=config.model.get("spectral_norm", "default"),
        attention=int(config.model.get("attention", 0) or 0),
    )
    per_update = config.optimizer.get("schedule_per", "update") == "update"
    return GAN(
        models=models,
        g_tx=make_optimizer(config.optimizer, config.g_lr),
        d_tx=make_optimizer(
            config.optimizer,
            config.d_lr,
            updates_per_iteration=1 if per_update else int(config.get("d_steps", 1)),
        ),
    )


def _split_variables(variables: PyTree) -> tuple[PyTree, PyTree]:
    variables = dict(variables)
    params = variables.pop("params")
    return params, variables


def create_state(gan: GAN, key: jax.Array) -> GANState:
    """Initializes both networks, both optimizer states and the EMA.

    Args:
      gan: the networks and optimizers.
      key: a PRNG key (``jax.random.key(seed)``).

    Returns:
      A :class:`GANState` at step 0.
    """
    models = gan.models
    g_key, d_key = jax.random.split(key)
    z = jnp.zeros((models.pack, models.latent_dim), jnp.float32)
    x = jnp.zeros((models.pack, *models.data_shape), jnp.float32)
    g_inputs, d_inputs = (z,), (x,)
    if models.conditional:
        y = jnp.zeros((models.pack,), jnp.int32)
        g_inputs = (z, y)
        d_inputs = (x, y) if models.d_takes_labels else (x,)
    g_params, g_model_state = _split_variables(models.generator.init(g_key, *g_inputs, train=False))
    d_params, d_model_state = _split_variables(
        models.discriminator.init(d_key, *d_inputs, train=False)
    )
    return GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        d_params=d_params,
        g_model_state=g_model_state,
        d_model_state=d_model_state,
        g_opt_state=gan.g_tx.init(g_params),
        d_opt_state=gan.d_tx.init(d_params),
        g_ema_params=jax.tree.map(jnp.copy, g_params),
        skipped=jnp.zeros((), jnp.int32),
        skip_streak=jnp.zeros((), jnp.int32),
    )


def make_init_fn(gan: GAN, seed: int, num_seeds: int = 1) -> Callable[[], GANState]:
    """``() -> GANState`` at step 0 for seed ``seed``, or for ``num_seeds`` seeds.

    With ``num_seeds > 1`` the seeds ``seed, seed + 1, ...`` are initialised under
    ``jax.vmap`` and every leaf has a leading seed axis of that size: the state the
    trainer trains them with in one program, and its checkpoints hold.
    """

    def init_one(s):
        return create_state(gan, make_keys(s)["init"])

    if num_seeds == 1:
        return lambda: init_one(seed)
    return lambda: jax.vmap(init_one)(seed + jnp.arange(num_seeds))


def seed_state(state: GANState, index: int, num_seeds: int) -> GANState:
    """The state of seed ``index`` of a run of ``num_seeds`` seeds (the state itself for 1)."""
    if not 0 <= index < num_seeds:
        raise ValueError(f"seed index {index} is outside [0, {num_seeds})")
    if num_seeds == 1:
        return state
    return jax.tree.map(lambda leaf: leaf[index], state)
