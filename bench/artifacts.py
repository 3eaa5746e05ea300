"""What a job writes besides records: the sample grid PNG of a row, its samples as ``.npz`` with a grid
(``--save-samples``), and a model-specific figure (a latent-space figure), all under the suite's results folder."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from genbench.cache import atomic_write
from genbench.protocol import (
    Autoencoding,
    ImageConditioned,
)
from genbench.registry import check_name

from .figures import latent_figure_applies, vae_latent_figure
from .job import JobContext
from .plots import save_sample_grid, save_translation_grid
from .stages import _translation_inputs


def _save_grid(ctx: JobContext, row: str, x: torch.Tensor) -> None:
    job = ctx.job
    name = f"{check_name(job.dataset.name, 'dataset name')}__{check_name(row.replace('@', '_at'), 'generator row')}.png"
    if ctx.ds.info.is_translation and isinstance(ctx.model, ImageConditioned):
        tr = _translation_inputs(ctx.ds, len(x))
        save_translation_grid(tr["source"], x, tr["truth"], _inside(ctx.assets, name), title=f"{row} on {job.dataset.name}: source | output | target")
        return
    save_sample_grid(x, ctx.ds.info, _inside(ctx.assets, name), title=f"{row} on {job.dataset.name}")


def _save_samples(ctx: JobContext, row: str, x: torch.Tensor, labels: torch.Tensor | None) -> None:
    """``--save-samples``: the row's samples as ``.npz`` (``x`` float32 as sampled, ``y`` labels if any) and a PNG grid."""
    job = ctx.job
    root = ctx.samples_dir or ctx.assets.parent / "samples"
    stem = f"{check_name(job.dataset.name, 'dataset name')}__{check_name(row.replace('@', '_at'), 'generator row')}__seed{int(job.seed)}"
    buf = io.BytesIO()
    arrays = {"x": x.numpy().astype(np.float32)}
    if labels is not None:
        arrays["y"] = labels.numpy()
    np.savez(buf, **arrays)
    atomic_write(_inside(root, stem + ".npz"), buf.getvalue())
    save_sample_grid(x, ctx.ds.info, _inside(root, stem + ".png"), title=f"{row} on {job.dataset.name} (seed {job.seed})")


def _latent_figure(ctx: JobContext) -> None:
    """The latent-space arithmetic figure for any model that encodes and decodes, on labelled images that have the figure's classes."""
    if not isinstance(ctx.model, Autoencoding) or not latent_figure_applies(ctx.ds):
        return
    job = ctx.job
    name = f"{check_name(job.dataset.name, 'dataset name')}__{check_name(job.gen.name, 'generator name')}_latent-arithmetic.png"
    vae_latent_figure(ctx.model, ctx.ds, _inside(ctx.assets, name))


def _inside(root: Path, name: str) -> Path:
    """``root / name``, proven to stay inside ``root``."""
    p = (root / name).resolve()
    if not p.is_relative_to(root.resolve()):
        raise ValueError(f"refusing to write {p}: outside {root}")
    return p
