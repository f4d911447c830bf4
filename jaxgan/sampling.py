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
import numpy as np

from jaxgan import steps
from jaxgan.state import GAN, GANState, compute_dtype, prng_key

__all__ = ["CHUNK", "EVAL_NOISE_SEED", "Sampler", "generator_label"]

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
        y = self._labels(num, labels)
        chunks = []
        for start in range(0, num, CHUNK):
            chunk = z[start : start + CHUNK]
            pad = CHUNK - len(chunk)  # pad: one compiled shape, identical results per sample
            chunk = np.concatenate([chunk, np.zeros((pad, z.shape[1]), z.dtype)])
            args = (chunk,)
            if y is not None:
                args = (chunk, np.concatenate([y[start : start + CHUNK], np.zeros(pad, np.int32)]))
            chunks.append(np.asarray(self._generate(g_params, g_model_state, *args)))
        if not chunks:
            return np.zeros((0, *self.models.data_shape), np.float32)
        return np.concatenate(chunks)[:num].astype(np.float32)

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
