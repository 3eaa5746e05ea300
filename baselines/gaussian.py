"""Fitting a Gaussian by maximum likelihood, and its two relatives.

* ``gaussian``: full-covariance maximum likelihood, N(mu, Sigma).
* ``ppca``: probabilistic PCA (Tipping & Bishop 1999) with k components,
  closed-form maximum likelihood: Sigma = W W^T + sigma^2 I.
* ``gmm``: a Gaussian mixture fitted by EM (scikit-learn ``GaussianMixture``).

All three are densities on R^D. For images they are fitted to uniformly
dequantized data y = (x_int + u) / K, so ``log_prob`` reports the bound
``log p(y) - D log K`` on the discrete log-likelihood (nats), and ``sample``
quantizes back to the K levels. For 2-D data ``log_prob`` is the density itself.

Sampling draws from the fitted parameters with a ``torch.Generator``; in
particular the GMM does *not* use ``GaussianMixture.sample`` (which returns
samples grouped by component, so any prefix silently drops modes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .protocol import Budget, DataInfo, GeneratorInfo, TrainData, TrainReport, dequantize, quantize
from .registry import register

LOG_2PI = math.log(2 * math.pi)


class _DensityModel:
    """Shared plumbing: data representation, quantization, info."""

    name = "density"
    family = "gaussian"

    def __init__(self, info: DataInfo, reg: float = 1e-6) -> None:
        self.data_info = info
        self.dim = info.dim
        self.reg = reg
        self._fitted = False

    # -- representation -------------------------------------------------------------
    def _to_space(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = x.reshape(x.shape[0], -1).float()
        if self.data_info.is_image:
            x = dequantize(x, self.data_info.levels, generator)
        return x.double()

    def _from_space(self, z: Tensor) -> Tensor:
        z = z.float()
        if self.data_info.is_image:
            z = quantize(z.clamp(0, 1 - 1e-6), self.data_info.levels)
        return z.reshape(z.shape[0], *self.data_info.shape)

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError(f"{self.name}: call fit() (or load_state_dict) before sampling or scoring")

    def _num_params(self) -> int:
        raise NotImplementedError

    @property
    def info(self) -> GeneratorInfo:
        n = self._num_params()
        return GeneratorInfo(
            name=self.name,
            family=self.family,
            shape=tuple(self.data_info.shape),
            n_params=n,
            n_trainable=n,
            likelihood="dequantized" if self.data_info.is_image else "exact",
        )

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-likelihood per example in nats (dequantized bound for images)."""
        self._check_fitted()
        y = self._to_space(x)
        lp = self._log_density(y)
        if self.data_info.is_image:
            lp = lp - self.dim * math.log(self.data_info.levels)
        return lp.float()

    def _log_density(self, y: Tensor) -> Tensor:
        raise NotImplementedError


def _mvn_log_density(y: Tensor, mean: Tensor, chol: Tensor) -> Tensor:
    """log N(y; mean, L L^T) for rows of y, float64."""
    diff = (y - mean).T
    sol = torch.linalg.solve_triangular(chol, diff, upper=False)
    maha = (sol**2).sum(0)
    logdet = 2 * torch.log(torch.diagonal(chol)).sum()
    return -0.5 * (y.shape[1] * LOG_2PI + logdet + maha)


class Gaussian(_DensityModel):
    """Full-covariance Gaussian, maximum likelihood (covariance divides by N)."""

    name = "gaussian"

    def __init__(self, info: DataInfo, reg: float = 1e-6) -> None:
        super().__init__(info, reg)
        self.mean = torch.zeros(self.dim, dtype=torch.float64)
        self.cov = torch.eye(self.dim, dtype=torch.float64)

    def _num_params(self) -> int:
        return self.dim + self.dim * (self.dim + 1) // 2

    def fit(self, data: TrainData, budget: Budget | None = None) -> TrainReport:
        t0 = time.perf_counter()
        y = self._to_space(data.x)
        self.mean = y.mean(0)
        c = y - self.mean
        self.cov = c.T @ c / y.shape[0] + self.reg * torch.eye(self.dim, dtype=torch.float64)
        self._fitted = True
        nll = -self._log_density(y).mean().item()
        return TrainReport(steps=1, wall_time_s=time.perf_counter() - t0, losses={"nll": [nll]})

    @property
    def chol(self) -> Tensor:
        """Cholesky factor of ``cov``, computed once per covariance."""
        if getattr(self, "_chol_of", None) is not self.cov:
            self._chol, self._chol_of = torch.linalg.cholesky(self.cov), self.cov
        return self._chol

    def _log_density(self, y: Tensor) -> Tensor:
        return _mvn_log_density(y, self.mean, self.chol)

    def sample(self, n: int, *, labels=None, prompts: Sequence[str] | None = None, steps=None, generator=None) -> Tensor:
        self._check_fitted()
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        z = self.mean + eps @ self.chol.T
        return self._from_space(z)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "cov": self.cov}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.cov = state["mean"].double(), state["cov"].double()
        self._fitted = True


class PPCA(Gaussian):
    """Probabilistic PCA: x = W z + mu + sigma eps, z ~ N(0, I_k).

    Closed-form ML: W = U_k (Lambda_k - sigma^2 I)^(1/2), sigma^2 = mean of the
    discarded eigenvalues of the sample covariance.
    """

    name = "ppca"

    def __init__(self, info: DataInfo, k: int | None = None, reg: float = 1e-6) -> None:
        super().__init__(info, reg)
        k = min(8, self.dim - 1) if k is None else k
        if not 1 <= k < self.dim:
            raise ValueError(f"ppca: k must be in [1, {self.dim - 1}] for {self.dim}-dimensional data, got {k}")
        self.k = k
        self.W = torch.zeros(self.dim, k, dtype=torch.float64)
        self.sigma2 = torch.tensor(1.0, dtype=torch.float64)

    def _num_params(self) -> int:
        return self.dim * self.k + self.dim + 1

    def fit(self, data: TrainData, budget: Budget | None = None) -> TrainReport:
        t0 = time.perf_counter()
        y = self._to_space(data.x)
        self.mean = y.mean(0)
        c = y - self.mean
        s = c.T @ c / y.shape[0]
        evals, evecs = torch.linalg.eigh(s)
        evals, evecs = evals.flip(0), evecs.flip(1)
        self.sigma2 = evals[self.k :].mean().clamp_min(self.reg)
        lam = (evals[: self.k] - self.sigma2).clamp_min(0)
        self.W = evecs[:, : self.k] * lam.sqrt()
        self.cov = self.W @ self.W.T + self.sigma2 * torch.eye(self.dim, dtype=torch.float64)
        self._fitted = True
        nll = -self._log_density(y).mean().item()
        return TrainReport(steps=1, wall_time_s=time.perf_counter() - t0, losses={"nll": [nll]})

    def sample(self, n: int, *, labels=None, prompts=None, steps=None, generator=None) -> Tensor:
        self._check_fitted()
        z = torch.randn(n, self.k, generator=generator, dtype=torch.float64)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self._from_space(self.mean + z @ self.W.T + self.sigma2.sqrt() * eps)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "W": self.W, "sigma2": self.sigma2}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.W, self.sigma2 = state["mean"].double(), state["W"].double(), state["sigma2"].double()
        self.cov = self.W @ self.W.T + self.sigma2 * torch.eye(self.dim, dtype=torch.float64)
        self._fitted = True


class GMM(_DensityModel):
    """Gaussian mixture with full covariances, fitted by EM (scikit-learn)."""

    name = "gmm"

    def __init__(self, info: DataInfo, n_components: int = 10, reg: float = 1e-6, max_iter: int = 200) -> None:
        super().__init__(info, reg)
        self.n_components = n_components
        self.max_iter = max_iter
        self.weights = torch.full((n_components,), 1.0 / n_components, dtype=torch.float64)
        self.means = torch.zeros(n_components, self.dim, dtype=torch.float64)
        self.covs = torch.eye(self.dim, dtype=torch.float64).repeat(n_components, 1, 1)

    def _num_params(self) -> int:
        m, d = self.n_components, self.dim
        return m * (d + d * (d + 1) // 2) + m - 1

    def fit(self, data: TrainData, budget: Budget | None = None) -> TrainReport:
        from sklearn.mixture import GaussianMixture

        t0 = time.perf_counter()
        y = self._to_space(data.x)
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())  # follows the harness's torch seed
        gm = GaussianMixture(
            n_components=self.n_components, covariance_type="full", reg_covar=self.reg, max_iter=self.max_iter, random_state=seed
        )
        gm.fit(y.numpy())
        self.weights = torch.as_tensor(gm.weights_, dtype=torch.float64)
        self.means = torch.as_tensor(gm.means_, dtype=torch.float64)
        self.covs = torch.as_tensor(gm.covariances_, dtype=torch.float64)
        self._fitted = True
        nll = -self._log_density(y).mean().item()
        return TrainReport(
            steps=int(gm.n_iter_), wall_time_s=time.perf_counter() - t0, losses={"nll": [nll]}, extra={"converged": bool(gm.converged_)}
        )

    @property
    def chols(self) -> Tensor:
        """Cholesky factors of ``covs``, computed once per covariance set."""
        if getattr(self, "_chols_of", None) is not self.covs:
            self._chols, self._chols_of = torch.linalg.cholesky(self.covs), self.covs
        return self._chols

    def _log_density(self, y: Tensor) -> Tensor:
        chols = self.chols
        comps = torch.stack([_mvn_log_density(y, self.means[m], chols[m]) for m in range(self.n_components)], 1)
        return torch.logsumexp(comps + torch.log(self.weights), 1)

    def sample(self, n: int, *, labels=None, prompts=None, steps=None, generator=None) -> Tensor:
        self._check_fitted()
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        z = self.means[comp] + torch.einsum("nij,nj->ni", self.chols[comp], eps)
        return self._from_space(z)

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights, "means": self.means, "covs": self.covs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights, self.means, self.covs = (state[k].double() for k in ("weights", "means", "covs"))
        self.n_components = len(self.weights)
        self._fitted = True


register("gaussian", family="gaussian", description="Full-covariance Gaussian (maximum likelihood).")(Gaussian)


register("ppca", family="gaussian", description="Probabilistic PCA with k components (default min(8, D-1); closed-form ML).")(PPCA)


register("gmm", family="gaussian", description="Gaussian mixture, full covariances, EM (scikit-learn).")(GMM)
