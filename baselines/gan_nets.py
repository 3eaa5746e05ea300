"""The GAN family's networks and helpers (:mod:`baselines.gan` builds the model from them).

* :class:`MLPGenerator` / :class:`MLPDiscriminator` for 2-D points: Linear ->
  BatchNorm -> ReLU per hidden layer (generator), Linear -> LeakyReLU(0.2)
  (discriminator).
* :class:`ConvGenerator` / :class:`ConvDiscriminator` for images, DCGAN style:
  4x4 stride-2 transposed convolutions up from a small map (BatchNorm + ReLU),
  a 3x3 conv and a sigmoid; the discriminator mirrors them with LeakyReLU(0.2).
* Class conditioning: :class:`CondBatchNorm` (per-class scale and shift) in
  the generator, a projection term in the discriminator, one-hot labels at
  both inputs (:func:`_with_onehot`).
* :func:`gradient_penalty` (WGAN-GP's penalty on random interpolates) and
  :func:`pack_samples` (PacGAN's concatenation of m samples).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .nets import mlp

__all__ = [
    "BatchNorm1d", "CondBatchNorm", "ConvDiscriminator", "ConvGenerator", "MLPDiscriminator", "MLPGenerator",
    "gradient_penalty", "pack_samples", "recalibrate_batchnorm",
]  # fmt: skip


def r1_penalty(d_real: Tensor, real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): ``E ||grad_x D(x)||^2`` over real examples ``real`` (which must require grad),
    with ``d_real = D(real)``; a scalar, not yet weighted (the loss adds ``gamma / 2`` times it)."""
    (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
    return grad.pow(2).reshape(len(grad), -1).sum(1).mean()


def gradient_penalty(critic, real: Tensor, fake: Tensor, generator: torch.Generator | None = None, **critic_kwargs: Any) -> Tensor:
    """WGAN-GP penalty ``E (||grad_x f(x_hat)||_2 - 1)^2`` (a scalar, not yet weighted).

    ``x_hat = a real + (1 - a) fake`` with one ``a ~ U[0, 1]`` per example,
    drawn on the CPU from ``generator``. The gradient is taken per example over
    all its features; ``critic(x_hat, **critic_kwargs)`` must return (N,) or (N, 1).
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {tuple(real.shape)} and fake {tuple(fake.shape)} differ in shape")
    a = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), generator=generator).to(real.device, real.dtype)
    x_hat = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    out = critic(x_hat, **critic_kwargs)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norm = grad.reshape(grad.shape[0], -1).norm(2, dim=1)
    return ((norm - 1) ** 2).mean()


def pack_samples(x: Tensor, m: int) -> Tensor:
    """PacGAN packing: (N, C, ...) -> (N // m, m C, ...), m consecutive samples per pack.

    ``N`` must be a multiple of ``m``; 2-D points (N, 2) become (N // m, 2 m).
    """
    if m < 1:
        raise ValueError(f"pack must be >= 1, got {m}")
    if x.shape[0] % m:
        raise ValueError(f"cannot pack {x.shape[0]} samples into groups of {m}")
    if m == 1:
        return x
    n = x.shape[0] // m
    return x.reshape(n, m * x.shape[1], *x.shape[2:])


def _leaky() -> nn.Module:
    return nn.LeakyReLU(0.2)


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose training-mode statistics of (N, C) batches are
    computed with plain reductions over the batch, so the result does not depend
    on the number of CPU threads (torch's fused CPU kernel splits the batch
    across threads and sums in a thread-dependent order). Same parameters,
    buffers and state-dict keys; evaluation mode is torch's."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or x.dim() != 2:
            return super().forward(x)
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"BatchNorm1d needs more than one example per batch in training, got {n}")
        mean = x.mean(0)
        var = (x - mean).pow(2).mean(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(f * mean.detach())
                self.running_var.mul_(1 - f).add_(f * var.detach() * n / (n - 1))
        y = (x - mean) * torch.rsqrt(var + self.eps)
        return y * self.weight + self.bias if self.affine else y


class CondBatchNorm(nn.Module):
    """Conditional BatchNorm: BatchNorm without affine, then per-class scale/shift.

    ``spatial``: (N, C, H, W) maps (BatchNorm2d), else (N, C) (BatchNorm1d). Scales start at 1, shifts at 0.
    """

    def __init__(self, channels: int, num_classes: int, spatial: bool = True) -> None:
        super().__init__()
        self.bn = (nn.BatchNorm2d if spatial else BatchNorm1d)(channels, affine=False)
        self.gamma = nn.Embedding(num_classes, channels)
        self.beta = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, h: Tensor, y: Tensor) -> Tensor:
        out = self.bn(h)
        if h.ndim == 2:
            return self.gamma(y) * out + self.beta(y)
        return self.gamma(y)[:, :, None, None] * out + self.beta(y)[:, :, None, None]


# ============================================================================ networks
def _with_onehot(x: Tensor, y: Tensor | None, num_classes: int) -> Tensor:
    """``x`` (N, D) or (N, C, H, W) with the one-hot code of ``y`` appended: as
    ``num_classes`` features, or as that many constant planes for images.
    Returns ``x`` unchanged when ``num_classes`` is 0 (unconditional)."""
    if not num_classes:
        return x
    code = F.one_hot(y, num_classes).to(x.dtype)
    if x.ndim == 4:
        code = code[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
    return torch.cat([x, code], 1)


def _n_up(h: int, w: int) -> int:
    """Number of 2x upsamplings from the start map to (h, w).

    The side is halved while it is even and larger than 2, so a power of two
    starts from 2x2 (8 -> 4 -> 2) and 28x28 from 7x7 (28 -> 14 -> 7, the
    DCGAN layout for MNIST), with no upsampling past the image that would be
    cropped. An odd side still gets one upsampling."""
    n, s = 0, min(h, w)
    while s > 2 and s % 2 == 0:
        s //= 2
        n += 1
    return max(n, 1)


class MLPGenerator(nn.Module):
    """z (N, z_dim) [+ labels] -> points (N, D). BatchNorm (conditional if labelled) + ReLU.

    With labels, their one-hot code is also concatenated to ``z``."""

    def __init__(self, z_dim: int, d_out: int, hidden: Sequence[int], num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        d = z_dim + num_classes
        for h in hidden:
            self.linears.append(nn.Linear(d, h))
            self.norms.append(CondBatchNorm(h, num_classes, spatial=False) if num_classes else BatchNorm1d(h))
            d = h
        self.out = nn.Linear(d, d_out)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = _with_onehot(z, y, self.num_classes)
        for lin, norm in zip(self.linears, self.norms):
            h = lin(h)
            h = norm(h, y) if self.num_classes else norm(h)
            h = F.relu(h)
        return self.out(h)


class MLPDiscriminator(nn.Module):
    """Points (N, D) (packed: (N, m D)) [+ labels] -> logits (N,). LeakyReLU(0.2), no norm.

    With labels, their one-hot code is concatenated to the input and a
    projection term is added: ``w . phi(x, y) + embed(y) . phi(x, y)``.
    """

    def __init__(self, d_in: int, hidden: Sequence[int], num_classes: int = 0) -> None:
        super().__init__()
        self.d_in = d_in
        self.num_classes = num_classes
        self.body = mlp(d_in + num_classes, hidden[-1], hidden[:-1], act=_leaky)
        self.body.append(_leaky())
        self.head = nn.Linear(hidden[-1], 1)
        self.embed = nn.Embedding(num_classes, hidden[-1]) if num_classes else None

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        phi = self.body(_with_onehot(x, y, self.num_classes))
        out = self.head(phi).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * phi).sum(1)
        return out


class ConvGenerator(nn.Module):
    """DCGAN-style: z (N, z_dim) [+ labels] -> images (N, C, H, W) in (0, 1) (sigmoid).

    Linear to a (c0, s, s) map (s ~ 2), then 4x4 stride-2 transposed convs with
    BatchNorm (conditional when labelled) + ReLU, a 3x3 conv and a sigmoid;
    the output is cropped to (H, W). With labels, their one-hot code is also
    concatenated to ``z``.
    """

    def __init__(self, z_dim: int, shape: Sequence[int], width: int, num_classes: int = 0) -> None:
        super().__init__()
        c, h, w = shape
        self.shape = (c, h, w)
        self.num_classes = num_classes
        n = _n_up(h, w)
        self.start = (width * 2 ** min(n - 1, 3), math.ceil(h / 2**n), math.ceil(w / 2**n))
        ch = self.start[0]
        self.fc = nn.Linear(z_dim + num_classes, ch * self.start[1] * self.start[2], bias=False)
        norm = (lambda k: CondBatchNorm(k, num_classes)) if num_classes else nn.BatchNorm2d
        self.norms = nn.ModuleList([norm(ch)])
        self.ups = nn.ModuleList()
        for i in range(n):
            out = max(width, ch // 2) if i < n - 1 else width
            self.ups.append(nn.ConvTranspose2d(ch, out, 4, stride=2, padding=1, bias=False))
            self.norms.append(norm(out))
            ch = out
        self.to_img = nn.Conv2d(ch, c, 3, padding=1)

    def _norm(self, i: int, h: Tensor, y: Tensor | None) -> Tensor:
        return F.relu(self.norms[i](h, y) if self.num_classes else self.norms[i](h))

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self._norm(0, self.fc(_with_onehot(z, y, self.num_classes)).view(-1, *self.start), y)
        for i, up in enumerate(self.ups):
            h = self._norm(i + 1, up(h), y)
        x = torch.sigmoid(self.to_img(h))
        return x[:, :, : self.shape[1], : self.shape[2]]


class ConvDiscriminator(nn.Module):
    """DCGAN-style: images (N, in_ch, H, W) [+ labels] -> logits (N,).

    4x4 stride-2 convs with LeakyReLU(0.2); BatchNorm after every conv but the
    first when ``batchnorm`` (never in a WGAN-GP critic). The unconditional
    head is a linear layer on the flattened feature map. With labels, their
    one-hot code enters as constant input planes, and the
    projection term of Miyato & Koyama (2018) is added: ``embed(y) . phi``
    where ``phi`` is the feature map summed over its positions (one value per
    channel) and the class embeddings start small (the head's scale), so the
    conditional term does not drown the unconditional one at initialisation.
    """

    def __init__(self, in_channels: int, shape: Sequence[int], width: int, batchnorm: bool = True, num_classes: int = 0) -> None:
        super().__init__()
        _, h, w = shape
        n = _n_up(h, w)
        layers: list[nn.Module] = []
        self.num_classes = num_classes
        ch_in, ch = in_channels + num_classes, width
        for i in range(n):
            layers.append(nn.Conv2d(ch_in, ch, 4, stride=2, padding=1, bias=not (batchnorm and i > 0)))
            if batchnorm and i > 0:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(_leaky())
            ch_in, ch = ch, min(ch * 2, width * 8)
        self.body = nn.Sequential(*layers)
        with torch.no_grad():  # feature map size (k=4, s=2, p=1 gives floor(h / 2))
            fmap = self.body.eval()(torch.zeros(1, in_channels + num_classes, h, w))
        self.body.train()
        self.d_feat = int(fmap.numel())
        self.in_channels = in_channels
        self.head = nn.Linear(self.d_feat, 1)
        self.embed = None
        if num_classes:
            self.embed = nn.Embedding(num_classes, fmap.shape[1])
            bound = 1.0 / (math.sqrt(fmap.shape[1]) * fmap.shape[2] * fmap.shape[3])  # term of the head's size at init
            nn.init.uniform_(self.embed.weight, -bound, bound)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        fmap = self.body(_with_onehot(x, y, self.num_classes))
        out = self.head(fmap.flatten(1)).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * fmap.sum((2, 3))).sum(1)
        return out


@torch.no_grad()
def recalibrate_batchnorm(
    net: nn.Module, z_dim: int, gen: torch.Generator, batch_size: int, batches: int, y_all: Tensor | None, device: torch.device
) -> None:
    """Re-estimate a generator's BatchNorm statistics at its final weights.

    Running averages (momentum 0.1) lag behind the weights, and an EMA
    generator has no statistics of its own; in eval mode either shifts the
    samples (measurably off the 0.01-std modes of ring8). So after training
    the statistics are recomputed as exact averages over ``batches`` noise
    batches of ``batch_size`` in train mode (no weight changes); with
    ``y_all`` (a conditional generator) each batch takes labels drawn from it.
    Noise and label indices come from ``gen``; the network ends in eval mode.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    net.train()
    for _ in range(batches):
        z = torch.randn(batch_size, z_dim, generator=gen).to(device)
        if y_all is not None:
            idx = torch.randint(0, len(y_all), (batch_size,), generator=gen)
            net(z, y_all[idx].long().to(device))
        else:
            net(z)
    for m, mom in zip(norms, saved):
        m.momentum = mom
    net.eval()
