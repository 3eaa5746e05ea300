"""What the few-step students distilled from a diffusion teacher share.

A student row names a teacher row of its suite (``teacher = "ddpm"``); the
pipeline loads (or trains and caches) that row's network and hands it to the
student's :meth:`Student.set_teacher` before ``fit``, so a teacher is trained
once for its own rows and all its students. The teacher is a trained
:class:`~baselines.diffusion.DDPM` (unconditional, epsilon prediction), used
only through its deterministic DDIM ODE (eta = 0, x_0 clipped to the data range
as the DDIM sampler does):

* :class:`EpsTeacher` / :class:`VTeacher`: the x_0 estimate of a network at
  per-example timestep indices (an epsilon network, or a v-prediction student
  that teaches the next round of progressive distillation), and
  :func:`ddim_update`, the DDIM step between two indices given that estimate;
  each counts its network evaluations per example (``evals``), the teacher
  compute a distillation spends.
* :class:`Student`: the base class of the three methods (``reflow``,
  ``consistency-distillation``, ``progressive-distillation``): the teacher
  check, the optional start from the teacher's weights, and the training
  report's cost fields (``teacher_train_s``: the teacher's own training time;
  ``teacher_evals``: teacher network evaluations per example summed over the
  distillation data; ``student_s``: the student's fit, distillation data
  included).
* :class:`VStudent`: a student on the teacher's variance-preserving schedule
  that predicts ``v = sqrt(abar) eps - sqrt(1 - abar) x_0`` (Salimans & Ho
  2022), so that ``x_0 = sqrt(abar) x_t - sqrt(1 - abar) v`` stays well posed
  at the last index, where abar is ~0 and an epsilon network cannot name x_0
  (DDIM at one step scores FID ~224 on digits for that reason). Its samplers,
  registered in :data:`baselines.samplers.SAMPLERS` with kind ``"v"``:
  ``"ddim-v"`` (the deterministic DDIM update) and ``"consistency"`` (x_0,
  then fresh noise to the next timestep: Song et al. 2023's multistep
  consistency sampling). Both visit the trailing timesteps of
  :func:`~baselines.samplers.sampler_timesteps`.

Units: every tensor here is in the model's space (images on [-1, 1]); indices
are t - 1 for t = 1..T, and -1 stands for clean data (abar = 1).
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .denoising import DenoisingModel
from .diffusion import DDPM
from .samplers import SAMPLERS, Denoiser, Sampler, sampler_timesteps
from .schedules import NoiseSchedule

__all__ = ["EpsTeacher", "Student", "VStudent", "VTeacher", "abar_at", "ddim_update", "v_to_x0"]


def abar_at(schedule: NoiseSchedule, i: Tensor) -> Tensor:
    """abar at indices i (N,) long, -1 meaning clean data (abar = 1), as float32 of shape (N,)."""
    ab = torch.cat([schedule.alphas_bar, torch.ones(1, dtype=schedule.alphas_bar.dtype)])  # index -1 -> the appended 1
    return ab[i.cpu()].float()


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    return v.to(like.device).view(-1, *([1] * (like.dim() - 1)))


def ddim_update(x: Tensor, x0: Tensor, ab_t: Tensor, ab_s: Tensor) -> Tensor:
    """The deterministic DDIM step (eta = 0) from x at abar ``ab_t`` to abar ``ab_s`` (both (N,)) given the x_0
    estimate: ``sqrt(ab_s) x0 + sqrt(1 - ab_s) eps_hat`` with ``eps_hat = (x - sqrt(ab_t) x0) / sqrt(1 - ab_t)``.
    ``ab_s = 1`` returns x0."""
    a_t, a_s = _bcast(ab_t, x), _bcast(ab_s, x)
    eps = (x - a_t.sqrt() * x0) / (1 - a_t).clamp_min(1e-12).sqrt()
    return a_s.sqrt() * x0 + (1 - a_s).clamp_min(0).sqrt() * eps


def v_to_x0(x: Tensor, v: Tensor, ab: Tensor) -> Tensor:
    """``x_0 = sqrt(abar) x_t - sqrt(1 - abar) v`` for a v-prediction network (abar (N,))."""
    a = _bcast(ab, x)
    return a.sqrt() * x - (1 - a).sqrt() * v


class EpsTeacher:
    """A trained DDPM's clipped x_0 estimate at per-example indices (its EMA network, as its samplers use)."""

    def __init__(self, ddpm: DDPM) -> None:
        self.schedule = ddpm.schedule
        self.net = ddpm.ema.module.eval()
        self.bound = ddpm.x0_bound
        self.device = ddpm.device
        self.evals = 0

    @torch.no_grad()
    def x0(self, x: Tensor, i: Tensor) -> Tensor:
        ab = _bcast(abar_at(self.schedule, i), x)
        eps = self.net(x, i.to(self.device))
        self.evals += len(x)
        return ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-self.bound, self.bound)

    @torch.no_grad()
    def step(self, x: Tensor, i: Tensor, j: Tensor) -> Tensor:
        """One DDIM step of the teacher from indices i to j (j = -1: to clean data)."""
        return ddim_update(x, self.x0(x, i), abar_at(self.schedule, i), abar_at(self.schedule, j))

    @torch.no_grad()
    def sample(self, z: Tensor, steps: int, batch: int = 512) -> Tensor:
        """The teacher ODE's output for initial noise z: DDIM with ``steps`` trailing steps, in batches."""
        grid = sampler_timesteps(self.schedule.T, steps)
        out = []
        for zb in z.split(batch):
            x = zb.to(self.device)
            for k, i in enumerate(grid):
                j = grid[k + 1] if k + 1 < len(grid) else -1
                n = len(x)
                x = self.step(x, torch.full((n,), i, dtype=torch.long), torch.full((n,), j, dtype=torch.long))
            out.append(x.cpu())
        return torch.cat(out)


class VTeacher(EpsTeacher):
    """A trained v-prediction student used as the teacher of the next distillation round (x_0 clipped)."""

    def __init__(self, net: nn.Module, schedule: NoiseSchedule, bound: float, device: torch.device) -> None:
        self.schedule, self.net, self.bound, self.device, self.evals = schedule, net.eval(), bound, device, 0

    @torch.no_grad()
    def x0(self, x: Tensor, i: Tensor) -> Tensor:
        self.evals += len(x)
        return v_to_x0(x, self.net(x, i.to(self.device)), abar_at(self.schedule, i)).clamp(-self.bound, self.bound)


class Student(DenoisingModel):
    """Base class of a student: receives a trained unconditional DDPM image model (:meth:`set_teacher`) before
    ``fit``, optionally starts from its weights (``init="teacher"``; the student's network must then have the
    teacher's size), and adds the distillation's cost to its training report."""

    family: ClassVar[str] = "distillation"
    sample_needs_fit = True

    def __init__(self, info: Any, *, init: str = "teacher", **kwargs: Any) -> None:
        if init not in ("teacher", "scratch"):
            raise ValueError(f"{self.name}: init must be 'teacher' or 'scratch', got {init!r}")
        if kwargs.get("conditional"):
            raise ValueError(f"{self.name}: students are unconditional (conditional=False)")
        if not info.is_image:
            raise ValueError(f"{self.name}: distillation students are for image data; {info.name} is {info.kind}")
        self.init = init
        self._net_params = {k: kwargs[k] for k in ("width", "mults", "blocks") if k in kwargs}
        self.teacher: DDPM | None = None
        self.teacher_train_s: float | None = None
        super().__init__(info, **kwargs)

    def set_teacher(self, teacher: Any, train_s: float | None = None) -> None:
        """Use ``teacher`` (a fitted, unconditional :class:`~baselines.diffusion.DDPM` of the same data) for the
        next ``fit``; ``train_s``: its training time in seconds (reported, not used)."""
        if not isinstance(teacher, DDPM):
            raise TypeError(f"{self.name}: the teacher must be a trained ddpm model, got {type(teacher).__name__}")
        if teacher.conditional:
            raise ValueError(f"{self.name}: the teacher must be unconditional; it was trained with conditional=True")
        if tuple(teacher.data_info.shape) != tuple(self.data_info.shape):
            raise ValueError(f"{self.name}: the teacher models shape {tuple(teacher.data_info.shape)}, the student {tuple(self.data_info.shape)}")
        if not getattr(teacher, "_fitted", False):
            raise ValueError(f"{self.name}: the teacher is not trained (fit or load it first)")
        self.check_teacher(teacher)
        if self.init == "teacher":
            src = teacher.ema.module.state_dict()
            mine = self.net.state_dict()
            if set(src) != set(mine) or any(src[k].shape != mine[k].shape for k in src):
                raise ValueError(f"{self.name}: init='teacher' needs the teacher's network size (width, mults, blocks); use the same params or init='scratch'")
            self.net.load_state_dict(src)
            self.ema.module.load_state_dict(src)
        self.teacher, self.teacher_train_s = teacher, train_s

    def check_teacher(self, teacher: DDPM) -> None:
        """Method-specific checks of the teacher (e.g. the same noise schedule)."""

    def teacher_params(self) -> dict[str, Any]:
        """``ddpm`` hyperparameters of a teacher this student accepts (its network size; a
        :class:`VStudent` adds its schedule), e.g. for ``bench check`` and tests."""
        return dict(self._net_params)

    def require_teacher(self) -> DDPM:
        if self.teacher is None:
            raise RuntimeError(f"{self.name}: a student needs set_teacher(trained ddpm) before fit (a suite row sets teacher = \"ROW\")")
        return self.teacher

    def cost_fields(self, teacher_evals: int, student_s: float) -> dict[str, Any]:
        """The training report's distillation cost: see the module docstring."""
        return {"teacher_train_s": self.teacher_train_s, "teacher_evals": int(teacher_evals), "student_s": float(student_s)}

    def fit(self, data: Any, budget: Any) -> Any:
        """The one training loop on the method's ``loss`` (:meth:`~baselines.base.Family.fit`), with the teacher
        (:meth:`set_teacher`) behind it as ``self.ode`` (an :class:`EpsTeacher`); the report's ``extra`` gets
        the cost fields. The teacher is released afterwards (the student samples without it)."""
        t0 = time.perf_counter()
        self.ode = EpsTeacher(self.require_teacher())
        try:
            report = super().fit(data, budget)
            report.extra.update(self.cost_fields(self.ode.evals, time.perf_counter() - t0))
        finally:
            self.teacher = None
        return report


class VStudent(Student):
    """A v-prediction student on the teacher's noise schedule (see the module docstring); ``T`` and ``schedule``
    must equal the teacher's. Sampled with ``"ddim-v"`` or ``"consistency"``."""

    prediction = "v"
    time_dtype = torch.long
    likelihood = None

    def __init__(self, info: Any, *, T: int = 1000, schedule: str = "cosine", default_steps: int = 1, **kwargs: Any) -> None:
        if default_steps < 1:
            raise ValueError(f"{self.name}: default_steps must be >= 1, got {default_steps}")
        self.schedule = NoiseSchedule(schedule, T)
        self.T = self.schedule.T
        self._default_steps = int(default_steps)
        super().__init__(info, **kwargs)

    @property
    def default_steps(self) -> int:
        return self._default_steps

    def teacher_params(self) -> dict[str, Any]:
        return {**super().teacher_params(), "T": self.T, "schedule": self.schedule.kind}

    def check_teacher(self, teacher: DDPM) -> None:
        if teacher.schedule.kind != self.schedule.kind or teacher.T != self.T:
            raise ValueError(
                f"{self.name}: the student's schedule ({self.schedule.kind}, T={self.T}) must be the teacher's ({teacher.schedule.kind}, T={teacher.T})"
            )

    def _sampler_context(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "default_steps": self._default_steps}

    def _run_denoiser(self, den: Denoiser) -> Denoiser:
        den.x0_clip = 1.0
        return den

    def x0_of(self, net: nn.Module, x: Tensor, i: Tensor) -> Tensor:
        """The student's (unclipped) x_0 estimate at per-example indices i (-1 is not a valid input)."""
        return v_to_x0(x, net(x, i.to(self.device)), abar_at(self.schedule, i))

    def q_sample(self, x0: Tensor, i: Tensor, generator: torch.Generator | None) -> Tensor:
        """x_t ~ q(x_t | x_0) at indices i, noise from ``generator`` (CPU)."""
        eps = torch.randn(x0.shape, generator=generator).to(x0.device)
        return self.schedule.q_sample(x0, i.to(x0.device), eps)


# ----------------------------------------------------------------------------- samplers of v-prediction students
class _VSampler(Sampler):
    """x_0 from a v-prediction network at the trailing timesteps of a T-step schedule, clipped to the
    denoiser's ``x0_clip``."""

    kind = "v"

    def __init__(self, schedule: NoiseSchedule, default_steps: int = 1) -> None:
        super().__init__(1.0)
        self.schedule = schedule
        self._default_steps = int(default_steps)

    def default_steps(self) -> int:
        return self._default_steps

    def timesteps(self, steps: int) -> list[int]:
        return sampler_timesteps(self.schedule.T, steps)

    def x0(self, denoiser: Denoiser, x: Tensor, i: int, y: Tensor | None) -> tuple[Tensor, float]:
        ab = self.schedule.abar(i)
        x0 = math.sqrt(ab) * x - math.sqrt(1 - ab) * denoiser(x, i, y)
        clip = denoiser.x0_clip
        return (x0 if clip is None else x0.clamp(-clip, clip)), ab

    def options(self) -> dict[str, Any]:
        return {**super().options(), "T": self.schedule.T}


@SAMPLERS.register("ddim-v", kind="v")
class DDIMVSampler(_VSampler):
    """Deterministic DDIM (eta = 0) on a v-prediction network; ``steps = 1`` returns x_0 of the noise."""

    name = "ddim-v"

    def step(self, denoiser: Denoiser, x: Tensor, t: int, t_next: int | None, y: Tensor | None, generator: torch.Generator | None) -> Tensor:
        x0, ab_t = self.x0(denoiser, x, t, y)
        if t_next is None:
            return x0
        n = len(x)
        return ddim_update(x, x0, torch.full((n,), ab_t), torch.full((n,), self.schedule.abar(t_next)))


@SAMPLERS.register("consistency", kind="v")
class ConsistencySampler(_VSampler):
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1): x_0 = f(x_t, t), then ``x`` is x_0 noised
    afresh to the next timestep (noise from ``generator``); one evaluation per step."""

    name = "consistency"

    def step(self, denoiser: Denoiser, x: Tensor, t: int, t_next: int | None, y: Tensor | None, generator: torch.Generator | None) -> Tensor:
        x0, _ = self.x0(denoiser, x, t, y)
        if t_next is None:
            return x0
        ab = self.schedule.abar(t_next)
        return math.sqrt(ab) * x0 + math.sqrt(1 - ab) * torch.randn(x0.shape, generator=generator).to(x0.device)
