"""Noise schedules of the denoising models: the betas of ``q(x_t | x_{t-1})`` and the signal fractions
``alphas_bar`` for t = 1..T, in float64.

* ``linear``: Ho et al. (2020), beta from 1e-4 to 0.02, both scaled by 1000 / T (Nichol & Dhariwal) so that any
  T gives the same curve.
* ``cosine``: Nichol & Dhariwal (2021), ``s = 0.008``, betas clipped at 0.999.

``DDPM`` (pixel space) and ``LatentDiffusion``'s epsilon objective both use :class:`NoiseSchedule`; the samplers
read ``T`` and ``abar(i)`` from it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["SCHEDULES", "NoiseSchedule", "cosine_betas", "linear_betas"]

SCHEDULES = ("linear", "cosine")


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Ho et al.'s linear schedule for T = 1000, rescaled by 1000 / T (float64, (T,)).

    Betas are clipped at 0.999 so that very small T stays a valid process.
    """
    scale = 1000.0 / T
    return torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64).clamp(max=0.999)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal's cosine schedule: abar(t) = f(t) / f(0),
    f(t) = cos^2(pi/2 (t/T + s) / (1 + s)); betas clipped at ``max_beta`` (float64, (T,))."""
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(min=0.0, max=max_beta)


class NoiseSchedule:
    """betas, alphas and alphas_bar for t = 1..T (stored at index t - 1, float64).

    ``alphas_bar[i] = prod_{j <= i} (1 - betas[j])`` is the signal fraction of
    ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``.
    """

    def __init__(self, kind: str = "linear", T: int = 1000) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"unknown noise schedule {kind!r}; valid: {', '.join(SCHEDULES)}")
        if int(T) < 2:
            raise ValueError(f"the number of diffusion steps T must be >= 2, got {T}")
        self.kind = kind
        self.T = int(T)
        self.betas = linear_betas(self.T) if kind == "linear" else cosine_betas(self.T)
        self.alphas = 1.0 - self.betas
        self.alphas_bar = torch.cumprod(self.alphas, 0)

    def abar(self, i: int) -> float:
        """abar at index i (t = i + 1); index -1 is t = 0 (clean data, abar = 1)."""
        return 1.0 if i < 0 else float(self.alphas_bar[i])

    def q_sample(self, x0: Tensor, i: Tensor, eps: Tensor) -> Tensor:
        """Draw x_t ~ q(x_t | x_0) given the noise: indices i = t - 1 (N,)."""
        ab = self.alphas_bar.to(x0.device)[i].float().view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps
