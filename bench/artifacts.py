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
    LatentPath,
)
from genbench.registry import check_name

from .figures import latent_figure_applies, latent_interpolation_figure, style_mixing_figure, vae_latent_figure
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
    """The latent-space figures of a freshly trained model on images: latent arithmetic for a model that encodes and
    decodes (labelled images with the figure's classes), interpolation for one with a latent path, and the
    style-mixing grid for a style-based generator."""
    job, model = ctx.job, ctx.model
    stem = f"{check_name(job.dataset.name, 'dataset name')}__{check_name(job.gen.name, 'generator name')}"
    if isinstance(model, Autoencoding) and latent_figure_applies(ctx.ds):
        vae_latent_figure(model, ctx.ds, _inside(ctx.assets, f"{stem}_latent-arithmetic.png"))
    if not ctx.ds.info.is_image or not isinstance(model, LatentPath) or getattr(model, "num_classes", 0):
        return
    latent_interpolation_figure(model, _inside(ctx.assets, f"{stem}_interpolation.png"), seed=job.seed)
    if getattr(model, "arch", None) == "style":
        style_mixing_figure(model, _inside(ctx.assets, f"{stem}_style-mixing.png"), seed=job.seed)


def _inside(root: Path, name: str) -> Path:
    """``root / name``, proven to stay inside ``root``."""
    p = (root / name).resolve()
    if not p.is_relative_to(root.resolve()):
        raise ValueError(f"refusing to write {p}: outside {root}")
    return p
