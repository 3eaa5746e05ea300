"""Uncertainty: bootstrap intervals within a run, mean +- std over seeds.

* :func:`bootstrap_mean_interval`: percentile interval of the mean of
  per-sample values (the PRDC indicators) over ``b`` resamples with
  replacement. For precision/recall/density/coverage the k-NN balls are held
  fixed and the samples whose indicators are averaged are resampled (fakes for
  precision and density, reals for recall and coverage): resampling the sets
  themselves would create duplicate points with zero k-NN radius.
* :func:`bootstrap_fid`: normal-approximation interval of FID, the estimate
  ± z · (std of FID over ``b`` resamples of both feature sets; statistics
  recomputed from resample counts, one D x D eigendecomposition per
  resample). Not a percentile interval: resampling with replacement
  duplicates points, and the resampled FIDs sit above the estimate by about
  the estimate's own finite-N bias (the digits data row at N = 360: FID
  3.00, percentile interval [6.81, 16.79], which does not contain it). Their
  spread estimates FID's sampling std; their location does not.
* :func:`mean_std`: mean and sample standard deviation (ddof = 1) over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _stats

from .fid import _as_np, _fd_and_eigs


def percentile_interval(stats, level: float = 0.95) -> tuple[float, float]:
    """(lo, hi) percentile interval of bootstrap statistics at ``level``."""
    s = np.asarray(stats, dtype=np.float64)
    s = s[np.isfinite(s)]
    if len(s) == 0:
        return (math.nan, math.nan)
    a = (1 - level) / 2
    lo, hi = np.quantile(s, [a, 1 - a])
    return float(lo), float(hi)


def _counts(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    """(b, n) resample multiplicities (each row sums to n)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=b)


def bootstrap_mean_interval(values, b: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of mean(values) under resampling with replacement."""
    v = _as_np(values).ravel()
    if len(v) == 0:
        raise ValueError("bootstrap of an empty set")
    if b < 1:
        raise ValueError(f"bootstrap needs b >= 1 resamples, got {b}")
    rng = np.random.default_rng(seed)
    means = np.concatenate([_counts(rng, len(v), min(200, b - i)) @ v / len(v) for i in range(0, b, 200)])
    return percentile_interval(means, level)


def _weighted_stats(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = w.sum()
    mu = w @ x / n
    xc = x - mu
    return mu, (xc.T * w) @ xc / (n - 1)


def _weighted_fid(xr: np.ndarray, wr: np.ndarray, xf: np.ndarray, wf: np.ndarray) -> float:
    m1, s1 = _weighted_stats(xr, wr)
    m2, s2 = _weighted_stats(xf, wf)
    return max(_fd_and_eigs(m1, s1, m2, s2)[0], 0.0)


def bootstrap_fid(real, fake, b: int = 200, seed: int = 0, level: float = 0.95, estimate: float | None = None) -> tuple[float, float]:
    """95% (``level``) interval of FID(real, fake): ``estimate`` ± z · bootstrap std, the lower end clipped at 0.

    The std is that of FID over ``b`` resamples of both sets with
    replacement; ``estimate`` is the FID of the sets as given (computed here
    when None). Same units as FID (squared feature units).
    """
    xr, xf = _as_np(real), _as_np(fake)
    if b < 2:
        raise ValueError(f"bootstrap of FID needs b >= 2 resamples (a std), got {b}")
    rng = np.random.default_rng(seed)

    def weights(n: int) -> np.ndarray:  # resample multiplicities
        return np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)

    vals = [_weighted_fid(xr, weights(len(xr)), xf, weights(len(xf))) for _ in range(b)]
    if estimate is None:
        estimate = _weighted_fid(xr, np.ones(len(xr)), xf, np.ones(len(xf)))
    sd = float(np.std(vals, ddof=1))
    half = float(_stats.norm.ppf(0.5 + level / 2)) * sd
    return max(estimate - half, 0.0), estimate + half


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; 0 for a single value) over seeds, ignoring NaN/None."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (math.nan, math.nan)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
