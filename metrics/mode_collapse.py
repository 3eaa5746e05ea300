"""Mode collapse: modes captured and KL over modes, and class-histogram KL.

2-D mixtures (PacGAN / VEEGAN protocol, 2500 samples by default):

* every sample is assigned its nearest mode centre (Euclidean);
* a sample is *high quality* (HQ) when its distance to that centre is at most
  ``hq_sigmas`` (3) times the mixture's standard deviation;
* ``modes``: number of modes that are the nearest mode of at least one HQ sample;
* ``hq_pct``: 100 x (number of HQ samples) / N;
* ``reverse_kl``: KL(p || q) = sum_m p_m log(p_m / q_m), with p the histogram
  of nearest modes of the HQ samples (normalised over HQ samples) and q the true
  mode weights (uniform 1/M). Terms with p_m = 0 contribute 0 (0 log 0 = 0) and
  q_m > 0, so no epsilon is needed; the value lies in [0, log M]. When no
  sample is high quality the value is log M (the KL of a point mass, the
  worst case) and ``no_hq`` is set.

Stacked digits (1000 modes, 26,000 samples by default): each of the 3
channels is classified by ``digits-cnn``; the mode is 100 a + 10 b + c.

* ``modes``: number of distinct modes among the samples (at least one sample);
* ``kl_uniform``: KL(p || U) = sum_m p_m log(1000 p_m) with 0 log 0 = 0.

Class histogram KL for labelled data: KL(p_data || q_samples) between the
data's class frequencies and the histogram of the classes a classifier
predicts for the samples, with additive smoothing of the sample histogram,
q_c = (n_c + alpha) / (N + alpha C), alpha = 0.5 (so a missing class costs a
finite amount).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats with 0 log 0 = 0; q must be > 0 where p > 0."""
    mask = p > 0
    return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(q[mask]))))


@dataclass
class MixtureModes:
    modes: int  # modes captured
    n_modes: int  # modes of the mixture
    hq_pct: float  # % of samples within hq_sigmas * std of their nearest mode
    reverse_kl: float  # KL(HQ mode histogram || true weights), nats
    n: int
    no_hq: bool
    counts: list[int] = field(default_factory=list)  # HQ samples per mode


def mixture_mode_stats(points, centres, std: float, hq_sigmas: float = 3.0, weights=None) -> MixtureModes:
    """Mode statistics of 2-D ``points`` (N, 2) for a mixture with ``centres`` (M, 2) and component ``std``."""
    x = torch.as_tensor(np.asarray(points, dtype=np.float64) if not isinstance(points, Tensor) else points).double()
    c = torch.as_tensor(np.asarray(centres, dtype=np.float64))
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(f"mode collapse: points {tuple(x.shape)} and centres {tuple(c.shape)} must be (N, D) and (M, D)")
    if len(x) == 0:
        raise ValueError("mode collapse: no samples")
    if not torch.isfinite(x).all():
        raise ValueError("mode collapse: samples contain NaN or inf")
    if not std or std <= 0:
        raise ValueError(f"mode collapse: mixture std must be > 0, got {std}")
    m = len(c)
    q = np.full(m, 1.0 / m) if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    d = torch.cdist(x, c)
    dmin, nearest = d.min(1)
    hq = dmin <= hq_sigmas * std
    counts = np.bincount(nearest[hq].numpy(), minlength=m)
    n_hq = int(hq.sum())
    if n_hq == 0:
        rkl, no_hq = math.log(m), True
    else:
        rkl, no_hq = _kl(counts / n_hq, q), False
    return MixtureModes(int((counts > 0).sum()), m, 100.0 * n_hq / len(x), rkl, len(x), no_hq, counts.tolist())


@dataclass
class StackedModes:
    modes: int  # distinct modes with >= 1 sample
    n_modes: int
    kl_uniform: float  # KL(mode histogram || uniform), nats
    n: int
    counts: np.ndarray = field(repr=False, default=None)


def stacked_modes_from_labels(channel_labels, classes: int = 10) -> StackedModes:
    """Modes of stacked samples from per-channel class labels (N, C) -> mode = sum_c label_c * classes^(C-1-c)."""
    lab = torch.as_tensor(channel_labels).long()
    if lab.ndim != 2:
        raise ValueError(f"stacked modes need (N, channels) labels, got shape {tuple(lab.shape)}")
    if len(lab) == 0:
        raise ValueError("stacked modes: no samples")
    if classes < 1:
        raise ValueError(f"stacked modes: classes must be >= 1, got {classes}")
    if int(lab.min()) < 0 or int(lab.max()) >= classes:
        raise ValueError(f"stacked modes: channel labels must be in 0..{classes - 1}, got range [{int(lab.min())}, {int(lab.max())}]")
    ch = lab.shape[1]
    n_modes = classes**ch
    powers = torch.tensor([classes ** (ch - 1 - i) for i in range(ch)])
    mode = (lab * powers).sum(1).numpy()
    counts = np.bincount(mode, minlength=n_modes)
    p = counts / counts.sum()
    return StackedModes(int((counts > 0).sum()), n_modes, _kl(p, np.full(n_modes, 1.0 / n_modes)), len(lab), counts)


def stacked_mode_stats(channel_logits) -> StackedModes:
    """Modes of stacked samples from per-channel logits (N, C, classes), e.g. ``digits-cnn``'s ``channel_logits``."""
    lg = torch.as_tensor(channel_logits)
    if lg.ndim != 3:
        raise ValueError(f"stacked modes need (N, channels, classes) logits, got shape {tuple(lg.shape)}")
    return stacked_modes_from_labels(lg.argmax(-1), lg.shape[-1])


def class_histogram_kl(data_labels, predicted, num_classes: int, alpha: float = 0.5) -> float:
    """KL(p_data || q_samples) in nats; q is smoothed: (n_c + alpha) / (N + alpha C)."""
    y = np.asarray(torch.as_tensor(data_labels).cpu().numpy()).astype(np.int64).ravel()
    z = np.asarray(torch.as_tensor(predicted).cpu().numpy()).astype(np.int64).ravel()
    if len(y) == 0 or len(z) == 0:
        raise ValueError("class histogram KL: empty labels")
    if y.min() < 0 or y.max() >= num_classes or z.min() < 0 or z.max() >= num_classes:
        raise ValueError(f"class histogram KL: labels outside 0..{num_classes - 1}")
    p = np.bincount(y, minlength=num_classes) / len(y)
    q = (np.bincount(z, minlength=num_classes) + alpha) / (len(z) + alpha * num_classes)
    return _kl(p, q)
