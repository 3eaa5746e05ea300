"""RealNVP (Dinh et al. 2017): a normalizing flow of affine coupling layers.

An invertible map f sends data to a standard normal base, and the change of
variables gives the exact density log p(x) = log N(f(x); 0, I) + log|det df/dx|.

Each coupling layer keeps the masked half x_a of its input and transforms the
other half: x_b' = x_b * exp(s(x_a)) + t(x_a), whose log-determinant is the sum
of s. Masks alternate so every coordinate is transformed. The scale is bounded
(s = s_max * tanh(.)) and the last layer of every conditioner starts at zero,
so the untrained flow is the identity.

* Images: checkerboard masks; the conditioners are MLPs on the flattened image
  (default, cheap at 8x8) or small conv nets (``conditioner="conv"``), which
  with ``squeeze`` > 0 run at several scales: a 2x2 squeeze between levels and
  channel-wise masks after it (Dinh et al.'s multi-scale layout). Data are
  uniformly dequantized, y = (x_int + u) / K in [0, 1), mapped to logit space
  (logit(a + (1 - 2a) y), a = 0.05) and through a learned per-dimension affine
  (initialized from the data) before the couplings. ``log_prob`` reports the
  dequantization bound log p(y) - D log K on the discrete log-likelihood
  (``info.likelihood == "dequantized"``), with u drawn from a fixed-seed
  generator so the number is reproducible. Samples are quantized back.
* 2-D points: MLP conditioners, alternating coordinate masks with a fixed
  random rotation between couplings (without it, data with independent
  coordinates such as grid25 leave the identity-initialized flow stuck), on
  standardized coordinates; ``log_prob`` is the exact density of the raw points (nats).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .base import Family
from .nets import mlp
from .protocol import DataInfo, TrainData, dequantize, quantize
from .registry import register
from .samplers import OnePassSampler
from .training import Batch

__all__ = ["RealNVP"]

LOG_2PI = math.log(2 * math.pi)




def _mlp(d_in: int, d_out: int, hidden: Sequence[int], dropout: float) -> nn.Module:
    """nets.mlp, with dropout after every hidden activation when ``dropout`` > 0."""
    if dropout <= 0:
        return mlp(d_in, d_out, hidden)
    layers: list[nn.Module] = []
    d = d_in
    for h in hidden:
        layers += [nn.Linear(d, h), nn.SiLU(), nn.Dropout(dropout)]
        d = h
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


class _Coupling(nn.Module):
    """Affine coupling: out = x * mask + (1 - mask) * (x * exp(s) + t), s, t = net(x * mask)."""

    def __init__(self, mask: Tensor, net: nn.Module, s_max: float, conv: bool) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = net
        self.s_max = s_max
        self.conv = conv
        last = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def _st(self, xa: Tensor) -> tuple[Tensor, Tensor]:
        if self.conv:
            inp = torch.cat([xa, self.mask[:, :1].expand(len(xa), 1, *xa.shape[2:])], 1)
            s, t = self.net(inp).chunk(2, dim=1)
        else:
            s, t = self.net(xa.flatten(1)).chunk(2, dim=-1)
            s, t = s.reshape(xa.shape), t.reshape(xa.shape)
        inv = 1 - self.mask
        return self.s_max * torch.tanh(s / self.s_max) * inv, t * inv

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data direction -> base direction; returns (out, log|det|) per example."""
        s, t = self._st(x * self.mask)
        return x * torch.exp(s) + t, s.flatten(1).sum(1)

    def inverse(self, y: Tensor) -> Tensor:
        s, t = self._st(y * self.mask)
        return (y - t) * torch.exp(-s)


class _Rotation(nn.Module):
    """A fixed random rotation (log|det| = 0) between 2-D couplings.

    With coordinate masks alone, data whose coordinates are independent (grid25)
    sit at a saddle: a coupling of an independent coordinate has no gradient to
    follow from the identity. Rotating in between mixes the coordinates.
    """

    def __init__(self, d: int, seed: int) -> None:
        super().__init__()
        q, r = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(1000 + seed), dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r))
        if torch.det(q) < 0:
            q[:, 0] = -q[:, 0]
        self.register_buffer("w", q.float())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x @ self.w.T, torch.zeros(len(x), device=x.device, dtype=x.dtype)

    def inverse(self, y: Tensor) -> Tensor:
        return y @ self.w


class _Squeeze(nn.Module):
    """Space-to-depth (Dinh et al. 2017, section 3.6): (C, H, W) -> (4C, H/2, W/2),
    each 2x2 block of pixels moved into channels; a permutation, log|det| = 0."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return nn.functional.pixel_unshuffle(x, 2), torch.zeros(len(x), device=x.device, dtype=x.dtype)

    def inverse(self, y: Tensor) -> Tensor:
        return nn.functional.pixel_shuffle(y, 2)


class _Unsqueeze(_Squeeze):
    """The inverse of :class:`_Squeeze` as a layer (returns the base point to the data's shape)."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return nn.functional.pixel_shuffle(x, 2), torch.zeros(len(x), device=x.device, dtype=x.dtype)

    def inverse(self, y: Tensor) -> Tensor:
        return nn.functional.pixel_unshuffle(y, 2)


def _conv_net(c_in: int, c_out: int, width: int) -> nn.Module:
    """The conv conditioner: two 3x3 hidden layers of ``width`` channels (SiLU)."""
    return nn.Sequential(
        nn.Conv2d(c_in, width, 3, padding=1),
        nn.SiLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.SiLU(),
        nn.Conv2d(width, c_out, 3, padding=1),
    )


def _image_couplings(shape: tuple[int, ...], n_couplings: int, width: int, s_max: float, squeeze: int) -> list[nn.Module]:
    """Multi-scale layout for ``conditioner="conv"``: ``squeeze + 1`` levels of
    ``n_couplings`` couplings each, a squeeze between levels. A level's masks
    cycle checkerboard and its complement, and after a squeeze also the first
    half of the channels and the other half, as in Dinh et al. 2017; the
    conditioner's width doubles per level as the grid halves. No dimensions are
    factored out: after the last level the squeezes are undone, so the base point
    has the data's shape."""
    c, h, w = shape
    layers: list[nn.Module] = []
    for level in range(squeeze + 1):
        if level:
            if h % 2 or w % 2:
                raise ValueError(f"realnvp: squeeze={squeeze} needs sides divisible by 2**{squeeze}, got {shape[1]}x{shape[2]}")
            layers.append(_Squeeze())
            c, h, w = 4 * c, h // 2, w // 2
        checker = ((torch.arange(h)[:, None] + torch.arange(w)[None]) % 2).float()[None, None].expand(1, c, h, w)
        channel = (torch.arange(c) < c // 2).float()[None, :, None, None].expand(1, c, h, w)
        masks = [checker, 1 - checker] + ([channel, 1 - channel] if level else [])
        for i in range(n_couplings):
            mask = masks[i % len(masks)].clone()
            layers.append(_Coupling(mask, _conv_net(c + 1, 2 * c, width * 2**level), s_max, conv=True))
    layers += [_Unsqueeze() for _ in range(squeeze)]
    return layers


class _FlowNet(nn.Module):
    def __init__(
        self,
        info: DataInfo,
        n_couplings: int,
        width: int,
        hidden: Sequence[int],
        s_max: float,
        alpha: float,
        conditioner: str,
        dropout: float,
        squeeze: int = 0,
    ) -> None:
        super().__init__()
        self.is_image = info.is_image
        self.shape = tuple(info.shape)
        self.alpha = alpha
        layers = []
        if self.is_image and conditioner == "conv":
            layers = _image_couplings(self.shape, n_couplings, width, s_max, squeeze)
        elif self.is_image:  # MLP on the flattened image, checkerboard mask
            c, h, w = self.shape
            checker = ((torch.arange(h)[:, None] + torch.arange(w)[None]) % 2).float()[None, None]
            for i in range(n_couplings):
                mask = (checker if i % 2 == 0 else 1 - checker).expand(1, c, h, w).clone()
                layers.append(_Coupling(mask, _mlp(info.dim, 2 * info.dim, hidden, dropout), s_max, conv=False))
        else:
            d = info.dim
            for i in range(n_couplings):
                mask = (torch.arange(d) % 2 == i % 2).float()
                layers.append(_Coupling(mask, _mlp(d, 2 * d, hidden, dropout), s_max, conv=False))
                if i < n_couplings - 1:
                    layers.append(_Rotation(d, seed=i))
        self.layers = nn.ModuleList(layers)
        # per-dimension affine in front of the couplings (data-initialized for images,
        # the training mean/std for points)
        self.register_buffer("shift", torch.zeros(self.shape))
        self.log_scale = nn.Parameter(torch.zeros(self.shape), requires_grad=self.is_image)

    def preprocess(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data (dequantized y in [0,1) for images) -> input of the couplings, log|det| per example."""
        logdet = torch.zeros(len(x), device=x.device)
        if self.is_image:
            a = self.alpha
            s = a + (1 - 2 * a) * x
            x = torch.log(s) - torch.log1p(-s)
            logdet = logdet + (math.log(1 - 2 * a) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
        x = (x - self.shift) * torch.exp(-self.log_scale)
        logdet = logdet - self.log_scale.sum()
        return x, logdet

    def postprocess(self, x: Tensor) -> Tensor:
        x = x * torch.exp(self.log_scale) + self.shift
        if self.is_image:
            a = self.alpha
            x = (torch.sigmoid(x) - a) / (1 - 2 * a)
        return x

    def to_base(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Continuous inputs (dequantized y for images) -> base point z and log|det dz/dx| per example."""
        h, logdet = self.preprocess(x)
        for layer in self.layers:
            h, ld = layer(h)
            logdet = logdet + ld
        return h, logdet

    def log_density(self, x: Tensor) -> Tensor:
        """log p(x) (nats per example) of continuous inputs (dequantized y for images)."""
        z, logdet = self.to_base(x)
        return -0.5 * (z**2 + LOG_2PI).flatten(1).sum(1) + logdet

    def invert(self, z: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return self.postprocess(z)


class RealNVP(Family):
    """RealNVP with affine couplings; exact log_prob (dequantization bound for images).

    Args:
        info: data description.
        n_couplings: number of coupling layers (masks alternate; default 8); with
            ``squeeze`` > 0, the number per level.
        conditioner: images only: ``"mlp"`` (an MLP on the flattened image, checkerboard
            mask; cheap at 8x8) or ``"conv"`` (3x3 conv net, for larger images).
        width: channels of the conv conditioners.
        hidden: hidden sizes of the MLP conditioners (default (128, 128) for images, (64, 64) for 2-D).
        lr: Adam learning rate (``Budget.lr`` overrides it when given).
        s_max: bound on the log-scale of each coupling (s = s_max tanh(./s_max)).
        alpha: logit-transform margin for images.
        weight_decay: Adam weight decay.
        dropout: dropout in the MLP conditioners (default 0.3 for images, where the
            1437 digits are overfitted quickly without it; 0 for 2-D).
        squeeze: images with ``conditioner="conv"`` only: the number of 2x2
            squeezes, i.e. ``squeeze + 1`` levels of couplings (the multi-scale
            layout of Dinh et al. 2017, without factoring dimensions out); 0 keeps
            every coupling at the data's resolution.
        device: ``"cpu"``, ``"cuda"`` or None (auto).
    """

    name = "realnvp"
    family = "flow"
    curves = ("nll",)
    rng = "global"
    clip_grad = 100.0

    def __init__(
        self,
        info: DataInfo,
        *,
        n_couplings: int | None = None,
        conditioner: str = "mlp",
        width: int = 32,
        hidden: Sequence[int] | None = None,
        lr: float = 1e-3,
        s_max: float = 3.0,
        alpha: float = 0.05,
        weight_decay: float = 0.0,
        dropout: float | None = None,
        squeeze: int = 0,
        device: str | None = None,
    ) -> None:
        if info.is_image and not info.levels:
            raise ValueError("realnvp: image data needs info.levels (number of intensity levels K)")
        if n_couplings is None:
            n_couplings = 8
        if conditioner not in ("mlp", "conv"):
            raise ValueError(f"realnvp: conditioner must be 'mlp' or 'conv', got {conditioner!r}")
        if hidden is None:
            hidden = (128, 128) if info.is_image else (64, 64)
        if n_couplings < 2:
            raise ValueError(f"realnvp: n_couplings must be >= 2 so that every dimension is transformed, got {n_couplings}")
        if dropout is None:
            dropout = 0.3 if info.is_image else 0.0
        if not 0 <= dropout < 1:
            raise ValueError(f"realnvp: dropout must be in [0, 1), got {dropout}")
        if not 0 <= alpha < 0.5:
            raise ValueError(f"realnvp: alpha must be in [0, 0.5), got {alpha}")
        super().__init__(info, lr=lr, weight_decay=weight_decay, device=device)
        if squeeze < 0 or (squeeze and (conditioner != "conv" or not info.is_image)):
            raise ValueError(f"realnvp: squeeze must be >= 0 and needs image data with conditioner='conv', got squeeze={squeeze} with {conditioner!r}")
        self.net = _FlowNet(info, n_couplings, width, tuple(hidden), s_max, alpha, conditioner, dropout, squeeze).to(self.device)

    def info_fields(self) -> dict[str, Any]:
        return {"likelihood": "dequantized" if self.data_info.is_image else "exact"}

    def make_sampler(self, temperature: float = 1.0) -> OnePassSampler:
        """Sampling option for :meth:`sample`: base noise z = temperature * eps (1 = the model itself)."""
        if temperature <= 0:
            raise ValueError(f"realnvp: temperature must be > 0, got {temperature}")
        return OnePassSampler("realnvp", {"temperature": float(temperature)})

    def _continuous(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        x = x.float().reshape(len(x), *self.data_info.shape)
        if self.data_info.is_image:
            x = dequantize(x, self.data_info.levels, generator)
        return x.to(self.device)

    def prepare(self, data: TrainData) -> tuple[Tensor, None]:
        """The checked training data; the flow's first layer is set to standardize it (for images: the logit of
        the dequantized pixels). Training is maximum likelihood (:meth:`loss`), gradient norm clipped at 100."""
        x, _ = super().prepare(data)
        with torch.no_grad():
            if self.data_info.is_image:
                y = dequantize(x, self.data_info.levels)
                a = self.net.alpha
                s = a + (1 - 2 * a) * y
                v = torch.log(s) - torch.log1p(-s)
                self.net.shift.copy_(v.mean(0).to(self.device))
                self.net.log_scale.copy_(torch.log(v.std(0).clamp_min(1e-3)).to(self.device))
            else:
                self.net.shift.copy_(x.mean(0).to(self.device))
                self.net.log_scale.copy_(torch.log(x.std(0).clamp_min(1e-6)).to(self.device))
        return x, None

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor | float]:
        """Negative log-density of the (dequantized, for images) batch (``"loss"``)
        and the NLL it bounds, nats per example (``"nll"``: + D log K for images)."""
        loss = -self.net.log_density(self._continuous(batch.x, generator)).mean()
        offset = self.data_info.dim * math.log(self.data_info.levels) if self.data_info.is_image else 0.0
        return {"loss": loss, "nll": loss.item() + offset}

    def log_prob(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """log-likelihood in nats per example, shape (N,).

        Images: the dequantization bound log p(y) - D log K <= log P(x_int) with one
        draw of u (from ``generator``, default a fixed-seed one). 2-D: exact density.
        """
        if self.data_info.is_image and generator is None:
            generator = torch.Generator().manual_seed(0)
        self.net.eval()
        with torch.no_grad():
            lp = self.net.log_density(self._continuous(x, generator))
        if self.data_info.is_image:
            lp = lp - self.data_info.dim * math.log(self.data_info.levels)
        return lp.float().cpu()

    @property
    def latent_dim(self) -> int:
        """Size of z, the data's dimension (:class:`~genbench.protocol.LatentPath`)."""
        return self.data_info.dim

    @torch.no_grad()
    def from_latent(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The inverse flow of latents ``z`` (N, latent_dim): images in [0, 1] (clipped, not quantized), 2-D data."""
        self.require_fitted()
        self.net.eval()
        x = self.net.invert(torch.as_tensor(z).float().reshape(-1, *self.data_info.shape).to(self.device)).float().cpu()
        return x.clamp(0, 1) if self.data_info.is_image else x

    def draw(self, n: int, labels: Tensor | None, steps: int | None, generator: torch.Generator | None, sampler: Any) -> Tensor:
        """n samples: z ~ N(0, T^2 I) pushed through the inverse flow (T from
        :meth:`make_sampler`, default 1); images quantized to the K levels."""
        temperature = 1.0 if sampler is None else sampler.get("temperature", 1.0)
        self.last_nfe = 1
        z = temperature * torch.randn(n, *self.data_info.shape, generator=generator)
        self.net.eval()
        with torch.no_grad():
            x = self.net.invert(z.to(self.device)).float().cpu()
        if self.data_info.is_image:
            x = quantize(x.clamp(0, 1 - 1e-6), self.data_info.levels)
        return x


register("realnvp", family="flow", description="RealNVP affine-coupling flow; exact log_prob (dequantized bound on images).")(RealNVP)
