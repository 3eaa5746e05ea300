"""Fréchet distance (FID) between Gaussian fits of two feature sets, and KID.

    FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

Statistics are float64 with the unbiased covariance (divides by N - 1), as in
torch-fidelity. The trace term is computed from eigenvalues: the eigenvalues
of S1 S2 equal those of the symmetric PSD matrix S1^(1/2) S2 S1^(1/2), so
tr((S1 S2)^(1/2)) = sum sqrt(eigvalsh(S1^(1/2) S2 S1^(1/2))) with no complex
arithmetic. Diagnostics report what usually goes wrong: an imaginary part in
the eigenvalues of S1 S2, a negative smallest eigenvalue (rank deficiency),
and fewer samples than feature dimensions.

FID is biased by sample size: compare values only at equal N.

KID (:func:`kid_from_features`) is the unbiased MMD^2 with the polynomial
kernel (x.y / D + 1)^3 averaged over random subsets (100 of min(1000, N) by
default); it is unbiased at small N and belongs beside FID. Its scale follows
the features' scale (digits-cnn features are larger than Inception's).
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
    with np.errstate(over="ignore", invalid="ignore"):
        mu, cov = f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])
    if not (np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise ValueError(f"features too large for float64 statistics (max |value| {np.abs(f).max():.3g}; the covariance overflows): rescale them")
    return mu, cov


def _roundoff(w: np.ndarray) -> float:
    """Eigenvalues of a symmetric D x D matrix below this are rounding noise: D * eps * max |eigenvalue|."""
    return float(len(w) * np.finfo(np.float64).eps * max(float(np.abs(w).max()) if len(w) else 0.0, np.finfo(np.float64).tiny))


def _psd_eigh(s: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a symmetric PSD matrix with rounding-noise eigenvalues set to exactly 0.

    ``ValueError`` when an eigenvalue is negative beyond rounding (not a covariance).
    """
    w, v = np.linalg.eigh((s + s.T) / 2)
    tol = _roundoff(w)
    if w.size and w.min() < -tol:
        raise ValueError(
            f"{what} is not positive semi-definite: smallest eigenvalue {w.min():.4g} (rounding tolerance {tol:.2g}); "
            "pass a covariance matrix (e.g. from feature_statistics)"
        )
    return np.where(np.abs(w) <= tol, 0.0, w), v


def _sqrt_psd(s: np.ndarray, what: str = "covariance") -> np.ndarray:
    w, v = _psd_eigh(s, what)
    return (v * np.sqrt(w)) @ v.T


def _fd_and_eigs(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> tuple[float, np.ndarray]:
    """Fréchet distance and the eigenvalues of S1^(1/2) S2 S1^(1/2) (before rounding-noise eigenvalues are zeroed).

    tr sqrt(S1 S2) = sum of the square roots of those eigenvalues; eigenvalues
    that are rounding noise (|lambda| <= D eps max|lambda|, e.g. from dead
    units with zero variance) count as exactly 0 instead of adding sqrt(noise).
    Bitwise identical statistics give exactly 0.
    """
    if np.array_equal(mu1, mu2) and np.array_equal(s1, s2):
        _psd_eigh(s1, "covariance")  # still validated
        w = np.linalg.eigvalsh((s1 + s1.T) / 2)
        return 0.0, w * w
    r = _sqrt_psd(s1, "covariance 1")
    _psd_eigh(s2, "covariance 2")
    m = r @ s2 @ r
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tol = _roundoff(eig)
    tr_covmean = float(np.sqrt(np.where(eig <= tol, 0.0, eig)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean), eig


def frechet_distance_diagnostics(mu1, sigma1, mu2, sigma2, n1: int = 0, n2: int = 0) -> FIDResult:
    """Fréchet distance with diagnostics. n1/n2 (sample sizes) only feed the warnings.

    Raises ``ValueError`` for shapes that do not match, NaN/inf statistics or a
    covariance that is not positive semi-definite (never a silent 0).
    """
    mu1, mu2, s1, s2 = _as_np(mu1), _as_np(mu2), _as_np(sigma1), _as_np(sigma2)
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"means must be 1-D with equal shapes, got {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"covariances must be ({d}, {d}), got {s1.shape} and {s2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, s1, s2)):
        raise ValueError("Fréchet distance: means or covariances contain NaN or inf")
    # scale by an exact power of two (covariances by 2^-2k, means by 2^-k) so that no product overflows
    top = max(float(np.abs(s1).max()), float(np.abs(s2).max()), float(np.abs(mu1 - mu2).max()) ** 2, np.finfo(np.float64).tiny)
    k = int(np.ceil(np.log2(top) / 2))
    if k != 0:
        c = 2.0**-k
        mu1, mu2, s1, s2 = mu1 * c, mu2 * c, s1 * (c * c), s2 * (c * c)
    value, eig = _fd_and_eigs(mu1, s1, mu2, s2)
    # what is left after the trace terms cancel is rounding noise of their size
    noise = 4 * d * np.finfo(np.float64).eps * (abs(np.trace(s1)) + abs(np.trace(s2)) + float((mu1 - mu2) @ (mu1 - mu2)))
    if value < -noise:
        raise ValueError(f"Fréchet distance came out negative ({value:.4g}) beyond rounding ({noise:.2g}): the statistics are inconsistent")
    with np.errstate(over="ignore"):
        value, eig = float(np.ldexp(value, 2 * k)), np.ldexp(eig, 4 * k)  # back to the caller's units (exact)
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


# ------------------------------------------------------------------------------ KID
@dataclass
class KIDResult:
    """Kernel Inception Distance: mean and std of the unbiased MMD^2 over subsets."""

    value: float  # mean over subsets
    std: float  # std over subsets (numpy's, ddof=0, as torch-fidelity)
    subsets: int
    subset_size: int
    n_real: int
    n_fake: int
    degree: int
    gamma: float
    coef0: float

    def to_dict(self) -> dict:
        return asdict(self)


_KERNEL_BLOCK = 256  # rows per Gram block: a (256, m) float64 block stays in cache for the element-wise kernel


def _poly_kernel_sums(a: torch.Tensor, b: torch.Tensor, gamma: float, coef0: float, degree: int, same: bool) -> float:
    """sum of k(a_i, b_j) = (gamma a_i.b_j + coef0)^degree, without the diagonal when ``same``.

    Everything in float64 (a float32 Gram matrix is off by ~1e-3 relative
    when the features share a large offset). Computed in blocks of rows; when
    ``same`` (b is a), only the blocks on and above the diagonal, the others
    counted twice by symmetry (a third fewer products).
    """

    c = torch.full((1, 1), coef0, dtype=a.dtype)

    def block_sum(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return torch.addmm(c, p, q.T, alpha=gamma).pow_(degree)  # coef0 + gamma p.q, then the power, in place

    parts = a.split(_KERNEL_BLOCK)
    if not same:
        return sum(float(block_sum(p, b).sum()) for p in parts)
    s = 0.0
    for i, p in enumerate(parts):
        k = block_sum(p, p)
        s += float(k.sum()) - float(k.diagonal().sum())
        if i + 1 < len(parts):
            s += 2.0 * float(block_sum(p, a[(i + 1) * _KERNEL_BLOCK :]).sum())
    return s


def kid_from_features(
    real,
    fake,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> KIDResult:
    """KID (Binkowski et al., 2018) between two (N, D) feature sets.

    Polynomial kernel k(x, y) = (gamma x.y + coef0)^degree with gamma = 1/D by
    default; the unbiased MMD^2 estimate of torch-fidelity (``mmd_est="unbiased"``)
    on ``subsets`` pairs of random subsets of ``min(subset_size, N_real, N_fake)``
    samples drawn without replacement. The subsets follow torch-fidelity's
    sequence for the same ``seed`` (``np.random.RandomState(seed)``, fake subset
    then real subset), so the values equal ``kid_features_to_metric(fake, real,
    rng_seed=seed)`` up to float rounding. When both sets have exactly the
    subset size every subset is a permutation of the whole set, so the MMD is
    computed once (std 0).
    """
    f_real = torch.as_tensor(_as_np(real), dtype=torch.float64)
    f_fake = torch.as_tensor(_as_np(fake), dtype=torch.float64)
    if f_real.ndim != 2 or f_fake.ndim != 2 or f_real.shape[1] != f_fake.shape[1]:
        raise ValueError(f"KID needs (N, D) feature sets of equal D, got {tuple(f_real.shape)} and {tuple(f_fake.shape)}")
    if not (torch.isfinite(f_real).all() and torch.isfinite(f_fake).all()):
        raise ValueError("KID: features contain NaN or inf")
    n_real, n_fake = len(f_real), len(f_fake)
    m = min(subset_size, n_real, n_fake)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got n_real={n_real}, n_fake={n_fake}")
    if subsets < 1:
        raise ValueError(f"KID needs subsets >= 1, got {subsets}")
    g = 1.0 / f_real.shape[1] if gamma is None else float(gamma)
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    once = n_real == m and n_fake == m
    for i in range(subsets):
        if once and i > 0:
            mmds[i] = mmds[0]
            continue
        x = f_fake[torch.as_tensor(rng.choice(n_fake, m, replace=False))]
        y = f_real[torch.as_tensor(rng.choice(n_real, m, replace=False))]
        kxx = _poly_kernel_sums(x, x, g, coef0, degree, True)
        kyy = _poly_kernel_sums(y, y, g, coef0, degree, True)
        kxy = _poly_kernel_sums(x, y, g, coef0, degree, False)
        mmds[i] = (kxx + kyy) / (m * (m - 1)) - 2 * kxy / (m * m)
        if not np.isfinite(mmds[i]):
            raise ValueError(
                f"KID: the cubic kernel overflows float64 for these features (max |value| {float(f_real.abs().max()):.3g}); rescale them"
            )
    return KIDResult(float(mmds.mean()), float(mmds.std()), subsets, m, n_real, n_fake, degree, g, coef0)
