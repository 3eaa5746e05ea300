"""Flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023).

The probability path is the straight line between a noise sample x_0 ~ N(0, I)
and a data sample x_1: ``x_t = (1 - t) x_0 + t x_1``, t in [0, 1], whose
conditional velocity is ``x_1 - x_0``. A network v(x_t, t) is regressed on it
(mean squared error, t ~ U[0, 1]); its minimiser is the marginal velocity field
that transports N(0, I) to the data along the ODE dx/dt = v(x, t).

Sampling integrates that ODE from t = 0 to 1 with the explicit Euler method:
``steps`` equal steps, one network evaluation each
(``x <- x + v(x, t_k) / steps``); ``steps = 1`` is ``x_0 + v(x_0, 0)``.

Networks: the small U-Net of ``nets.UNet`` for images, ``nets.TimeMLP`` for
2-D data; t is scaled by 1000 before the sinusoidal embedding. With
``conditional=True`` labels are dropped with probability ``p_uncond`` during
training and sampling uses classifier-free guidance on the velocity,
``v_u + w (v_c - v_u)`` (``make_sampler(guidance_scale=w)``). Samplers are
objects from :mod:`baselines.samplers`: ``"euler"`` (the default) and
``"heun"`` (second order, two evaluations per step).

Images are mapped to [-1, 1] and the samples quantized back to the K levels in
[0, 1]; 2-D data are standardized. Sampling uses the exponential moving average
of the weights. No likelihood is reported (the ODE's change of variables
would need a trace estimator).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .nets import TimeMLP, UNet, pick_device
from .protocol import Budget, DataInfo, GeneratorInfo, TrainData, TrainReport, class_labels, count_parameters, from_levels, to_levels
from .registry import register
from .samplers import Denoiser, Sampler, make_sampler
from .training import EMA, Batch, default_warmup, train

T_SCALE = 1000.0  # t in [0, 1] -> [0, 1000] for the sinusoidal embedding


class FlowMatching:
    """Rectified flow with an Euler sampler; see the module docstring.

    Hyperparameters (factory :func:`make_flow_matching`): network size
    (``width``, ``mults``, ``blocks`` for the U-Net, ``hidden`` for the 2-D
    MLP), ``conditional`` / ``p_uncond``, Adam ``lr``, ``ema_decay``,
    ``default_steps`` (Euler steps when ``sample`` gets none).
    """

    name = "flow-matching"
    family = "flow_matching"

    def __init__(
        self,
        info: DataInfo,
        width: int = 16,
        mults: Sequence[int] = (1, 2),
        blocks: int = 1,
        hidden: Sequence[int] = (256, 256, 256),
        conditional: bool = False,
        p_uncond: float = 0.1,
        lr: float = 2e-3,
        ema_decay: float = 0.999,
        default_steps: int = 50,
        device: str | None = None,
    ) -> None:
        if info.kind not in ("image", "points"):
            raise ValueError(f"flow-matching: unsupported data kind {info.kind!r}")
        if info.is_image and (info.levels is None or info.levels < 2):
            raise ValueError(f"flow-matching: image data needs levels >= 2, got {info.levels}")
        if conditional and info.num_classes < 1:
            raise ValueError(f"flow-matching: conditional=True needs a labelled data set; {info.name} has no classes")
        if not 0.0 <= p_uncond < 1.0:
            raise ValueError(f"flow-matching: p_uncond must be in [0, 1), got {p_uncond}")
        if default_steps < 1:
            raise ValueError(f"flow-matching: default_steps must be >= 1, got {default_steps}")
        self.data_info = info
        self.conditional = bool(conditional)
        self.p_uncond = float(p_uncond)
        self.lr = float(lr)
        self._default_steps = int(default_steps)
        self.device = pick_device(device)
        self.num_classes = info.num_classes if self.conditional else 0
        if info.is_image:
            self.net: nn.Module = UNet(
                info.shape[0], width=width, mults=tuple(mults), blocks=blocks, num_classes=self.num_classes, t_scale=T_SCALE
            )
        else:
            self.net = TimeMLP(info.dim, hidden=tuple(hidden), num_classes=self.num_classes, t_scale=T_SCALE)
        self.net.to(self.device)
        self.ema = EMA(self.net, ema_decay)
        self.shift = torch.zeros(info.dim if not info.is_image else 1)
        self.scale = torch.ones_like(self.shift)
        self.last_nfe = 0
        self._fitted = False

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
    def info(self) -> GeneratorInfo:
        n, n_tr = count_parameters(self.net)
        return GeneratorInfo(
            name=self.name,
            family=self.family,
            shape=tuple(self.data_info.shape),
            conditioning="class" if self.conditional else "none",
            n_params=n,
            n_trainable=n_tr,
            likelihood=None,
            iterative=True,
            default_steps=self._default_steps,
        )

    @property
    def accepts(self) -> frozenset[str]:
        return frozenset({"labels"}) if self.conditional else frozenset()

    def make_sampler(self, sampler: str = "euler", **params: Any) -> Sampler:
        """A sampler object for :meth:`sample`: ``"euler"`` (default) or ``"heun"``;
        ``guidance_scale`` w >= 0 for a conditional model (0 unconditional, 1 conditional)."""
        if "guidance_scale" in params and not self.conditional:
            raise ValueError("flow-matching: guidance_scale needs a model trained with conditional=True")
        return make_sampler("velocity", sampler, params, {"default_steps": self._default_steps}, "flow-matching")

    # -- network --------------------------------------------------------------------
    def denoiser(self, net: nn.Module | None = None) -> Denoiser:
        """The velocity field the samplers integrate: ``net`` (default the EMA
        network) at float times in [0, 1], with classifier-free guidance."""
        return Denoiser(self.ema.module if net is None else net, self.num_classes, self.device, time_dtype=torch.float32)

    def velocity(self, net: nn.Module, x: Tensor, t: float | Tensor, y: Tensor | None = None, guidance_scale: float = 1.0) -> Tensor:
        """v(x, t) with classifier-free guidance ``v_u + w (v_c - v_u)`` for a
        conditional model given labels; t a float in [0, 1] or (N,) tensor."""
        return self.denoiser(net)(x, t, y, guidance_scale)

    # -- training -------------------------------------------------------------------
    def loss(self, batch: Batch, generator: torch.Generator | None = None, *, net: nn.Module | None = None, p_uncond: float | None = None) -> Tensor:
        """``||v(x_t, t) - (x_1 - x_0)||^2`` (mean) with t ~ U[0, 1], x_0 ~ N(0, I).

        ``batch.x`` (the data x_1) is in the model's space (:meth:`to_internal`);
        labels of a conditional model are replaced by the null label with
        probability ``p_uncond`` (default the model's; 0 draws nothing).
        """
        net = self.net if net is None else net
        x1, yb = batch.x, batch.y
        b = x1.shape[0]
        x0 = torch.randn(x1.shape, generator=generator)
        t = torch.rand(b, generator=generator)
        tb = t.view(-1, *([1] * (x1.dim() - 1)))
        xt = ((1 - tb) * x0 + tb * x1).to(self.device)
        target = (x1 - x0).to(self.device)
        if not self.conditional:
            pred = net(xt, t.to(self.device))
        else:
            if yb is None:
                raise ValueError("flow-matching: a conditional model's loss needs labels (batch.y)")
            p = self.p_uncond if p_uncond is None else float(p_uncond)
            if p > 0:
                drop = torch.rand(b, generator=generator) < p
                yb = torch.where(drop, torch.full_like(yb, self.num_classes), yb)
            pred = net(xt, t.to(self.device), yb.to(self.device))
        return nn.functional.mse_loss(pred, target)

    def fit(self, data: TrainData, budget: Budget) -> TrainReport:
        """``budget.steps`` Adam steps on :meth:`loss` (LR warm-up, clipping at 1, EMA)."""
        if tuple(data.x.shape[1:]) != tuple(self.data_info.shape):
            raise ValueError(
                f"flow-matching: training data has shape {tuple(data.x.shape)}; expected (N, {', '.join(map(str, self.data_info.shape))})"
            )
        if not torch.isfinite(data.x).all():
            raise ValueError("flow-matching: training data contains NaN/inf values")
        if self.conditional and data.y is None:
            raise ValueError("flow-matching: conditional=True needs training labels (TrainData.y)")
        if budget.steps < 1:
            raise ValueError(f"flow-matching: budget.steps must be >= 1, got {budget.steps}")
        t0 = time.perf_counter()
        if not self.data_info.is_image:
            xf = data.x.float().reshape(len(data.x), -1)
            self.shift, self.scale = xf.mean(0), xf.std(0).clamp_min(1e-6)
        x = self.to_internal(data.x)
        y = data.y.long() if (self.conditional and data.y is not None) else None
        self.net.train()
        opt = torch.optim.Adam(self.net.parameters(), lr=budget.lr or self.lr)
        report = train(
            "flow-matching", budget, x, y, loss=self.loss, optimizer=opt, params=self.net.parameters(),
            warmup=default_warmup(budget.steps), clip_grad=1.0, ema=self.ema, started=t0,
        )  # fmt: skip
        self.net.eval()
        self._fitted = True
        return report

    # -- sampling -------------------------------------------------------------------
    def _labels(self, n: int, labels: Tensor | None, generator: torch.Generator | None) -> Tensor | None:
        labels = class_labels("flow-matching", n, labels, self.num_classes, self.conditional, generator)
        return None if labels is None else labels.to(self.device)

    @torch.no_grad()
    def sample_continuous(
        self,
        n: int,
        *,
        labels: Tensor | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        x0: Tensor | None = None,
        sampler: Sampler | None = None,
    ) -> Tensor:
        """Integrate the ODE from t = 0 to 1 in ``steps`` equal steps with
        ``sampler`` (default Euler), before quantization, in the model's
        internal space ([-1, 1] for images, standardized 2-D data). ``x0``
        overrides the initial noise. Sets ``last_nfe``."""
        sampler = self.make_sampler() if sampler is None else sampler
        if getattr(sampler, "kind", "velocity") != "velocity":
            raise ValueError(f"flow-matching: sampler {getattr(sampler, 'name', sampler)!r} needs a noise-prediction model; use euler or heun")
        steps = self._default_steps if steps is None else int(steps)
        if steps < 1:
            raise ValueError(f"flow-matching: steps must be >= 1, got {steps}")
        y = self._labels(n, labels, generator)
        shape = (n, *self.data_info.shape) if self.data_info.is_image else (n, self.data_info.dim)
        x = torch.randn(shape, generator=generator) if x0 is None else x0.float()
        x = x.to(self.device)
        self.ema.module.eval()
        x = sampler.run(self.denoiser(), x, steps, y, generator)
        self.last_nfe = sampler.nfe
        return x

    def sample(
        self,
        n: int,
        *,
        labels: Tensor | None = None,
        prompts: Sequence[str] | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        sampler: Sampler | None = None,
    ) -> Tensor:
        """``n`` samples with ``steps`` steps of ``sampler`` (default Euler; one
        network evaluation per step, doubled under guidance other than 0 or 1;
        ``last_nfe`` reports them). Noise is drawn on the CPU from
        ``generator``. Returns float32 on the CPU: images on the K levels of
        [0, 1], 2-D data (n, 2)."""
        if prompts is not None:
            raise ValueError("flow-matching: text prompts are not supported (class labels only)")
        if n < 0:
            raise ValueError(f"flow-matching: n must be >= 0, got {n}")
        return self.from_internal(self.sample_continuous(n, labels=labels, steps=steps, generator=generator, sampler=sampler))

    # -- state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        cpu = lambda sd: {k: v.detach().cpu() for k, v in sd.items()}
        return {
            "net": cpu(self.net.state_dict()),
            "ema": cpu(self.ema.module.state_dict()),
            "ema_n": self.ema.n,
            "shift": self.shift.clone(),
            "scale": self.scale.clone(),
            "fitted": self._fitted,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.ema.module.load_state_dict(state["ema"])
        self.ema.n = int(state.get("ema_n", 0))
        self.shift, self.scale = state["shift"].float(), state["scale"].float()
        self._fitted = bool(state.get("fitted", True))
        self.net.eval()


@register("flow-matching", family="flow_matching")
def make_flow_matching(
    info: DataInfo,
    width: int = 16,
    mults: Sequence[int] = (1, 2),
    blocks: int = 1,
    hidden: Sequence[int] = (256, 256, 256),
    conditional: bool = False,
    p_uncond: float = 0.1,
    lr: float = 2e-3,
    ema_decay: float = 0.999,
    default_steps: int = 50,
    device: str | None = None,
) -> FlowMatching:
    """Rectified flow / conditional flow matching with an Euler sampler."""
    return FlowMatching(
        info,
        width=width,
        mults=mults,
        blocks=blocks,
        hidden=hidden,
        conditional=conditional,
        p_uncond=p_uncond,
        lr=lr,
        ema_decay=ema_decay,
        default_steps=default_steps,
        device=device,
    )
