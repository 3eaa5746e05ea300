"""Image-to-image translation metrics.

Functions on tensors (images float32 NCHW in [0, 1], data range 1):

* :func:`l1_error`, :func:`mse`, :func:`psnr` (dB, ``10 log10(1 / MSE)``
  per image; identical images give +inf), :func:`ssim` (Wang et al. 2004:
  Gaussian window 11, sigma 1.5, K1 = 0.01, K2 = 0.03, reflect padding so the
  SSIM map keeps the image size, then averaged per image - the computation of
  torchmetrics' ``structural_similarity_index_measure``, validated against it
  in the tests);
* :func:`class_preservation`: the fraction of outputs a classifier assigns
  the *source's* label (the analogue of pix2pix's FCN score);
* :func:`pairwise_diversity`: mean L1 distance between the outputs of the
  same input under different seeds.

Registered metrics (EvalContext with ``source``/``truth``/``source_labels``,
filled by the pipeline for translation tasks):

* ``paired``: ``l1``, ``mse``, ``psnr`` (each image's value capped at
  :data:`PSNR_MAX` = 100 dB, so the ground-truth row is a number, not
  +inf), ``ssim`` of each output against its true target (paired tasks, and unpaired embedded tasks that know the
  mapping); per-image values averaged, 95% interval mean +- 1.96 s.e.;
* ``class_pres``: class preservation with the data set's classifier extractor;
* ``cycle``: cycle-consistency error ``mean |F(G(a)) - a|`` (models that are
  :class:`~genbench.protocol.CycleConsistent`);
* ``diversity``: output diversity for fixed inputs across seeds.

FID/KID/PRDC of outputs against the target domain are the panel's metrics:
the pipeline passes the outputs as ``fake`` and the target domain's train
split as ``real``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from genbench.protocol import CycleConsistent, ImageConditioned

from .context import EvalContext
from .registry import MetricValue, Output, register_metric

__all__ = ["l1_error", "mse", "psnr", "ssim", "class_preservation", "pairwise_diversity", "mean_interval"]


def _pair(x: Tensor, y: Tensor, who: str) -> tuple[Tensor, Tensor]:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"{who}: expected two tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"{who}: expected two image batches (N, C, H, W) of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    return x.double(), y.double()


def l1_error(x: Tensor, y: Tensor) -> Tensor:
    """Per-image mean absolute error (N,), float64, in the images' units ([0, 1] scale)."""
    x, y = _pair(x, y, "l1_error")
    return (x - y).abs().flatten(1).mean(1)


def mse(x: Tensor, y: Tensor) -> Tensor:
    """Per-image mean squared error (N,), float64 ([0, 1] scale)."""
    x, y = _pair(x, y, "mse")
    return ((x - y) ** 2).flatten(1).mean(1)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)`` (N,); +inf where the images are identical."""
    m = mse(x, y)
    with torch.no_grad():
        return torch.where(m > 0, 10 * torch.log10(data_range**2 / m.clamp_min(1e-300)), torch.full_like(m, math.inf))


def _gaussian_window(size: int, sigma: float) -> Tensor:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: Tensor, y: Tensor, *, data_range: float = 1.0, kernel_size: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Per-image structural similarity (N,), float64, in [-1, 1] (1 for identical images).

    Local means, variances and covariance under a separable Gaussian window
    (``kernel_size``, ``sigma``) on reflect-padded images, the SSIM map
    ``((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``
    with ``C_i = (k_i * data_range)^2``, averaged over channels and pixels.
    Images need each side > ``kernel_size // 2`` (8x8 works with the default 11).
    """
    x, y = _pair(x, y, "ssim")
    if kernel_size % 2 == 0 or kernel_size < 1:
        raise ValueError(f"ssim: kernel_size must be odd and positive, got {kernel_size}")
    pad = kernel_size // 2
    if min(x.shape[-2:]) <= pad:
        raise ValueError(f"ssim: images of {x.shape[-2]}x{x.shape[-1]} are too small for an {kernel_size}x{kernel_size} window (need each side > {pad})")
    c = x.shape[1]
    g = _gaussian_window(kernel_size, sigma)
    kh = g.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = g.view(1, 1, 1, -1).expand(c, 1, 1, -1)

    def blur(t: Tensor) -> Tensor:
        t = F.pad(t, (pad, pad, pad, pad), mode="reflect")
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return smap.flatten(1).mean(1)


def class_preservation(logits: Tensor, source_labels: Tensor) -> Tensor:
    """Per-output indicator (N,), float64: the classifier's arg-max class equals the source's label."""
    lab = torch.as_tensor(source_labels).long().reshape(-1).cpu()
    if logits.ndim != 2 or len(logits) != len(lab):
        raise ValueError(f"class_preservation: {len(lab)} source labels for logits of shape {tuple(logits.shape)}")
    return (logits.argmax(1).cpu() == lab).double()


def pairwise_diversity(outputs: Tensor) -> Tensor:
    """Per-input diversity (N,), float64: mean L1 distance (per pixel) over the pairs of ``outputs`` (S, N, C, H, W), S >= 2 seeds."""
    if outputs.ndim != 5 or outputs.shape[0] < 2:
        raise ValueError(f"pairwise_diversity: expected (seeds >= 2, N, C, H, W), got {tuple(outputs.shape)}")
    o = outputs.double().flatten(2)
    s = o.shape[0]
    d = [(o[i] - o[j]).abs().mean(1) for i in range(s) for j in range(i + 1, s)]
    return torch.stack(d).mean(0)


def mean_interval(v: Tensor) -> tuple[float, tuple[float, float] | None]:
    """Mean and its 95% interval (mean +- 1.96 s.e.) of per-image values; no interval when a value is infinite or N < 2."""
    v = v.double()
    m = float(v.mean())
    if len(v) < 2 or not torch.isfinite(v).all():
        return m, None
    half = 1.96 * float(v.std(unbiased=True)) / math.sqrt(len(v))
    return m, (m - half, m + half)


PSNR_MAX = 100.0
"""The registered ``psnr`` output caps each image's PSNR here (identical images: +inf; 8-bit images reach at most ~48 dB otherwise)."""

_CI = {"interval": "95% (mean +- 1.96 s.e. over images)"}


def _value(v: Tensor, settings: dict, unit: str | None = None) -> MetricValue:
    m, ci = mean_interval(v)
    return MetricValue(m, ci, {**settings, **(_CI if ci is not None else {})}, unit=unit)


# ------------------------------------------------------------------------------------------- registered metrics
@register_metric(
    "paired",
    [
        Output("l1", "L1", "min"),
        Output("mse", "MSE", "min"),
        Output("psnr", "PSNR", "max", unit="dB"),
        Output("ssim", "SSIM", "max"),
    ],
    applies=lambda ctx: ctx.truth is not None,
)
def paired(ctx: EvalContext) -> dict[str, MetricValue]:
    """Per-pixel L1, MSE, PSNR (dB) and SSIM of each output against its true target ([0, 1] images, data range 1)."""
    truth = ctx.truth[: ctx.n_fake]
    if len(truth) != ctx.n_fake:
        raise ValueError(f"paired: {ctx.n_fake} outputs but only {len(ctx.truth)} true targets")
    k = int(ctx.setting("ssim_kernel", 11))
    cap = float(ctx.setting("psnr_max", PSNR_MAX))
    st = {"n_fake": ctx.n_fake, "data_range": 1.0, "against": "true target"}
    p = psnr(ctx.fake, truth).clamp(max=cap)  # identical images (+inf) at the stated ceiling, so the mean stays a number
    return {
        "l1": _value(l1_error(ctx.fake, truth), st),
        "mse": _value(mse(ctx.fake, truth), st),
        "psnr": _value(p, {**st, "psnr": f"per image, capped at {cap:g} dB, then averaged", "n_at_cap": int((p >= cap).sum())}, unit="dB"),
        "ssim": _value(ssim(ctx.fake, truth, kernel_size=k), {**st, "window": f"gaussian {k}, sigma 1.5", "padding": "reflect"}),
    }


def _has_classifier(ctx: EvalContext) -> bool:
    n = ctx.extractor.classifier_classes(tuple(ctx.data_info.shape)) if ctx.extractor is not None else 0
    return ctx.source_labels is not None and n > 0 and n == ctx.data_info.num_classes


@register_metric("class_pres", [Output("class_pres", "class pres.", "max", per_extractor=True)], applies=_has_classifier)
def class_pres(ctx: EvalContext) -> dict[str, MetricValue]:
    """Fraction of outputs the data set's classifier assigns the source's class (pix2pix's FCN-score analogue)."""
    hit = class_preservation(ctx.logits("fake"), ctx.source_labels[: ctx.n_fake])
    st = {**ctx.extractor.settings(), "n_fake": ctx.n_fake, "classifier_test_accuracy": getattr(ctx.extractor, "test_accuracy", None)}
    return {"class_pres": _value(hit, st)}


@register_metric(
    "cycle", [Output("cycle_l1", "cycle L1", "min")], applies=lambda ctx: ctx.source is not None and isinstance(ctx.generator, CycleConsistent)
)
def cycle(ctx: EvalContext) -> dict[str, MetricValue]:
    """Cycle-consistency error: mean |F(G(a)) - a| per pixel over the test sources ([0, 1] scale)."""
    src = ctx.source[: ctx.n_fake]
    back = ctx.generator.translate_back(ctx.fake, generator=torch.Generator().manual_seed(ctx.seed))
    if tuple(back.shape) != tuple(src.shape):
        raise ValueError(f"cycle: translate_back returned shape {tuple(back.shape)}, expected the sources' {tuple(src.shape)}")
    return {"cycle_l1": _value(l1_error(back.float().cpu(), src.float().cpu()), {"n_fake": ctx.n_fake})}


@register_metric(
    "diversity",
    [Output("diversity", "diversity", None)],
    applies=lambda ctx: ctx.source is not None and isinstance(ctx.generator, ImageConditioned),
)
def diversity(ctx: EvalContext) -> dict[str, MetricValue]:
    """Output diversity for fixed inputs: mean pairwise per-pixel L1 between translations of the same source under different seeds."""
    n = min(int(ctx.setting("diversity_n", 100)), len(ctx.source))
    s = int(ctx.setting("diversity_seeds", 5))
    if s < 2:
        raise ValueError(f"diversity: diversity_seeds must be >= 2, got {s}")
    src = ctx.source[:n]
    with torch.no_grad():
        outs = torch.stack([ctx.generator.translate(src, generator=torch.Generator().manual_seed(1000 * ctx.seed + k)).float().cpu() for k in range(s)])
    return {"diversity": _value(pairwise_diversity(outs), {"n_inputs": n, "seeds": s, "distance": "per-pixel L1, mean over seed pairs"})}
