"""Sampling algorithms as objects, separate from the networks (diffusers' scheduler/model split).

A :class:`Denoiser` is what a sampler calls: a network (usually the EMA copy)
evaluated at (x, t) with optional class labels and classifier-free guidance
``out_u + w (out_c - out_u)``; it counts its network evaluations per sample
(two per call under guidance). It knows nothing about pixels: a latent model
builds one around its latent-space network and encodes/decodes outside.

A :class:`Sampler` turns a denoiser and initial noise into samples:
``timesteps(steps)`` lists the times it visits, ``step(...)`` makes one update,
``run(...)`` does the loop and sets ``nfe`` (network evaluations per sample of
the last run). Samplers here:

* :class:`DDPMSampler`: ancestral sampling of an epsilon-prediction model
  with the posterior variance; fewer steps than T use strided timesteps with
  the respaced betas ``1 - abar_t / abar_s`` (Nichol & Dhariwal).
* :class:`DDIMSampler`: Song et al. 2021, ``eta`` = 0 deterministic.
* :class:`DPMSolverPP2MSampler`: DPM-Solver++(2M) (Lu et al. 2022), the
  same ODE as DDIM (eta = 0) at second order, one evaluation per step.
* :class:`EulerSampler`: explicit Euler integration of a velocity field from
  t = 0 (noise) to t = 1 (data), as in flow matching.
* :class:`HeunSampler`: Heun's second-order method on the same ODE (two
  evaluations per step).

DDPM, DDIM and DPM-Solver++ take ``spacing``: which strided timesteps a run of fewer than T
steps visits, ``"trailing"`` (default, starts at the last index),
``"leading"`` (the DDIM paper's linear one, starts ``T / steps`` below it) or
``"quadratic"`` (the DDIM paper's quadratic one, denser near the data); see
:func:`sampler_timesteps`.

Each is registered in :data:`SAMPLERS` (a :class:`genbench.registry.Registry`)
with the kind of model it drives (``"eps"`` or ``"velocity"``), so a model's
``make_sampler(sampler=name, ...)`` finds the class by name.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from genbench.registry import Registry

__all__ = [
    "SAMPLERS",
    "Denoiser",
    "Sampler",
    "DiffusionSchedule",
    "DDPMSampler",
    "DDIMSampler",
    "DPMSolverPP2MSampler",
    "EulerSampler",
    "HeunSampler",
    "OnePassSampler",
    "SPACINGS",
    "sampler_timesteps",
    "make_sampler",
]

SAMPLERS: Registry[type] = Registry("sampler", meta={"kind": str})
"""Sampler classes by name; ``kind`` says what model they run: ``eps`` / ``velocity`` (denoisers), ``tokens-causal`` /
``tokens-masked`` (transformer priors over discrete codes, :mod:`baselines.token_samplers`)."""
SAMPLERS.register("ancestral", "baselines.token_samplers:AutoregressiveSampler", kind="tokens-causal")
SAMPLERS.register("maskgit", "baselines.token_samplers:MaskGITSampler", kind="tokens-masked")


class DiffusionSchedule(Protocol):
    """What the diffusion samplers need of a noise schedule: ``T`` and ``abar(i)``
    (the signal fraction at index i = t - 1; ``abar(-1) = 1``)."""

    T: int

    def abar(self, i: int) -> float: ...


# ----------------------------------------------------------------------------- the denoiser
class Denoiser:
    """A network evaluated for a sampler, with classifier-free guidance.

    Args:
        net: ``net(x, t)`` or, when ``num_classes > 0``, ``net(x, t, y)`` with
            y (N,) long labels in 0..num_classes (``num_classes`` = null label).
        num_classes: number of classes of a conditional model, 0 unconditional.
        device: where x, t and y live.
        time_dtype: dtype of the time tensor handed to ``net`` (long for
            diffusion indices, float for continuous times in [0, 1]).
        x0_clip: range [-x0_clip, x0_clip] of clean data in the network's
            space; epsilon samplers clip their x_0 estimate to it (None: no clipping).

    ``evals`` counts network evaluations per sample since the last
    :meth:`reset` (two per call when guidance runs a conditional and an
    unconditional pass).
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 0,
        device: torch.device | str = "cpu",
        time_dtype: torch.dtype = torch.float32,
        x0_clip: float | None = None,
    ) -> None:
        self.net = net
        self.x0_clip = x0_clip
        self.num_classes = int(num_classes)
        self.device = torch.device(device)
        self.time_dtype = time_dtype
        self.evals = 0

    def reset(self) -> None:
        self.evals = 0

    def null(self, n: int) -> Tensor:
        """The null label (index ``num_classes``) for n examples."""
        return torch.full((n,), self.num_classes, dtype=torch.long, device=self.device)

    def times(self, t: float | int | Tensor, n: int) -> Tensor:
        """A scalar or (N,) time as an (N,) tensor of ``time_dtype`` on the device."""
        if isinstance(t, Tensor):
            return t.to(self.device, self.time_dtype) if t.dtype != self.time_dtype else t.to(self.device)
        value = int(t) if not self.time_dtype.is_floating_point else float(t)
        return torch.full((n,), value, device=self.device, dtype=self.time_dtype)

    def __call__(self, x: Tensor, t: float | int | Tensor, y: Tensor | None = None, guidance_scale: float = 1.0) -> Tensor:
        """The network output at (x, t): unconditional for an unconditional model
        or ``y=None``; ``out(y)`` for w = 1; ``out(null)`` for w = 0; else
        ``out_u + w (out_c - out_u)`` from one batched pass of 2N."""
        n = x.shape[0]
        tt = self.times(t, n)
        if self.num_classes == 0:
            self.evals += 1
            return self.net(x, tt)
        if y is None:
            self.evals += 1
            return self.net(x, tt, self.null(n))
        w = float(guidance_scale)
        if w == 1.0:
            self.evals += 1
            return self.net(x, tt, y)
        if w == 0.0:
            self.evals += 1
            return self.net(x, tt, self.null(n))
        self.evals += 2
        out_c, out_u = self.net(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, self.null(n)])).chunk(2)
        return out_u + w * (out_c - out_u)


# ----------------------------------------------------------------------------- base class
class Sampler(ABC):
    """A sampling algorithm (implements :class:`genbench.protocol.Sampler`).

    ``guidance_scale`` w >= 0 is the classifier-free guidance weight used for
    conditional models given labels (1 = plain conditional, 0 = unconditional).
    ``nfe`` is the number of network evaluations per sample of the last run.
    """

    name: ClassVar[str] = "sampler"
    kind: ClassVar[str] = ""  # "eps" or "velocity": the prediction the model must make

    def __init__(self, guidance_scale: float = 1.0) -> None:
        if float(guidance_scale) < 0:
            raise ValueError(f"{self.name} sampler: guidance_scale must be >= 0, got {guidance_scale}")
        self.guidance_scale = float(guidance_scale)
        self.nfe = 0

    def default_steps(self) -> int:
        """Steps used when the caller gives none."""
        return 50

    @abstractmethod
    def timesteps(self, steps: int) -> list[Any]:
        """The times visited by a run of ``steps`` steps, in order."""

    @abstractmethod
    def step(self, denoiser: Denoiser, x: Tensor, t: Any, t_next: Any, y: Tensor | None, generator: torch.Generator | None) -> Tensor:
        """One update from time ``t`` to ``t_next`` (``None`` after the last step)."""

    @torch.no_grad()
    def run(self, denoiser: Denoiser, x: Tensor, steps: int | None = None, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Integrate from the initial noise ``x`` in ``steps`` steps; sets ``nfe``.

        Stochastic samplers draw their noise on the CPU from ``generator`` and
        move it to ``x``'s device.
        """
        steps = self.default_steps() if steps is None else int(steps)
        ts = self.timesteps(steps)
        denoiser.reset()
        for k, t in enumerate(ts):
            x = self.step(denoiser, x, t, ts[k + 1] if k + 1 < len(ts) else None, y, generator)
        self.nfe = denoiser.evals
        return x

    def options(self) -> dict[str, Any]:
        """The settings that make this sampler (for records and ``repr``)."""
        return {"sampler": self.name, "guidance_scale": self.guidance_scale}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options().items() if k != 'sampler')})"


# ----------------------------------------------------------------------------- diffusion
def _trailing(T: int, steps: int, k: np.ndarray) -> np.ndarray:
    return np.floor(T - k * T / steps + 0.5).astype(np.int64) - 1


def _leading(T: int, steps: int, k: np.ndarray) -> np.ndarray:
    return (k * T // steps)[::-1]


def _quadratic(T: int, steps: int, k: np.ndarray) -> np.ndarray:
    if steps == 1:
        return np.array([T - 1])
    return np.maximum((T - 1) * k * k // (steps - 1) ** 2, k)[::-1]  # raised to k where the square gives less: distinct


_SPACING_RULES = {"trailing": _trailing, "leading": _leading, "quadratic": _quadratic}  # name -> indices, largest first
SPACINGS = tuple(_SPACING_RULES)


def _check_spacing(spacing: str, who: str = "") -> str:
    if spacing not in SPACINGS:
        raise ValueError(f"{who}unknown timestep spacing {spacing!r}; valid: {', '.join(SPACINGS)}")
    return spacing


def sampler_timesteps(T: int, steps: int, spacing: str = "trailing") -> list[int]:
    """``steps`` distinct indices (t - 1) into a T-step chain, in sampling order.

    ``"trailing"`` (default): evenly spaced from T - 1 down,
    ``floor(T - k T / steps + 1/2) - 1`` for k = 0..steps-1, so the first step
    starts at the chain's last index (zero signal). ``"leading"``: the indices
    ``floor(k T / steps)``, largest first (the DDIM paper's and
    improved-diffusion's respacing: T = 1000, 20 steps visits 950, 900, ..., 0),
    so the first step skips the highest-noise stretch of the chain.
    ``"quadratic"``: ``floor((T - 1) k^2 / (steps - 1)^2)``, the DDIM paper's
    quadratic selection (its CIFAR-10 choice) with the constant chosen so the
    first step is the chain's last index; short steps near the data, long ones
    at high noise. Where two indices would coincide (at small k when steps
    exceeds about ``sqrt(T)``), the k-th is raised to k, one above the previous.
    With ``steps = T`` every spacing visits every index."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, T={T}], got {steps}")
    idx = _SPACING_RULES[_check_spacing(spacing)](T, steps, np.arange(steps))
    return [int(v) for v in idx]


class _EpsSampler(Sampler):
    """Shared part of DDPM and DDIM: a schedule, strided timesteps and the
    x_0 / eps estimate (x_0 clipped to the denoiser's ``x0_clip`` range when
    ``clip_denoised``). ``spacing`` picks the strided timesteps (see
    :func:`sampler_timesteps`)."""

    kind = "eps"

    def __init__(self, schedule: DiffusionSchedule, guidance_scale: float = 1.0, clip_denoised: bool = True, spacing: str = "trailing") -> None:
        super().__init__(guidance_scale)
        self.schedule = schedule
        self.clip_denoised = bool(clip_denoised)
        self.spacing = _check_spacing(spacing, f"{self.name} sampler: ")

    def timesteps(self, steps: int) -> list[int]:
        return sampler_timesteps(self.schedule.T, steps, self.spacing)

    def x0_eps(self, denoiser: Denoiser, x: Tensor, i: int, y: Tensor | None) -> tuple[Tensor, Tensor, float]:
        """(x_0 estimate, eps consistent with it, abar_t) at index i."""
        eps = denoiser(x, i, y, self.guidance_scale)
        ab = self.schedule.abar(i)
        x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        clip = denoiser.x0_clip if self.clip_denoised else None
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        return x0, eps, ab

    def options(self) -> dict[str, Any]:
        return {**super().options(), "clip_denoised": self.clip_denoised, "spacing": self.spacing, "T": self.schedule.T}


@SAMPLERS.register("ddpm", kind="eps")
class DDPMSampler(_EpsSampler):
    """Ancestral sampling: posterior mean and variance beta~ of the (respaced) chain; T steps by default."""

    name = "ddpm"

    def default_steps(self) -> int:
        return self.schedule.T

    def step(self, denoiser: Denoiser, x: Tensor, t: int, t_next: int | None, y: Tensor | None, generator: torch.Generator | None) -> Tensor:
        s = -1 if t_next is None else t_next
        x0, _, ab_t = self.x0_eps(denoiser, x, t, y)
        ab_s = self.schedule.abar(s)
        a = ab_t / ab_s
        beta = 1 - a
        x = math.sqrt(ab_s) * beta / (1 - ab_t) * x0 + math.sqrt(a) * (1 - ab_s) / (1 - ab_t) * x
        sigma = math.sqrt(beta * (1 - ab_s) / (1 - ab_t))
        if sigma > 0 and s >= 0:
            x = x + sigma * torch.randn(x.shape, generator=generator).to(x.device)
        return x


@SAMPLERS.register("ddim", kind="eps")
class DDIMSampler(_EpsSampler):
    """DDIM (Song et al. 2021): ``eta = 0`` deterministic, ``eta = 1`` the DDPM variance; min(50, T) steps by default."""

    name = "ddim"

    def __init__(self, schedule: DiffusionSchedule, guidance_scale: float = 1.0, clip_denoised: bool = True, eta: float = 0.0, spacing: str = "trailing") -> None:
        super().__init__(schedule, guidance_scale, clip_denoised, spacing)
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"ddim sampler: eta must be in [0, 1], got {eta}")
        self.eta = float(eta)

    def default_steps(self) -> int:
        return min(50, self.schedule.T)

    def step(self, denoiser: Denoiser, x: Tensor, t: int, t_next: int | None, y: Tensor | None, generator: torch.Generator | None) -> Tensor:
        s = -1 if t_next is None else t_next
        x0, eps, ab_t = self.x0_eps(denoiser, x, t, y)
        ab_s = self.schedule.abar(s)
        sigma = self.eta * math.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))
        x = math.sqrt(ab_s) * x0 + math.sqrt(max(1 - ab_s - sigma**2, 0.0)) * eps
        if sigma > 0 and s >= 0:
            x = x + sigma * torch.randn(x.shape, generator=generator).to(x.device)
        return x

    def options(self) -> dict[str, Any]:
        return {**super().options(), "eta": self.eta}


def _log_snr_half(ab: float) -> float:
    """lambda = log(alpha / sigma) = log(abar / (1 - abar)) / 2 of a signal fraction in (0, 1)."""
    return 0.5 * (math.log(ab) - math.log1p(-ab))


@SAMPLERS.register("dpm++2m", kind="eps")
class DPMSolverPP2MSampler(_EpsSampler):
    """DPM-Solver++(2M) (Lu et al. 2022): the deterministic probability-flow
    ODE that DDIM (eta = 0) follows, solved in log-SNR with a second-order
    multistep rule on the x_0 estimates; one network evaluation per step.

    In ``lambda = log(alpha / sigma)`` (``alpha = sqrt(abar)``,
    ``sigma = sqrt(1 - abar)``), a step from t to s with ``h = lambda_s - lambda_t``
    is ``x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^-h) D``. The first step
    uses ``D = x0_t`` (exactly a DDIM step); later ones the extrapolation
    ``D = (1 + 1/(2r)) x0_t - 1/(2r) x0_prev`` with ``r = h_prev / h``. The last
    step, to clean data (sigma = 0), returns ``x0_t`` as DDIM does. x_0
    estimates are clipped like DDIM's. min(20, T) steps by default.
    """

    name = "dpm++2m"
    _prev: tuple[Tensor, float] | None = None  # (x0 estimate, lambda) of the previous step of a run

    def default_steps(self) -> int:
        return min(20, self.schedule.T)

    @torch.no_grad()
    def run(self, denoiser: Denoiser, x: Tensor, steps: int | None = None, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        self._prev = None
        try:
            return super().run(denoiser, x, steps, y, generator)
        finally:
            self._prev = None

    def step(self, denoiser: Denoiser, x: Tensor, t: int, t_next: int | None, y: Tensor | None, generator: torch.Generator | None) -> Tensor:
        x0, _, ab_t = self.x0_eps(denoiser, x, t, y)
        if t_next is None:
            return x0
        ab_s = self.schedule.abar(t_next)
        lam_t, lam_s = _log_snr_half(ab_t), _log_snr_half(ab_s)
        h = lam_s - lam_t
        d = x0
        if self._prev is not None:
            half_inv_r = 0.5 * h / (lam_t - self._prev[1])
            d = (1 + half_inv_r) * x0 - half_inv_r * self._prev[0]
        self._prev = (x0, lam_t)
        return math.sqrt((1 - ab_s) / (1 - ab_t)) * x + math.sqrt(ab_s) * (-math.expm1(-h)) * d


# ----------------------------------------------------------------------------- ODE (velocity) samplers
class _VelocitySampler(Sampler):
    """Integrators of dx/dt = v(x, t) from t = 0 (noise) to t = 1 (data) on ``steps`` equal steps."""

    kind = "velocity"

    def __init__(self, guidance_scale: float = 1.0, default_steps: int = 50) -> None:
        super().__init__(guidance_scale)
        if int(default_steps) < 1:
            raise ValueError(f"{self.name} sampler: default_steps must be >= 1, got {default_steps}")
        self._default_steps = int(default_steps)
        self.dt = 1.0 / self._default_steps

    def default_steps(self) -> int:
        return self._default_steps

    def timesteps(self, steps: int) -> list[float]:
        """``k / steps`` for k = 0..steps-1; also fixes the step size ``dt = 1 / steps`` used by :meth:`step`."""
        if steps < 1:
            raise ValueError(f"{self.name} sampler: steps must be >= 1, got {steps}")
        self.dt = 1.0 / steps
        return [k * self.dt for k in range(steps)]


@SAMPLERS.register("euler", kind="velocity")
class EulerSampler(_VelocitySampler):
    """Explicit Euler: ``x <- x + dt v(x, t)``, one evaluation per step."""

    name = "euler"

    def step(self, denoiser: Denoiser, x: Tensor, t: float, t_next: float | None, y: Tensor | None, generator: torch.Generator | None) -> Tensor:
        return x + self.dt * denoiser(x, t, y, self.guidance_scale)


@SAMPLERS.register("heun", kind="velocity")
class HeunSampler(_VelocitySampler):
    """Heun's method (Euler predictor, trapezoidal corrector): two evaluations per step."""

    name = "heun"

    def step(self, denoiser: Denoiser, x: Tensor, t: float, t_next: float | None, y: Tensor | None, generator: torch.Generator | None) -> Tensor:
        t1 = 1.0 if t_next is None else t_next
        dt = self.dt
        v0 = denoiser(x, t, y, self.guidance_scale)
        x_pred = x + dt * v0
        v1 = denoiser(x_pred, t1, y, self.guidance_scale)
        return x + dt * 0.5 * (v0 + v1)


@dataclass(frozen=True)
class OnePassSampler:
    """Sampling options of a model that samples in one network pass (a VAE's
    decoder mode and temperature, an autoencoder's latent prior, a flow's
    temperature): what ``make_sampler`` returns for such models. ``nfe`` is 1."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    nfe: int = 1

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


def make_sampler(kind: str, name: str, params: dict[str, Any], context: dict[str, Any], who: str) -> Sampler:
    """Build the sampler ``name`` of the ``kind`` a model runs (``eps``, ``velocity``, ``tokens-causal``,
    ``tokens-masked``; see :data:`SAMPLERS`).

    ``context`` holds what the model supplies (schedule, clip, default_steps);
    ``params`` are the user's options (guidance_scale, eta ...). Unknown names
    or options raise errors that name ``who`` and the valid choices.
    """
    valid = [n for n, e in SAMPLERS.entries().items() if e.meta.get("kind") == kind]
    if name not in valid:
        raise ValueError(f"{who}: unknown sampler {name!r}; valid: {', '.join(valid)}")
    cls = SAMPLERS.load(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", *context)]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"{who}: sampler {name!r} got unknown options {unknown}; valid: {accepted}")
    sig = inspect.signature(cls.__init__).parameters
    ctx = {k: v for k, v in context.items() if k in sig}
    return cls(**ctx, **params)
