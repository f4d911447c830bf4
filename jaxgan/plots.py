"""PNG pictures of a run: sample grids, 2-D scatter plots, training curves.

matplotlib with the Agg backend (no display needed). Called by the trainer and
``jaxgan.sample``; pure functions of their arguments apart from the file they write.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["image_grid", "save_curves", "save_image_grid", "save_scatter"]


def image_grid(images: np.ndarray, value_range: tuple[float, float], ncols: int | None = None):
    """Tiles ``[N, H, W, C]`` images into one uint8 ``[rows*H, cols*W, C]`` picture."""
    images = np.asarray(images, np.float32)
    low, high = value_range
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = float(images.min()), float(images.max())
    images = np.clip((images - low) / max(high - low, 1e-12), 0.0, 1.0)
    n, h, w, c = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.ones((nrows * (h + 1) + 1, ncols * (w + 1) + 1, c), np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + col * (w + 1) : 1 + col * (w + 1) + w] = (
            images[i]
        )
    return (grid * 255.0 + 0.5).astype(np.uint8)


def save_image_grid(path: str, images, value_range, title: str = "") -> None:
    """Writes a PNG grid of images (grayscale when C == 1)."""
    grid = image_grid(images, value_range)
    height, width = grid.shape[:2]
    scale = max(1.0, 512.0 / max(height, width))
    fig = plt.figure(figsize=(width * scale / 100, height * scale / 100 + 0.3), dpi=100)
    ax = fig.add_axes((0, 0, 1, height * scale / (height * scale + 30)))
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", interpolation="nearest")
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path)
    plt.close(fig)


def save_scatter(path: str, samples, means, title: str = "") -> None:
    """Scatter plot of 2-D samples over the true modes."""
    samples = np.asarray(samples)
    means = np.asarray(means)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, label="generated")
    ax.scatter(means[:, 0], means[:, 1], s=40, marker="x", c="red", label="true modes")
    span = np.abs(means).max() * 1.5 + 0.5
    ax.set_xlim(-span, span)
    ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_curves(
    path: str, records: Sequence[dict], keys: Sequence[str], ylabel: str, title: str = ""
) -> None:
    """Plots ``record[key]`` against ``record["step"]`` for each key present."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key in keys:
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, label=key, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
