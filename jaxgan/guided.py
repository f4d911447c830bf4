"""Discriminator-guided sampling: rejection sampling (DRS) and Metropolis-Hastings (MH-GAN).

Pure functions of D's scores (logits) and PRNG keys: no networks, no files. The sampler
that feeds them G's proposals and D's logits is :class:`jaxgan.sampling.Guide`.

A discriminator that is optimal for a fixed G has ``D*(x) = p_data / (p_data + p_g)``, so
its logit is ``log p_data(x) - log p_g(x)``: the density ratio that turns samples of
p_g into samples of p_data. A trained D is neither optimal nor calibrated, so both
methods first fit a logistic *calibration* ``s -> a·s + b`` on held-out real and
generated examples (Platt scaling: the logistic regression of Azadi et al. 2019, and one
of the calibrators of Turner et al. 2019), with as many of each, so that the calibrated
logit estimates the log density ratio.

* :func:`drs_accept_probability`: discriminator rejection sampling (Azadi et al. 2019,
  arXiv 1810.06758): accept ``x`` with probability ``σ(F(x) - γ)``, ``F = Δ - log(1 -
  exp(Δ - ε))``, ``Δ = s(x) - s_M`` for the largest calibrated logit ``s_M`` seen. With
  ``γ = 0`` and ``ε → 0`` this is exact rejection sampling, ``P = exp(s - s_M) =
  (p_data/p_g) / M``; a ``γ`` below 0 accepts more, above 0 fewer (Azadi et al. set it to
  a percentile of F over a batch: :func:`drs_gamma`).
* :func:`mh_chains`: MH-GAN's independence sampler (Turner et al. 2019, arXiv
  1811.11357): a chain per sample, started at a real example, proposing ``K`` independent
  draws of G and accepting ``x'`` over ``x`` with probability ``min(1, exp(s(x') -
  s(x)))``, the Metropolis-Hastings ratio of target p_data and proposal p_g.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "Calibration",
    "drs_accept",
    "drs_accept_probability",
    "drs_gamma",
    "fit_calibration",
    "mh_chains",
    "summary",
]

DRS_EPSILON = 1e-6
"""Azadi et al.'s ε, which keeps ``log(1 - exp(Δ - ε))`` finite at the running maximum."""


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The logistic calibration ``s -> scale·s + offset`` of D's logits.

    Attributes:
      scale, offset: the fitted map; the calibrated logit estimates ``log p_data/p_g``.
      report: how well D separates real from generated examples before and after, on
        the second half of each set, calibrated by a fit to the first half: the log loss
        (``log_loss_raw`` reads D's logit as a probability through the sigmoid, which is
        what a D trained with the GAN loss of Goodfellow et al. outputs), the accuracy,
        and Dawid's Z statistic of Turner et al. (|Z| ≲ 2: calibrated), and the counts.
    """

    scale: float
    offset: float
    report: dict[str, float]

    def __call__(self, logits: ArrayLike) -> jax.Array:
        """The calibrated logits."""
        return jnp.asarray(logits, jnp.float32) * self.scale + self.offset


def _dawid_z(labels: np.ndarray, probs: np.ndarray) -> float:
    """Dawid's prequential Z: ``Σ (y - p) / sqrt(Σ p (1 - p))``; ~N(0, 1) if calibrated."""
    return float(np.sum(labels - probs) / max(np.sqrt(np.sum(probs * (1 - probs))), 1e-12))


def _scores(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    probs = 1 / (1 + np.exp(-logits))
    log_loss = np.mean(np.logaddexp(0, -logits) * labels + np.logaddexp(0, logits) * (1 - labels))
    return {
        "log_loss": float(log_loss),
        "accuracy": float(np.mean((logits > 0) == (labels > 0))),
        "z": _dawid_z(labels, probs),
    }


def fit_calibration(
    real_logits: ArrayLike, fake_logits: ArrayLike, *, iterations: int = 50, ridge: float = 1e-6
) -> Calibration:
    """Fits ``σ(a·s + b)`` to tell held-out real (label 1) from generated (0) examples.

    The maximum-likelihood logistic regression of the label on D's logit, by Newton's
    method in float64 (two parameters; ``ridge`` keeps it defined when the sets are
    separable). The two sets must be equally large, so that the fitted log odds estimate
    the log density ratio without a prior term.

    Args:
      real_logits: D's logits of held-out real examples, ``[n]``.
      fake_logits: D's logits of generated examples, ``[n]``.

    Raises:
      ValueError: the sets differ in size, are empty, or hold a non-finite logit.

    Example:
      >>> rng = np.random.default_rng(0)
      >>> x_real, x_fake = rng.normal(0, 1, 4000), rng.normal(0, 2, 4000)
      >>> true = lambda x: np.log(2.0) - 3 * x**2 / 8  # log N(0,1) - log N(0,4)
      >>> c = fit_calibration(10 * true(x_real) + 3, 10 * true(x_fake) + 3)
      >>> round(c.scale, 2), round(c.offset, 1)  # undoes the 10x and the +3
      (0.1, -0.3)
    """
    real = np.asarray(real_logits, np.float64).reshape(-1)
    fake = np.asarray(fake_logits, np.float64).reshape(-1)
    if real.size == 0 or real.size != fake.size:
        raise ValueError(
            f"calibration needs as many real as generated logits (and some): got {real.size} "
            f"and {fake.size}"
        )
    if not (np.all(np.isfinite(real)) and np.all(np.isfinite(fake))):
        raise ValueError("D gave a non-finite logit on the calibration examples")
    scale, offset = _fit(real, fake, iterations, ridge)
    # The report is of data the fit did not see: fit on one half, score the other.
    half = real.size // 2
    if half >= 1:
        held_scale, held_offset = _fit(real[:half], fake[:half], iterations, ridge)
        s = np.concatenate([real[half:], fake[half:]])
        y = np.concatenate([np.ones(real.size - half), np.zeros(fake.size - half)])
    else:
        (held_scale, held_offset), s, y = (
            (scale, offset),
            np.array([real[0], fake[0]]),
            np.array([1.0, 0.0]),
        )
    raw, calibrated = _scores(y, s), _scores(y, held_scale * s + held_offset)
    report = {f"{k}_raw": v for k, v in raw.items()}
    report.update({f"{k}_calibrated": v for k, v in calibrated.items()})
    report.update({"num_real": int(real.size), "num_generated": int(fake.size)})
    return Calibration(scale=float(scale), offset=float(offset), report=report)


def _fit(real: np.ndarray, fake: np.ndarray, iterations: int, ridge: float) -> tuple[float, float]:
    s = np.concatenate([real, fake])
    y = np.concatenate([np.ones_like(real), np.zeros_like(fake)])
    center, spread = float(np.mean(s)), float(np.std(s)) or 1.0
    u = (s - center) / spread  # standardized, so that Newton's steps are well scaled
    w = np.zeros(2)  # (slope, intercept) on u
    features = np.stack([u, np.ones_like(u)], axis=1)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(features @ w)))
        gradient = features.T @ (p - y) / len(y) + ridge * np.array([w[0], 0.0])
        hessian = (features * (p * (1 - p))[:, None]).T @ features / len(y)
        hessian += np.diag([ridge, 1e-12])
        w = w - np.linalg.solve(hessian, gradient)
    scale = w[0] / spread
    return float(scale), float(w[1] - scale * center)


def drs_accept_probability(
    logits: ArrayLike, max_logit: ArrayLike, gamma: float = 0.0, epsilon: float = DRS_EPSILON
) -> jax.Array:
    """DRS's acceptance probability ``σ(F - γ)`` of calibrated logits (Azadi et al. Alg. 1).

    ``F = Δ - log(1 - exp(Δ - ε))`` with ``Δ = s - s_M``, and ``s_M`` the running maximum
    (a logit above ``max_logit`` is its own maximum). With ``γ = 0`` it is ``exp(Δ)`` up
    to ``ε``: exact rejection sampling of ``p_g · exp(s)``.

    Example:
      >>> p = drs_accept_probability(jnp.array([0.0, -1.0, 2.0]), 0.0)
      >>> [round(float(v), 3) for v in p]  # exp(0), exp(-1), and 2 > s_M: its own maximum
      [1.0, 0.368, 1.0]
    """
    s = jnp.asarray(logits, jnp.float32)
    delta = s - jnp.maximum(s, jnp.asarray(max_logit, jnp.float32))
    f = delta - jnp.log1p(-jnp.exp(delta - epsilon))
    return jax.nn.sigmoid(f - gamma)


def drs_gamma(
    logits: ArrayLike, max_logit: ArrayLike, percentile: float, epsilon: float = DRS_EPSILON
) -> float:
    """Azadi et al.'s ``γ``: the ``percentile``-th percentile of ``F`` over ``logits``
    (a burn-in batch), so that that fraction of such samples is accepted with
    probability below ½ (a higher percentile accepts fewer; ``γ = 0`` is exact rejection
    sampling, whose acceptance ``exp(s - s_M)`` can be tiny when D's logits spread wide)."""
    s = jnp.asarray(logits, jnp.float32)
    delta = s - jnp.maximum(s, jnp.asarray(max_logit, jnp.float32))
    f = delta - jnp.log1p(-jnp.exp(delta - epsilon))
    return float(jnp.percentile(f, percentile))


@jax.jit
def drs_accept(
    key: jax.Array, logits: jax.Array, max_logit: jax.Array, gamma: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(accepted [n] bool, probabilities [n])``: one uniform draw per calibrated logit."""
    p = drs_accept_probability(logits, max_logit, gamma)
    return jax.random.uniform(key, p.shape) < p, p


@jax.jit
def mh_chains(
    key: jax.Array, start_logits: jax.Array, proposal_logits: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """MH-GAN's independence chains over their proposals.

    Chain ``i`` starts at a state whose calibrated logit is ``start_logits[i]`` (a real
    example's, in Turner et al.) and visits ``proposal_logits[i, 0..K-1]`` in order,
    moving to proposal ``k`` with probability ``min(1, exp(s_k - s_current))``.

    Args:
      key: the chains' uniforms (one per proposal).
      start_logits: ``[N]``.
      proposal_logits: ``[N, K]``.

    Returns:
      ``(chosen [N] int32, moves [N] int32)``: the index of the proposal each chain ends
      at (``-1``: it never left its start) and how many moves it made.

    Example:
      >>> chosen, moves = mh_chains(jax.random.key(0), jnp.array([-50.0]), jnp.zeros((1, 3)))
      >>> int(chosen[0]), int(moves[0])  # every proposal is 50 nats better than the start
      (2, 3)
    """
    start_logits = jnp.asarray(start_logits, jnp.float32)
    proposal_logits = jnp.asarray(proposal_logits, jnp.float32)
    log_u = jnp.log(jax.random.uniform(key, proposal_logits.shape, minval=1e-38))

    def visit(carry, inputs):
        current, chosen, moves = carry
        k, s, lu = inputs
        move = lu <= s - current  # u <= exp(s' - s): Metropolis-Hastings
        return (
            jnp.where(move, s, current),
            jnp.where(move, k, chosen),
            moves + move.astype(jnp.int32),
        ), None

    num = start_logits.shape[0]
    init = (start_logits, jnp.full((num,), -1, jnp.int32), jnp.zeros((num,), jnp.int32))
    ks = jnp.arange(proposal_logits.shape[1], dtype=jnp.int32)
    (_, chosen, moves), _ = jax.lax.scan(visit, init, (ks, proposal_logits.T, log_u.T))
    return chosen, moves


def summary(info: dict[str, Any]) -> str:
    """One line of a guided sampler's record (:meth:`jaxgan.sampling.Guide.sample`)."""
    method = info["method"]
    cal = info["calibration"]
    text = (
        f"{method}: acceptance {info['acceptance_rate']:.3g}; D calibrated on "
        f"{cal['num_real']:,} held-out real and {cal['num_generated']:,} generated examples "
        f"(log loss {cal['log_loss_raw']:.3g} -> {cal['log_loss_calibrated']:.3g}, Z "
        f"{cal['z_raw']:.3g} -> {cal['z_calibrated']:.3g})"
    )
    if "refine" in info:
        refine = info["refine"]
        text += (
            f"; D trained {refine['refine_steps']:,} steps further with G fixed (loss "
            f"{refine['loss_first']:.3g} -> {refine['loss_last']:.3g})"
        )
    if method == "mh":
        text += (
            f"; chains of {info['chain_length']} proposals, "
            f"{info['fraction_restarted']:.3g} restarted from G (never left the real start)"
        )
    elif method == "drs":
        text += f"; gamma {info['gamma']:.3g}"
        if info["percentile"] is not None:
            text += f" (percentile {info['percentile']:g} of F)"
    return text
