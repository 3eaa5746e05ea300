"""CMMD (Jayasumana et al. 2024): MMD between CLIP image embeddings.

Gaussian RBF kernel k(x, y) = exp(-||x - y||^2 / (2 sigma^2)) with sigma = 10
on L2-normalised CLIP image embeddings, the unbiased (minimum-variance
U-statistic) estimator of MMD^2

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (n (n - 1)) - 2 sum_{i,j} k(x_i, y_j) / (m n)

reported x 1000 (the paper's scale). Dimensionless; lower is better; it can be
slightly negative for sets from one distribution (unbiased). The biased
V-statistic that the paper's reference code computes (diagonals included) is
kept in ``extra["cmmd_biased"]``.

CLIP model: the embedded ``digits-clip`` (metrics/clip.py, 1x8x8 digits) by
default, or any open_clip model from a local checkpoint through the settings
``cmmd_clip_model`` / ``cmmd_clip_pretrained`` (falling back to
``clip_model`` / ``clip_pretrained``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._validate import EXACT, features64, same_dim
from .clip import ClipModel, load_clip
from .context import EvalContext
from .registry import MetricValue, Output, register_metric

__all__ = ["SIGMA", "SCALE", "rbf_mmd2", "cmmd"]

SIGMA = 10.0
SCALE = 1000.0


def _kernel_sum(a: Tensor, b: Tensor, sigma: float, same: bool) -> tuple[float, float]:
    """(sum over all pairs, sum over the diagonal) of the RBF kernel between rows of a and b."""
    k = torch.exp(-torch.cdist(a, b, compute_mode=EXACT).pow(2) / (2 * sigma**2))
    return float(k.sum()), float(k.diagonal().sum()) if same else 0.0


def rbf_mmd2(x, y, sigma: float = SIGMA, unbiased: bool = True) -> float:
    """MMD^2 between (m, D) and (n, D) embeddings with the Gaussian RBF kernel of bandwidth ``sigma`` (float64, not scaled)."""
    a = features64("cmmd", "first", x, min_n=2)
    b = features64("cmmd", "second", y, min_n=2)
    same_dim("cmmd", first=a, second=b)
    if sigma <= 0:
        raise ValueError(f"cmmd: sigma must be > 0, got {sigma}")
    m, n = len(a), len(b)
    sxx, dxx = _kernel_sum(a, a, sigma, True)
    syy, dyy = _kernel_sum(b, b, sigma, True)
    sxy, _ = _kernel_sum(a, b, sigma, False)
    if unbiased:
        return (sxx - dxx) / (m * (m - 1)) + (syy - dyy) / (n * (n - 1)) - 2 * sxy / (m * n)
    return sxx / m**2 + syy / n**2 - 2 * sxy / (m * n)


def cmmd(real_emb, fake_emb, sigma: float = SIGMA, scale: float = SCALE) -> float:
    """CMMD = ``scale`` x unbiased RBF MMD^2 of two CLIP embedding sets."""
    return scale * rbf_mmd2(real_emb, fake_emb, sigma, unbiased=True)


def _clip_args(ctx: EvalContext) -> tuple[str, str | None]:
    model = ctx.setting("cmmd_clip_model", ctx.setting("clip_model", "digits-clip"))
    pre = ctx.setting("cmmd_clip_pretrained", ctx.setting("clip_pretrained", None))
    return model, pre


def _applies(ctx: EvalContext) -> bool:
    if getattr(ctx.data_info, "kind", None) != "image":
        return False
    model, _ = _clip_args(ctx)
    return model != "digits-clip" or tuple(ctx.data_info.shape) == (1, 8, 8)


def _embed(ctx: EvalContext, clip: ClipModel, which: str) -> Tensor:
    x = ctx.fake if which == "fake" else ctx.real
    return ctx.feature_cache(which, f"clip-image:{clip.name}:{clip.weights_hash}", lambda: clip.encode_images(x))


@register_metric(
    "cmmd",
    [Output("cmmd", "CMMD", "zero")],
    applies=_applies,
    description="CMMD (Jayasumana et al. 2024): unbiased RBF MMD^2 (sigma 10, x1000) between CLIP image embeddings of samples and reference",
)
def cmmd_metric(ctx: EvalContext) -> dict[str, MetricValue]:
    """CMMD on CLIP image embeddings, sample vs reference split (metrics/cmmd.py)."""
    model, pre = _clip_args(ctx)
    clip = load_clip(model, pre, device=None if model == "digits-clip" else ctx.device)
    real, fake = _embed(ctx, clip, "real"), _embed(ctx, clip, "fake")
    v = cmmd(real, fake)
    settings = {**clip.settings(), "n_real": int(len(real)), "n_fake": int(len(fake)), "reference": ctx.setting("reference", "train") + " split",
                "kernel": f"Gaussian RBF exp(-||x-y||^2 / (2 sigma^2)), sigma = {SIGMA:g}", "scale": SCALE, "estimator": "unbiased MMD^2 (U-statistic)",
                "embedding": "L2-normalised CLIP image embedding", "method": "Jayasumana et al. 2024"}  # fmt: skip
    extra = {"cmmd_biased": SCALE * rbf_mmd2(real, fake, SIGMA, unbiased=False)}
    return {"cmmd": MetricValue(v, None, settings, extra)}
