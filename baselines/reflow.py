"""Reflow (Liu et al. 2023, "Flow straight and fast") of a DDPM teacher: a rectified flow on the teacher's
own noise-to-sample coupling.

The teacher's deterministic ODE (DDIM, eta = 0, ``teacher_steps`` trailing
steps) maps ``pairs`` noise draws z to samples x. A velocity network is then
trained on the straight paths between the two ends of each pair: ``x_t = (1 -
t) z + t x`` with t ~ U[0, 1] and target ``x - z`` (flow matching, with the
independent coupling replaced by the teacher's). Because the coupling is
deterministic, the paths of different pairs rarely cross, the learned flow is
nearly straight and few Euler steps follow it: one Euler step is ``z + v(z,
0)``. ``t_weight_zero`` > 0 draws that fraction of the times at exactly t = 0
(the one-step map itself: Liu et al.'s distillation stage, folded into the
same run).

The student is a :class:`~baselines.flow_matching.FlowMatching` network
(velocity, t in [0, 1], t = 0 noise), from scratch by default
(``init="teacher"`` copies the DDPM's weights, whose time input means the noise
index instead: a warm start of the features only). Sampling: Euler
(``"euler"``, default one step) or Heun.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from genbench.protocol import TrainData

from .base import with_base_keywords
from .distillation import Student
from .flow_matching import FlowMatching
from .registry import register
from .training import Batch


@with_base_keywords
class Reflow(Student, FlowMatching):
    """Reflow of a DDPM teacher; see the module docstring.

    Hyperparameters (registered as ``reflow``): ``pairs`` (noise/sample pairs
    drawn from the teacher), ``teacher_steps`` (its DDIM steps per pair),
    ``t_weight_zero``, ``init``, the network size, ``lr``, ``ema_decay``,
    ``default_steps`` (Euler steps when ``sample`` gets none, default 1).
    """

    name = "reflow"

    def __init__(
        self, info: Any, pairs: int = 8192, teacher_steps: int = 50, t_weight_zero: float = 0.0, *, init: str = "scratch", default_steps: int = 1, **kwargs: Any
    ) -> None:
        if int(pairs) < 1 or int(teacher_steps) < 1:
            raise ValueError(f"reflow: pairs and teacher_steps must be >= 1, got {pairs}, {teacher_steps}")
        if not 0.0 <= float(t_weight_zero) <= 1.0:
            raise ValueError(f"reflow: t_weight_zero must be in [0, 1], got {t_weight_zero}")
        self.pairs, self.teacher_steps, self.t_weight_zero = int(pairs), int(teacher_steps), float(t_weight_zero)
        super().__init__(info, init=init, default_steps=default_steps, **kwargs)

    def prepare(self, data: TrainData) -> tuple[Tensor, Tensor]:
        """The teacher's pairs: (samples x, their noise z) in the model's space, z drawn from the global torch RNG
        (seeded by the run). The loop draws minibatches of x with the matching z as ``Batch.y``."""
        self.check_x(data.x, "training data")
        if self.ode.schedule.T < self.teacher_steps:
            raise ValueError(f"reflow: teacher_steps ({self.teacher_steps}) must be <= the teacher's T ({self.ode.schedule.T})")
        z = torch.randn(self.pairs, *self.data_info.shape)
        return self.ode.sample(z, self.teacher_steps), z

    def loss(self, batch: Batch, generator: torch.Generator | None = None, *, net: nn.Module | None = None, p_uncond: float | None = None) -> Tensor:
        """``||v(x_t, t) - (x - z)||^2`` (mean) on the straight path between a pair's noise z (``batch.y``) and
        its teacher sample x (``batch.x``); t ~ U[0, 1], a fraction ``t_weight_zero`` set to 0."""
        net = self.net if net is None else net
        x1, x0 = batch.x, batch.y
        t = torch.rand(len(x1), generator=generator)
        if self.t_weight_zero > 0:
            t = torch.where(torch.rand(len(x1), generator=generator) < self.t_weight_zero, torch.zeros_like(t), t)
        tb = t.view(-1, *([1] * (x1.dim() - 1)))
        xt = ((1 - tb) * x0 + tb * x1).to(self.device)
        return nn.functional.mse_loss(net(xt, t.to(self.device)), (x1 - x0).to(self.device))


make_reflow = register("reflow", family="distillation", description="Reflow (rectified flow) of a DDPM teacher's ODE coupling, 1-2 Euler steps.", kinds=("image",))(Reflow)
