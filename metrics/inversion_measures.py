"""Measures of an inversion: how closely the reconstruction G(latent found) reproduces its input, per image, and
their means with a 95% interval over the images.

Per image (:func:`per_image_measures`), for inputs ``x`` and reconstructions ``rec`` of the same shape (images
float NCHW in [0, 1], data range 1; 2-D data (N, D) get only the MSE):

* ``mse``: mean squared error per pixel ([0, 1] units squared); ``psnr``: ``10 log10(1 / MSE)`` in dB, capped at
  :data:`~metrics.translation.PSNR_MAX` (100 dB; an exact inversion would give +inf); ``ssim``: structural
  similarity (Gaussian window 11, sigma 1.5, reflect padding). All three are :mod:`metrics.translation`'s
  functions, whose SSIM and PSNR match torchmetrics (tested there). SSIM is left out for images with a side of
  5 pixels or fewer (too small for the window).
* ``feature_dist``: Euclidean distance between ``features(x)`` and ``features(rec)`` for a feature callable
  (e.g. an extractor's ``features``: :mod:`metrics.extractors`), in that extractor's units.
* ``class_agree``: 1 where ``classifier(rec)`` and ``classifier(x)`` have the same arg-max class (a classifier
  callable returning logits, e.g. an extractor's ``logits``), else 0; with ``labels`` also ``class_kept``: the
  reconstruction is classified as the input's true label.

:func:`summarize` turns per-image values into a :class:`Summary` (mean, 95% interval: Student's t by default,
or the bootstrap percentile interval of :func:`metrics.uncertainty.bootstrap_mean_interval`); :func:`inversion_measures`
does both for one inversion, adding its seconds per image. This module measures tensors only: it takes an
inversion result by its ``reconstruction`` and ``seconds_per_image`` attributes (``baselines.inversion``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from scipy import stats as _stats
from torch import Tensor

from .translation import PSNR_MAX, mse, psnr, ssim
from .uncertainty import bootstrap_mean_interval

__all__ = ["INTERVALS", "Summary", "inversion_measures", "per_image_measures", "summarize"]

INTERVALS = ("t", "bootstrap")

SSIM_KERNEL = 11  # translation.ssim's default window: images need each side > 5


@dataclass(frozen=True)
class Summary:
    """A mean over images with its interval: ``lo``/``hi`` None when there is none (N < 2, a single timing,
    a non-finite value); ``interval`` describes it; ``n`` images."""

    mean: float
    lo: float | None
    hi: float | None
    n: int
    interval: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_pair(x: Tensor, rec: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(x, Tensor) or not isinstance(rec, Tensor):
        raise TypeError(f"inversion measures: expected two tensors, got {type(x).__name__} and {type(rec).__name__}")
    if x.shape != rec.shape or x.dim() < 2 or len(x) == 0:
        raise ValueError(
            f"inversion measures: inputs and reconstructions must be non-empty batches of the same shape, got {tuple(x.shape)} and {tuple(rec.shape)}"
        )
    x, rec = x.detach().float().cpu(), rec.detach().float().cpu()
    if not (torch.isfinite(x).all() and torch.isfinite(rec).all()):
        raise ValueError("inversion measures: inputs or reconstructions contain NaN/inf values")
    return x, rec


def per_image_measures(
    x: Tensor,
    rec: Tensor,
    *,
    features: Callable[[Tensor], Tensor] | None = None,
    classifier: Callable[[Tensor], Tensor] | None = None,
    labels: Tensor | None = None,
    psnr_max: float = PSNR_MAX,
) -> dict[str, Tensor]:
    """Per-image measures (each (N,), float64) of reconstructions ``rec`` against inputs ``x``; see the module
    docstring for the names and units. ``features``/``classifier`` receive the [0, 1] images as given."""
    x, rec = _check_pair(x, rec)
    out: dict[str, Tensor] = {}
    if x.dim() == 4:
        out["mse"] = mse(rec, x)
        out["psnr"] = psnr(rec, x).clamp(max=psnr_max)
        if min(x.shape[-2:]) > SSIM_KERNEL // 2:
            out["ssim"] = ssim(rec, x, kernel_size=SSIM_KERNEL)
    else:
        out["mse"] = ((rec.double() - x.double()) ** 2).flatten(1).mean(1)
    if features is not None:
        fx, fr = features(x).double().cpu(), features(rec).double().cpu()
        if fx.shape != fr.shape or len(fx) != len(x):
            raise ValueError(f"inversion measures: features gave shapes {tuple(fx.shape)} and {tuple(fr.shape)} for {len(x)} images")
        out["feature_dist"] = (fx - fr).flatten(1).norm(dim=1)
    if classifier is not None:
        px, pr = classifier(x).argmax(1).cpu(), classifier(rec).argmax(1).cpu()
        out["class_agree"] = (px == pr).double()
        if labels is not None:
            lab = torch.as_tensor(labels).long().reshape(-1).cpu()
            if len(lab) != len(x):
                raise ValueError(f"inversion measures: {len(lab)} labels for {len(x)} images")
            out["class_kept"] = (pr == lab).double()
    elif labels is not None:
        raise ValueError("inversion measures: labels need a classifier")
    return out


def summarize(values: Tensor, *, interval: str = "t", level: float = 0.95, b: int = 1000, seed: int = 0) -> Summary:
    """Mean of per-image ``values`` with its ``level`` interval over images: ``"t"`` (mean +- t_{N-1} s / sqrt(N))
    or ``"bootstrap"`` (percentile interval of the mean over ``b`` resamples, seeded). No interval for N < 2 or
    non-finite values."""
    if interval not in INTERVALS:
        raise ValueError(f"summarize: interval must be one of {INTERVALS}, got {interval!r}")
    v = torch.as_tensor(values).double().reshape(-1).cpu()
    if len(v) == 0:
        raise ValueError("summarize: no values")
    m = float(v.mean())
    if len(v) < 2 or not torch.isfinite(v).all():
        return Summary(m, None, None, len(v), "")
    if interval == "t":
        half = float(_stats.t.ppf(0.5 + level / 2, len(v) - 1)) * float(v.std(unbiased=True)) / math.sqrt(len(v))
        return Summary(m, m - half, m + half, len(v), f"{level:.0%} t interval over images")
    lo, hi = bootstrap_mean_interval(v.numpy(), b=b, seed=seed, level=level)
    return Summary(m, lo, hi, len(v), f"{level:.0%} bootstrap percentile interval over images (b={b})")


def inversion_measures(
    x: Tensor,
    result: Any,
    *,
    features: Callable[[Tensor], Tensor] | None = None,
    classifier: Callable[[Tensor], Tensor] | None = None,
    labels: Tensor | None = None,
    interval: str = "t",
) -> dict[str, Summary]:
    """Every measure of one inversion of inputs ``x``: the per-image measures of ``result.reconstruction``
    summarized with ``interval``, plus ``seconds_per_image`` (``result.seconds_per_image``, one timing of the
    whole batch: no interval)."""
    per = per_image_measures(x, result.reconstruction, features=features, classifier=classifier, labels=labels)
    out = {name: summarize(v, interval=interval) for name, v in per.items()}
    out["seconds_per_image"] = Summary(float(result.seconds_per_image), None, None, len(x), "one timing of the batch")
    return out
