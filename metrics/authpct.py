"""AuthPct: the percentage of authentic samples (Alaa et al. 2022), as dgm-eval computes it.

For each generated sample g: let t be its nearest training sample (Euclidean,
in feature space) at distance d1 = ||g - t||, and d2 the distance from t to its
own nearest *other* training sample. g is authentic when d2 < d1 (strictly):
it is farther from t than t's nearest neighbour in the training data is, so g
is not a near-copy of t. AuthPct = 100 x (authentic fraction), in percent
[0, 100]; higher is better. An exact copy of a training sample (d1 = 0) is never
authentic. This is dgm-eval's rule (a simplification of the paper's
hypothesis-test classifier): no embedding network, no threshold.
"""

from __future__ import annotations

import torch

from ._validate import EXACT, features64, same_dim
from .context import EvalContext
from .registry import MetricValue, Output, register_metric

__all__ = ["authenticity"]


def _nn(a: torch.Tensor, b: torch.Tensor, exclude_self: bool = False, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest neighbour in ``b`` of each row of ``a``: (distances, indices), float64."""
    ds, ix = [], []
    for i in range(0, len(a), chunk):
        d = torch.cdist(a[i : i + chunk], b, compute_mode=EXACT)
        if exclude_self:
            rows = torch.arange(i, min(i + chunk, len(a)))
            d[rows - i, rows] = float("inf")
        m = d.min(dim=1)
        ds.append(m.values)
        ix.append(m.indices)
    return torch.cat(ds), torch.cat(ix)


def authenticity(train, fake) -> tuple[float, torch.Tensor]:
    """(AuthPct in percent, per-sample boolean "authentic") of ``fake`` against ``train`` (N, D) features."""
    t = features64("authpct", "train", train, min_n=2)
    f = features64("authpct", "sample", fake, min_n=1)
    same_dim("authpct", train=t, sample=f)
    d_train, _ = _nn(t, t, exclude_self=True)
    d1, idx = _nn(f, t)
    auth = d_train[idx] < d1
    return 100.0 * float(auth.double().mean()), auth


def _train_source(ctx: EvalContext) -> str | None:
    if ctx.train is None:
        return None
    return "real" if ctx.real is ctx.train else "train"


@register_metric(
    "authpct",
    [Output("authpct", "AuthPct", "max", per_extractor=True, unit="%")],
    applies=lambda ctx: _train_source(ctx) is not None,
    description="Authenticity % (Alaa et al. 2022, dgm-eval's rule): samples farther from their nearest train point than it is from its own",
)
def authpct_metric(ctx: EvalContext) -> dict[str, MetricValue]:
    """AuthPct against the train split (metrics/authpct.py)."""
    train, fake = ctx.features(_train_source(ctx)), ctx.features("fake")
    v, auth = authenticity(train, fake)
    settings = {**ctx.extractor.settings(), "n_fake": int(len(fake)), "n_train": int(len(train)), "n_real": int(len(train)),
                "rule": "authentic iff d(t, NN_train\\{t}(t)) < d(g, t), t = NN_train(g); Euclidean", "method": "Alaa et al. 2022 via dgm-eval",
                "unit": "%"}  # fmt: skip
    return {"authpct": MetricValue(v, None, settings)}
