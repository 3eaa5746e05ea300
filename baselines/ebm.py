"""Energy-based model trained with persistent contrastive divergence (PCD).

p(x) = exp(-E(x)) / Z with an unnormalized energy network E. The gradient of
the log-likelihood is -E_data[grad E] + E_model[grad E] (contrastive
divergence, Hinton 2002); the model expectation uses negative samples from Langevin chains
that persist across training steps in a replay buffer (Tieleman 2008; Du &
Mordatch 2019):

* each step takes a batch of chains from the buffer (a fraction ``reinit`` of
  them restarted from noise), runs ``train_steps`` Langevin updates
  x <- x - step_size * clamp(grad E(x), -grad_clamp, grad_clamp) + noise * eps
  (no clamp when ``grad_clamp`` is None), writes them back, and
  minimizes E(x_data) - E(x_neg) + reg * (E(x_data)^2 + E(x_neg)^2).
* ``sample(n, steps=S)`` starts *fresh* chains from noise and runs S Langevin
  updates (``info.iterative``; default ``default_steps``), so quality depends on
  S, and the latency grows with it.

Step size and noise are decoupled (the usual practice for image EBMs), so the
chains sample a tempered version of p. Z is unknown: no likelihood, the
likelihood columns read n/a.

Images are mapped to [-1, 1] inside (chains clamped there), samples rounded to
the K levels; 2-D points are standardized with the training mean/std and the
chains start uniform in [-init_range, init_range]^2 (standardized units).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .base import Family
from .nets import ConvEncoder, mlp
from .protocol import Budget, DataInfo, TrainData
from .registry import register
from .training import Batch

__all__ = ["EBM"]




class _EnergyNet(nn.Module):
    def __init__(self, info: DataInfo, arch: str, width: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.is_image = info.is_image
        self.shape = tuple(info.shape)
        if self.is_image and arch == "conv":
            self.body: nn.Module = ConvEncoder(self.shape, 1, width=width)
            self.flat = False
        else:
            self.body = mlp(info.dim, 1, hidden)
            self.flat = True
        self.register_buffer("shift", torch.zeros(info.dim))
        self.register_buffer("scale", torch.ones(info.dim))

    def forward(self, h: Tensor) -> Tensor:
        """Energy (N,) of inputs in network space ([-1, 1] images, standardized points)."""
        return self.body(h.flatten(1) if self.flat else h).squeeze(-1)

    def to_net(self, x: Tensor) -> Tensor:
        if self.is_image:
            return x * 2 - 1
        return (x - self.shift) / self.scale

    def from_net(self, h: Tensor) -> Tensor:
        if self.is_image:
            return (h + 1) / 2
        return h * self.scale + self.shift


class EBM(Family):
    """Energy network + PCD training with a replay buffer of Langevin chains.

    Args:
        info: data description.
        arch: images: ``"mlp"`` (on the flattened image, cheap at 8x8) or ``"conv"``;
            2-D data always use an MLP.
        width: base channels of the conv energy.
        hidden: hidden sizes of the MLP energy (default (256, 256) images, (128, 128) 2-D).
        lr: Adam learning rate (default 1e-4 images, 3e-3 2-D; ``Budget.lr`` overrides it when given).
        train_steps: Langevin updates per training step (per persistent chain visit).
        step_size: gradient step of each Langevin update.
        noise: std of the Gaussian noise of each update.
        buffer_size: number of persistent chains.
        reinit: probability that a chain is restarted from noise when visited.
        reg: weight of the energy-magnitude regularizer.
        grad_clamp: clamp each input-gradient component of a Langevin update to
            [-grad_clamp, grad_clamp] (network units; Du & Mordatch 2019's image
            recipe bounds every step this way), or None for the raw gradient.
        default_steps: Langevin updates of ``sample`` when ``steps`` is None.
        init_range: 2-D chains start uniform in [-init_range, init_range]^2 (standardized units).
        device: ``"cpu"``, ``"cuda"`` or None (auto).
    """

    name = "ebm"
    family = "ebm"
    curves = ("cd", "energy_data", "energy_neg")
    rng = "global"
    betas = (0.0, 0.999)

    def __init__(
        self,
        info: DataInfo,
        *,
        arch: str = "mlp",
        width: int = 16,
        hidden: Sequence[int] | None = None,
        lr: float | None = None,
        train_steps: int = 20,
        step_size: float | None = None,
        noise: float | None = None,
        buffer_size: int = 10000,
        reinit: float = 0.1,
        reg: float = 0.1,
        grad_clamp: float | None = None,
        default_steps: int = 100,
        init_range: float = 2.5,
        device: str | None = None,
    ) -> None:
        if arch not in ("mlp", "conv"):
            raise ValueError(f"ebm: arch must be 'mlp' or 'conv', got {arch!r}")
        if train_steps < 1 or default_steps < 1:
            raise ValueError(f"ebm: train_steps and default_steps must be >= 1, got {train_steps}, {default_steps}")
        if not 0 <= reinit <= 1:
            raise ValueError(f"ebm: reinit is a probability in [0, 1], got {reinit}")
        if grad_clamp is not None and grad_clamp <= 0:
            raise ValueError(f"ebm: grad_clamp must be > 0 or None, got {grad_clamp}")
        if buffer_size < 1:
            raise ValueError(f"ebm: buffer_size must be >= 1, got {buffer_size}")
        if hidden is None:
            hidden = (256, 256) if info.is_image else (128, 128)
        super().__init__(info, lr=float(lr if lr is not None else (1e-4 if info.is_image else 3e-3)), device=device)
        self.train_steps = int(train_steps)
        self.step_size = float(step_size if step_size is not None else (2.0 if info.is_image else 0.05))
        self.noise = float(noise if noise is not None else (0.01 if info.is_image else 0.02))
        self.buffer_size = int(buffer_size)
        self.reinit = float(reinit)
        self.reg = float(reg)
        self.grad_clamp = None if grad_clamp is None else float(grad_clamp)
        self.default_steps = int(default_steps)
        self.init_range = float(init_range)
        self.net = _EnergyNet(info, arch, width, tuple(hidden)).to(self.device)
        self._buffer: Tensor | None = None  # PCD replay buffer, alive during fit

    def info_fields(self) -> dict[str, Any]:
        return {"iterative": True, "default_steps": self.default_steps}

    def energy(self, x: Tensor) -> Tensor:
        """Energy E(x) (N,) of data-space inputs (lower = more probable), no gradient."""
        self.net.eval()
        with torch.no_grad():
            x = x.float().reshape(len(x), *self.data_info.shape).to(self.device)
            return self.net(self.net.to_net(x)).cpu()

    def _noise(self, n: int, generator: torch.Generator | None) -> Tensor:
        """Chain initializations in network space, drawn on CPU."""
        u = torch.rand(n, *self.data_info.shape, generator=generator)
        if self.data_info.is_image:
            return u * 2 - 1
        return (u * 2 - 1) * self.init_range

    def _langevin(self, h: Tensor, n_steps: int, generator: torch.Generator | None = None) -> Tensor:
        """n_steps updates h <- h - step_size clamp(grad E(h)) + noise eps (network space)."""
        was_training = self.net.training
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        try:  # callers may sample under no_grad / inference_mode: Langevin needs input gradients
            with torch.inference_mode(False), torch.enable_grad():
                h = h.clone()
                for _ in range(n_steps):
                    h = h.detach().requires_grad_(True)
                    (grad,) = torch.autograd.grad(self.net(h).sum(), h)
                    if self.grad_clamp is not None:
                        grad = grad.clamp(-self.grad_clamp, self.grad_clamp)
                    eps = torch.randn(h.shape, generator=generator).to(h.device) if generator is not None else torch.randn_like(h)
                    h = h - self.step_size * grad + self.noise * eps
                    if self.data_info.is_image:
                        h = h.clamp(-1, 1)
        finally:
            for p in self.net.parameters():
                p.requires_grad_(True)
            self.net.train(was_training)
        return h.detach()

    def prepare(self, data: TrainData) -> tuple[Tensor, None]:
        """The checked training data (2-D data set the energy's standardization). Training is persistent
        contrastive divergence (:meth:`loss`) with a replay buffer that lives for one ``fit``."""
        x, _ = super().prepare(data)
        if not self.data_info.is_image:
            self.net.shift.copy_(x.reshape(len(x), -1).mean(0).to(self.device))
            self.net.scale.copy_(x.reshape(len(x), -1).std(0).clamp_min(1e-6).to(self.device))
        return x, None

    def before_fit(self, x: Tensor, budget: Budget) -> None:
        self._buffer = self._noise(self.buffer_size, None).to(self.device)

    def cleanup_fit(self) -> None:
        self._buffer = None

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Persistent contrastive divergence: negatives from the replay buffer of
        the current ``fit`` (a fraction ``reinit`` restarted from noise) after
        ``train_steps`` Langevin steps; ``"loss"`` = E(data) - E(neg) + reg (E(data)^2 + E(neg)^2),
        curves ``"cd"`` (E(data) - E(neg)), ``"energy_data"``, ``"energy_neg"`` (means)."""
        buffer = self._buffer
        if buffer is None:
            raise RuntimeError("ebm: loss() needs the replay buffer that fit() creates")
        pos = self.net.to_net(batch.x.to(self.device))
        idx = torch.randint(0, self.buffer_size, (len(pos),), device=self.device, generator=generator)
        neg = buffer[idx]
        fresh = torch.rand(len(pos), device=self.device, generator=generator) < self.reinit
        if fresh.any():
            neg[fresh] = self._noise(int(fresh.sum()), generator).to(self.device)
        neg = self._langevin(neg, self.train_steps, generator)
        buffer[idx] = neg
        ep, en = self.net(pos), self.net(neg)
        loss = ep.mean() - en.mean() + self.reg * (ep**2 + en**2).mean()
        return {"loss": loss, "cd": ep.mean() - en.mean(), "energy_data": ep.mean(), "energy_neg": en.mean()}

    def draw(self, n: int, labels: Tensor | None, steps: int | None, generator: torch.Generator | None, sampler: Any) -> Tensor:
        """n samples from ``steps`` Langevin updates (default ``default_steps``) started from noise."""
        n_steps = self.default_steps if steps is None else int(steps)
        if n_steps < 0:
            raise ValueError(f"ebm: steps must be >= 0, got {steps}")
        h = self._langevin(self._noise(n, generator).to(self.device), n_steps, generator)
        x = self.net.from_net(h).float().cpu()
        if self.data_info.is_image:
            k = self.data_info.levels
            x = torch.round(x.clamp(0, 1) * (k - 1)) / (k - 1)
        return x


register("ebm", family="ebm", description="Energy-based model, PCD with a replay buffer of Langevin chains; samples with `steps` Langevin updates.")(EBM)
