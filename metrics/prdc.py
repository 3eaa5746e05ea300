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

Distances are Euclidean in float32 (as in torch-fidelity); the tests compare
squared distances |a|^2 + |b|^2 - 2 a.b from one matmul per block (the same
order, no square roots), with self-distances set to exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

DEFAULT_CHUNK = 2048


def _as_tensor(x, name: str) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().cpu().float()
    if t.ndim != 2:
        raise ValueError(f"{name} must be an (N, D) feature array, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contain NaN or inf")
    return t


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


def _knn_sq_radii(x: Tensor, ks: tuple[int, ...], chunk: int, x_sq: Tensor) -> dict[int, Tensor]:
    kmax = max(ks)
    out = {k: torch.empty(len(x)) for k in ks}
    for i in range(0, len(x), chunk):
        d2 = sq_dists(x[i : i + chunk], x, x_sq[i : i + chunk], x_sq)
        d2[torch.arange(len(d2)), torch.arange(i, i + len(d2))] = 0.0  # self-distance exactly 0
        top = torch.topk(d2, kmax + 1, dim=1, largest=False, sorted=True).values
        for k in ks:
            out[k][i : i + chunk] = top[:, k]
    return out


def knn_radii(x: Tensor, ks: int | tuple[int, ...], chunk: int = DEFAULT_CHUNK) -> dict[int, Tensor]:
    """Distance of every row of ``x`` to its k-th nearest neighbour in ``x`` (itself excluded).

    Returns {k: (N,) float32 tensor} for every k in ``ks`` from one pass.
    """
    x = _as_tensor(x, "features")
    ks = (ks,) if isinstance(ks, int) else tuple(ks)
    check_knn("k-NN radii", max(ks), N=len(x))
    return {k: v.sqrt() for k, v in _knn_sq_radii(x, ks, chunk, (x * x).sum(1)).items()}


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
    # everything on squared distances (same order as distances): one matmul per block, no sqrt
    x_sq, y_sq = (x * x).sum(1), (y * y).sum(1)
    r_real = _knn_sq_radii(x, ks, chunk, x_sq)
    r_fake = _knn_sq_radii(y, (k_prc,), chunk, y_sq)[k_prc]
    rr_prc = r_real[k_prc][None]
    rr_dc = r_real[k_dc][None] if with_dc else None

    prec = torch.empty(n, dtype=torch.bool)
    dens = torch.zeros(n, dtype=torch.int32)
    rec = torch.zeros(m, dtype=torch.bool)
    nn_fake = torch.full((m,), float("inf"))
    for j in range(0, n, chunk):
        d2 = sq_dists(y[j : j + chunk], x, y_sq[j : j + chunk], x_sq)  # (c, M)
        prec[j : j + chunk] = (d2 <= rr_prc).any(1)
        rec |= (d2 <= r_fake[j : j + chunk, None]).any(0)
        if with_dc:
            dens[j : j + chunk] = (d2 < rr_dc).sum(1, dtype=torch.int32)
            nn_fake = torch.minimum(nn_fake, d2.amin(0))
    precision_ind = prec.double()
    recall_ind = rec.double()
    if with_dc:
        density_ind = dens.double() / k_dc
        coverage_ind = (nn_fake < r_real[k_dc]).double()
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
