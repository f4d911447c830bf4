"""Health alarms: warnings before a run is lost. Pure functions of metrics and samples.

Two failure modes of GAN training are common and visible early:

* **D saturation:** the discriminator is right on (nearly) every real and fake
  example and the generator's gradient has vanished, so G stops learning (the
  saturating minimax loss is the textbook case, Goodfellow et al. 2014 §3).
* **Mode collapse:** G maps many noise vectors to a few outputs; the samples'
  diversity drops far below the data's.
"""

from __future__ import annotations

import numpy as np
from jax.typing import ArrayLike

__all__ = ["d_saturated", "mode_collapsed", "sample_diversity"]


def d_saturated(
    metrics: dict[str, float],
    reference_g_grad_norm: float,
    *,
    accuracy: float = 0.99,
    vanish_ratio: float = 1e-3,
) -> bool:
    """True when D is right on ≥ ``accuracy`` of real and fake while G's gradient vanishes.

    Args:
      metrics: one step's metrics with ``d_acc_real``, ``d_acc_fake``, ``g_grad_norm``.
      reference_g_grad_norm: G's gradient norm early in training (the first logged).
      accuracy: the fraction of real and of fake examples D must get right.
      vanish_ratio: G's gradient has "vanished" below this fraction of the reference.

    Example:
      >>> d_saturated({"d_acc_real": 1.0, "d_acc_fake": 1.0, "g_grad_norm": 1e-6}, 0.5)
      True
      >>> d_saturated({"d_acc_real": 0.6, "d_acc_fake": 0.7, "g_grad_norm": 0.4}, 0.5)
      False
    """
    confident = metrics["d_acc_real"] >= accuracy and metrics["d_acc_fake"] >= accuracy
    vanished = metrics["g_grad_norm"] <= vanish_ratio * max(reference_g_grad_norm, 1e-30)
    return bool(confident and vanished)


def sample_diversity(samples: ArrayLike, *, max_pairs: int = 2000) -> float:
    """Mean Euclidean distance between pairs of samples (flattened), deterministic.

    Pairs sample ``i`` with sample ``(i + n // 2) % n`` for the first ``max_pairs``
    samples: cheap, and the same samples give the same value.

    Example:
      >>> sample_diversity(np.zeros((10, 2)))
      0.0
    """
    x = np.asarray(samples, np.float64).reshape(len(samples), -1)
    n = len(x)
    if n < 2:
        return 0.0
    idx = np.arange(min(n, max_pairs))
    return float(np.linalg.norm(x[idx] - x[(idx + n // 2) % n], axis=1).mean())


def mode_collapsed(
    diversity: float, best_diversity: float, real_diversity: float, *, drop: float = 0.5
) -> bool:
    """True when the samples' diversity dropped: below ``drop`` of the best seen earlier
    in the run and below ``drop`` of the data's own diversity.

    A generator starts with little diversity and gains it; losing it again, to well
    under what the data has, is the sign of collapse (not a low start).

    Example:
      >>> mode_collapsed(0.1, best_diversity=2.0, real_diversity=2.0)
      True
      >>> mode_collapsed(0.1, best_diversity=0.1, real_diversity=2.0)  # never had it
      False
    """
    return bool(diversity < drop * best_diversity and diversity < drop * real_diversity)
