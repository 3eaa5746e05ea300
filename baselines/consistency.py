"""Consistency distillation (Song et al. 2023, Algorithm 2) of a DDPM teacher.

A consistency function f(x_t, t) maps every point of one ODE trajectory to its
end x_0. The student learns it from the teacher's ODE: the timesteps are cut
into ``intervals`` levels (the trailing DDIM timesteps of that many steps, and
clean data below them); for a training image x, a level n and noise eps,
``x_{n+1} = sqrt(abar) x + sqrt(1 - abar) eps`` at level n + 1, the teacher
takes one DDIM step back to level n (``x^_n``), and the loss is
``|| f_theta(x_{n+1}) - f_target(x^_n) ||^2`` (mean over pixels; the paper's
L2 metric), where f_target is an exponential moving average of the student's
weights (decay ``target_decay``, the paper's mu) and f at clean data is the
identity (the boundary condition, exact here because the lowest level is the
data itself).

f is the v-prediction student of :class:`~baselines.distillation.VStudent`:
``f(x_t, t) = sqrt(abar_t) x_t - sqrt(1 - abar_t) v(x_t, t)``, started from the
teacher's weights. Sampling: one step is ``f(z, T)``; more steps use the
multistep consistency sampler (``"consistency"``: x_0, fresh noise to the next
trailing timestep, x_0 again). Samples come from the slow EMA of the weights
(``ema_decay``), as every denoising family here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import with_base_keywords
from .distillation import VStudent
from .registry import register
from .samplers import sampler_timesteps
from .training import EMA, Batch


@with_base_keywords
class ConsistencyDistillation(VStudent):
    """Consistency distillation of a DDPM teacher; see the module docstring.

    Hyperparameters (registered as ``consistency-distillation``): ``intervals``
    (levels of the discretized ODE, the paper's N), ``target_decay`` (the target
    network's EMA decay mu), the network size (``width``, ``mults``, ``blocks``:
    the teacher's for ``init="teacher"``), ``T`` and ``schedule`` (the
    teacher's), ``lr``, ``ema_decay``, ``default_steps``.
    """

    name = "consistency-distillation"
    default_sampler = "consistency"
    deterministic_sampler = "consistency"

    def __init__(self, info: Any, intervals: int = 20, target_decay: float = 0.95, **kwargs: Any) -> None:
        if int(intervals) < 1:
            raise ValueError(f"consistency-distillation: intervals must be >= 1, got {intervals}")
        if not 0.0 <= float(target_decay) < 1.0:
            raise ValueError(f"consistency-distillation: target_decay must be in [0, 1), got {target_decay}")
        self.intervals = int(intervals)
        self.target_decay = float(target_decay)
        super().__init__(info, **kwargs)
        if self.intervals > self.T:
            raise ValueError(f"consistency-distillation: intervals ({self.intervals}) must be <= T ({self.T})")
        # levels by increasing noise: -1 (clean data), then the trailing timesteps of `intervals` steps
        self.levels = torch.tensor([-1, *sorted(sampler_timesteps(self.T, self.intervals))], dtype=torch.long)

    def before_fit(self, x: Tensor, budget: Any) -> None:
        super().before_fit(x, budget)
        self.target = EMA(self.net, self.target_decay, offset=10**6)  # the warm-up of the decay is skipped: mu from the start

    def cleanup_fit(self) -> None:
        self.target = None

    def loss(self, batch: Batch, generator: torch.Generator | None = None, *, net: nn.Module | None = None, p_uncond: float | None = None) -> Tensor:
        """The consistency-distillation loss of one batch of training images (model space); see the module docstring."""
        net = self.net if net is None else net
        self.target.update(net)  # the target follows the weights of the previous step
        x = batch.x.to(self.device)
        n = torch.randint(0, self.intervals, (len(x),), generator=generator)
        hi, lo = self.levels[n + 1], self.levels[n]
        xt = self.q_sample(x, hi, generator)
        with torch.no_grad():
            xs = self.ode.step(xt, hi, lo)
            clean = (lo < 0).view(-1, *([1] * (x.dim() - 1))).to(x.device)
            target = torch.where(clean, xs, self.x0_of(self.target.module, xs, lo.clamp_min(0)))
        return nn.functional.mse_loss(self.x0_of(net, xt, hi), target)


make_consistency_distillation = register(
    "consistency-distillation", family="distillation", description="Consistency distillation of a DDPM teacher (one- and few-step sampling).", kinds=("image",)
)(ConsistencyDistillation)
