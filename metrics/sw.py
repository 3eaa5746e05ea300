"""Sliced Wasserstein distance between two feature sets.

SW_p(X, Y) = ( mean_l W_p(theta_l . X, theta_l . Y)^p )^(1/p) over L fixed
random directions theta_l, drawn uniformly on the unit sphere from a seeded
``torch.Generator`` (the count and the seed are recorded). Each 1-D W_p is
exact between the two empirical distributions (any sizes): the integral over
u in (0, 1) of |F_X^-1(u) - F_Y^-1(u)|^p, evaluated on the merged quantile
breakpoints. Unit: that of the features (Euclidean feature distance). Lower is
better; 0 for identical sets.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._validate import features64, same_dim
from .context import EvalContext
from .registry import MetricValue, Output, register_metric

__all__ = ["wasserstein_1d", "random_directions", "sliced_wasserstein"]


def wasserstein_1d(a: Tensor, b: Tensor, p: float = 1.0) -> Tensor:
    """Exact W_p between empirical 1-D distributions, batched over columns.

    ``a`` (n, L) and ``b`` (m, L): column l of each is one sample set.
    Returns (L,) float64: W_p per column.
    """
    a = torch.sort(a.to(torch.float64), dim=0).values
    b = torch.sort(b.to(torch.float64), dim=0).values
    n, m = a.shape[0], b.shape[0]
    # breakpoints of both quantile functions: i/n and j/m, merged
    u = torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n, torch.arange(1, m + 1, dtype=torch.float64) / m])
    u = torch.unique(torch.sort(u).values)
    du = torch.diff(torch.cat([torch.zeros(1, dtype=torch.float64), u]))
    mid = u - du / 2  # a point inside each interval, where both quantile functions are constant
    ia = torch.clamp(torch.ceil(mid * n).long() - 1, 0, n - 1)
    ib = torch.clamp(torch.ceil(mid * m).long() - 1, 0, m - 1)
    diff = (a[ia] - b[ib]).abs() ** p  # (K, L)
    return (du[:, None] * diff).sum(0) ** (1.0 / p)


def random_directions(dim: int, count: int, seed: int) -> Tensor:
    """``count`` unit vectors uniform on the sphere in R^dim, (dim, count) float64, from ``seed``."""
    if count < 1:
        raise ValueError(f"sw: projections must be >= 1, got {count}")
    g = torch.Generator().manual_seed(int(seed))
    th = torch.randn(dim, count, generator=g, dtype=torch.float64)
    return th / th.norm(dim=0, keepdim=True)


def sliced_wasserstein(x, y, projections: int = 1000, seed: int = 0, p: float = 1.0) -> float:
    """SW_p between (N, D) and (M, D) feature sets with ``projections`` directions from ``seed``."""
    a = features64("sw", "first", x, min_n=1)
    b = features64("sw", "second", y, min_n=1)
    same_dim("sw", first=a, second=b)
    if p < 1:
        raise ValueError(f"sw: p must be >= 1, got {p}")
    th = random_directions(a.shape[1], projections, seed)
    w = wasserstein_1d(a @ th, b @ th, p)
    return float((w**p).mean() ** (1.0 / p))


@register_metric(
    "sw",
    [Output("sw", "SW", "min", per_extractor=True)],
    description="Sliced Wasserstein-1 distance between sample and reference features (fixed seeded projections)",
)
def sw_metric(ctx: EvalContext) -> dict[str, MetricValue]:
    """Sliced Wasserstein distance, fake vs reference features (metrics/sw.py)."""
    real, fake = ctx.features("real"), ctx.features("fake")
    k = int(ctx.setting("sw_projections", 1000))
    seed = int(ctx.setting("sw_seed", 0))
    p = float(ctx.setting("sw_p", 1.0))
    v = sliced_wasserstein(real, fake, k, seed, p)
    settings = {**ctx.extractor.settings(), "n_real": int(len(real)), "n_fake": int(len(fake)), "reference": ctx.setting("reference", "train") + " split",
                "projections": k, "projection_seed": seed, "p": p, "directions": "uniform on the unit sphere (normalised Gaussians)",
                "one_d": "exact empirical W_p (quantile functions)", "unit": "feature units"}  # fmt: skip
    return {"sw": MetricValue(v, None, settings)}
