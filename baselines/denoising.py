"""What diffusion and flow matching share: a denoising network with EMA, labels
with classifier-free guidance, the map between data and the network's space,
the fit scaffolding around :func:`baselines.training.train`, sampling through
sampler objects and the state.

A subclass supplies the objective (``loss``), what its network predicts
(``prediction``: ``"eps"`` or ``"velocity"``, which picks the compatible
samplers of :mod:`baselines.samplers`), the sampler context (schedule, default
steps) and its likelihood, if any.

Representation: images are mapped to their K levels in [-1, 1]; 2-D data are
standardized with the training mean and std (``shift``, ``scale``, part of the
state). Samples are mapped back and images quantized to the K levels of [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .base import Family
from .nets import TimeMLP, UNet
from .protocol import Budget, DataInfo, TrainData, class_labels, from_levels, to_levels
from .samplers import Denoiser, Sampler, make_sampler
from .training import EMA, Batch, default_warmup

__all__ = ["DenoisingModel"]


class DenoisingModel(Family):
    """Base class of :class:`~baselines.diffusion.DDPM` and :class:`~baselines.flow_matching.FlowMatching`.

    Args:
        info: the data set's metadata (images with K >= 2 levels, or 2-D points).
        width, mults, blocks: U-Net size for images (``nets.UNet``).
        hidden: MLP widths for 2-D data (``nets.TimeMLP``).
        conditional: class-conditional with classifier-free guidance; labels
            are replaced by the null label with probability ``p_uncond`` in training.
        lr: Adam learning rate (``budget.lr`` overrides it).
        ema_decay: decay of the weight average used for sampling.
        device: ``"cpu"``, ``"cuda"`` or None (auto).

    A subclass declares only its own hyperparameters and passes the rest on
    (``**kwargs``); :func:`baselines.base.with_base_keywords` gives it the
    full signature the registry reads.
    """

    name: ClassVar[str] = "denoiser"
    family: ClassVar[str] = ""
    clip_grad = 1.0
    sample_needs_fit = False  # the network runs as initialised (tests set an oracle denoiser)
    prediction: ClassVar[str] = ""  # "eps" or "velocity"
    default_sampler: ClassVar[str] = ""
    deterministic_sampler: ClassVar[str] = ""  # the sampler that maps noise to a sample deterministically (latent path)
    time_dtype: ClassVar[torch.dtype] = torch.float32
    likelihood: ClassVar[str | None] = None
    t_scale: ClassVar[float] = 1.0  # multiplies t before the sinusoidal time embedding

    def __init__(
        self,
        info: DataInfo,
        *,
        width: int = 16,
        mults: Sequence[int] = (1, 2),
        blocks: int = 1,
        hidden: Sequence[int] = (256, 256, 256),
        conditional: bool = False,
        p_uncond: float = 0.1,
        lr: float = 2e-3,
        ema_decay: float = 0.999,
        device: str | None = None,
    ) -> None:
        who = self.name
        if info.kind not in ("image", "points"):
            raise ValueError(f"{who}: unsupported data kind {info.kind!r}")
        if info.is_image and (info.levels is None or info.levels < 2):
            raise ValueError(f"{who}: image data needs levels >= 2, got {info.levels}")
        if conditional and info.num_classes < 1:
            raise ValueError(f"{who}: conditional=True needs a labelled data set; {info.name} has no classes")
        if not 0.0 <= p_uncond < 1.0:
            raise ValueError(f"{who}: p_uncond must be in [0, 1), got {p_uncond}")
        super().__init__(info, lr=float(lr), device=device)
        self.conditional = bool(conditional)
        self.p_uncond = float(p_uncond)
        self.num_classes = info.num_classes if self.conditional else 0
        if info.is_image:
            self.net: nn.Module = UNet(
                info.shape[0], width=width, mults=tuple(mults), blocks=blocks, num_classes=self.num_classes, t_scale=self.t_scale
            )
        else:
            self.net = TimeMLP(info.dim, hidden=tuple(hidden), num_classes=self.num_classes, t_scale=self.t_scale)
        self.net.to(self.device)
        self.ema = EMA(self.net, ema_decay)
        # 2-D data are standardized; images use the fixed map [0, 1] -> [-1, 1]
        self.shift = torch.zeros(info.dim if not info.is_image else 1)
        self.scale = torch.ones_like(self.shift)

    # -- representation -------------------------------------------------------------
    def to_internal(self, x: Tensor) -> Tensor:
        """Data -> the model's space: images on the K levels of [-1, 1], 2-D data standardized."""
        x = x.float()
        if self.data_info.is_image:
            return from_levels(to_levels(x, self.data_info.levels), self.data_info.levels) * 2 - 1
        return (x - self.shift) / self.scale

    def from_internal(self, z: Tensor) -> Tensor:
        """The model's space -> data on the CPU (images quantized to the K levels of [0, 1])."""
        z = z.float().cpu()
        if self.data_info.is_image:
            return from_levels(to_levels((z + 1) / 2, self.data_info.levels), self.data_info.levels)
        return z * self.scale + self.shift

    # -- info / options ---------------------------------------------------------------
    @property
    def default_steps(self) -> int:
        """Steps of the default sampler."""
        raise NotImplementedError

    def info_fields(self) -> dict[str, Any]:
        return {"conditioning": "class" if self.conditional else "none", "likelihood": self.likelihood, "iterative": True, "default_steps": self.default_steps}

    @property
    def accepts(self) -> frozenset[str]:
        return frozenset({"labels"}) if self.conditional else frozenset()

    def _sampler_context(self) -> dict[str, Any]:
        """What the model hands its samplers (schedule, default steps)."""
        return {}

    def _check_sampler_params(self, params: dict[str, Any]) -> None:
        """Model-specific validation of sampler options (subclasses)."""

    def make_sampler(self, sampler: str | None = None, **params: Any) -> Sampler:
        """A sampler object for :meth:`sample` (training is unaffected): ``sampler``
        names one of :data:`baselines.samplers.SAMPLERS` for this model's
        prediction (default :attr:`default_sampler`); ``guidance_scale`` w >= 0
        for a conditional model (0 unconditional, 1 conditional); other options
        are the sampler's."""
        if "guidance_scale" in params and not self.conditional:
            raise ValueError(f"{self.name}: guidance_scale needs a model trained with conditional=True")
        self._check_sampler_params(params)
        return make_sampler(self.prediction, sampler or self.default_sampler, params, self._sampler_context(), self.name)

    # -- network --------------------------------------------------------------------
    def denoiser(self, net: nn.Module | None = None) -> Denoiser:
        """What the samplers call: ``net`` (default the EMA network) with classifier-free guidance."""
        return Denoiser(self.ema.module if net is None else net, self.num_classes, self.device, time_dtype=self.time_dtype)

    # -- training -------------------------------------------------------------------
    def loss(self, batch: Batch, generator: torch.Generator | None = None, *, net: nn.Module | None = None, p_uncond: float | None = None) -> Tensor:
        """The training objective on ``batch`` (in the model's space); see the subclasses."""
        raise NotImplementedError

    def _labels_for_loss(self, yb: Tensor | None, b: int, p_uncond: float | None, generator: torch.Generator | None) -> Tensor | None:
        """Labels for the network in a loss: None for an unconditional model, else ``yb`` with each
        label replaced by the null label with probability ``p_uncond`` (default the model's; 0 draws nothing)."""
        if not self.conditional:
            return None
        if yb is None:
            raise ValueError(f"{self.name}: a conditional model's loss needs labels (batch.y)")
        p = self.p_uncond if p_uncond is None else float(p_uncond)
        if p > 0:
            drop = torch.rand(b, generator=generator) < p
            yb = torch.where(drop, torch.full_like(yb, self.num_classes), yb)
        return yb.to(self.device)

    def _fit_statistics(self, x: Tensor) -> None:
        """Set the standardization of 2-D data from the training set x (N, D)."""
        self.shift = x.mean(0)
        self.scale = x.std(0).clamp_min(1e-6)

    def prepare(self, data: TrainData) -> tuple[Tensor, Tensor | None]:
        """The checked training data in the model's space (2-D data set the standardization) and, for a
        conditional model, its labels. Training (:meth:`fit`): Adam on :meth:`loss`, linear LR warm-up,
        gradient norm clipped at 1, EMA of the weights."""
        x = self.check_x(data.x, "training data")
        if self.conditional and data.y is None:
            raise ValueError(f"{self.name}: conditional=True needs training labels (TrainData.y)")
        if not self.data_info.is_image:
            self._fit_statistics(x.reshape(len(x), -1))
        return self.to_internal(x), (data.y.long() if self.conditional else None)

    def before_fit(self, x: Tensor, budget: Budget) -> None:
        if budget.steps < 1:
            raise ValueError(f"{self.name}: budget.steps must be >= 1, got {budget.steps}")

    def warmup(self, budget: Budget) -> int:
        return default_warmup(budget.steps)

    # -- sampling -------------------------------------------------------------------
    def _labels(self, n: int, labels: Tensor | None, generator: torch.Generator | None) -> Tensor | None:
        labels = class_labels(self.name, n, labels, self.num_classes, self.conditional, generator)
        return None if labels is None else labels.to(self.device)

    def _run_denoiser(self, den: Denoiser) -> Denoiser:
        """Hook: adjust the denoiser a run uses (e.g. its x_0 clipping range)."""
        return den

    @torch.no_grad()
    def sample_internal(
        self,
        n: int,
        *,
        labels: Tensor | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        sampler: Sampler | None = None,
        net: nn.Module | None = None,
    ) -> Tensor:
        """Run ``sampler`` (default :meth:`make_sampler`) from noise drawn on the CPU
        from ``generator`` (or the given ``noise``) and return the result in the
        model's space, on its device, before quantization. Labels (random when
        None for a conditional model) are drawn before the noise. ``net``: the
        network to sample (default the EMA network), e.g. an adapted copy.
        Sets ``last_nfe``."""
        sampler = self.make_sampler() if sampler is None else sampler
        kind = getattr(sampler, "kind", self.prediction)
        if kind != self.prediction:
            raise ValueError(
                f"{self.name}: sampler {getattr(sampler, 'name', sampler)!r} integrates {kind}-prediction models; "
                f"this model predicts {self.prediction}"
            )
        steps = sampler.default_steps() if steps is None else int(steps)
        sampler.timesteps(steps)  # validates steps before any noise is drawn
        y = self._labels(n, labels, generator)
        shape = (n, *self.data_info.shape) if self.data_info.is_image else (n, self.data_info.dim)
        x = torch.randn(shape, generator=generator) if noise is None else noise.float().reshape(shape)
        net = self.ema.module if net is None else net
        net.eval()
        x = sampler.run(self._run_denoiser(self.denoiser(net)), x.to(self.device), steps, y, generator)
        self.last_nfe = sampler.nfe
        return x

    @property
    def latent_dim(self) -> int:
        """Size of the initial noise, the data's dimension (:class:`~genbench.protocol.LatentPath`)."""
        return self.data_info.dim

    @torch.no_grad()
    def from_latent(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The deterministic sampler's output (``deterministic_sampler`` at its default steps: DDIM with eta 0, the
        Euler ODE) for initial noise ``z`` (N, latent_dim): images in [0, 1], clipped, not quantized; 2-D data in
        data units. Unconditional models only."""
        if self.conditional:
            raise ValueError(f"{self.name}: a conditional model has no latent path without labels")
        sampler = self.make_sampler(self.deterministic_sampler)
        x = self.sample_internal(len(z), noise=torch.as_tensor(z).float(), sampler=sampler, generator=generator).float().cpu()
        return ((x + 1) / 2).clamp(0, 1) if self.data_info.is_image else x * self.scale + self.shift

    def draw(self, n: int, labels: Tensor | None, steps: int | None, generator: torch.Generator | None, sampler: Any) -> Tensor:
        """Draw ``n`` samples with ``sampler`` (from :meth:`make_sampler`; default
        :attr:`default_sampler`). ``steps`` is the number of sampler steps (network
        evaluations per step: one, two under guidance other than 0 or 1 or for
        two-stage samplers; ``last_nfe`` reports the total per sample).
        ``labels`` (N,) in 0..C-1 for conditional models (random when None).
        Noise is drawn on the CPU from ``generator``. Returns float32 on the
        CPU: images NCHW on the K levels of [0, 1], 2-D data (n, 2)."""
        return self.from_internal(self.sample_internal(n, labels=labels, steps=steps, generator=generator, sampler=sampler))

    # -- state ----------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """The 2-D standardization (``shift``, ``scale``)."""
        return {"shift": self.shift.clone(), "scale": self.scale.clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.shift, self.scale = state["shift"].float(), state["scale"].float()
