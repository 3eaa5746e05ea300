"""FD∞: FID extrapolated to an infinite number of samples (Chong & Forsyth, CVPR 2020, "Effectively Unbiased FID").

FID is biased upwards by a term that shrinks like 1/N (N = number of
generated samples), so FIDs at different N — or of generators whose bias
terms differ — are not comparable. Chong & Forsyth compute FID_N on random
subsets of the samples at several N, fit

    FID_N = FD∞ + slope / N          (least squares in 1/N)

and report the intercept FD∞, the value at N = ∞. Here: ``points`` sizes
evenly spaced from N/5 to N (default 15), ``draws`` random subsets (without
replacement) per size (default 3), all against the *full* reference
statistics (the reference split's N is stated in the settings; its own
finite-N bias is not removed), subsets from a generator seeded with the job
seed. The interval is intercept ± 1.96 standard errors of the OLS fit.
Units: those of FID (squared feature units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .context import EvalContext
from .fid import _sqrt_psd, feature_statistics
from .registry import MetricValue, Output, register_metric

__all__ = ["FDInfResult", "fd_inf_from_features", "n_grid"]


@dataclass
class FDInfResult:
    """The intercept (FD∞), the fitted slope, and every FID_N that entered the fit."""

    value: float
    slope: float
    se: float  # standard error of the intercept (OLS), NaN with no residual degrees of freedom
    ns: list[int] = field(default_factory=list)  # subset size of every FID_N
    fids: list[float] = field(default_factory=list)
    draws: int = 1
    n_real: int = 0
    n_fake: int = 0


def n_grid(n: int, points: int = 15, lo_fraction: float = 0.2) -> list[int]:
    """``points`` distinct subset sizes evenly spaced from ``lo_fraction * n`` to ``n`` (rounded)."""
    if n < 2:
        raise ValueError(f"FD∞ needs at least 2 samples, got {n}")
    lo = max(2, int(round(lo_fraction * n)))
    return sorted({int(round(v)) for v in np.linspace(lo, n, points)})


def fd_inf_from_features(real, fake, points: int = 15, draws: int = 3, seed: int = 0, lo_fraction: float = 0.2) -> FDInfResult:
    """FD∞ of ``fake`` against the full ``real`` statistics (both (N, D) feature arrays).

    ``ValueError`` when fewer than 3 distinct subset sizes fit in the sample
    (N < 15 with the defaults), or for invalid features (see :func:`metrics.fid.feature_statistics`).
    """
    f_fake = torch.as_tensor(np.asarray(fake) if not isinstance(fake, torch.Tensor) else fake).detach().cpu().double()
    mu1, s1 = feature_statistics(real)
    if f_fake.ndim != 2 or f_fake.shape[1] != len(mu1):
        raise ValueError(f"FD∞: fake features must be (N, {len(mu1)}), got shape {tuple(f_fake.shape)}")
    if points < 3 or draws < 1:
        raise ValueError(f"FD∞ needs points >= 3 and draws >= 1, got points={points}, draws={draws}")
    n = len(f_fake)
    ns = n_grid(n, points, lo_fraction)
    if len(ns) < 3:
        raise ValueError(f"FD∞ needs at least 3 distinct subset sizes; N={n} samples give {len(ns)} (use N >= 15)")
    r1 = _sqrt_psd(s1, "reference covariance")
    g = torch.Generator().manual_seed(int(seed))
    xs, ys = [], []
    for m in ns:
        for _ in range(draws if m < n else 1):  # the full set is the same set whatever the draw
            sub = f_fake[torch.randperm(n, generator=g)[:m]] if m < n else f_fake
            mu2, s2 = feature_statistics(sub)
            ys.append(_fid_with_root(mu1, s1, r1, mu2, s2))
            xs.append(m)
    inv = 1.0 / np.asarray(xs, dtype=np.float64)
    a = np.stack([np.ones_like(inv), inv], 1)
    coef, *_ = np.linalg.lstsq(a, np.asarray(ys), rcond=None)
    resid = np.asarray(ys) - a @ coef
    dof = len(ys) - 2
    se = float("nan")
    if dof > 0:
        cov = (resid @ resid / dof) * np.linalg.inv(a.T @ a)
        se = float(math.sqrt(max(cov[0, 0], 0.0)))
    return FDInfResult(float(coef[0]), float(coef[1]), se, [int(x) for x in xs], [float(y) for y in ys], draws, len(real), n)


def _fid_with_root(mu1: np.ndarray, s1: np.ndarray, r1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """FID with the square root of the reference covariance computed once (same math as metrics.fid)."""
    m = r1 @ s2 @ r1
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tol = len(eig) * np.finfo(np.float64).eps * max(float(np.abs(eig).max()), np.finfo(np.float64).tiny)
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.where(eig <= tol, 0.0, eig)).sum())
    return max(value, 0.0)


@register_metric("fd_inf", [Output("fd_inf", "FD∞", "min", per_extractor=True)])
def fd_inf(ctx: EvalContext) -> dict[str, MetricValue]:
    """FID extrapolated to N = ∞ (Chong & Forsyth 2020): least-squares fit of FID_N = FD∞ + slope/N over subsets (metrics/fd_inf.py)."""
    points, draws = int(ctx.setting("fd_inf_points", 15)), int(ctx.setting("fd_inf_draws", 3))
    real, fake = ctx.features("real"), ctx.features("fake")
    r = fd_inf_from_features(real, fake, points=points, draws=draws, seed=ctx.seed)
    grid = sorted(set(r.ns))
    settings = {
        **ctx.extractor.settings(),
        "n_real": int(len(real)),
        "n_fake": int(len(fake)),
        "reference": ctx.setting("reference", "train") + " split (full statistics, its N not extrapolated)",
        "n_grid": f"{len(grid)} sizes {grid[0]}..{grid[-1]} evenly spaced",
        "draws": draws,
        "fit": "least squares FID_N = FD∞ + slope/N",
        "slope": r.slope,
        "seed": ctx.seed,
        "method": "Chong & Forsyth 2020",
        "interval": "± 1.96 standard errors of the intercept",
    }
    interval = (r.value - 1.96 * r.se, r.value + 1.96 * r.se) if math.isfinite(r.se) else None
    extra = {"ns": r.ns, "fids": r.fids}
    return {"fd_inf": MetricValue(r.value, interval, settings, extra)}
