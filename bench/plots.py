"""Figures for leaderboards: sample grids and loss curves (matplotlib, Agg)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench import safeio


def save_figure(fig: Any, path: str | Path, root: str | Path | None = None, **kwargs: Any) -> Path:
    """Render matplotlib ``fig`` as PNG and write it atomically to ``path`` without following links below ``root``
    (default: ``path``'s folder; see :func:`genbench.safeio.atomic_write`). ``kwargs`` go to ``savefig`` (e.g. ``dpi``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **kwargs)
    return safeio.atomic_write(path, buf.getvalue(), root)


def finish_figure(fig: Any, path: str | Path, root: str | Path | None = None, **kwargs: Any) -> Path:
    """Lay ``fig`` out tightly, write it as PNG (:func:`save_figure`; ``kwargs`` go to ``savefig``) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    save_figure(fig, path, root, **kwargs)
    plt.close(fig)
    return Path(path)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(x: torch.Tensor, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (H', W', C) grid array."""
    x = x[: nrow * nrow].clamp(0, 1).cpu().numpy()
    n, c, h, w = x.shape
    rows = math.ceil(n / nrow)
    grid = np.ones((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.float32)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = x[i].transpose(1, 2, 0)
    return grid


def show_image_grid(ax: Any, g: np.ndarray) -> None:
    """Draw an :func:`image_grid` array on ``ax``: grey for one channel, values in [0, 1], no smoothing, no axes."""
    ax.imshow(g[..., 0] if g.shape[-1] == 1 else g, cmap="gray" if g.shape[-1] == 1 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")


def save_sample_grid(x: torch.Tensor, info, path: str | Path, title: str = "", n: int = 64) -> Path:
    """Images: an 8x8 grid of the first ``n`` samples. 2-D: a scatter with the mode centres."""
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(3, 3), dpi=100)
    if info.is_image:
        g = image_grid(x[:n])
        show_image_grid(ax, g)
    else:
        pts = x[:2500].cpu().numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4)
        if info.modes:
            m = np.asarray(info.modes)
            ax.scatter(m[:, 0], m[:, 1], s=12, c="red", marker="x")
        ax.set_aspect("equal")
        ax.tick_params(labelsize=6)
    if title:
        ax.set_title(title, fontsize=8)
    return finish_figure(fig, path)


def save_translation_grid(source: torch.Tensor, output: torch.Tensor, target: torch.Tensor | None, path: str | Path, title: str = "", n: int = 12) -> Path:
    """Translation rows: ``n`` examples, each a row ``source | output | target`` (target omitted when None), two examples per line.

    Sources of another size are shown resized (nearest neighbour) to the output size; images in [0, 1].
    """
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = min(n, len(output))
    src = torch.nn.functional.interpolate(source[:n].float(), size=tuple(output.shape[-2:]), mode="nearest")
    if src.shape[1] != output.shape[1]:
        src = src.mean(1, keepdim=True).expand(-1, output.shape[1], -1, -1)
    cols = [src, output[:n].float()] + ([target[:n].float()] if target is not None else [])
    k = len(cols)
    per_line = 2
    tiles = []
    for i in range(0, n, per_line):
        for j in range(per_line):
            for c in cols:
                tiles.append(c[i + j] if i + j < n else torch.ones_like(c[0]))
    g = image_grid(torch.stack(tiles), nrow=k * per_line)
    fig, ax = plt.subplots(figsize=(3.2, 3.2 * g.shape[0] / g.shape[1] + 0.3), dpi=100)
    show_image_grid(ax, g)
    if title:
        ax.set_title(title, fontsize=7)
    return finish_figure(fig, path)


def save_loss_curves(curves: dict[str, dict[str, list[float]]], path: str | Path, title: str = "", steps: dict[str, int] | None = None) -> Path:
    """One panel per run label; one line per named loss. ``steps``: a run's training steps, so the x axis is the
    training step (the stored curves are averaged into at most 200 points); without it, the point's index."""
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = max(1, len(curves))
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.6 * rows), dpi=100, squeeze=False)
    for ax, (label, losses) in zip(axes.flat, curves.items()):
        total = (steps or {}).get(label)
        for name, v in losses.items():
            x = (np.arange(len(v)) + 0.5) * (total / len(v)) if total else np.arange(len(v))
            ax.plot(x, v, label=name, lw=1)
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("training step" if total else "logged point (chunk mean)", fontsize=6)
        ax.set_ylabel("loss", fontsize=6)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return finish_figure(fig, path)
