"""Precision/recall (Kynkäänniemi et al., 2019) and density/coverage (Naeem et al., 2020).

All four numbers come from k-nearest-neighbour balls in feature space and are
computed in one pass over the fake x real distance matrix (never held in
memory whole: rows are processed in chunks), plus one pass over each set for
its own k-NN radii.

Notation: real features X (M, D), fake features Y (N, D); NND_k(x) is the
distance from x to its k-th nearest neighbour in its own set, itself
excluded (the (k+1)-th smallest distance of its row, self included).

* precision = 1/N sum_j 1[ exists i: d(Y_j, X_i) <= NND_k(X_i) ]   (k = 3)
* recall    = 1/M sum_i 1[ exists j: d(X_i, Y_j) <= NND_k(Y_j) ]   (k = 3)

  the radius test of torch-fidelity's ``metric_prc`` (``<=``), with which the
  values agree exactly on the same features;
* density   = 1/(k N) sum_j sum_i 1[ d(Y_j, X_i) < NND_k(X_i) ]     (k = 5)
* coverage  = 1/M sum_i 1[ min_j d(X_i, Y_j) < NND_k(X_i) ]         (k = 5)

  the strict test of Naeem et al.'s reference code.

Distances are Euclidean, accurate to float64, on features centred at the
reference mean and scaled by a power of two (neither changes any comparison;
the scaling is exact), so a large common offset loses no digits and finite
features of any magnitude cannot overflow:

* k-NN radii: candidates from a float32 pass, their distances recomputed
  exactly as sum((a - b)^2) in float64 (rows whose float32 margin is too
  thin are computed wholly in float64); self-distances are exactly 0;
* real x fake distances: a float32 pass (|a|^2 + |b|^2 - 2 a.b, one matmul
  per block) finds every pair that could lie inside a ball: within the
  float32 rounding bound of the largest radius that applies to it. Only those
  pairs (a few per sample) get their distance recomputed exactly as
  sum((a - b)^2) in float64 and tested. A distance within float64 rounding of
  a radius is a tie: inside for the ``<=`` tests, outside for the strict
  ones. So a sample identical to a real point's k-th neighbour lies exactly on
  its ball, and a set scored against itself gives P = R = D = C = 1 exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

DEFAULT_CHUNK = 1024
_PAIR_BLOCK = 65536  # candidate pairs per exact float64 block: (block, D) differences, ~64 MB at D = 128


def _as_tensor(x, name: str) -> Tensor:
    """``x`` as a float64 (N, D) CPU tensor; ``ValueError`` naming ``name`` if not 2-D or not finite."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().to("cpu", torch.float64)
    if t.ndim != 2:
        raise ValueError(f"{name} must be an (N, D) feature array, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contain NaN or inf")
    return t


def normalize_pair(x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None, float]:
    """Centre both sets at the mean of ``x`` and scale by one power of two so that max |value| <= 1.

    Returns ``(x', y', scale)`` with distances(x', y') = scale * distances(x, y):
    every k-NN comparison is unchanged (the scaling is exact), while
    |a|^2 + |b|^2 - 2 a.b neither loses the digits of a large common offset nor
    overflows. ``ValueError`` when even the centred values overflow float64.
    """
    mu = x.mean(0, keepdim=True)
    if not torch.isfinite(mu).all():
        raise ValueError("features are too large to average in float64 (|values| near 1e308); rescale them")
    xc = x - mu
    yc = None if y is None else y - mu
    m = float(xc.abs().max()) if xc.numel() else 0.0
    if yc is not None and yc.numel():
        m = max(m, float(yc.abs().max()))
    if not math.isfinite(m):
        raise ValueError("features are too large to compare (their differences overflow float64); rescale them")
    scale = 2.0 ** -math.ceil(math.log2(m)) if m > 0 else 1.0
    return xc * scale, None if yc is None else yc * scale, scale


def check_knn(metric: str, k: int, **sizes: int) -> None:
    """Raise a clear ValueError when a k-NN metric gets fewer than k + 1 samples."""
    if k < 1:
        raise ValueError(f"{metric}: k must be >= 1, got k={k}")
    low = [f"{name}={n}" for name, n in sizes.items() if n < k + 1]
    if low:
        raise ValueError(f"{metric} with k={k} needs at least k+1={k + 1} samples per set, got {', '.join(low)}")


def sq_dists(a: Tensor, b: Tensor, a_sq: Tensor | None = None, b_sq: Tensor | None = None) -> Tensor:
    """Squared Euclidean distances (len(a), len(b)) = |a|^2 + |b|^2 - 2 a.b, clamped at 0 (one matmul)."""
    a_sq = (a * a).sum(1) if a_sq is None else a_sq
    b_sq = (b * b).sum(1) if b_sq is None else b_sq
    return torch.addmm(b_sq[None], a, b.T, alpha=-2).add_(a_sq[:, None]).clamp_(min=0)


def _rounding(d: int, dtype: torch.dtype, max_sq: float) -> float:
    """Bound on the rounding error of |a|^2 + |b|^2 - 2 a.b for vectors of squared norm <= ``max_sq`` in ``dtype``."""
    return 8.0 * d * torch.finfo(dtype).eps * 2.0 * max_sq


def _sparse_nonzero(mask: Tensor, seg: int = 128) -> Tensor:
    """Flat indices of the True entries of a mostly-False boolean tensor.

    ``Tensor.nonzero`` scans every element at a few ns each; here a max over
    segments of ``seg`` elements (a fast byte reduction) finds the segments
    that hold a True, and only those are scanned.
    """
    flat = mask.reshape(-1)
    full = flat.numel() // seg * seg
    hit = flat[:full].view(-1, seg).view(torch.uint8).amax(1).nonzero().squeeze(1)
    inner = flat[:full].view(-1, seg)[hit].nonzero()
    tail = flat[full:].nonzero().squeeze(1) + full
    return torch.cat([hit[inner[:, 0]] * seg + inner[:, 1], tail])


def _knn_sq_radii(x: Tensor, ks: tuple[int, ...], chunk: int, x_sq: Tensor, extra: int = 8) -> dict[int, Tensor]:
    """Squared distance of every row of ``x`` to its k-th nearest neighbour (self excluded), accurate to float64.

    Candidates come from a float32 pass (the (k+1+extra) nearest per row);
    their distances are then recomputed exactly as sum((a - b)^2) in float64
    and sorted. A row whose float32 gap cannot guarantee that the true
    neighbours are among the candidates is done entirely in float64.
    """
    kmax = max(ks)
    n, d = x.shape
    out = {k: torch.empty(n, dtype=torch.float64) for k in ks}
    m = min(n, kmax + 1 + extra)
    x32 = x.float()
    x32_sq = (x32 * x32).sum(1)
    tol32 = _rounding(d, torch.float32, float(x_sq.max()) if n else 0.0)
    step = max(1, min(chunk, int(2e7 // max(1, m * d))))  # (rows, m, D) float64 differences stay below ~160 MB
    for i in range(0, n, step):
        rows = torch.arange(i, min(i + step, n))
        # |b|^2 - 2 a.b: the row's own |a|^2 shifts the whole row, so the ranking needs no add or clamp pass
        d32 = torch.addmm(x32_sq[None], x32[rows], x32.T, alpha=-2)
        d32[torch.arange(len(rows)), rows] = -x32_sq[rows]  # self: distance 0
        vals, idx = torch.topk(d32, m, dim=1, largest=False, sorted=True)
        vals += x32_sq[rows, None]
        diff = x[rows][:, None, :] - x[idx]  # (c, m, D) float64
        exact = (diff * diff).sum(-1)
        exact[idx == rows[:, None]] = 0.0  # self-distance exactly 0
        exact = exact.sort(1).values
        unsure = (vals[:, -1] - tol32 <= vals[:, kmax] + tol32) if m < n else torch.zeros(len(rows), dtype=torch.bool)
        if bool(unsure.any()):  # ties/near-ties at the candidate boundary: the whole row in float64
            r = rows[unsure]
            full = ((x[r][:, None, :] - x[None]) ** 2).sum(-1) if len(r) * n * d <= 2e7 else sq_dists(x[r], x, x_sq[r], x_sq)
            full[torch.arange(len(r)), r] = 0.0
            exact[unsure] = torch.topk(full, m, dim=1, largest=False, sorted=True).values
        for k in ks:
            out[k][rows] = exact[:, k]
    return out


def knn_radii(x: Tensor, ks: int | tuple[int, ...], chunk: int = DEFAULT_CHUNK) -> dict[int, Tensor]:
    """Distance of every row of ``x`` to its k-th nearest neighbour in ``x`` (itself excluded).

    Returns {k: (N,) float64 tensor} for every k in ``ks`` from one pass, in
    the units of ``x``.
    """
    x = _as_tensor(x, "features")
    ks = (ks,) if isinstance(ks, int) else tuple(ks)
    check_knn("k-NN radii", max(ks), N=len(x))
    xn, _, scale = normalize_pair(x)
    return {k: v.sqrt() / scale for k, v in _knn_sq_radii(xn, ks, chunk, (xn * xn).sum(1)).items()}


@dataclass
class PRDCResult:
    """The four numbers plus per-sample indicators (for bootstrap intervals)."""

    precision: float
    recall: float
    density: float
    coverage: float
    k_prc: int
    k_dc: int
    n_real: int
    n_fake: int
    # per-sample values whose means are the metrics
    precision_ind: Tensor = field(repr=False, default=None)  # (N,) fake in real manifold
    recall_ind: Tensor = field(repr=False, default=None)  # (M,) real in fake manifold
    density_ind: Tensor = field(repr=False, default=None)  # (N,) count of real balls containing fake / k_dc
    coverage_ind: Tensor = field(repr=False, default=None)  # (M,) real ball contains a fake

    def values(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall, "density": self.density, "coverage": self.coverage}


def prdc(real, fake, k_prc: int = 3, k_dc: int = 5, chunk: int = DEFAULT_CHUNK, with_dc: bool = True) -> PRDCResult:
    """Precision, recall (k = ``k_prc``), density and coverage (k = ``k_dc``) of ``fake`` against ``real``.

    Args:
        real, fake: (M, D) and (N, D) feature arrays (tensor or numpy).
        chunk: rows per distance block (memory ~ chunk x max(M, N) floats).
        with_dc: also compute density/coverage (else they are NaN).
    """
    x = _as_tensor(real, "real features")
    y = _as_tensor(fake, "fake features")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {x.shape[1]} vs {y.shape[1]}")
    m, n = len(x), len(y)
    check_knn("precision/recall", k_prc, n_real=m, n_fake=n)
    if with_dc:
        check_knn("density/coverage", k_dc, n_real=m)
    ks = (k_prc, k_dc) if with_dc else (k_prc,)
    x, y, _ = normalize_pair(x, y)
    # everything on squared distances (same order as distances): one matmul per block, no sqrt
    x_sq, y_sq = (x * x).sum(1), (y * y).sum(1)
    r_real = _knn_sq_radii(x, ks, chunk, x_sq)
    r_fake = _knn_sq_radii(y, (k_prc,), chunk, y_sq)[k_prc]

    # a float32 pass keeps the pairs that may lie inside a ball; their exact float64 distances decide
    max_sq = max(float(x_sq.max()), float(y_sq.max()))
    tau = _rounding(x.shape[1], torch.float64, max_sq)  # float64 tie band
    tau32 = _rounding(x.shape[1], torch.float32, max_sq) + tau
    r_row = torch.maximum(r_real[k_prc], r_real[k_dc]) if with_dc else r_real[k_prc]
    row_thr = (r_row + tau32).float()[:, None]  # real ball i (precision, density, coverage)
    col_thr = (r_fake + tau32).float()[None]  # fake ball j (recall)
    x32, y32 = x.float(), y.float()
    x32_sq, y32_sq = (x32 * x32).sum(1), (y32 * y32).sum(1)
    prec = torch.zeros(n, dtype=torch.bool)
    dens = torch.zeros(n, dtype=torch.int64)
    rec = torch.zeros(m, dtype=torch.bool)
    cov = torch.zeros(m, dtype=torch.bool)
    for i in range(0, m, chunk):  # rows = real samples
        d2 = sq_dists(x32[i : i + chunk], y32, x32_sq[i : i + chunk], y32_sq)  # (c, N) float32
        pos = _sparse_nonzero((d2 <= row_thr[i : i + chunk]) | (d2 <= col_thr))
        ri, fj = pos // n, pos % n
        for s in range(0, len(ri), _PAIR_BLOCK):  # candidate pairs, exactly
            a, b = ri[s : s + _PAIR_BLOCK] + i, fj[s : s + _PAIR_BLOCK]
            d2x = ((x[a] - y[b]) ** 2).sum(1)
            hit = d2x <= r_real[k_prc][a] + tau  # "<=" with ties included
            prec[b[hit]] = True
            rec[a[d2x <= r_fake[b] + tau]] = True
            if with_dc:
                inside = d2x < r_real[k_dc][a] - tau  # "<" with ties excluded
                dens += torch.bincount(b[inside], minlength=n)
                cov[a[inside]] = True
    precision_ind = prec.double()
    recall_ind = rec.double()
    if with_dc:
        density_ind = dens.double() / k_dc
        coverage_ind = cov.double()
        density, coverage = float(density_ind.mean()), float(coverage_ind.mean())
    else:
        density_ind = coverage_ind = None
        density = coverage = float("nan")
    return PRDCResult(
        precision=float(precision_ind.mean()),
        recall=float(recall_ind.mean()),
        density=density,
        coverage=coverage,
        k_prc=k_prc,
        k_dc=k_dc,
        n_real=m,
        n_fake=n,
        precision_ind=precision_ind,
        recall_ind=recall_ind,
        density_ind=density_ind,
        coverage_ind=coverage_ind,
    )


def precision_recall(real, fake, k: int = 3, chunk: int = DEFAULT_CHUNK) -> tuple[float, float]:
    """(precision, recall) of Kynkäänniemi et al. with k-NN balls (``<=`` radius test)."""
    r = prdc(real, fake, k_prc=k, chunk=chunk, with_dc=False)
    return r.precision, r.recall


def density_coverage(real, fake, k: int = 5, chunk: int = DEFAULT_CHUNK) -> tuple[float, float]:
    """(density, coverage) of Naeem et al. with k-NN balls around the real samples (``<`` radius test)."""
    r = prdc(real, fake, k_prc=1, k_dc=k, chunk=chunk)
    return r.density, r.coverage
