"""Model-specific leaderboard figures.

* :func:`vae_latent_figure`: latent-space arithmetic for a model
  (a VAE, or any model that encodes and decodes, e.g. an autoencoder)
  with ``encode(x) -> (mu, logvar)`` (or codes) and ``decode(z) -> images``:
  a linear interpolation between two test digits, and class-attribute vectors
  (mean latent of class a minus mean latent of class b, added with growing
  strength to a test example of class b).
* :func:`latent_interpolation_figure`: rows of samples along paths between
  pairs of random latents, for any :class:`~genbench.protocol.LatentPath`
  generator (GANs, the VAE's decoder, RealNVP), with the rule stated (slerp
  in z, as for a Gaussian latent).
* :func:`style_mixing_figure`: StyleGAN's mixing grid (coarse styles from the
  rows, fine from the columns).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from metrics.ppl import INTERPOLATIONS

from .plots import _plt, finish_figure, image_grid, save_figure, show_image_grid

__all__ = ["latent_codes", "latent_figure_applies", "latent_interpolation_figure", "style_mixing_figure", "vae_latent_figure"]

INTERPOLATE = (0, 6)
PAIRS = ((1, 7), (3, 8), (9, 4))


def latent_codes(model: Any, x: Tensor, batch_size: int = 512) -> Tensor:
    """Posterior means (or deterministic codes) of ``x``: (N, latent_dim)."""
    out = []
    for i in range(0, len(x), batch_size):
        z = model.encode(x[i : i + batch_size])
        out.append(z[0] if isinstance(z, (tuple, list)) else z)
    return torch.cat(out).float()


def _first_of(labels: Tensor, cls: int, what: str) -> int:
    idx = (labels == cls).nonzero().flatten()
    if len(idx) == 0:
        raise ValueError(f"vae_latent_figure: no {what} example of class {cls}")
    return int(idx[0])


def latent_figure_applies(dataset: Any, interpolate: tuple[int, int] = INTERPOLATE, pairs: Sequence[tuple[int, int]] = PAIRS) -> bool:
    """Whether the data set's metadata allows the figure: labelled images whose
    train and test splits both contain every class the figure uses."""
    if dataset.info.kind != "image" or dataset.train_y is None or dataset.test_y is None:
        return False
    need = {int(c) for pair in (interpolate, *pairs) for c in pair}
    return need <= {int(c) for c in dataset.train_y.unique()} and need <= {int(c) for c in dataset.test_y.unique()}


def vae_latent_figure(
    model: Any,
    dataset: Any,
    path: str | Path,
    *,
    interpolate: tuple[int, int] = INTERPOLATE,
    pairs: Sequence[tuple[int, int]] = PAIRS,
    n_steps: int = 8,
    max_strength: float = 1.5,
) -> Path:
    """Write the latent-arithmetic figure (a small PNG) and return its path.

    Args:
        model: has ``encode(x)`` returning ``(mu, logvar)`` or codes, and
            ``decode(z)`` returning images in [0, 1] (N, C, H, W).
        dataset: ``bench.data.Dataset`` of images with labels (train split
            for the class means, test split for the shown examples).
        path: PNG path (parent folders are created).
        interpolate: classes (a, b): row 1 decodes (1 - t) z_a + t z_b between the
            first test examples of a and b, t in [0, 1], framed by the two originals.
        pairs: (b, a) per row: z_b + s (mean_a - mean_b), s in [0, max_strength],
            starting from the first test example of class b; the original comes first.
        n_steps: decoded images per row.
        max_strength: largest multiple of the attribute vector.
    """
    if dataset.info.kind != "image":
        raise ValueError(f"vae_latent_figure needs image data; {dataset.info.name} is {dataset.info.kind}")
    if dataset.train_y is None or dataset.test_y is None:
        raise ValueError(f"vae_latent_figure needs class labels; {dataset.info.name} has none")
    if not (callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None))):
        raise TypeError("vae_latent_figure: model needs encode(x) and decode(z)")
    names = dataset.info.class_names or tuple(str(i) for i in range(int(dataset.train_y.max()) + 1))

    with torch.no_grad():
        z_train = latent_codes(model, dataset.train_x)
        means = {int(c): z_train[dataset.train_y == c].mean(0) for c in dataset.train_y.unique()}
        rows: list[tuple[str, Tensor]] = []

        a, b = interpolate
        ia, ib = _first_of(dataset.test_y, a, "test"), _first_of(dataset.test_y, b, "test")
        za, zb = latent_codes(model, dataset.test_x[[ia, ib]])
        t = torch.linspace(0, 1, n_steps)[:, None]
        mid = model.decode((1 - t) * za + t * zb)
        rows.append((f"{names[a]} -> {names[b]}", torch.cat([dataset.test_x[ia : ia + 1], mid.float(), dataset.test_x[ib : ib + 1]])))

        s = torch.linspace(0, max_strength, n_steps)[:, None]
        for src, dst in pairs:
            if src not in means or dst not in means:
                raise ValueError(f"vae_latent_figure: class {src if src not in means else dst} is not in the train split")
            i = _first_of(dataset.test_y, src, "test")
            z = latent_codes(model, dataset.test_x[i : i + 1])
            dec = model.decode(z + s * (means[dst] - means[src]))
            rows.append((f"{names[src]} + ({names[dst]} - {names[src]})", torch.cat([dataset.test_x[i : i + 1], dec.float()])))

    plt = _plt()
    ncol = n_steps + 2
    label_w, img_w, row_h = 1.5, 0.42 * ncol, 0.5
    fig_w, fig_h = label_w + img_w + 0.1, row_h * len(rows) + 0.35
    fig, axes = plt.subplots(len(rows), 1, figsize=(fig_w, fig_h), dpi=100, squeeze=False)
    for ax, (label, imgs) in zip(axes[:, 0], rows):
        grid = image_grid(imgs.clamp(0, 1), nrow=ncol)
        if grid.shape[-1] == 1:
            ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(np.clip(grid, 0, 1), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    who = getattr(getattr(model, "info", None), "name", None) or type(model).__name__
    fig.suptitle(f"{who} latent space: interpolation, class-attribute vectors (left: real test image)", fontsize=7)
    fig.subplots_adjust(left=label_w / fig_w, right=1 - 0.1 / fig_w, bottom=0.05 / fig_h, top=1 - 0.3 / fig_h, hspace=0.12)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    plt.close(fig)
    return path


def _save_rows(x: Tensor, ncol: int, path: str | Path, title: str) -> Path:
    """Images (N, C, H, W) in [0, 1] laid out ``ncol`` per row, written as a PNG with ``title``."""
    plt = _plt()
    g = image_grid(x, nrow=ncol)
    fig, ax = plt.subplots(figsize=(max(3.6, 0.45 * ncol + 0.3), 0.45 * len(x) / ncol + 0.5), dpi=100)
    show_image_grid(ax, g)
    ax.set_title(title, fontsize=7)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return finish_figure(fig, path)


def latent_interpolation_figure(model: Any, path: str | Path, *, rows: int = 6, cols: int = 9, seed: int = 0, interp: str = "slerp") -> Path:
    """Row i shows ``model.from_latent(interp(z0_i, z1_i, t))`` for t = 0 .. 1 in ``cols`` steps, z0, z1 ~ N(0, I)
    seeded by ``seed`` (the noise of row i from seed + 1 + i, the same along the row); continuous outputs."""
    if cols * rows > cols * cols:
        raise ValueError(f"interpolation figure: at most {cols} rows of {cols}")
    g = torch.Generator().manual_seed(seed)
    z0, z1 = torch.randn(rows, model.latent_dim, generator=g), torch.randn(rows, model.latent_dim, generator=g)
    t = torch.linspace(0, 1, cols)[:, None]
    f = INTERPOLATIONS[interp]
    x = torch.cat([model.from_latent(f(z0[i : i + 1].expand(cols, -1), z1[i : i + 1].expand(cols, -1), t), torch.Generator().manual_seed(seed + 1 + i)) for i in range(rows)])
    return _save_rows(x, cols, path, f"{getattr(model, 'name', 'model')}: {interp} in z between random latents, t = 0 .. 1")


def style_mixing_figure(model: Any, path: str | Path, *, n: int = 5, crossover: int = 2, seed: int = 0) -> Path:
    """StyleGAN's style-mixing figure (:func:`baselines.stylegan.style_mixing_grid`): the top row shows the sources
    of the fine styles, the left column those of the coarse styles (layers < ``crossover``)."""
    from baselines.stylegan import style_mixing_grid

    g = torch.Generator().manual_seed(seed)
    coarse, fine = torch.randn(n, model.latent_dim, generator=g), torch.randn(n, model.latent_dim, generator=g)
    grid = style_mixing_grid(model, coarse, fine, crossover, generator=g)
    return _save_rows(grid.reshape(-1, *grid.shape[2:]), n + 1, path, f"{model.name}: styles of layers < {crossover} from the left,\nthe rest from the top")
