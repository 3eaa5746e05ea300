"""Perceptual path length (Karras et al. 2019): how far a generator's output moves, in the extractor's feature
space, for a small step along a path through its latent space.

For pairs of latents (z0, z1) and a position t on the path between them, with interpolation ``interp``
(``slerp`` in z, as the paper does for a Gaussian latent; ``lerp``)::

    d = || f(G(interp(z0, z1, t))) - f(G(interp(z0, z1, t + eps))) ||^2 / eps^2

``f`` is the extractor's features (the paper uses LPIPS distances between VGG features; here, as for FID, the
data set's extractor), ``G`` the generator's continuous output (before quantization: a step of 1e-4 changes
no quantized pixel), with the same noise at both ends. PPL is the mean of ``d`` over the pairs whose ``d``
lies within the 1st and 99th percentiles (the paper's and torch-fidelity's outlier rule). ``t`` ~ U(0, 1 - eps)
is the paper's "full" path; ``t`` = 0 is torch-fidelity's (which interpolates from z0 towards z1 only).
Units: squared feature units per squared latent unit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from genbench.protocol import LatentPath

from .context import EvalContext
from .registry import MetricValue, Output, register_metric

__all__ = ["lerp", "slerp", "path_lengths", "trimmed_mean", "ppl_metric", "ppl_w_metric"]


def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """a + t (b - a), row by row (``t`` (N, 1) or a scalar)."""
    return a + t * (b - a)


def slerp(a: Tensor, b: Tensor, t: Tensor, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation of the rows of ``a`` and ``b`` (the angle between their directions is divided
    in the ratio t : 1 - t; the lengths follow the same sine weights); plain lerp where the rows are parallel."""
    an = a / a.norm(dim=-1, keepdim=True).clamp_min(eps)
    bn = b / b.norm(dim=-1, keepdim=True).clamp_min(eps)
    cos = (an * bn).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    so = torch.sin(omega)
    parallel = so.abs() < eps
    out = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.where(parallel, torch.ones_like(so), so)
    return torch.where(parallel, lerp(a, b, t), out)


INTERPOLATIONS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {"lerp": lerp, "slerp": slerp}


def path_lengths(
    from_latent: Callable[[Tensor, torch.Generator], Tensor],
    features: Callable[[Tensor], Tensor],
    z0: Tensor,
    z1: Tensor,
    t: Tensor,
    epsilon: float = 1e-4,
    interp: str = "slerp",
    noise_seed: int = 0,
) -> Tensor:
    """The per-pair distances ``d`` of the module docstring (float64, (N,)). ``from_latent(z, generator)`` gives
    the generator's continuous output; both ends of a pair get noise from a generator seeded ``noise_seed``."""
    if not epsilon > 0:
        raise ValueError(f"ppl: epsilon must be > 0, got {epsilon}")
    if interp not in INTERPOLATIONS:
        raise ValueError(f"ppl: interp must be one of {sorted(INTERPOLATIONS)}, got {interp!r}")
    f = INTERPOLATIONS[interp]
    t = torch.as_tensor(t, dtype=z0.dtype)
    t = t.reshape(-1, 1) if t.ndim else t
    xa = from_latent(f(z0, z1, t), torch.Generator().manual_seed(noise_seed))
    xb = from_latent(f(z0, z1, t + epsilon), torch.Generator().manual_seed(noise_seed))
    fa, fb = features(xa).double(), features(xb).double()
    return (fa - fb).pow(2).reshape(len(fa), -1).sum(1) / epsilon**2


def trimmed_mean(d: Tensor, lower: float = 1.0, upper: float = 99.0) -> tuple[float, float, int]:
    """Mean and std of ``d`` over the values within its ``lower``-th and ``upper``-th percentiles (numpy's
    ``lower`` / ``higher`` percentile methods), and how many were kept."""
    x = d.cpu().numpy()
    lo, hi = np.percentile(x, lower, method="lower"), np.percentile(x, upper, method="higher")
    kept = x[(lo <= x) & (x <= hi)]
    return float(kept.mean()), float(kept.std()), int(kept.size)


def _ppl(ctx: EvalContext, space: str) -> MetricValue:
    """PPL in ``space``: ``z`` (slerp between Gaussian latents, ``from_latent``) or ``w`` (lerp between their
    images under the mapping network, ``to_w`` / ``from_w``, as Karras et al. do in w)."""
    gen = ctx.generator
    n, eps = int(ctx.setting("ppl_pairs", 1000)), float(ctx.setting("ppl_epsilon", 1e-4))
    g = torch.Generator().manual_seed(int(ctx.seed))
    z0, z1 = torch.randn(n, gen.latent_dim, generator=g), torch.randn(n, gen.latent_dim, generator=g)
    t = torch.rand(n, 1, generator=g) * (1 - eps)
    if space == "w":
        interp = "lerp"
        d = path_lengths(gen.from_w, ctx.extractor.features, gen.to_w(z0), gen.to_w(z1), t, eps, interp, noise_seed=int(ctx.seed))
    else:
        interp = str(ctx.setting("ppl_interp", "slerp"))
        d = path_lengths(gen.from_latent, ctx.extractor.features, z0, z1, t, eps, interp, noise_seed=int(ctx.seed))
    mean, std, kept = trimmed_mean(d)
    settings = {
        **ctx.extractor.settings(), "pairs": n, "epsilon": eps, "interp": interp, "space": space, "t": "U(0, 1 - eps) (full path)",
        "distance": "squared L2 of extractor features / eps^2", "trim": "1st-99th percentile", "kept": kept,
    }  # fmt: skip
    return MetricValue(mean, None, settings, {"std": std})


@register_metric(
    "ppl",
    [Output("ppl", "PPL", "min", per_extractor=True)],
    applies=lambda ctx: isinstance(ctx.generator, LatentPath),
    description="Perceptual path length in z (Karras et al. 2019) on the extractor's features: slerp, eps 1e-4, full path, 1-99 % trimmed mean",
)
def ppl_metric(ctx: EvalContext) -> dict[str, MetricValue]:
    """PPL of the generator's latent space (module docstring); settings ``ppl_pairs`` (default 1000),
    ``ppl_epsilon`` (1e-4), ``ppl_interp`` (``slerp``); latents, positions and noise seeded by the job's seed."""
    return {"ppl": _ppl(ctx, "z")}


@register_metric(
    "ppl_w",
    [Output("ppl_w", "PPL in w", "min", per_extractor=True)],
    applies=lambda ctx: isinstance(ctx.generator, LatentPath) and bool(getattr(ctx.generator, "has_w_space", False)),
    description="Perceptual path length in w, StyleGAN's intermediate latent space: lerp between mapped latents, as ppl otherwise",
)
def ppl_w_metric(ctx: EvalContext) -> dict[str, MetricValue]:
    """PPL in w (``to_w`` / ``from_w``), the same settings as ``ppl``."""
    return {"ppl_w": _ppl(ctx, "w")}
