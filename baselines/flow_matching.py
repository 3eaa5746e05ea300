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

from typing import Any

import torch
from torch import Tensor, nn

from .base import with_base_keywords
from .denoising import DenoisingModel
from .protocol import DataInfo
from .registry import register
from .samplers import Sampler
from .training import Batch

T_SCALE = 1000.0  # t in [0, 1] -> [0, 1000] for the sinusoidal embedding


@with_base_keywords
class FlowMatching(DenoisingModel):
    """Rectified flow with an Euler sampler; see the module docstring.

    Hyperparameters (registered as ``flow-matching``): network size
    (``width``, ``mults``, ``blocks`` for the U-Net, ``hidden`` for the 2-D
    MLP), ``conditional`` / ``p_uncond``, Adam ``lr``, ``ema_decay``,
    ``default_steps`` (sampler steps when ``sample`` gets none).
    """

    name = "flow-matching"
    family = "flow_matching"
    prediction = "velocity"
    default_sampler = "euler"
    deterministic_sampler = "euler"
    time_dtype = torch.float32
    likelihood = None

    t_scale = T_SCALE

    def __init__(self, info: DataInfo, default_steps: int = 50, **kwargs: Any) -> None:
        if default_steps < 1:
            raise ValueError(f"flow-matching: default_steps must be >= 1, got {default_steps}")
        self._default_steps = int(default_steps)
        super().__init__(info, **kwargs)

    @property
    def default_steps(self) -> int:
        return self._default_steps

    def make_sampler(self, sampler: str | None = None, **params: Any) -> Sampler:
        """A sampler object for :meth:`sample`: ``"euler"`` (default) or ``"heun"``;
        ``guidance_scale`` w >= 0 for a conditional model (0 unconditional, 1 conditional)."""
        return super().make_sampler(sampler, **params)

    def _sampler_context(self) -> dict[str, Any]:
        return {"default_steps": self._default_steps}

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
        x1 = batch.x
        b = x1.shape[0]
        x0 = torch.randn(x1.shape, generator=generator)
        t = torch.rand(b, generator=generator)
        tb = t.view(-1, *([1] * (x1.dim() - 1)))
        xt = ((1 - tb) * x0 + tb * x1).to(self.device)
        target = (x1 - x0).to(self.device)
        y = self._labels_for_loss(batch.y, b, p_uncond, generator)
        pred = net(xt, t.to(self.device)) if y is None else net(xt, t.to(self.device), y)
        return nn.functional.mse_loss(pred, target)



# The class is the factory: its constructor's keywords are the hyperparameters.
make_flow_matching = register("flow-matching", family="flow_matching", description="Rectified flow / conditional flow matching with Euler and Heun samplers.")(FlowMatching)
