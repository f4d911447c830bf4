"""PNG pictures of a run: sample grids, 2-D scatter plots, training curves.

matplotlib with the Agg backend (no display needed). Called by the trainer and
``jaxgan.sample``; pure functions of their arguments apart from the file they write.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors
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


def save_image_grid(
    path: str, images, value_range, title: str = "", ncols: int | None = None
) -> None:
    """Writes a PNG grid of images (grayscale when C == 1), ``ncols`` to a row (default:
    a square)."""
    grid = image_grid(images, value_range, ncols)
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


def save_scatter(path: str, samples, means, title: str = "", std: float | None = None) -> None:
    """The density of 2-D samples over the true modes, each mode's 3σ circle coloured by
    how full it is.

    The samples are drawn as a 2-D histogram (log colour scale). With ``std``, each mode
    gets its 3σ circle (the PacGAN protocol's "high quality" region) and the number of
    samples inside it, its colour going from red (empty) to green (at least its share,
    N / number of modes); without it, a small marker.
    """
    samples = np.asarray(samples, np.float64)
    means = np.asarray(means, np.float64)
    span = np.abs(means).max() * 1.5 + 0.5
    fig, ax = plt.subplots(figsize=(5.6, 5.6), dpi=110)
    ax.set_facecolor("white")
    inside = np.isfinite(samples).all(axis=1)
    ax.hist2d(
        samples[inside, 0], samples[inside, 1], bins=160, range=[[-span, span]] * 2,
        cmap="Blues", norm=matplotlib.colors.LogNorm(vmin=0.25), cmin=1,
    )  # fmt: skip
    if std:
        radius = 3.0 * float(std)
        dist = np.linalg.norm(samples[:, None, :] - means[None, :, :], axis=-1)
        counts = (dist <= radius).sum(axis=0)
        share = max(len(samples) / len(means), 1.0)
        colours = plt.get_cmap("RdYlGn")(np.clip(counts / share, 0.0, 1.0))
        for (x, y), count, colour in zip(means, counts, colours, strict=True):
            ax.add_patch(plt.Circle((x, y), radius, fill=False, color=colour, linewidth=1.1))
            ax.annotate(f"{count}", (x, y), xytext=(0, -9), textcoords="offset points",
                        ha="center", va="top", fontsize=6, color="0.25")  # fmt: skip
        ax.plot([], [], "o", mfc="none", color="tab:green", label="mode: 3σ circle (count)")
    else:
        ax.scatter(means[:, 0], means[:, 1], s=12, marker="+", c="tab:red", label="true modes")
    ax.set_xlim(-span, span)
    ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_curves(
    path: str,
    records: Sequence[dict],
    keys: Sequence[str],
    ylabel: str,
    title: str = "",
    references: dict[str, float] | None = None,
    right: Sequence[str] = (),
    right_label: str = "",
    right_range: tuple[float, float] | None = None,
) -> None:
    """Plots ``record[key]`` against ``record["step"]`` for each key present.

    ``references``: dashed horizontal lines, ``{label: value}`` (e.g. the theory's value at
    the optimum). ``right``: keys drawn on a second y axis labelled ``right_label``, over
    ``right_range``.
    """
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    axes = {False: ax}
    if right:
        axes[True] = ax.twinx()
        axes[True].set_ylabel(right_label)
        if right_range is not None:
            axes[True].set_ylim(*right_range)
    styles = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    lines = []
    for key in keys:
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            steps, values = zip(*points, strict=True)
            marker = "o" if len(points) < 30 else None
            lines += axes[key in right].plot(
                steps, values, label=key, linewidth=1, color=next(styles), marker=marker, ms=3
            )
    greys = itertools.cycle(("0.3", "0.55", "0.7"))
    for (label, value), colour in zip((references or {}).items(), greys, strict=False):
        lines.append(ax.axhline(value, linestyle="--", linewidth=1, color=colour, label=label))
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(lines, [line.get_label() for line in lines], fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
