"""Progressive distillation (Salimans & Ho 2022, Algorithm 2) of a DDPM teacher.

Rounds halve the number of sampling steps: a student with K DDIM steps learns
to match two DDIM steps of its teacher (2K steps), then becomes the teacher of
the next round, down to one step. Round one's teacher is the DDPM (its DDIM
ODE at ``2 * start_steps`` trailing timesteps); every student starts from its
teacher's weights (round one from the DDPM's, see ``init``).

Per training image x, noise eps and student step k (uniform in 0..K-1) from
timestep t to t'' through the teacher's midpoint t': ``z_t = alpha_t x +
sigma_t eps`` (alpha = sqrt(abar), sigma = sqrt(1 - abar)), the teacher's two
DDIM steps give z_t'', and the target x_0 that takes one DDIM step from z_t to
z_t'' is ``x~ = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' - (sigma_t''
/ sigma_t) alpha_t)`` (z_t'' itself when t'' is clean data). The loss is the
"truncated SNR" weighted error ``max(SNR_t, 1) ||x^_0 - x~||^2`` (mean), with
the student's v-prediction x^_0 (:class:`~baselines.distillation.VStudent`).

``budget.steps`` optimizer steps are split evenly over the rounds (a fresh Adam
each round; a ``budget.max_seconds`` limit is shared among the rounds left, each
making at least one step); each round's sampling network is its EMA of the weights, which
teaches the next round. The students of the step counts in ``keep`` are kept:
``sample(n, steps=K)`` runs the K-step student with deterministic DDIM
(``"ddim-v"``); other step counts raise an error naming the kept ones.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from genbench.protocol import Budget, TrainData, TrainReport

from .base import with_base_keywords
from .distillation import EpsTeacher, VStudent, VTeacher, abar_at
from .registry import register
from .samplers import sampler_timesteps
from .training import EMA, Batch, train


def _halvings(start: int) -> list[int]:
    """start, start / 2, ..., 1."""
    out = [start]
    while out[-1] > 1:
        out.append(out[-1] // 2)
    return out


@with_base_keywords
class ProgressiveDistillation(VStudent):
    """Progressive distillation of a DDPM teacher; see the module docstring.

    Hyperparameters (registered as ``progressive-distillation``):
    ``start_steps`` (a power of two: the first student's steps; its teacher
    runs twice as many), ``keep`` (the step counts whose students are kept for
    sampling), the network size (the teacher's for ``init="teacher"``), ``T``
    and ``schedule`` (the teacher's), ``lr``, ``ema_decay``, ``default_steps``.
    """

    name = "progressive-distillation"
    default_sampler = "ddim-v"
    deterministic_sampler = "ddim-v"

    def __init__(self, info: Any, start_steps: int = 32, keep: Sequence[int] = (1, 2, 4), **kwargs: Any) -> None:
        start = int(start_steps)
        if start < 1 or start & (start - 1):
            raise ValueError(f"progressive-distillation: start_steps must be a power of two >= 1, got {start_steps}")
        rounds = _halvings(start)
        bad = [k for k in keep if k not in rounds]
        if bad or not keep:
            raise ValueError(f"progressive-distillation: keep must list step counts of the rounds {rounds}, got {list(keep)}")
        self.start_steps = start
        self.keep = tuple(sorted({int(k) for k in keep}))
        super().__init__(info, **kwargs)
        if 2 * start > self.T:
            raise ValueError(f"progressive-distillation: the first teacher runs 2 * start_steps = {2 * start} steps, more than T = {self.T}")
        if self._default_steps not in self.keep:
            self._default_steps = self.keep[0]
        self.students: dict[int, nn.Module] = {}

    # -- training -------------------------------------------------------------------
    def round_loss(self, net: nn.Module, teacher: EpsTeacher, steps: int, batch: Batch, generator: torch.Generator | None) -> Tensor:
        """The loss of one batch for a ``steps``-step student of ``teacher`` (2 * steps DDIM steps); see the module docstring."""
        grid = torch.tensor([*sampler_timesteps(self.T, 2 * steps), -1], dtype=torch.long)
        x = batch.x.to(self.device)
        k = torch.randint(0, steps, (len(x),), generator=generator)
        t, t1, t2 = grid[2 * k], grid[2 * k + 1], grid[2 * k + 2]
        zt = self.q_sample(x, t, generator)
        with torch.no_grad():
            z2 = teacher.step(teacher.step(zt, t, t1), t1, t2)
            ab_t, ab_2 = abar_at(self.schedule, t), abar_at(self.schedule, t2)
            ratio = ((1 - ab_2) / (1 - ab_t)).sqrt()
            view = (-1, *([1] * (x.dim() - 1)))
            target = (z2 - ratio.view(view).to(x.device) * zt) / (ab_2.sqrt() - ratio * ab_t.sqrt()).view(view).to(x.device)
            weight = (ab_t / (1 - ab_t)).clamp_min(1.0).view(view).to(x.device)
        return (weight * (self.x0_of(net, zt, t) - target) ** 2).mean()

    def fit(self, data: TrainData, budget: Budget) -> TrainReport:
        """All rounds from ``start_steps`` down to one step (see the module docstring); ``budget.steps`` in total.
        The report's curves are the rounds' losses one after the other; ``extra`` has the cost fields and
        ``rounds`` (student steps of each round)."""
        t0 = time.perf_counter()
        ddpm = self.require_teacher()
        x, _ = self.prepare(data)
        self.before_fit(x, budget)
        rounds = _halvings(self.start_steps)
        per_round = max(1, budget.steps // len(rounds))
        teacher: EpsTeacher = EpsTeacher(ddpm)
        evals, losses, done = 0, [], 0
        self.students = {}
        try:
            for r, steps in enumerate(rounds):
                # a wall-time limit is shared among the rounds left; each round makes at least one step
                share = None if budget.max_seconds is None else max(0.0, budget.max_seconds - (time.perf_counter() - t0)) / (len(rounds) - r)
                self.net.train()
                ema = EMA(self.net, self.ema.decay)
                opt = torch.optim.Adam(self.parameters(), lr=budget.lr or self.lr)
                loss = lambda b, g, s=steps, te=teacher: self.round_loss(self.net, te, s, b, g)  # noqa: E731
                rep = train(
                    f"{self.name} ({steps} steps)", Budget(steps=per_round, batch_size=budget.batch_size, max_seconds=share, progress=budget.progress), x,
                    loss=loss, optimizer=opt, params=self.parameters(), clip_grad=self.clip_grad, ema=ema,
                )  # fmt: skip
                losses += rep.losses.get("loss", [])
                done += rep.steps
                evals += teacher.evals
                self.net.load_state_dict(ema.module.state_dict())  # the round's result teaches the next round
                if steps in self.keep:
                    self.students[steps] = copy.deepcopy(ema.module).eval()
                teacher = VTeacher(copy.deepcopy(ema.module), self.schedule, 1.0, self.device)
        finally:
            self.teacher = None
            self.net.eval()
        self.ema.module.load_state_dict(self.net.state_dict())
        self._fitted = True
        wall = time.perf_counter() - t0
        report = TrainReport(steps=done, wall_time_s=wall, losses={"loss": losses})
        report.extra.update({**self.cost_fields(evals, wall), "rounds": rounds})
        return report

    # -- sampling -------------------------------------------------------------------
    def draw(self, n: int, labels: Tensor | None, steps: int | None, generator: torch.Generator | None, sampler: Any) -> Tensor:
        """``n`` samples from the ``steps``-step student (default ``default_steps``) with deterministic DDIM."""
        steps = self._default_steps if steps is None else int(steps)
        if steps not in self.students:
            raise ValueError(f"{self.name}: students were kept for steps {sorted(self.students)}, not {steps} (hyperparameter keep)")
        sampler = self.make_sampler() if sampler is None else sampler
        return self.from_internal(self.sample_internal(n, labels=labels, steps=steps, generator=generator, sampler=sampler, net=self.students[steps]))

    def from_latent(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The default student's deterministic output for noise z, images in [0, 1] (clipped, not quantized)."""
        x = self.sample_internal(len(z), noise=torch.as_tensor(z).float(), steps=self._default_steps, net=self.students[self._default_steps])
        return ((x.float().cpu() + 1) / 2).clamp(0, 1)

    # -- state ----------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"students": {str(k): {n: v.detach().cpu() for n, v in m.state_dict().items()} for k, m in self.students.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.students = {}
        for k, sd in state["students"].items():
            m = copy.deepcopy(self.net)
            m.load_state_dict(sd)
            self.students[int(k)] = m.eval()


make_progressive_distillation = register(
    "progressive-distillation", family="distillation", description="Progressive distillation of a DDPM teacher down to one DDIM step.", kinds=("image",)
)(ProgressiveDistillation)
