"""Input checks shared by the feature-set metrics (vendi, authpct, ct, fls, cmmd, sw, sfid).

Each metric validates its inputs here so that a wrong shape, a NaN or too few
samples fails with a message naming the metric and the problem, never a
traceback from deep inside torch or scipy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def features64(metric: str, name: str, x, min_n: int = 1) -> Tensor:
    """``x`` as a float64 (N, D) CPU tensor, checked: 2-D, finite, at least ``min_n`` rows."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().to("cpu", torch.float64)
    if t.ndim != 2:
        raise ValueError(f"{metric}: {name} features must be an (N, D) array, got shape {tuple(t.shape)}")
    if t.shape[0] < min_n:
        raise ValueError(f"{metric}: needs at least {min_n} {name} samples, got {t.shape[0]}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{metric}: {name} features contain NaN or inf")
    return t


def same_dim(metric: str, **sets: Tensor) -> None:
    """All feature sets have the same dimension D."""
    dims = {k: int(v.shape[1]) for k, v in sets.items()}
    if len(set(dims.values())) > 1:
        raise ValueError(f"{metric}: feature sets differ in dimension: " + ", ".join(f"{k} {d}" for k, d in dims.items()))


EXACT = "donot_use_mm_for_euclid_dist"
"""``torch.cdist`` mode that computes differences directly: an exact copy is at distance 0, not ~1e-7."""
