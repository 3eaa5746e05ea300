"""Stage 1 of the VQ models (``baselines/vq.py``): the vector quantizer and the VQ autoencoder network.

:class:`VectorQuantizer` replaces each D-dimensional encoder output by its
nearest codebook entry (squared Euclidean distance) with a straight-through
gradient, and learns the codebook by the codebook loss or by exponential
moving averages, with dead-code restarts. ``_VQNet`` is the conv encoder ->
quantizer -> conv decoder whose output is a categorical distribution over the
data's intensity levels per pixel (nats of the discrete data).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .nets import conv_codec
from .protocol import DataInfo, from_levels, to_levels

__all__ = ["Quantized", "VectorQuantizer", "code_statistics"]


# ----------------------------------------------------------------------------- quantizer
@dataclass
class Quantized:
    """Output of :class:`VectorQuantizer`: straight-through ``z_q`` (N, D, h, w),
    ``codes`` (N, h, w) long, and the loss terms (scalars)."""

    z_q: Tensor
    codes: Tensor
    loss: Tensor
    commitment: Tensor
    codebook: Tensor


class VectorQuantizer(nn.Module):
    """Nearest-neighbour vector quantizer with a straight-through gradient.

    Args:
        num_codes: codebook size K.
        dim: code dimension D.
        beta: commitment weight (0.25 as in van den Oord et al.).
        ema: update the codebook by exponential moving averages instead of the
            codebook loss.
        decay: EMA decay of cluster sizes and sums.
        eps: Laplace smoothing of the EMA cluster sizes.

    The codebook is initialised from the first training batch's encoder
    outputs (random rows), so no code starts far from the data.
    """

    def __init__(self, num_codes: int, dim: int, *, beta: float = 0.25, ema: bool = False, decay: float = 0.99, eps: float = 1e-5) -> None:
        super().__init__()
        if num_codes < 2 or dim < 1:
            raise ValueError(f"VectorQuantizer: num_codes must be >= 2 and dim >= 1, got {num_codes}, {dim}")
        if beta < 0:
            raise ValueError(f"VectorQuantizer: beta must be >= 0, got {beta}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"VectorQuantizer: decay must be in (0, 1), got {decay}")
        self.num_codes = int(num_codes)
        self.dim = int(dim)
        self.beta = float(beta)
        self.ema = bool(ema)
        self.decay = float(decay)
        self.eps = float(eps)
        init = torch.empty(num_codes, dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        if self.ema:
            self.register_buffer("embed", init)
            self.register_buffer("cluster_size", torch.zeros(num_codes))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.embed = nn.Parameter(init)
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("last_used", torch.zeros(num_codes, dtype=torch.long))
        self.register_buffer("step", torch.tensor(0, dtype=torch.long))

    def nearest(self, z: Tensor) -> Tensor:
        """Index of the nearest code (squared Euclidean distance) for every row of z (M, D) -> (M,)."""
        e = self.embed
        d = (z * z).sum(1, keepdim=True) - 2 * z @ e.t() + (e * e).sum(1)[None]
        return d.argmin(1)

    def lookup(self, codes: Tensor) -> Tensor:
        """Codes (N, h, w) -> code vectors (N, D, h, w)."""
        return self.embed[codes].permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def _init_from(self, flat: Tensor) -> None:
        idx = torch.randint(0, flat.shape[0], (self.num_codes,), device=flat.device)
        rows = flat[idx] + 1e-3 * torch.randn(self.num_codes, self.dim, device=flat.device)
        self.embed.data.copy_(rows)
        if self.ema:
            self.embed_sum.copy_(rows)
            self.cluster_size.fill_(1.0)
        self.initialized.fill_(True)

    def forward(self, z_e: Tensor) -> Quantized:
        """Quantize ``z_e`` (N, D, h, w). In training mode, also updates the EMA
        codebook and the per-code "last used" step."""
        n, d, h, w = z_e.shape
        if d != self.dim:
            raise ValueError(f"VectorQuantizer: input has {d} channels, the codebook has dimension {self.dim}")
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)
        if self.training and not bool(self.initialized):
            self._init_from(flat.detach())
        codes = self.nearest(flat.detach())
        e = self.embed[codes]
        if self.training:
            self.step += 1
            self.last_used[torch.unique(codes)] = self.step
            if self.ema:
                self._ema_update(flat.detach(), codes)
                e = self.embed[codes]
        commitment = F.mse_loss(flat, e.detach())
        codebook = F.mse_loss(e, flat.detach()) if not self.ema else torch.zeros((), device=z_e.device)
        loss = codebook + self.beta * commitment
        z_q = flat + (e - flat).detach()  # straight-through: forward e, gradient identity
        z_q = z_q.reshape(n, h, w, d).permute(0, 3, 1, 2)
        return Quantized(z_q, codes.reshape(n, h, w), loss, commitment, codebook)

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, codes: Tensor) -> None:
        onehot = F.one_hot(codes, self.num_codes).type(flat.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.num_codes * self.eps) * total
        self.embed.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def restart_dead(self, z_e: Tensor, after: int) -> int:
        """Move every code unused for more than ``after`` steps onto a random
        encoder output of ``z_e`` (N, D, h, w); returns how many were restarted."""
        dead = (self.step - self.last_used) > after
        k = int(dead.sum())
        if k == 0:
            return 0
        flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, self.dim)
        rows = flat[torch.randint(0, flat.shape[0], (k,), device=flat.device)]
        rows = rows + 1e-3 * torch.randn_like(rows)
        self.embed.data[dead] = rows
        if self.ema:
            self.embed_sum[dead] = rows
            self.cluster_size[dead] = 1.0
        self.last_used[dead] = self.step
        return k


def code_statistics(codes: Tensor, num_codes: int) -> dict[str, float]:
    """Usage statistics of a batch of codes (any shape, values in [0, K)).

    Returns ``usage`` (fraction of the K codes used at least once), ``perplexity``
    ``exp(-sum p log p)`` of the code histogram (1 = one code, K = uniform),
    ``dead_codes`` (codes never used) and ``codebook_size`` K.
    """
    counts = torch.bincount(codes.reshape(-1).long().cpu(), minlength=num_codes).double()
    p = counts / counts.sum().clamp_min(1)
    ent = -(p[p > 0] * p[p > 0].log()).sum()
    used = int((counts > 0).sum())
    return {"codebook_size": int(num_codes), "usage": used / num_codes, "perplexity": float(ent.exp()), "dead_codes": int(num_codes - used)}


# ----------------------------------------------------------------------------- autoencoder
class _VQNet(nn.Module):
    """Conv encoder -> quantizer -> conv decoder with K logits per pixel."""

    def __init__(self, info: DataInfo, num_codes: int, code_dim: int, width: int, n_down: int, beta: float, ema: bool) -> None:
        super().__init__()
        c, h, w = info.shape
        self.levels = int(info.levels)
        self.shape = (c, h, w)
        self.encoder, self.decoder = conv_codec(c, width, n_down, code_dim, code_dim, self.levels)
        self.quantizer = VectorQuantizer(num_codes, code_dim, beta=beta, ema=ema)
        self.grid = (h // 2**n_down, w // 2**n_down)

    def encode(self, x: Tensor) -> Tensor:
        """Images in [0, 1] -> continuous z_e (N, D, h, w)."""
        return self.encoder(x * 2 - 1)

    def log_probs(self, z_q: Tensor) -> Tensor:
        """Quantized grid -> log-probabilities over the K levels, (N, C, H, W, K)."""
        c, h, w = self.shape
        out = self.decoder(z_q)[:, :, :h, :w]
        return F.log_softmax(out.reshape(-1, c, self.levels, h, w).movedim(2, -1), dim=-1)

    def log_px(self, x: Tensor, z_q: Tensor) -> Tensor:
        """log p(x | z_q) in nats per example, (N,)."""
        logp = self.log_probs(z_q)
        idx = to_levels(x, self.levels)
        return logp.gather(-1, idx.unsqueeze(-1)).squeeze(-1).flatten(1).sum(1)


def _decode_levels(logp: Tensor, mode: str, generator: torch.Generator | None) -> Tensor:
    """(N, C, H, W, K) log-probabilities -> images in [0, 1] on the K levels (or the mean)."""
    k = logp.shape[-1]
    if mode == "mode":
        return from_levels(logp.argmax(-1), k)
    if mode == "mean":
        levels = torch.arange(k, device=logp.device, dtype=logp.dtype) / (k - 1)
        return (logp.exp() * levels).sum(-1)
    u = torch.rand(logp.shape[:-1], generator=generator).to(logp.device)  # CPU uniforms: same on any device
    x_int = (logp.exp().cumsum(-1) < u.unsqueeze(-1)).sum(-1).clamp(max=k - 1)
    return from_levels(x_int, k)
