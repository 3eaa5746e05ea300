"""Fréchet distance (FID) between Gaussian fits of two feature sets.

    FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

Statistics are float64 with the unbiased covariance (divides by N - 1), as in
torch-fidelity. The trace term is computed from eigenvalues: the eigenvalues
of S1 S2 equal those of the symmetric PSD matrix S1^(1/2) S2 S1^(1/2), so
tr((S1 S2)^(1/2)) = sum sqrt(eigvalsh(S1^(1/2) S2 S1^(1/2))) with no complex
arithmetic. Diagnostics report what usually goes wrong: an imaginary part in
the eigenvalues of S1 S2, a negative smallest eigenvalue (rank deficiency),
and fewer samples than feature dimensions.

FID is biased by sample size: compare values only at equal N.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch


class SampleSizeWarning(UserWarning):
    """N is smaller than the feature dimension: the covariance is singular."""


@dataclass
class FIDResult:
    value: float
    n1: int
    n2: int
    dim: int
    max_imag: float  # largest |imag| of eig(S1 S2) relative to the largest |eig|
    min_eig: float  # smallest eigenvalue of S1^(1/2) S2 S1^(1/2) before clipping
    n_below_dim: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _as_np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean, unbiased covariance) of an (N, D) feature array, float64."""
    f = _as_np(features)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {f.shape}")
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or inf")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance_diagnostics(mu1, sigma1, mu2, sigma2, n1: int = 0, n2: int = 0) -> FIDResult:
    """Fréchet distance with diagnostics. n1/n2 (sample sizes) only feed the warnings."""
    mu1, mu2, s1, s2 = _as_np(mu1), _as_np(mu2), _as_np(sigma1), _as_np(sigma2)
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"means must be 1-D with equal shapes, got {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"covariances must be ({d}, {d}), got {s1.shape} and {s2.shape}")
    r = _sqrt_psd(s1)
    m = r @ s2 @ r
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)
    prod_eig = np.linalg.eigvals(s1 @ s2)
    scale = max(float(np.abs(prod_eig).max()), 1e-300)
    max_imag = float(np.abs(prod_eig.imag).max() / scale)
    below = bool(n1 and n1 < d) or bool(n2 and n2 < d)
    if below:
        warnings.warn(
            f"FID with N={min(x for x in (n1, n2) if x)} samples below feature dimension {d}: "
            "the covariance is singular and FID is strongly biased",
            SampleSizeWarning,
            stacklevel=2,
        )
    return FIDResult(max(value, 0.0), n1, n2, d, max_imag, float(eig.min()), below)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64."""
    return frechet_distance_diagnostics(mu1, sigma1, mu2, sigma2).value


def fid_from_features(real, fake) -> FIDResult:
    """FID between two (N, D) feature sets."""
    mu1, s1 = feature_statistics(real)
    mu2, s2 = feature_statistics(fake)
    return frechet_distance_diagnostics(mu1, s1, mu2, s2, n1=len(real), n2=len(fake))
