"""Evaluation: pure metric functions, the per-dataset evaluator, and the evaluate CLI.

    python -m jaxgan.evaluate --workdir=DIR [--step=K] [--num_samples=N] [--seed=S]
        [--idx_dir=IDX] [--no_parzen] [--cache_dir=DIR]

writes ``DIR/eval.json``: every metric that applies to the run's dataset, the same
metrics of real data (the *floor*), and the protocol (sample counts, seeds, splits,
the classifier's hash, the jaxgan version, the checkpoint step).

Metrics (pure functions of arrays; no files, no flags):

* :func:`mode_coverage`: the PacGAN protocol on 2-D mixtures (Lin et al. 2018, after
  Srivastava et al. 2017): a sample is *high quality* if it lies within 3σ of its
  nearest mode; the modes *captured* are those nearest to at least one high-quality
  sample; the reverse KL is ``KL(p_hq || uniform)`` of the high-quality samples'
  histogram over the modes.
* :func:`frechet_distance`, :func:`frechet_distance_from_features`: FID's formula
  (Heusel et al. 2017) on any features.
* :func:`kernel_inception_distance`: KID (Bińkowski et al. 2018).
* :func:`classifier_score`: the Inception Score's formula (Salimans et al. 2016).
* :func:`parzen_log_likelihood`, :func:`parzen_select_sigma`: the Parzen-window
  estimate of Goodfellow et al. 2014 (goodfeli/adversarial ``parzen_ll.py``).
* :func:`stacked_mnist_modes`: modes and KL on Stacked MNIST (Metz et al. 2017;
  Srivastava et al. 2017; Lin et al. 2018).

On MNIST-family data the features and class probabilities come from
:mod:`jaxgan.classifier`, a small network jaxgan trains itself and pins by hash
(Inception weights cannot be downloaded here); such an FID is *not* comparable with an
Inception FID, which is why every value is reported beside its real-data floor.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "PARZEN_SIGMAS",
    "PUBLISHED_MODE_COVERAGE",
    "PUBLISHED_PARZEN",
    "PUBLISHED_STACKED_MNIST",
    "EvaluationError",
    "Evaluator",
    "classifier_score",
    "evaluate_run",
    "feature_metrics",
    "frechet_distance",
    "frechet_distance_from_features",
    "kernel_inception_distance",
    "main",
    "make_evaluator",
    "mean_and_standard_error",
    "mode_coverage",
    "parzen_log_likelihood",
    "parzen_select_sigma",
    "stacked_mnist_modes",
    "to_unit_interval",
]

# DESIGN.md §6: (modes, high-quality %, reverse KL) as published.
PUBLISHED_MODE_COVERAGE = {
    "grid25": {
        "GAN (Lin et al. 2018, Table 1)": (17.3, 94.8, 0.70),
        "PacGAN4 (Lin et al. 2018, Table 1)": (24.8, 93.6, 0.04),
    },
    "ring8": {
        "GAN (Lin et al. 2018, Table 1)": (6.3, 98.2, 0.45),
        "PacGAN2 (Lin et al. 2018, Table 1)": (7.9, 95.6, 0.07),
    },
}

# DESIGN.md §6: MNIST Parzen log-likelihood (mean, s.e.), Goodfellow et al. 2014, Table 1.
PUBLISHED_PARZEN = {
    "Adversarial nets (Goodfellow et al. 2014, Table 1)": (225.0, 2.0),
    "Deep GSN (Goodfellow et al. 2014, Table 1)": (214.0, 1.1),
    "DBN (Goodfellow et al. 2014, Table 1)": (138.0, 2.0),
}

# DESIGN.md §6: Stacked MNIST (modes of 1,000, KL to uniform).
PUBLISHED_STACKED_MNIST = {
    "DCGAN (Srivastava et al. 2017)": (99.0, 3.4),
    "VEEGAN (Srivastava et al. 2017)": (150.0, 2.95),
    "PacDCGAN2 (Lin et al. 2018, Table 2)": (1000.0, 0.06),
}

PARZEN_SIGMAS = tuple(float(s) for s in np.logspace(-1, 0, 10))
"""The σ grid of goodfeli/adversarial's ``parzen_ll.py``: ``logspace(-1, 0, 10)``."""


# ============================================================================
# 2-D mode coverage
# ============================================================================


def mode_coverage(samples: ArrayLike, means: ArrayLike, std: float) -> dict[str, float]:
    """Mode coverage of 2-D samples against a mixture of Gaussians (PacGAN protocol).

    Args:
      samples: generated samples, shape ``[N, d]``.
      means: the mixture's mode centres, shape ``[M, d]``.
      std: the components' standard deviation σ.

    Returns:
      ``{"modes": captured modes, "high_quality": fraction of samples within 3σ of
      their nearest mode (0..1), "reverse_kl": KL(p_hq || uniform over M)}``; the KL is
      ``inf`` when no sample is high quality.

    Example:
      >>> import numpy as np
      >>> means = np.array([[0.0, 0.0], [1.0, 0.0]])
      >>> mode_coverage(means.repeat(3, axis=0), means, 0.01)
      {'modes': 2.0, 'high_quality': 1.0, 'reverse_kl': 0.0}
    """
    samples = np.asarray(samples, np.float64)
    means = np.asarray(means, np.float64)
    if samples.ndim != 2 or means.ndim != 2 or samples.shape[1] != means.shape[1]:
        raise ValueError(
            f"samples [N, d] and means [M, d] needed, got {samples.shape}, {means.shape}"
        )
    dist = np.linalg.norm(samples[:, None, :] - means[None, :, :], axis=-1)
    nearest = dist.argmin(axis=1)
    high_quality = dist[np.arange(len(samples)), nearest] <= 3.0 * std
    counts = np.bincount(nearest[high_quality], minlength=len(means)).astype(np.float64)
    total = counts.sum()
    if total == 0:
        reverse_kl = float("inf")
    else:
        p = counts / total
        nz = p > 0
        reverse_kl = float(np.sum(p[nz] * np.log(p[nz] * len(means))))
    return {
        "modes": float(np.count_nonzero(counts)),
        "high_quality": float(high_quality.mean()),
        "reverse_kl": max(reverse_kl, 0.0),  # KL >= 0; no rounding to -0.0
    }


# ============================================================================
# Feature metrics: FID, KID, classifier score
# ============================================================================


def _features(f: ArrayLike, name: str) -> np.ndarray:
    f = np.asarray(f, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"{name}: features [N >= 2, d] needed, got shape {f.shape}")
    return f


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Fréchet distance between two Gaussians, the formula of FID.

    ``d² = ||μ1 - μ2||² + tr Σ1 + tr Σ2 - 2 tr (Σ1 Σ2)^{1/2}``, computed in float64
    with ``tr (Σ1 Σ2)^{1/2} = Σ_i √λ_i`` where λ are the eigenvalues of the symmetric
    positive semi-definite ``Σ1^{1/2} Σ2 Σ1^{1/2}`` (which is similar to ``Σ1 Σ2``):
    no complex parts and no failure on singular covariances; eigenvalues below 0 from
    rounding count as 0.

    Args:
      mu1, mu2: means, shape ``[d]``.
      sigma1, sigma2: covariances, shape ``[d, d]``.

    Returns:
      The squared distance ``d²`` (≥ 0), as FID reports it.

    Example:
      >>> import numpy as np
      >>> round(frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2)), 6)
      4.0

    References:
      Heusel et al., GANs trained by a two time-scale update rule converge to a
      local Nash equilibrium, 2017 (FID). Dowson and Landau, The Fréchet distance
      between multivariate normal distributions, 1982.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"means [d] and covariances [d, d] needed, got {mu1.shape}, {sigma1.shape}, "
            f"{mu2.shape}, {sigma2.shape}"
        )
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    sqrt_sigma1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def frechet_distance_from_features(f1: ArrayLike, f2: ArrayLike) -> float:
    """FID's formula between two sets of features: :func:`frechet_distance` of their
    means and unbiased covariances (``np.cov``, ddof 1, as the TTUR reference code).

    Args:
      f1: features ``[N1, d]`` (e.g. of generated samples).
      f2: features ``[N2, d]`` (e.g. of the test split).

    Returns:
      The Fréchet distance (≥ 0).

    Example:
      >>> import numpy as np
      >>> f = np.random.default_rng(0).normal(size=(500, 3))
      >>> frechet_distance_from_features(f, f) < 1e-9
      True
    """
    f1, f2 = _features(f1, "f1"), _features(f2, "f2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature widths differ: {f1.shape} vs {f2.shape}")
    return frechet_distance(
        f1.mean(axis=0), np.cov(f1, rowvar=False), f2.mean(axis=0), np.cov(f2, rowvar=False)
    )


def kernel_inception_distance(
    f1: ArrayLike,
    f2: ArrayLike,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: the unbiased MMD² with a cubic polynomial kernel, over random subsets.

    With ``k(x, y) = (x·y / d + 1)³`` and subsets ``X`` of ``f1`` and ``Y`` of ``f2``
    of ``m`` rows each (drawn without replacement, independently per subset)::

      MMD²_u = Σ_{i≠j} k(x_i, x_j) / (m(m-1)) + Σ_{i≠j} k(y_i, y_j) / (m(m-1))
               - 2 Σ_{i,j} k(x_i, y_j) / m²

    KID is the mean over ``num_subsets`` subsets; the standard deviation over them is
    returned too, as Bińkowski et al. report it. An unbiased estimate can be slightly
    negative when the sets come from one distribution.

    Args:
      f1: features ``[N1, d]``.
      f2: features ``[N2, d]``.
      num_subsets: number of subsets.
      subset_size: ``m``; capped at ``min(N1, N2)`` as in the reference code.
      seed: seed of the subsets (``np.random.default_rng``).

    Returns:
      ``(mean, std)`` of MMD² over the subsets.

    Example:
      >>> import numpy as np
      >>> f = np.random.default_rng(0).normal(size=(200, 4))
      >>> kid, _ = kernel_inception_distance(f, f + 1.0, num_subsets=5, subset_size=100)
      >>> kid > 0.1
      True

    References:
      Bińkowski, Sutherland, Arbel and Gretton, Demystifying MMD GANs, ICLR 2018
      (``polynomial_mmd_averages`` in their code).
    """
    f1, f2 = _features(f1, "f1"), _features(f2, "f2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature widths differ: {f1.shape} vs {f2.shape}")
    if num_subsets < 1 or subset_size < 2:
        raise ValueError(
            f"num_subsets >= 1 and subset_size >= 2 needed: {num_subsets}, {subset_size}"
        )
    m = min(subset_size, f1.shape[0], f2.shape[0])
    d = f1.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = f1[rng.choice(f1.shape[0], m, replace=False)]
        y = f2[rng.choice(f2.shape[0], m, replace=False)]
        k_xx = (x @ x.T / d + 1.0) ** 3
        k_yy = (y @ y.T / d + 1.0) ** 3
        k_xy = (x @ y.T / d + 1.0) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values[i] = within - 2.0 * k_xy.mean()
    return float(values.mean()), float(values.std())


def classifier_score(probs: ArrayLike, *, splits: int = 1) -> tuple[float, float]:
    """The Inception Score's formula on any classifier: ``exp E_x KL(p(y|x) || p(y))``.

    ``p(y)`` is the mean of ``p(y|x)`` over the samples (of each split). The score is
    1 when every sample gets the same prediction and the number of classes when the
    predictions are confident and uniformly spread. With ``splits > 1`` the samples
    are cut into that many consecutive parts (as Salimans et al.'s code does, with
    10) and the mean and standard deviation of the parts' scores are returned.

    Args:
      probs: class probabilities ``[N, K]`` (rows sum to 1).
      splits: number of parts.

    Returns:
      ``(mean, std)`` of the score over the parts (std 0 for one part).

    Example:
      >>> import numpy as np
      >>> classifier_score(np.eye(4))
      (4.0, 0.0)
      >>> classifier_score(np.full((3, 4), 0.25))
      (1.0, 0.0)

    References:
      Salimans et al., Improved techniques for training GANs, 2016.
    """
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or probs.shape[0] < splits or splits < 1:
        raise ValueError(f"probs [N, K] with N >= splits >= 1 needed, got {probs.shape}, {splits}")
    scores = []
    for part in np.array_split(probs, splits):
        marginal = part.mean(axis=0, keepdims=True)
        positive = part > 0
        log_ratio = np.log(np.where(positive, part, 1.0)) - np.log(
            np.where(positive, marginal, 1.0)
        )
        kl = np.sum(np.where(positive, part * log_ratio, 0.0), axis=1)
        scores.append(math.exp(float(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def feature_metrics(
    features: ArrayLike,
    probs: ArrayLike,
    real_features: ArrayLike,
    *,
    seed: int = 0,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    score_splits: int = 10,
) -> dict[str, float]:
    """FID, KID and classifier score of one set of classifier outputs against real features.

    Args:
      features: features ``[N, d]`` of the evaluated images.
      probs: their class probabilities ``[N, K]``.
      real_features: features ``[N_real, d]`` of the reference (test) images.
      seed: KID's subset seed.
      kid_subsets: KID's number of subsets.
      kid_subset_size: KID's subset size.
      score_splits: parts of the classifier score (capped at N).

    Returns:
      ``{"fid", "kid", "kid_std", "classifier_score", "classifier_score_std"}``.
    """
    kid, kid_std = kernel_inception_distance(
        features, real_features, num_subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
    )
    score, score_std = classifier_score(probs, splits=min(score_splits, len(probs)))
    return {
        "fid": frechet_distance_from_features(features, real_features),
        "kid": kid,
        "kid_std": kid_std,
        "classifier_score": score,
        "classifier_score_std": score_std,
    }


# ============================================================================
# Parzen-window log-likelihood
# ============================================================================


@functools.partial(jax.jit, static_argnames=("num_valid",))
def _parzen_logsumexp(test, samples, scales, num_valid):
    """``logsumexp_i(-||x - s_i||² · c)`` for each test row x and each scale c.

    ``samples`` is ``[num_chunks, chunk, d]``, of which the first ``num_valid`` rows
    (in row-major order) are real; the rest is padding. Returns ``[T, K]`` float32.
    A running (max, sum) over the sample chunks keeps memory at ``T × chunk × K``.
    """
    test_sq = jnp.sum(test * test, axis=1)[:, None]  # [T, 1]
    chunk = samples.shape[1]

    def body(carry, inputs):
        running_max, running_sum = carry
        block, block_index = inputs
        block_sq = jnp.sum(block * block, axis=1)[None, :]  # [1, S]
        cross = jnp.matmul(test, block.T, precision=jax.lax.Precision.HIGHEST)
        sq_dist = jnp.maximum(test_sq + block_sq - 2.0 * cross, 0.0)  # [T, S]
        valid = (block_index * chunk + jnp.arange(chunk)) < num_valid  # [S]
        exponent = jnp.where(
            valid[None, :, None], -sq_dist[:, :, None] * scales[None, None, :], -jnp.inf
        )  # [T, S, K]
        new_max = jnp.maximum(running_max, jnp.max(exponent, axis=1))
        running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(
            jnp.exp(exponent - new_max[:, None, :]), axis=1
        )
        return (new_max, running_sum), None

    shape = (test.shape[0], scales.shape[0])
    init = (jnp.full(shape, -jnp.inf, jnp.float32), jnp.zeros(shape, jnp.float32))
    (running_max, running_sum), _ = jax.lax.scan(
        body, init, (samples, jnp.arange(samples.shape[0]))
    )
    return running_max + jnp.log(running_sum)


def _parzen(samples, test, sigmas, chunk) -> np.ndarray:
    """log p(x) ``[T, K]`` (float64) of each test row under each σ."""
    samples = np.asarray(samples, np.float32)
    test = np.asarray(test, np.float32)
    samples = samples.reshape(samples.shape[0], -1)
    test = test.reshape(test.shape[0], -1)
    if samples.shape[0] < 1 or samples.shape[1] != test.shape[1]:
        raise ValueError(
            f"samples [N >= 1, d] and test [T, d] of the same d needed, got {samples.shape}, "
            f"{test.shape}"
        )
    sigmas = np.asarray(sigmas, np.float64).reshape(-1)
    if not np.all(sigmas > 0):
        raise ValueError(f"sigmas must be positive, got {sigmas}")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    num, d = samples.shape
    # Distances do not change under a shift; centring shrinks the norms and so the
    # cancellation in ||x||² + ||s||² - 2 x·s.
    centre = samples.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
    samples, test = samples - centre, test - centre
    sample_chunk = min(chunk, num)
    num_chunks = -(-num // sample_chunk)
    padded = np.zeros((num_chunks * sample_chunk, d), np.float32)
    padded[:num] = samples
    blocks = jax.device_put(padded.reshape(num_chunks, sample_chunk, d))
    scales = jnp.asarray(1.0 / (2.0 * sigmas**2), jnp.float32)
    test_chunk = min(chunk, max(test.shape[0], 1))
    out = []
    for begin in range(0, test.shape[0], test_chunk):
        part = test[begin : begin + test_chunk]
        size = part.shape[0]
        if size < test_chunk:
            part = np.concatenate([part, np.zeros((test_chunk - size, d), np.float32)])
        out.append(np.asarray(_parzen_logsumexp(part, blocks, scales, num), np.float64)[:size])
    lse = np.concatenate(out) if out else np.zeros((0, len(sigmas)))
    normaliser = math.log(num) + d * np.log(sigmas * math.sqrt(2.0 * math.pi))
    return lse - normaliser[None, :]


def parzen_log_likelihood(
    samples: ArrayLike, test: ArrayLike, sigma: float, *, chunk: int = 1000
) -> np.ndarray:
    """Per-example log-likelihood of ``test`` under a Gaussian Parzen window on ``samples``.

    As Goodfellow et al. 2014 (goodfeli/adversarial ``parzen_ll.py``): an isotropic
    Gaussian of standard deviation σ on every sample ``s_i`` (flattened, pixels in
    [0, 1]), so that for ``x`` in ``R^d``::

      log p(x) = logsumexp_i(-||x - s_i||² / (2σ²)) - log N - d · log(σ √(2π))

    Computed with jit-compiled JAX in blocks of ``chunk`` test rows × ``chunk``
    samples (a running logsumexp over sample blocks), float32 on device and the
    constants in float64: 10,000 × 10,000 MNIST images take seconds to a minute on a
    2-core CPU.

    Args:
      samples: generated samples ``[N, ...]`` (flattened to ``[N, d]``).
      test: examples to score ``[T, ...]``, the same ``d``.
      sigma: the window's standard deviation σ.
      chunk: rows per block (memory ~ ``chunk²`` floats).

    Returns:
      float64 ``[T]``: ``log p(x)`` of each test example, in nats.

    Example:
      >>> import numpy as np
      >>> ll = parzen_log_likelihood(np.zeros((1, 1)), np.zeros((1, 1)), 1.0)
      >>> ll.shape, round(float(ll[0]), 6), round(-0.5 * float(np.log(2 * np.pi)), 6)
      ((1,), -0.918939, -0.918939)

    References:
      Goodfellow et al., Generative adversarial nets, 2014 (Table 1); Breuleux,
      Bengio and Vincent, Quickly generating representative samples from an
      RBM-derived process, 2011; Theis, van den Oord and Bethge, A note on the
      evaluation of generative models, 2016 (why it is a weak measure).
    """
    return _parzen(samples, test, [float(sigma)], chunk)[:, 0]


def parzen_select_sigma(
    samples: ArrayLike,
    validation: ArrayLike,
    sigmas: ArrayLike = PARZEN_SIGMAS,
    *,
    chunk: int = 1000,
) -> tuple[float, np.ndarray]:
    """The σ of the grid that maximises the mean Parzen log-likelihood of ``validation``.

    As ``parzen_ll.py``'s ``cross_validate_sigma``; every σ shares one pass of
    distances. The grid of Goodfellow et al. is :data:`PARZEN_SIGMAS`
    (``np.logspace(-1, 0, 10)``), the validation set 1,000 images of
    ``train[50000:60000]``.

    Args:
      samples: generated samples ``[N, ...]``.
      validation: validation examples ``[V, ...]``.
      sigmas: candidate σ values.
      chunk: rows per block (see :func:`parzen_log_likelihood`).

    Returns:
      ``(best σ, mean log-likelihood of the validation set for each σ)``.

    Example:
      >>> import numpy as np
      >>> x = np.random.default_rng(0).normal(0.0, 0.3, size=(200, 2))
      >>> sigma, means = parzen_select_sigma(x[:100], x[100:], [0.01, 0.1, 1.0])
      >>> sigma, means.shape
      (0.1, (3,))
    """
    sigmas = np.asarray(sigmas, np.float64).reshape(-1)
    means = _parzen(samples, validation, sigmas, chunk).mean(axis=0)
    return float(sigmas[int(np.argmax(means))]), means


def mean_and_standard_error(values: ArrayLike) -> tuple[float, float]:
    """``(mean, std / √n)``, the standard error as ``parzen_ll.py`` reports it (ddof 0).

    Example:
      >>> mean_and_standard_error([1.0, 2.0, 3.0, 4.0])
      (2.5, 0.5590169943749475)
    """
    values = np.asarray(values, np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("no values")
    return float(values.mean()), float(values.std() / math.sqrt(values.size))


# ============================================================================
# Stacked MNIST
# ============================================================================


def stacked_mnist_modes(channel_labels: ArrayLike, *, num_classes: int = 10) -> dict[str, float]:
    """Modes covered and KL to uniform of Stacked MNIST samples, from per-channel digits.

    A sample's mode is the triple of digits its channels are classified as (``K^C``
    modes for C channels and K classes: 1,000 for three digits). With ``p`` the
    histogram of the samples' modes, ``modes`` counts the modes with ``p > 0`` and
    ``kl = KL(p || uniform) = Σ_m p_m log(p_m K^C)``.

    Args:
      channel_labels: integer class of each channel ``[N, C]`` (C = 3 for RGB).
      num_classes: K.

    Returns:
      ``{"modes": number of distinct tuples, "kl": KL(p || uniform over K^C)}``.

    Example:
      >>> import numpy as np
      >>> stacked_mnist_modes(np.array([[1, 2, 3], [1, 2, 3], [0, 0, 0], [0, 0, 0]]))
      {'modes': 2.0, 'kl': 6.214608098422191}

    References:
      Metz et al., Unrolled generative adversarial networks, 2017; Srivastava et al.,
      VEEGAN, 2017; Lin et al., PacGAN, 2018 (Table 2).
    """
    labels = np.asarray(channel_labels)
    if labels.ndim != 2 or labels.shape[0] < 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"integer labels [N, C] needed, got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    num_modes = num_classes ** labels.shape[1]
    codes = np.zeros(labels.shape[0], np.int64)
    for c in range(labels.shape[1]):
        codes = codes * num_classes + labels[:, c].astype(np.int64)
    counts = np.bincount(codes, minlength=num_modes).astype(np.float64)
    p = counts[counts > 0] / labels.shape[0]
    kl = float(np.sum(p * np.log(p * num_modes)))
    return {"modes": float(p.size), "kl": max(kl, 0.0)}


# ============================================================================
# The evaluator of a dataset
# ============================================================================


class EvaluationError(ValueError):
    """The evaluation cannot run (e.g. no real data); the message says what to do."""


def to_unit_interval(samples: ArrayLike, output_range: tuple[float, float]) -> np.ndarray:
    """Maps samples from the generator's output range to pixels in [0, 1] (clipped)."""
    low, high = (float(v) for v in output_range)
    x = np.asarray(samples, np.float32)
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        raise ValueError(f"a finite output range is needed for image metrics, got {output_range}")
    if (low, high) != (0.0, 1.0):
        x = (x - np.float32(low)) / np.float32(high - low)
    return np.clip(x, 0.0, 1.0)


SampleFn = Callable[[int], ArrayLike]


@dataclasses.dataclass
class Evaluator:
    """The metrics of one dataset, with their real-data floor and protocol.

    Call it with ``sample_fn(num) -> samples [num, *data_shape]`` (in the generator's
    output range); it draws ``num_samples`` samples once and returns the metrics as
    ``{name: float}``. Built by :func:`make_evaluator`, which does the expensive,
    sample-independent work once (loading the data, the classifier, real features,
    the floor).

    Attributes:
      dataset: the dataset's name.
      num_samples: samples drawn per call.
      floor: the same metrics of real data (empty for 2-D mixtures).
      protocol: JSON-ready record of how the numbers are made.
      run: ``samples -> metrics``, the sample-dependent part.
    """

    dataset: str
    num_samples: int
    floor: dict[str, float]
    protocol: dict[str, Any]
    run: Callable[[np.ndarray], dict[str, float]]

    def __call__(self, sample_fn: SampleFn) -> dict[str, float]:
        samples = np.asarray(sample_fn(self.num_samples))
        if samples.shape[0] != self.num_samples:
            raise ValueError(f"sample_fn gave {samples.shape[0]} samples, not {self.num_samples}")
        return self.run(samples)


DEFAULT_NUM_SAMPLES = {"mixture": 2_500, "images": 10_000, "stacked_mnist": 26_000}
PARZEN_NUM_SAMPLES = 10_000
PARZEN_VALIDATION = (50_000, 51_000)  # 1,000 images of train[50000:60000]
TRAIN_SUBSET_RANGE = 50_000  # the real subset comes from train[:50000], apart from validation


def make_evaluator(
    config: Any,
    dataset: Any,
    *,
    output_range: tuple[float, float],
    idx_dir: str | None = None,
    num_samples: int | None = None,
    metric_seed: int = 0,
    parzen: bool = True,
    kid_subsets: int = 100,
    classifier: tuple[dict, str, dict] | None = None,
    cache_dir: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Evaluator:
    """Builds the evaluator of a run's dataset; the trainer can call it every ``eval_every``.

    * 2-D mixtures (``ring8``, ``grid25``): :func:`mode_coverage`, by default on
      ``config.num_eval_samples`` samples (PacGAN: 2,500).
    * ``mnist``, ``fashion_mnist``: FID, KID and classifier score with the features
      of :func:`jaxgan.classifier.get_classifier` against the whole test split, by
      default on 10,000 samples; the floor is the same of an equal-sized subset of
      ``train[:50000]``. On ``mnist`` also the Parzen log-likelihood (DESIGN.md §6:
      the first 10,000 samples, σ chosen on ``train[50000:51000]``, mean ± s.e. over
      the 10,000 test images), floor included, unless ``parzen=False``.
    * ``stacked_mnist``: modes of 1,000 and KL to uniform, each channel classified by
      the MNIST classifier, by default on 26,000 samples; the floor is the same of
      26,000 real Stacked MNIST images built from the MNIST test split.

    Args:
      config: the run's config (``config.data.idx_dir``, ``config.num_eval_samples``).
      dataset: the run's :class:`jaxgan.data.Dataset` (its ``name``, ``kind``, ``shape``;
        for mixtures its means and std).
      output_range: the generator's output range (``GANModels.output_range``), to map
        image samples to [0, 1].
      idx_dir: the IDX folder of the real data; default ``config.data.idx_dir``.
      num_samples: samples per evaluation (defaults above).
      metric_seed: seed of the real subsets and of KID's subsets.
      parzen: compute the Parzen estimate on MNIST (10k × 10k: ~5-20 s on 2 cores).
      kid_subsets: KID's number of subsets of 1,000 (100, as Bińkowski et al.;
        ~3-9 s on 2 cores; fewer for a quick look during training).
      classifier: ``(params, hash, info)`` to use instead of ``get_classifier``.
      cache_dir: the classifier cache folder (default: see ``jaxgan.classifier``).
      log: optional callable receiving progress lines.

    Returns:
      An :class:`Evaluator`.

    Raises:
      EvaluationError: the dataset has no evaluation here, or its real data (IDX
        files) are not available.
    """
    from jaxgan import data as data_lib

    name = dataset.name
    if dataset.kind == "mixture":
        means, std = np.asarray(dataset.arrays["means"]), float(dataset.std)
        num = num_samples or int(getattr(config, "num_eval_samples", 0) or 0)
        num = num or DEFAULT_NUM_SAMPLES["mixture"]
        protocol = {
            "metric": "mode coverage (PacGAN: high quality within 3 std of the nearest mode)",
            "num_samples": num,
            "num_modes": len(means),
            "std": std,
        }
        return Evaluator(name, num, {}, protocol, lambda x: mode_coverage(x, means, std))

    if name not in (*data_lib.IDX_NAMES, data_lib.STACKED_MNIST):
        raise EvaluationError(
            f"No evaluation for dataset {name!r}: jaxgan evaluates the 2-D mixtures "
            f"{data_lib.MIXTURES}, {data_lib.IDX_NAMES} and {data_lib.STACKED_MNIST!r}."
        )
    idx_dir = idx_dir or _config_idx_dir(config)
    if not idx_dir:
        raise EvaluationError(
            f"Evaluating {name!r} needs the real data: the run's config.data.idx_dir is empty; "
            "pass --idx_dir pointing at the folder of the four IDX .gz files."
        )
    source = "mnist" if name == data_lib.STACKED_MNIST else name
    try:
        train = data_lib.load_idx(idx_dir, name=source, split="train").arrays["images"]
        test = data_lib.load_idx(idx_dir, name=source, split="test").arrays["images"]
        test_labels = data_lib.load_idx_labels(idx_dir, split="test")
    except data_lib.DataError as e:
        raise EvaluationError(f"No real data for {name!r}: {e}") from e
    if classifier is None:
        from jaxgan import classifier as classifier_lib

        classifier = classifier_lib.get_classifier(source, idx_dir, cache_dir=cache_dir, log=log)
    params, digest, info = classifier
    classifier_protocol = {
        "hash": digest,
        "dataset": source,
        "seed": info.get("seed"),
        "recipe_hash": info.get("recipe_hash"),
        "test_accuracy": info.get("test_accuracy"),
    }
    if name == data_lib.STACKED_MNIST:
        return _stacked_evaluator(
            params, classifier_protocol, idx_dir, output_range, num_samples, metric_seed
        )
    return _image_evaluator(
        name,
        params,
        classifier_protocol,
        train,
        test,
        test_labels,
        output_range=output_range,
        num=num_samples or DEFAULT_NUM_SAMPLES["images"],
        metric_seed=metric_seed,
        parzen=parzen and name == "mnist",
        kid_subsets=kid_subsets,
        log=log,
    )


def _config_idx_dir(config: Any) -> str:
    try:
        return config.data.idx_dir or ""
    except (AttributeError, KeyError):
        return ""


KID_SUBSET_SIZE = 1000
SCORE_SPLITS = 10


def _image_evaluator(
    name, params, classifier_protocol, train, test, test_labels, *, output_range, num,
    metric_seed, parzen, kid_subsets, log,
) -> Evaluator:  # fmt: skip
    from jaxgan import classifier as classifier_lib

    real = classifier_lib.real_features(
        params, train[:TRAIN_SUBSET_RANGE], test, num=len(test), seed=metric_seed
    )
    metric_kwargs = {
        "seed": metric_seed,
        "kid_subsets": kid_subsets,
        "kid_subset_size": KID_SUBSET_SIZE,
        "score_splits": SCORE_SPLITS,
    }
    floor = feature_metrics(
        real.train_features, real.train_probs, real.test_features, **metric_kwargs
    )
    floor["test_accuracy"] = float(np.mean(real.test_probs.argmax(axis=1) == test_labels))
    test01 = test.reshape(len(test), -1).astype(np.float32) / 255.0
    validation01 = (
        train[PARZEN_VALIDATION[0] : PARZEN_VALIDATION[1]].reshape(-1, test01.shape[1])
        .astype(np.float32) / 255.0
    )  # fmt: skip

    def parzen_metrics(samples01: np.ndarray) -> dict[str, float]:
        samples01 = samples01[:PARZEN_NUM_SAMPLES].reshape(-1, test01.shape[1])
        sigma, _ = parzen_select_sigma(samples01, validation01)
        ll, se = mean_and_standard_error(parzen_log_likelihood(samples01, test01, sigma))
        return {"parzen_ll": ll, "parzen_se": se, "parzen_sigma": sigma}

    if parzen:
        if log is not None:
            log("Parzen floor: train subset vs test ...")
        subset01 = train[:TRAIN_SUBSET_RANGE][real.train_index].astype(np.float32) / 255.0
        floor.update(parzen_metrics(subset01))

    def run(samples: np.ndarray) -> dict[str, float]:
        samples01 = to_unit_interval(samples, output_range)
        features, probs = classifier_lib.features_and_probs(params, samples01)
        metrics = feature_metrics(features, probs, real.test_features, **metric_kwargs)
        if parzen:
            metrics.update(parzen_metrics(samples01))
        return metrics

    protocol = {
        "num_samples": num,
        "real": f"{name} test split ({len(test)} images)",
        "floor": f"{len(real.train_index)} images of {name} train[:{TRAIN_SUBSET_RANGE}] "
        f"(seed {metric_seed}, without replacement) in place of the samples",
        "metric_seed": metric_seed,
        "classifier": classifier_protocol,
        "kid": {
            "num_subsets": kid_subsets,
            "subset_size": KID_SUBSET_SIZE,
            "kernel": "(x.y/d + 1)^3",
            "seed": metric_seed,
        },
        "classifier_score_splits": SCORE_SPLITS,
    }
    if parzen:
        protocol["parzen"] = {
            "num_samples": min(num, PARZEN_NUM_SAMPLES),
            "sigma_grid": list(PARZEN_SIGMAS),
            "validation": f"train[{PARZEN_VALIDATION[0]}:{PARZEN_VALIDATION[1]}]",
            "test": f"test split ({len(test)} images), mean and s.e. (std/sqrt(n), ddof 0)",
            "pixels": "[0, 1], flattened",
        }
    return Evaluator(name, num, floor, protocol, run)


def _stacked_evaluator(
    params, classifier_protocol, idx_dir, output_range, num_samples, metric_seed
) -> Evaluator:
    from jaxgan import classifier as classifier_lib
    from jaxgan import data as data_lib

    num = num_samples or DEFAULT_NUM_SAMPLES["stacked_mnist"]

    def channel_labels(images01: np.ndarray) -> np.ndarray:
        n, h, w, c = images01.shape
        channels = np.moveaxis(images01, -1, 1).reshape(n * c, h, w, 1)
        _, probs = classifier_lib.features_and_probs(params, channels)
        return probs.argmax(axis=1).reshape(n, c)

    real = data_lib.stacked_mnist(idx_dir, split="test", num_examples=num, seed=metric_seed)
    predicted = channel_labels(real.arrays["images"].astype(np.float32) / 255.0)
    floor = stacked_mnist_modes(predicted)
    floor["channel_accuracy"] = float(np.mean(predicted == real.arrays["labels"]))

    def run(samples: np.ndarray) -> dict[str, float]:
        return stacked_mnist_modes(channel_labels(to_unit_interval(samples, output_range)))

    protocol = {
        "num_samples": num,
        "metric": "modes = distinct digit triples of the channels (of 1000); KL(p || uniform)",
        "classifier": classifier_protocol,
        "floor": f"{num} real Stacked MNIST images from the MNIST test split (seed {metric_seed})",
        "metric_seed": metric_seed,
    }
    return Evaluator(data_lib.STACKED_MNIST, num, floor, protocol, run)


# ============================================================================
# The command line
# ============================================================================

EVAL_FILE = "eval.json"
RAW_EVAL_FILE = "eval_raw.json"


def _json_ready(value: Any) -> Any:
    """JSON has no inf or NaN: they become null; numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def evaluate_run(
    workdir: str,
    *,
    step: int | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    seed_index: int = 0,
    raw: bool = False,
    idx_dir: str | None = None,
    parzen: bool = True,
    cache_dir: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluates a run folder's checkpoint; returns eval.json's record.

    The samples come from the EMA generator, or from G's own parameters when ``raw``.

    Raises:
      EvaluationError, jaxgan.checkpointing.RunError, jaxgan.data.DataError: with a
      one-line message for the user.
    """
    import ml_collections

    import jaxgan
    from jaxgan import checkpointing
    from jaxgan import data as data_lib
    from jaxgan import models as models_lib
    from jaxgan.sample import sample_run
    from jaxgan.state import pack_of

    config_path = os.path.join(workdir, checkpointing.CONFIG_FILE)
    if not os.path.exists(config_path):
        raise EvaluationError(
            f"{workdir} is not a jaxgan run folder (no {checkpointing.CONFIG_FILE})."
        )
    try:
        saved = checkpointing.read_json(config_path)
        config = ml_collections.ConfigDict(saved["config"])
        info = saved["dataset"]
        shape = tuple(info["shape"])
        output_range = models_lib.build_models(
            config.model.name, data_shape=shape, pack=pack_of(config)
        ).output_range
    except (OSError, ValueError, KeyError, AttributeError) as e:
        raise EvaluationError(f"{config_path} is unreadable or incomplete ({e}).") from e
    if info["kind"] == "mixture":
        dataset = data_lib.mixture(info["name"])
    else:
        dataset = data_lib.Dataset(name=info["name"], kind=info["kind"], shape=shape, arrays={})
    evaluator = make_evaluator(
        config,
        dataset,
        output_range=output_range,
        idx_dir=idx_dir,
        num_samples=num_samples,
        parzen=parzen,
        cache_dir=cache_dir,
        log=log,
    )
    drawn = {}

    def sample_fn(num: int) -> np.ndarray:
        samples, drawn["step"], _, _ = sample_run(
            workdir, num, seed, step=step, ema=not raw, seed_index=seed_index
        )
        return samples

    if log is not None:
        log(f"Evaluating {workdir} on {evaluator.num_samples} samples ...")
    metrics = evaluator(sample_fn)
    return {
        "step": drawn["step"],
        "metrics": metrics,
        "real_data_floor": evaluator.floor,
        "protocol": {
            **evaluator.protocol,
            "dataset": info["name"],
            "dataset_fingerprint": info.get("fingerprint"),
            "checkpoint_step": drawn["step"],
            "generator": "raw" if raw else "EMA" if config.ema_decay > 0 else "raw (ema_decay 0)",
            "sample_seed": seed,
            "seed_index": seed_index,
            "jaxgan_version": jaxgan.__version__,
            "jax_version": jax.__version__,
            "backend": jax.default_backend(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxgan.evaluate",
        description="Evaluate a trained run; writes eval.json in the run folder.",
    )
    parser.add_argument("--workdir", required=True, help="run folder written by train.py")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    parser.add_argument(
        "--num_samples", type=int, default=None,
        help="samples (default: the run's num_eval_samples on 2-D data, 10,000 on "
        "mnist/fashion_mnist, 26,000 on stacked_mnist)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="generator noise seed (default 0)")
    parser.add_argument(
        "--seed_index", type=int, default=0, help="which seed of a num_seeds run (default 0)"
    )
    parser.add_argument(
        "--raw", action="store_true",
        help=f"G's own parameters, not their EMA; writes {RAW_EVAL_FILE} instead of {EVAL_FILE}",
    )  # fmt: skip
    parser.add_argument("--idx_dir", default=None, help="IDX folder (default: the run's)")
    parser.add_argument("--no_parzen", action="store_true", help="skip the Parzen estimate")
    parser.add_argument("--cache_dir", default=None, help="classifier cache folder")
    args = parser.parse_args(argv)
    if args.num_samples is not None and args.num_samples < 2:
        parser.error("--num_samples must be at least 2")
    from jaxgan import checkpointing
    from jaxgan import data as data_lib

    log = lambda message: print(message, file=sys.stderr)
    try:
        record = evaluate_run(
            args.workdir,
            step=args.step,
            num_samples=args.num_samples,
            seed=args.seed,
            seed_index=args.seed_index,
            raw=args.raw,
            idx_dir=args.idx_dir,
            parzen=not args.no_parzen,
            cache_dir=args.cache_dir,
            log=log,
        )
    except (EvaluationError, checkpointing.RunError, data_lib.DataError) as e:
        print(f"jaxgan.evaluate: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    path = os.path.join(args.workdir, RAW_EVAL_FILE if args.raw else EVAL_FILE)
    checkpointing.write_json_atomic(path, _json_ready(record))
    summary = ", ".join(f"{k} {v:.4g}" for k, v in record["metrics"].items())
    print(f"Step {record['step']}: {summary}. Wrote {path}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
