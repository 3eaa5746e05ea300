"""C_T: the data-copying test of Meehan, Chaudhuri & Dasgupta (2020).

Inputs: training features T, held-out test features P_n and generated
features Q_m. The space is partitioned into ``cells`` by k-means fitted on T.
In each cell pi, with L(x) the Euclidean distance from x to its nearest
training point of the same cell (as in the reference code), the Mann-Whitney U statistic compares L(Q_m in pi) with L(P_n in pi):
U counts pairs (q, p) with L(q) > L(p) (ties 1/2), and its z-score under the
null of equal distributions is

    Z_U(pi) = (U - (n m / 2 - 1/2)) / sqrt(n m (n + m + 1) / 12)

(the 1/2 is the continuity correction of the reference code). C_T is the
average of Z_U over the cells holding more than a fraction ``tau`` of the
generated samples (default tau = 20 / m, as in dgm-eval), weighted by the
share of test samples in each cell. C_T << 0: samples are closer to the
training data than fresh data are (data copying); C_T >> 0: farther
(underfitting); about 0 for samples as far as held-out data. Dimensionless (a
z-score). As in dgm-eval, features of dimension > 64 are first projected on
their top 64 principal components fitted on T (deterministic SVD).

Differences from dgm-eval, stated: k-means uses scikit-learn's KMeans with a
fixed ``random_state`` (the seed is recorded) and default 5 cells (dgm-eval:
3 cells, unseeded); ``within_cell=False`` measures distances to the whole
training set instead of the cell's training points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import mannwhitneyu
from sklearn.cluster import KMeans

from ._validate import EXACT, features64, same_dim
from .context import EvalContext
from .registry import MetricValue, Output, register_metric

__all__ = ["CTResult", "zu_statistic", "ct_statistic"]


@dataclass
class CTResult:
    value: float
    cells: int
    cells_used: int
    tau: float
    z_per_cell: list[float] = field(default_factory=list)
    test_share: list[float] = field(default_factory=list)
    fake_share: list[float] = field(default_factory=list)
    pca_dim: int | None = None


def zu_statistic(l_fake: np.ndarray, l_test: np.ndarray) -> float:
    """z-scored Mann-Whitney U of NN distances ``l_fake`` (m) vs ``l_test`` (n), continuity-corrected as in Meehan et al."""
    m, n = len(l_fake), len(l_test)
    if m == 0 or n == 0:
        raise ValueError(f"ct: a cell needs generated and test samples, got m={m}, n={n}")
    u = mannwhitneyu(l_fake, l_test, alternative="less").statistic
    return float((u - (n * m / 2 - 0.5)) / math.sqrt(n * m * (n + m + 1) / 12))


def _nn_dist(x: torch.Tensor, ref: torch.Tensor, chunk: int = 2048) -> np.ndarray:
    return torch.cat([torch.cdist(x[i : i + chunk], ref, compute_mode=EXACT).min(dim=1).values for i in range(0, len(x), chunk)]).numpy()


def _pca(train: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    mu = train.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(train - mu, full_matrices=False)
    v = vh[:dim].T
    # fix the sign of each component (largest-magnitude coefficient positive): deterministic across LAPACK builds
    v = v * torch.sign(v[v.abs().argmax(0), torch.arange(v.shape[1])])
    return mu, v


def ct_statistic(
    train, test, fake, cells: int = 5, tau: float | None = None, seed: int = 0, pca_dim: int | None = 64, within_cell: bool = True
) -> CTResult:
    """C_T of ``fake`` given ``train`` and held-out ``test`` (N, D) features.

    ``cells``: k-means cells fitted on train (each must hold test and train
    points); ``tau``: minimum fraction of generated samples for a cell to count
    (default 20 / m); ``pca_dim``: project on that many principal components of
    train first when D is larger (None: never).
    """
    t = features64("ct", "train", train, min_n=2)
    p = features64("ct", "test", test, min_n=2)
    q = features64("ct", "sample", fake, min_n=2)
    same_dim("ct", train=t, test=p, sample=q)
    if cells < 1:
        raise ValueError(f"ct: cells must be >= 1, got {cells}")
    if len(t) < cells:
        raise ValueError(f"ct: k-means with {cells} cells needs at least {cells} training samples, got {len(t)}")
    used_pca = None
    if pca_dim is not None and t.shape[1] > pca_dim:
        mu, v = _pca(t, pca_dim)
        t, p, q = (t - mu) @ v, (p - mu) @ v, (q - mu) @ v
        used_pca = pca_dim
    m = len(q)
    tau = 20 / m if tau is None else float(tau)
    km = KMeans(n_clusters=cells, n_init=10, random_state=seed).fit(t.numpy())
    ct_, cp, cq = km.labels_, km.predict(p.numpy()), km.predict(q.numpy())
    if not within_cell:
        lp_all, lq_all = _nn_dist(p, t), _nn_dist(q, t)
    zs, wp, wq = [], [], []
    num = den = 0.0
    used = 0
    for c in range(cells):
        in_p, in_q, in_t = cp == c, cq == c, ct_ == c
        if in_p.sum() == 0 or in_t.sum() == 0:
            raise ValueError(f"ct: cell {c} of {cells} has no test or no training samples; use fewer cells (setting ct_cells)")
        share_p, share_q = float(in_p.mean()), float(in_q.mean())
        wp.append(share_p)
        wq.append(share_q)
        if in_q.sum() == 0:
            zs.append(float("nan"))
            continue
        if within_cell:
            tc = t[torch.from_numpy(in_t)]
            lq, lp = _nn_dist(q[torch.from_numpy(in_q)], tc), _nn_dist(p[torch.from_numpy(in_p)], tc)
        else:
            lq, lp = lq_all[in_q], lp_all[in_p]
        z = zu_statistic(lq, lp)
        zs.append(z)
        if share_q > tau:
            num += share_p * z
            den += share_p
            used += 1
    if used == 0:
        raise ValueError(f"ct: no cell holds more than tau = {tau:.3g} of the {m} generated samples; lower tau or use fewer cells")
    return CTResult(num / den, cells, used, tau, zs, wp, wq, used_pca)


def _sources(ctx: EvalContext) -> tuple[str, str] | None:
    if ctx.train is None or ctx.test is None:
        return None
    return ("real" if ctx.real is ctx.train else "train"), "test"


@register_metric(
    "ct",
    [Output("ct", "C_T", "zero", per_extractor=True)],
    applies=lambda ctx: _sources(ctx) is not None,
    description="C_T data-copying test (Meehan et al. 2020): k-means cells on train, Mann-Whitney z of fake->train vs test->train NN distances",
)
def ct_metric(ctx: EvalContext) -> dict[str, MetricValue]:
    """C_T z-score: << 0 copying, >> 0 underfitting, ~0 like held-out data (metrics/ct.py)."""
    tr, te = _sources(ctx)
    train, test, fake = ctx.features(tr), ctx.features(te), ctx.features("fake")
    cells = int(ctx.setting("ct_cells", 5))
    seed = int(ctx.setting("ct_seed", 0))
    r = ct_statistic(train, test, fake, cells=cells, seed=seed, pca_dim=ctx.setting("ct_pca_dim", 64))
    settings = {**ctx.extractor.settings(), "n_fake": int(len(fake)), "n_train": int(len(train)), "n_test": int(len(test)), "n_real": int(len(train)),
                "cells": cells, "kmeans": f"sklearn KMeans n_init=10 random_state={seed} on train", "tau": r.tau, "pca_dim": r.pca_dim,
                "distance": "Euclidean NN distance to the train points of the same cell", "statistic": "test-share-weighted mean of Mann-Whitney z (continuity-corrected)",
                "method": "Meehan et al. 2020"}  # fmt: skip
    extra = {"cells_used": r.cells_used, "z_per_cell": r.z_per_cell, "test_share": r.test_share, "fake_share": r.fake_share}
    return {"ct": MetricValue(r.value, None, settings, extra)}
