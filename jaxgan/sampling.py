"""Samples from a trained generator: jaxgan's one noise scheme.

``num`` samples with noise seed ``seed`` are ``G(z)`` for ``z`` drawn from the model's
prior with :func:`jaxgan.state.prng_key` ``(seed)`` as one ``[num, latent_dim]`` array,
run through G in eval mode in chunks of :data:`CHUNK` (the last chunk padded), so that one
compiled shape serves every ``num``. ``python -m jaxgan.sample``, ``python -m
jaxgan.evaluate`` and the trainer's evaluation all draw their samples here, so the same
checkpoint, seed and count give the same samples, and the same scores, everywhere.

The EMA generator is sampled with BatchNorm statistics recomputed for the EMA parameters
(:func:`jaxgan.steps.make_ema_model_state_fn`); G's own parameters with its running
statistics.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan import errors, guided, steps
from jaxgan.state import GAN, GANState, compute_dtype, prng_key

__all__ = [
    "CHUNK",
    "EVAL_NOISE_SEED",
    "GUIDED_DEFAULTS",
    "METHODS",
    "Guide",
    "GuidedSamplingError",
    "Sampler",
    "generator_label",
]

CHUNK = 1000
"""Samples per generator call; fixed, so that no output depends on how many are drawn."""

EVAL_NOISE_SEED = 0
"""The noise seed of evaluation: the trainer's ``eval_*`` metrics and pictures, and the
default of ``jaxgan.evaluate --seed`` and ``jaxgan.sample --seed``."""


def generator_label(ema_decay: float, *, ema: bool = True) -> str:
    """What samples come from, in words: the EMA generator, or G's own parameters."""
    if not ema:
        return "G's own parameters"
    return "EMA generator" if ema_decay > 0 else "generator (ema_decay 0: no EMA)"


class Sampler:
    """Draws samples from one GAN's generator; build it once per run (it compiles once).

    Args:
      gan: the networks.
      ema_decay: the run's ``config.ema_decay`` (0: the "EMA" is G itself, whose running
        statistics fit it).
      batch_size: the run's training batch size (the batches of the EMA's standing
        statistics).
      compute_dtype: the run's computation dtype (:func:`jaxgan.state.compute_dtype`).
    """

    def __init__(self, gan: GAN, *, ema_decay: float, batch_size: int, compute_dtype: Any = None):
        self.models = gan.models
        self._generate = jax.jit(steps.make_generate_fn(gan, compute_dtype))
        self._ema_model_state = jax.jit(
            steps.make_ema_model_state_fn(
                gan, ema_decay=ema_decay, batch_size=batch_size, compute_dtype=compute_dtype
            )
        )

    @classmethod
    def for_config(cls, gan: GAN, config: Any) -> Sampler:
        """The sampler of a run config (its ``ema_decay``, ``batch_size``, dtype)."""
        return cls(
            gan,
            ema_decay=config.ema_decay,
            batch_size=config.batch_size,
            compute_dtype=compute_dtype(config),
        )

    def variables(self, state: GANState, *, ema: bool = True) -> tuple[Any, Any]:
        """``(g_params, g_model_state)`` to sample with: the EMA generator's (with its
        standing BatchNorm statistics) or, with ``ema=False``, G's own."""
        if not ema:
            return state.g_params, state.g_model_state
        return state.g_ema_params, self._ema_model_state(state.g_ema_params, state.g_model_state)

    def labels_for(self, num: int) -> np.ndarray | None:
        """The labels of ``num`` samples when none are asked for: balanced over the classes
        (``0, 1, ..., C-1, 0, ...``) for a class-conditional G; None for another."""
        if not self.models.conditional:
            return None
        return np.asarray(steps.balanced_labels(num, self.models.num_classes))

    def _labels(self, num: int, labels: Any) -> np.ndarray | None:
        if not self.models.conditional:
            if labels is not None:
                raise ValueError("class labels given, but this generator is not class-conditional")
            return None
        if labels is None:
            return self.labels_for(num)
        labels = np.broadcast_to(np.asarray(labels, np.int32), (num,))
        if labels.size and not (0 <= labels.min() and labels.max() < self.models.num_classes):
            raise ValueError(
                f"class labels must be in [0, {self.models.num_classes}), got "
                f"{labels.min()}..{labels.max()}"
            )
        return labels

    def __call__(
        self,
        g_params: Any,
        g_model_state: Any,
        num: int,
        seed: int,
        *,
        labels: Any = None,
        truncation: float | None = None,
    ) -> np.ndarray:
        """``[num, *data_shape]`` float32 samples in the generator's output range.

        ``labels``: for a class-conditional G, one class or ``num`` classes (default:
        :meth:`labels_for`). ``truncation``: the truncation trick's threshold for a normal
        prior (:func:`jaxgan.models.truncate_latent`; None: the prior itself).
        """
        z = np.asarray(self.models.sample_latent(prng_key(seed), num, truncation=truncation))
        return self.generate(g_params, g_model_state, z, labels=self._labels(num, labels))

    def generate(self, g_params: Any, g_model_state: Any, z: Any, *, labels: Any = None):
        """``G(z)`` in eval mode, float32, in chunks of :data:`CHUNK` (the last padded):
        the latents ``z [num, latent_dim]`` given; ``labels [num]`` for a conditional G."""
        inputs = (np.asarray(z),)
        if labels is not None:
            inputs += (np.asarray(labels, np.int32),)
        out = _in_chunks(lambda *chunk: self._generate(g_params, g_model_state, *chunk), inputs)
        if out is None:
            return np.zeros((0, *self.models.data_shape), np.float32)
        return out.astype(np.float32)

    def sample(
        self,
        state: GANState,
        num: int,
        seed: int,
        *,
        ema: bool = True,
        labels: Any = None,
        truncation: float | None = None,
    ) -> np.ndarray:
        """``num`` samples of one seed's state: :meth:`variables`, then the noise scheme."""
        return self(
            *self.variables(state, ema=ema), num, seed, labels=labels, truncation=truncation
        )


METHODS = ("plain", "drs", "mh")
"""How samples are drawn: G alone, discriminator rejection sampling, MH-GAN."""

GUIDED_DEFAULTS = {
    "refine_steps": 0,
    "chain_length": 100,
    "percentile": 95.0,
    "gamma": 0.0,
    "burn_in": 10_000,
    "calibration_num": 5_000,
}
"""The settings of :meth:`Guide.sample` when none are given (the command lines' defaults)."""

DRS_ROUND = 10 * CHUNK
"""Proposals per DRS round; fixed, so that fewer samples are a prefix of more."""

# Random streams of a guided draw, folded into the noise seed's key.
_CALIBRATION_STREAM, _BURN_IN_STREAM, _PROPOSAL_STREAM, _UNIFORM_STREAM, _START_STREAM = range(1, 6)
_REFINE_STREAM, _RESTART_STREAM = 6, 7

REFINE_BATCH = 500
"""Real and generated examples per step of :meth:`Guide.refine`."""
REFINE_LEARNING_RATE = 1e-3
"""Adam's first learning rate (β1 0.5) in :meth:`Guide.refine`; see :func:`refine_schedule`."""


def refine_schedule(num_steps: int) -> optax.Schedule:
    """The learning rate of :meth:`Guide.refine`'s ``num_steps`` steps: a cosine decay from
    :data:`REFINE_LEARNING_RATE` to 0.

    A constant rate leaves D wandering around ``D*`` at the size of its last steps; decaying it
    settles D there. Measured on the grid25 preset (MH K 100, docs/RESULTS.md): on a one-seed
    run, 2,000 steps at the constant rate gave 94.0 % high quality and reverse KL 0.146, the
    cosine decay 96.8 % and 0.069, 6,000 decayed steps 98.6 % and 0.028; over 10 seeds,
    6,000 decayed steps give 97.8 ± 0.2 % and 0.045 (constant, 2,000: 94.3 % and 0.221).
    """
    return optax.cosine_decay_schedule(REFINE_LEARNING_RATE, max(int(num_steps), 1))


class GuidedSamplingError(errors.JaxganError, ValueError):
    """A guided draw cannot be made as asked (too few held-out examples, too few accepted)."""


class Guide:
    """Discriminator-guided samples (:mod:`jaxgan.guided`): DRS and MH-GAN over a run's G and D.

    Every draw first calibrates D (:func:`jaxgan.guided.fit_calibration`) on the first
    half of the held-out real examples given (at most ``calibration_num``) and as many
    generated ones. Everything is a function of the noise seed: the same state, held-out
    examples, seed and settings give the same samples.

    Args:
      sampler: the run's :class:`Sampler` (its G, EMA and noise scheme).
      gan: the networks.
      compute_dtype: the run's computation dtype.
    """

    def __init__(self, sampler: Sampler, gan: GAN, *, compute_dtype: Any = None):
        self.sampler, self.models = sampler, gan.models
        if self.models.conditional:
            raise GuidedSamplingError(
                "guided sampling (drs, mh) of a class-conditional run is not supported: its D "
                "judges each class apart; sample with method plain"
            )
        self._score_fn = steps.make_score_fn(gan, compute_dtype)
        self._score = jax.jit(self._score_fn)
        self._generate_fn = steps.make_generate_fn(gan, compute_dtype)

    def scores(self, d_params: Any, d_model_state: Any, x: Any) -> np.ndarray:
        """D's logits (eval mode) of ``x [n, *data_shape]``, in padded chunks: ``[n]``."""
        out = _in_chunks(
            lambda chunk: self._score(d_params, d_model_state, chunk), (np.asarray(x, np.float32),)
        )
        return np.zeros((0,), np.float32) if out is None else out

    def refine(
        self,
        state: GANState,
        real: Any,
        num_steps: int,
        key: jax.Array,
        *,
        ema: bool = True,
        truncation: float | None = None,
    ) -> tuple[GANState, dict[str, float]]:
        """D trained further with G fixed, towards the optimal D of this G.

        The GAN's D is the density-ratio estimator of the guided methods, but at the end of
        training it is the D of a game that was still moving (and smoothed by penalties
        such as R1): ``num_steps`` Adam steps (β1 0.5, the learning rate decaying from
        :data:`REFINE_LEARNING_RATE` to 0 by :func:`refine_schedule`) of the original GAN
        loss (Goodfellow et al.: ``softplus(-D(x)) + softplus(D(G(z)))``, no penalty), each
        on :data:`REFINE_BATCH` examples drawn with replacement from ``real`` and as many
        fresh samples of the guided G, bring D close to ``D*`` for this G (Azadi et al. 2019
        continue training D with G fixed for the same reason). D runs in eval mode
        (BatchNorm statistics fixed, no dropout).

        Returns:
          The state with the refined ``d_params``, and ``{"refine_steps", "learning_rate",
          "loss_first", "loss_last"}`` (the schedule; the loss of the first and last step).
        """
        real = jnp.asarray(real, jnp.float32)
        g_variables = self.sampler.variables(state, ema=ema)
        models, score, generate = self.models, self._score_fn, self._generate_fn
        optimizer = optax.adam(refine_schedule(num_steps), b1=0.5)

        def loss(d_params, d_model_state, x_real, x_fake):
            real_logits = score(d_params, d_model_state, x_real)
            fake_logits = score(d_params, d_model_state, x_fake)
            return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))

        # Everything is an argument, not a closed-over constant: XLA would fold them in.
        @jax.jit
        def run(d_params, d_model_state, g_variables, real, key):
            def one_step(carry, step_key):
                d_params, opt_state = carry
                index_key, noise_key = jax.random.split(step_key)
                x_real = real[jax.random.randint(index_key, (REFINE_BATCH,), 0, real.shape[0])]
                z = models.sample_latent(noise_key, REFINE_BATCH, truncation=truncation)
                x_fake = generate(*g_variables, z)
                value, grads = jax.value_and_grad(loss)(d_params, d_model_state, x_real, x_fake)
                updates, opt_state = optimizer.update(grads, opt_state, d_params)
                return (optax.apply_updates(d_params, updates), opt_state), value

            init = (d_params, optimizer.init(d_params))
            (d_params, _), values = jax.lax.scan(one_step, init, jax.random.split(key, num_steps))
            return d_params, values

        d_params, values = run(state.d_params, state.d_model_state, g_variables, real, key)
        values = np.asarray(values)
        return state.replace(d_params=d_params), {
            "refine_steps": int(num_steps),
            "learning_rate": f"cosine {REFINE_LEARNING_RATE:g} to 0",
            "loss_first": float(values[0]),
            "loss_last": float(values[-1]),
        }

    def _latents(self, key, num, truncation):
        return np.asarray(self.models.sample_latent(key, num, truncation=truncation))

    def sample(
        self,
        state: GANState,
        num: int,
        seed: int,
        *,
        method: str,
        real: Any,
        ema: bool = True,
        truncation: float | None = None,
        refine_steps: int = GUIDED_DEFAULTS["refine_steps"],
        train_real: Any = None,
        chain_length: int = GUIDED_DEFAULTS["chain_length"],
        percentile: float | None = GUIDED_DEFAULTS["percentile"],
        gamma: float = GUIDED_DEFAULTS["gamma"],
        burn_in: int = GUIDED_DEFAULTS["burn_in"],
        calibration_num: int = GUIDED_DEFAULTS["calibration_num"],
        max_proposals: int | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """``(samples [num, *data_shape], record)`` drawn with ``method`` ("drs" or "mh").

        Args:
          state: one seed's state (G and D).
          num: samples.
          seed: noise seed.
          method: ``"drs"`` (Azadi et al. 2019) or ``"mh"`` (Turner et al. 2019).
          real: held-out real examples in G's output range, ``[n, *data_shape]``; the first
            ``min(n // 2, calibration_num)`` calibrate D, MH's chains start at the rest.
          ema: guide the EMA generator (default) or G's own parameters.
          truncation: propose from the truncated prior.
          refine_steps: first train D further with G fixed (:meth:`refine`) for this many
            steps, on ``train_real`` (real examples G trained on; required then).
          chain_length: MH's ``K`` proposals per sample (Turner et al.: up to 640).
          percentile: DRS's γ as this percentile of F over the burn-in (Azadi et al.;
            None: the fixed ``gamma``, 0 being exact rejection sampling).
          burn_in: DRS's proposals that estimate the largest logit before sampling.
          max_proposals: DRS gives up after this many proposals (default ``1000 * num``).

        Returns:
          The samples, and a JSON-ready record: the method and its settings, proposals
          drawn, the acceptance rate and the calibration (:class:`jaxgan.guided.Calibration`).

        Raises:
          GuidedSamplingError: with a message for the user.
        """
        if method not in ("drs", "mh"):
            raise GuidedSamplingError(f"method must be 'drs' or 'mh', got {method!r}")
        real = np.asarray(real, np.float32)
        n_cal = min(len(real) // 2, calibration_num)
        if n_cal < 2:
            raise GuidedSamplingError(
                f"guided sampling needs held-out real examples to calibrate D on; got {len(real)}"
            )
        base = prng_key(seed)
        key = lambda stream, *more: _fold(base, stream, *more)
        refined = None
        if refine_steps:
            if train_real is None or len(train_real) == 0:
                raise GuidedSamplingError(
                    "refine_steps needs train_real: real examples to train D on"
                )
            state, refined = self.refine(
                state, train_real, refine_steps, key(_REFINE_STREAM), ema=ema, truncation=truncation
            )
        g_params, g_model_state = self.sampler.variables(state, ema=ema)
        d = (state.d_params, state.d_model_state)
        cal_fake = self.sampler.generate(
            g_params, g_model_state, self._latents(key(_CALIBRATION_STREAM), n_cal, truncation)
        )
        calibration = guided.fit_calibration(
            self.scores(*d, real[:n_cal]), self.scores(*d, cal_fake)
        )
        record = {
            "method": method,
            "num": int(num),
            "noise_seed": int(seed),
            "ema": bool(ema),
            "calibration": {
                "scale": calibration.scale,
                "offset": calibration.offset,
                **calibration.report,
            },
        }
        if refined is not None:
            record["refine"] = refined
        draw = self._drs if method == "drs" else self._mh
        samples, details = draw(
            d, g_params, g_model_state, key, num, calibration, real[n_cal:] if len(real) >
            n_cal else real, truncation=truncation, chain_length=chain_length,
            percentile=percentile, gamma=gamma, burn_in=burn_in,
            max_proposals=max_proposals or 1000 * num,
        )  # fmt: skip
        record.update(details)
        return samples, record

    def _drs(self, d, g_params, g_model_state, key, num, calibration, real, **settings):
        del real
        truncation = settings["truncation"]
        burn = self.sampler.generate(
            g_params, g_model_state, self._latents(key(_BURN_IN_STREAM), settings["burn_in"],
                                                   truncation),
        )  # fmt: skip
        burn_logits = calibration(self.scores(*d, burn))
        max_logit = float(np.max(burn_logits))
        percentile = settings["percentile"]
        gamma = (
            guided.drs_gamma(burn_logits, max_logit, percentile)
            if percentile is not None
            else float(settings["gamma"])
        )
        accepted, proposals, round_index, got = [], 0, 0, 0
        while got < num:
            if proposals >= settings["max_proposals"]:
                raise GuidedSamplingError(
                    f"DRS accepted {got} of {proposals:,} proposals, short of {num}: D rejects "
                    "nearly everything G makes; lower the percentile (--drs_percentile) or "
                    "sample with method plain"
                )
            x = self.sampler.generate(
                g_params, g_model_state,
                self._latents(key(_PROPOSAL_STREAM, round_index), DRS_ROUND, truncation),
            )  # fmt: skip
            logits = np.asarray(calibration(self.scores(*d, x)))
            running = np.maximum.accumulate(np.concatenate([[max_logit], logits]))[:-1]
            keep, _ = guided.drs_accept(
                key(_UNIFORM_STREAM, round_index), logits, running, np.float32(gamma)
            )
            kept = np.flatnonzero(np.asarray(keep))
            if got + len(kept) >= num:  # the proposals up to the last sample taken count
                kept = kept[: num - got]
                proposals += int(kept[-1]) + 1
            else:
                proposals += DRS_ROUND
            max_logit = max(max_logit, float(np.max(logits)))
            accepted.append(x[kept])
            got += len(kept)
            round_index += 1
        return np.concatenate(accepted), {
            "proposals": int(proposals),
            "acceptance_rate": num / proposals,
            "gamma": gamma,
            "percentile": percentile,
            "burn_in": int(settings["burn_in"]),
            "max_logit": max_logit,
        }

    def _mh(self, d, g_params, g_model_state, key, num, calibration, real, **settings):
        length, truncation = int(settings["chain_length"]), settings["truncation"]
        if length < 1:
            raise GuidedSamplingError(f"chain_length must be positive, got {length}")
        starts = np.asarray(jax.random.randint(key(_START_STREAM), (num,), 0, len(real)))
        start_logits = np.asarray(calibration(self.scores(*d, real[starts])))
        block = max(1, 10 * CHUNK // length)  # chains per block: 10,000 proposals at a time
        chosen_z, moves, fallbacks = [], 0, 0
        for first in range(0, num, block):
            count = min(block, num - first)
            block_key = key(_PROPOSAL_STREAM, first // block)
            z = self._latents(block_key, count * length, truncation)
            x = self.sampler.generate(g_params, g_model_state, z)
            logits = np.asarray(calibration(self.scores(*d, x))).reshape(count, length)
            chosen, block_moves = guided.mh_chains(
                key(_UNIFORM_STREAM, first // block),
                start_logits[first : first + count],
                logits,
            )
            chosen = np.array(chosen)
            # A chain that never left its real start runs again from its first proposal
            # over the others: an independence chain started at G (burn-in K - 1).
            stuck = np.flatnonzero(chosen < 0)
            fallbacks += len(stuck)
            if len(stuck):
                again, _ = guided.mh_chains(
                    key(_RESTART_STREAM, first // block), logits[stuck, 0], logits[stuck, 1:]
                )
                chosen[stuck] = np.asarray(again) + 1  # -1 (stayed at proposal 0) -> 0
            moves += int(np.sum(block_moves))
            chosen_z.append(z.reshape(count, length, -1)[np.arange(count), chosen])
        samples = self.sampler.generate(g_params, g_model_state, np.concatenate(chosen_z))
        return samples, {
            "proposals": int(num * length),
            "acceptance_rate": moves / (num * length),
            "chain_length": length,
            "chains_started_at": f"{len(real):,} held-out real examples",
            "fraction_restarted": fallbacks / num,
        }


def _in_chunks(fn, inputs: tuple[np.ndarray, ...]) -> np.ndarray | None:
    """``fn`` over rows of ``inputs`` in chunks of :data:`CHUNK`, the last padded with zeros
    (one compiled shape; each row's result is its own); the outputs' first ``n`` rows, or
    None for no rows."""
    num, chunks = len(inputs[0]), []
    for start in range(0, num, CHUNK):
        pad = CHUNK - len(inputs[0][start : start + CHUNK])
        padded = [
            np.concatenate([x[start : start + CHUNK], np.zeros((pad, *x.shape[1:]), x.dtype)])
            for x in inputs
        ]
        chunks.append(np.asarray(fn(*padded)))
    return np.concatenate(chunks)[:num] if chunks else None


def _fold(key: jax.Array, *streams: int) -> jax.Array:
    for stream in streams:
        key = jax.random.fold_in(key, stream)
    return key
