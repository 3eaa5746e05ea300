"""Vendi score (Friedman & Dieng 2023): the effective number of distinct samples.

With a positive semi-definite similarity kernel K (K_ii = 1) on n samples, the
Vendi score of order q = 1 is ``exp(-sum_i l_i log l_i)`` where l_i are the
eigenvalues of K / n (they sum to 1). It is 1 when all samples are identical
and n when they are mutually orthogonal. Kernel here: cosine similarity of the
extractor features (rows L2-normalised, K = X X^T), as in dgm-eval's default;
the eigenvalues are computed from the D x D matrix X^T X / n, which has the same
non-zero spectrum (cheaper when D < n). Unit: "effective number of samples"
(1..n). Higher means more diverse; it says nothing about fidelity (noise raises it).

Per class: the score of the samples of each class (classes from the extractor's
classifier argmax for generated samples), averaged over classes with >= 2 samples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._validate import features64
from .context import EvalContext
from .registry import MetricValue, Output, register_metric

__all__ = ["vendi_score", "vendi_per_class"]


def _entropy_q(p: Tensor, q: float) -> float:
    p = p[p > 0]
    if q == 1:
        return float(-(p * p.log()).sum())
    if math.isinf(q):
        return float(-p.max().log())
    return float(torch.log((p**q).sum()) / (1 - q))


def vendi_score(features, q: float = 1.0) -> float:
    """Vendi score of order ``q`` of (N, D) features with the cosine kernel (float64 inside).

    Returns a number in [1, N] ("effective number of samples"). Rows with zero
    norm are rejected (their cosine similarity is undefined).
    """
    x = features64("vendi", "sample", features, min_n=1)
    if q < 0:
        raise ValueError(f"vendi: order q must be >= 0, got {q}")
    norms = x.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError(f"vendi: {int((norms == 0).sum())} feature vectors have zero norm (cosine kernel undefined)")
    x = x / norms
    n, d = x.shape
    gram = (x.T @ x) / n if d < n else (x @ x.T) / n
    eig = torch.linalg.eigvalsh(gram).clamp_min(0)
    eig = eig / eig.sum()  # trace is exactly 1 up to rounding
    return float(math.exp(_entropy_q(eig, q)))


def vendi_per_class(features, labels, min_per_class: int = 2) -> dict[int, float]:
    """Vendi score of the samples of each class (classes with >= ``min_per_class`` samples)."""
    x = features64("vendi", "sample", features, min_n=1)
    lab = torch.as_tensor(labels).long().reshape(-1)
    if len(lab) != len(x):
        raise ValueError(f"vendi: {len(lab)} labels for {len(x)} samples")
    return {int(c): vendi_score(x[lab == c]) for c in lab.unique().tolist() if int((lab == c).sum()) >= min_per_class}


def _class_logits(ctx: EvalContext) -> bool:
    ext = ctx.extractor
    if ctx.data_info.kind != "image" or not getattr(ext, "has_logits", False):
        return False
    return ext.classifier_classes(tuple(ctx.data_info.shape)) > 0


@register_metric(
    "vendi",
    [Output("vendi", "Vendi", "max", per_extractor=True), Output("vendi_class", "Vendi/class", "max", per_extractor=True)],
    description="Vendi score (Friedman & Dieng 2023), cosine kernel on extractor features; also mean per-class score",
)
def vendi_metric(ctx: EvalContext) -> dict[str, MetricValue]:
    """Vendi score of the samples (and per predicted class), cosine kernel, q = 1 (metrics/vendi.py)."""
    f = ctx.features("fake")
    base = {**ctx.extractor.settings(), "n_fake": int(len(f)), "kernel": "cosine (L2-normalised features, linear)", "q": 1,
            "unit": "effective number of samples", "method": "Friedman & Dieng 2023"}  # fmt: skip
    ref = vendi_score(ctx.features("real"))
    out = {"vendi": MetricValue(vendi_score(f), None, base, {"vendi_reference": ref, "n_reference": int(ctx.n_real)})}
    if _class_logits(ctx):
        per = vendi_per_class(f, ctx.logits("fake").argmax(1))
        if per:
            v = sum(per.values()) / len(per)
            st = {
                **base,
                "classes": "extractor classifier argmax",
                "classes_scored": len(per),
                "average": "mean over classes with >= 2 samples",
            }
            out["vendi_class"] = MetricValue(v, None, st, {"per_class": per})
    return out
