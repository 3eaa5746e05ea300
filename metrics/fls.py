"""FLS: feature likelihood score (Jiralerspong et al. 2023), and its generalisation-gap signal.

The generated samples' features become the centres of an isotropic Gaussian
mixture (kernel density) with one bandwidth per centre:

    log p(x) = logsumexp_j [ -||x - g_j||^2 / (2 s_j) - (d/2) log s_j ] - log m   (+ const)

Bandwidth fitting (stated, as in the reference code): the log-variances
log s_j start at 0 and minimise the mixture's NLL of a *fitting* part of the
train split by Adam (lr 0.5, 100 steps, lr x 0.1 after 50), clamped to
[-100, 20]. Features are first standardised (zero mean, unit variance per
dimension over all sets; a constant dimension keeps scale 1).

* ``fls``: the test split's mean NLL under that mixture compared with the same
  construction whose centres are real train samples (a held-out *baseline*
  part of the train split, as many as the samples, never used for fitting):
  ``FLS = 100 exp(-2 (NLL_gen - NLL_base) / d)`` (dgm-eval's normalisation).
  100 = as likely as real data; lower = the samples explain the test split
  worse; above 100 = better than real data (e.g. samples on or near test points).
  Higher is better.
* ``fls_gap``: the memorisation signal, in percentage points. For each
  centre, compare the mean likelihood its kernel gives to the fitting train
  points with the mean it gives to the test points; take the % of sample
  centres for which train > test, minus the same % for the baseline centres
  (real train points held out from fitting, with their own fitted
  bandwidths). The subtraction removes the fit's own preference for the points
  it was fitted on, so the gap is about 0 for samples that generalise and
  grows toward +100 when the samples sit on training points. (dgm-eval's
  ``compute_fls_overfit`` reports the uncalibrated share minus 50 over
  equal-size prefixes of the splits.)

Test points that are exact copies of a generated sample (distance 0 in
feature space, e.g. the held-out ``data`` row drawing from the test split) are
removed from the test split first: a point cannot be held out from a model
that emits it. Their number is recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._validate import EXACT, features64, same_dim
from .context import EvalContext
from .registry import MetricValue, Output, register_metric

__all__ = ["FLSResult", "fit_log_variances", "mixture_nll", "fls"]

FIT_STEPS = 100
SPLIT_SEED_OFFSET = 1_000_003  # the baseline/fit split of the train split uses seed + this
FIT_LR = 0.5


@dataclass
class FLSResult:
    fls: float
    gap: float
    nll_gen: float
    nll_base: float
    dim: int
    n_fit: int
    n_base: int
    n_test: int
    n_test_excluded: int
    share_gen: float
    share_base: float


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    return torch.cdist(a, b, compute_mode=EXACT) ** 2


def _log_terms(d2: Tensor, log_s: Tensor, dim: int) -> Tensor:
    """Pairwise log-density terms (N, M): -d2/(2 s_j) - (d/2) log s_j - log M (the (2 pi)^(d/2) constant is dropped: it cancels)."""
    return -0.5 * d2 / log_s.exp() - 0.5 * dim * log_s - math.log(d2.shape[1])


def mixture_nll(d2: Tensor, log_s: Tensor, dim: int) -> Tensor:
    """Per-point NLL (N,) of points with squared distances ``d2`` (N, M) to the centres (nats, up to the dropped constant)."""
    return -torch.logsumexp(_log_terms(d2, log_s, dim), dim=1)


def fit_log_variances(fit_points: Tensor, centres: Tensor, steps: int = FIT_STEPS, lr: float = FIT_LR) -> Tensor:
    """Per-centre log-variances that minimise the mixture NLL of ``fit_points`` (Adam, lr x 0.1 after half the steps)."""
    d2 = _sq_dists(fit_points, centres)
    dim = fit_points.shape[1]
    log_s = torch.zeros(len(centres), dtype=d2.dtype, requires_grad=True)
    opt = torch.optim.Adam([log_s], lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[steps // 2], gamma=0.1)
    for _ in range(steps):
        loss = mixture_nll(d2, log_s, dim).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            log_s.clamp_(-100, 20)
    return log_s.detach()


def _train_favoured(fit: Tensor, test: Tensor, centres: Tensor, log_s: Tensor) -> float:
    """% of centres whose kernel gives the fitting train points a higher mean likelihood than the test points."""
    d = fit.shape[1]
    ll_tr = torch.logsumexp(_log_terms(_sq_dists(fit, centres), log_s, d), dim=0) - math.log(len(fit))
    ll_te = torch.logsumexp(_log_terms(_sq_dists(test, centres), log_s, d), dim=0) - math.log(len(test))
    return 100.0 * float((ll_tr > ll_te).double().mean())


def fls(train, test, fake, seed: int = 0, steps: int = FIT_STEPS) -> FLSResult:
    """FLS and the train-vs-test gap of ``fake`` given ``train`` and ``test`` (N, D) features (float64 inside).

    The train split is shuffled with ``seed`` and cut into a baseline part (as
    many points as samples, at most half the split) and a fitting part (the rest).
    """
    t = features64("fls", "train", train, min_n=4)
    p = features64("fls", "test", test, min_n=2)
    q = features64("fls", "sample", fake, min_n=2)
    same_dim("fls", train=t, test=p, sample=q)
    # test points the samples contain exactly are not held out from them
    dup = torch.cdist(p, q, compute_mode=EXACT).min(dim=1).values == 0
    n_excl = int(dup.sum())
    p = p[~dup]
    if len(p) < 2:
        raise ValueError(
            f"fls: {n_excl} of {n_excl + len(p)} test points are exact copies of samples; fewer than 2 held-out test points remain"
        )
    allf = torch.cat([t, p, q])
    mu, sd = allf.mean(0), allf.std(0)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    t, p, q = (t - mu) / sd, (p - mu) / sd, (q - mu) / sd
    # its own seed stream: a generator that drew its samples with randperm(seed) must not get its own draws as the baseline
    g = torch.Generator().manual_seed(SPLIT_SEED_OFFSET + int(seed))
    perm = torch.randperm(len(t), generator=g)
    n_base = min(len(q), len(t) // 2)
    base, fit = t[perm[:n_base]], t[perm[n_base:]]
    d = t.shape[1]
    ls_gen = fit_log_variances(fit, q, steps)
    ls_base = fit_log_variances(fit, base, steps)
    nll_gen = float(mixture_nll(_sq_dists(p, q), ls_gen, d).mean())
    nll_base = float(mixture_nll(_sq_dists(p, base), ls_base, d).mean())
    score = 100.0 * math.exp(-2.0 * (nll_gen - nll_base) / d)
    # generalisation gap: per centre, mean likelihood of the fitting train points vs of the test points,
    # calibrated by the same share for real held-out train points as centres (the fit itself favours its own points)
    share_gen = _train_favoured(fit, p, q, ls_gen)
    share_base = _train_favoured(fit, p, base, ls_base)
    gap = share_gen - share_base
    return FLSResult(score, gap, nll_gen, nll_base, d, len(fit), n_base, len(p), n_excl, share_gen, share_base)


def _sources(ctx: EvalContext) -> tuple[str, str] | None:
    if ctx.train is None or ctx.test is None:
        return None
    return ("real" if ctx.real is ctx.train else "train"), "test"


@register_metric(
    "fls",
    [Output("fls", "FLS", "max", per_extractor=True), Output("fls_gap", "FLS gap", "zero", per_extractor=True, unit="%")],
    applies=lambda ctx: _sources(ctx) is not None,
    description="Feature likelihood score (Jiralerspong et al. 2023): test likelihood under a KDE on the samples vs on real train samples; train-vs-test gap",
)
def fls_metric(ctx: EvalContext) -> dict[str, MetricValue]:
    """FLS (100 = real-data baseline, higher better) and its train-test gap (% of centres, 0 = no memorisation) (metrics/fls.py)."""
    tr, te = _sources(ctx)
    train, test, fake = ctx.features(tr), ctx.features(te), ctx.features("fake")
    r = fls(train, test, fake, seed=ctx.seed)
    base = {**ctx.extractor.settings(), "n_fake": int(len(fake)), "n_test": r.n_test, "n_test_excluded": r.n_test_excluded, "n_real": int(len(train)),
            "kernel": "isotropic Gaussian per sample, per-centre variance", "standardise": "per-dimension over all sets",
            "bandwidth_fit": f"Adam lr {FIT_LR}, {FIT_STEPS} steps (lr x0.1 at {FIT_STEPS // 2}), log-variance init 0, clamp [-100, 20], "
                             f"on {r.n_fit} train points (split seed {SPLIT_SEED_OFFSET} + {ctx.seed})",
            "method": "Jiralerspong et al. 2023 via dgm-eval"}  # fmt: skip
    f_st = {
        **base,
        "baseline": f"{r.n_base} real train points as centres (held out from fitting)",
        "definition": "100 exp(-2 (NLL_gen - NLL_base) / d)",
    }
    g_st = {
        **base,
        "gap_points": f"{r.n_fit} fitting train points vs {r.n_test} test points (mean likelihood per centre)",
        "definition": "% of sample centres with train likelihood > test likelihood minus the same % for held-out real train centres",
        "unit": "%",
    }
    extra = {"nll_gen": r.nll_gen, "nll_base": r.nll_base, "dim": r.dim, "share_gen": r.share_gen, "share_base": r.share_base}
    return {"fls": MetricValue(r.fls, None, f_st, extra), "fls_gap": MetricValue(r.gap, None, g_st, extra)}
