"""The built-in metric panel: wires the metric functions to an EvalContext.

One entry per metric; the math lives in the modules named in each function.
"""

from __future__ import annotations

import math
import warnings

import torch

from .context import EvalContext
from .fid import SampleSizeWarning, fid_from_features
from .latency import measure_latency
from .likelihood import likelihood_summary
from .registry import MetricValue, Output, register_metric


def _has_likelihood(ctx: EvalContext) -> bool:
    g = ctx.generator
    return g is not None and (callable(getattr(g, "log_prob", None)) or callable(getattr(g, "elbo", None)))


@register_metric("fid", [Output("fid", "FID", "min", per_extractor=True)])
def fid(ctx: EvalContext) -> dict[str, MetricValue]:
    """Fréchet distance of extractor features, fake vs the test split (metrics/fid.py)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SampleSizeWarning)
        res = fid_from_features(ctx.features("real"), ctx.features("fake"))
    settings = {**ctx.extractor.settings(), "n_real": res.n1, "n_fake": res.n2, "reference": ctx.setting("reference", "train") + " split"}
    extra = {"max_imag": res.max_imag, "min_eig": res.min_eig, "n_below_dim": res.n_below_dim}
    if caught:
        extra["warning"] = str(caught[0].message)
    return {"fid": MetricValue(res.value, None, settings, extra)}


@register_metric("nll", [Output("nll", "NLL", "min")], applies=lambda ctx: _has_likelihood(ctx) and ctx.test is not None)
def nll(ctx: EvalContext) -> dict[str, MetricValue]:
    """Test-split NLL: nats/point for 2-D data, bits/dim for images (metrics/likelihood.py)."""
    info = ctx.data_info
    res = likelihood_summary(ctx.generator, ctx.test, is_image=info.kind == "image", dim=info.dim)
    se = res["se"]
    interval = (res["value"] - 1.96 * se, res["value"] + 1.96 * se) if math.isfinite(se) else None
    settings = {"unit": res["unit"], "kind": res["kind"], "n": int(len(ctx.test)), "split": "test"}
    return {"nll": MetricValue(res["value"], interval, settings)}


def _latency(ctx: EvalContext, bs: int) -> MetricValue:
    g = ctx.generator
    gen = torch.Generator().manual_seed(ctx.seed)
    warmup = int(ctx.setting("latency_warmup", 1))
    lat = measure_latency(
        lambda: g.sample(bs, steps=ctx.steps, generator=gen),
        batch_size=bs,
        warmup=warmup,
        repeats=int(ctx.setting("latency_repeats", 5)),
        device=ctx.device,
        max_seconds=ctx.setting("latency_max_seconds", 10.0),
    )
    iqr = (lat.per_sample_ms - lat.per_sample_iqr_ms / 2, lat.per_sample_ms + lat.per_sample_iqr_ms / 2)
    settings = {"batch_size": bs, "repeats": lat.repeats, "warmup": warmup, "device": str(ctx.device), "steps": ctx.steps, "statistic": "median, IQR"}
    return MetricValue(lat.per_sample_ms, iqr, settings, {"iqr_ms": lat.per_sample_iqr_ms, "median_batch_s": lat.median_s})


@register_metric("latency", [Output("latency_ms", "ms/sample", "min")], applies=lambda ctx: ctx.generator is not None)
def latency(ctx: EvalContext) -> dict[str, MetricValue]:
    """Sampling wall time per sample at batch ``latency_batch`` (default 64), median (IQR) after warm-up (metrics/latency.py)."""
    return {"latency_ms": _latency(ctx, int(ctx.setting("latency_batch", 64)))}


@register_metric("latency_b1", [Output("latency_b1_ms", "ms/sample@b1", "min")], applies=lambda ctx: ctx.generator is not None)
def latency_b1(ctx: EvalContext) -> dict[str, MetricValue]:
    """Sampling wall time per sample at batch 1, median (IQR) after warm-up (metrics/latency.py)."""
    return {"latency_b1_ms": _latency(ctx, 1)}
