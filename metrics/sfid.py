"""sFID (Nash et al. 2021): FID on spatial features of an early layer of the extractor.

Nash et al. take the first 7 channels of Inception's ``mixed_6/conv`` feature
map (7 x 17 x 17 = 2023-D), which keeps spatial layout that the pooled
penultimate features discard. Here the same idea on the extractor's network: a
forward hook reads the output of an early layer, keeps its first ``channels``
channels and flattens them (channel, row, column order); the Fréchet distance
of those vectors between samples and reference is the sFID (float64
statistics, metrics/fid.py). Lower is better; same unit as FID.

The layer of each extractor: the extractor's ``spatial_layer`` attribute
``(module path, channels)`` if it has one, else :data:`SPATIAL_LAYERS`. For
``digits-cnn`` it is ``body.4``, the output of the first conv block (two 3x3
convs + max-pool: 64 x 4 x 4), first 8 channels -> 128-D (the size of its
penultimate features, so N vs D is the same as for FID). Images with C > 1
channels (stacked digits) are embedded channel by channel and concatenated,
as the extractor does.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from .context import EvalContext
from .fid import SampleSizeWarning, fid_from_features
from .registry import MetricValue, Output, register_metric

__all__ = ["SPATIAL_LAYERS", "spatial_layer_of", "spatial_features", "sfid_from_features"]

SPATIAL_LAYERS: dict[str, tuple[str, int]] = {"digits-cnn": ("body.4", 8)}
"""Extractor name -> (module path inside its ``net``, channels kept)."""


def spatial_layer_of(extractor) -> tuple[str, int] | None:
    """(layer, channels) for an extractor, or None when it has no known spatial layer."""
    own = getattr(extractor, "spatial_layer", None)
    if own is not None:
        return tuple(own)
    if getattr(extractor, "net", None) is None:
        return None
    return SPATIAL_LAYERS.get(getattr(extractor, "name", ""))


def spatial_features(net: nn.Module, x: Tensor, layer: str, channels: int, batch_size: int = 1024) -> Tensor:
    """Flattened first ``channels`` channels of ``layer``'s output for 1-channel-at-a-time inputs ``x`` (N, C, H, W).

    Each input channel goes through ``net`` as its own 1-channel image; the
    per-channel vectors are concatenated: (N, C * channels * h * w), float32.
    """
    modules = dict(net.named_modules())
    if layer not in modules:
        raise ValueError(f"sfid: the extractor network has no layer {layer!r}; layers: {', '.join(k for k in modules if k)}")
    if x.ndim != 4:
        raise ValueError(f"sfid: expects images (N, C, H, W), got shape {tuple(x.shape)}")
    grabbed: list[Tensor] = []

    def hook(_module, _inp, out):
        if out.ndim != 4 or out.shape[1] < channels:
            raise ValueError(f"sfid: layer {layer!r} output has shape {tuple(out.shape)}; need (B, >= {channels}, h, w)")
        grabbed.append(out[:, :channels].flatten(1))

    n, c = x.shape[:2]
    handle = modules[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            for i in range(0, n, batch_size):
                xb = x[i : i + batch_size]
                net(xb.reshape(len(xb) * c, 1, *x.shape[2:]).float())
    finally:
        handle.remove()
    f = torch.cat(grabbed) if grabbed else torch.zeros(0)
    return f.reshape(n, -1)


def sfid_from_features(real: Tensor, fake: Tensor):
    """Fréchet distance of spatial features (the :class:`metrics.fid.FIDResult` of :func:`fid_from_features`)."""
    return fid_from_features(real, fake)


def _applies(ctx: EvalContext) -> bool:
    return getattr(ctx.data_info, "kind", None) == "image" and spatial_layer_of(ctx.extractor) is not None


def _spatial(ctx: EvalContext, which: str, layer: str, channels: int) -> Tensor:
    x = ctx.fake if which == "fake" else ctx.real
    ext = ctx.extractor

    def compute() -> Tensor:
        xc = ext._check(x) if hasattr(ext, "_check") else x
        return spatial_features(ext.net, xc, layer, channels)

    return ctx.feature_cache(which, f"spatial:{layer}:{channels}", compute)


@register_metric(
    "sfid",
    [Output("sfid", "sFID", "min", per_extractor=True)],
    applies=_applies,
    description="sFID (Nash et al. 2021): Fréchet distance of an early conv layer's spatial features (first channels, flattened)",
)
def sfid_metric(ctx: EvalContext) -> dict[str, MetricValue]:
    """Fréchet distance of spatial features, fake vs the reference split (metrics/sfid.py)."""
    layer, channels = spatial_layer_of(ctx.extractor)
    real, fake = _spatial(ctx, "real", layer, channels), _spatial(ctx, "fake", layer, channels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SampleSizeWarning)
        r = sfid_from_features(real, fake)
    settings = {**ctx.extractor.settings(), "n_real": r.n1, "n_fake": r.n2, "reference": ctx.setting("reference", "train") + " split",
                "layer": layer, "channels": channels, "dim": int(real.shape[1]), "method": "Nash et al. 2021 (first channels of an early layer)"}  # fmt: skip
    extra = {"max_imag": r.max_imag, "min_eig": r.min_eig}
    if caught:
        extra["warning"] = str(caught[0].message)
    return {"sfid": MetricValue(r.value, None, settings, extra)}
