"""Shared network building blocks: MLPs, small conv encoders/decoders, and
time embeddings. Families import from here and from torch only."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


def mlp(
    d_in: int,
    d_out: int,
    hidden: Sequence[int] = (128, 128),
    act: type[nn.Module] = nn.SiLU,
    norm: type[nn.Module] | None = None,
) -> nn.Sequential:
    """A plain MLP: Linear -> [norm] -> act per hidden layer, Linear at the end."""
    layers: list[nn.Module] = []
    d = d_in
    for h in hidden:
        layers.append(nn.Linear(d, h))
        if norm is not None:
            layers.append(norm(h))
        layers.append(act())
        d = h
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """(N, C, H, W) images -> (N, d_out) vectors.

    Stride-2 3x3 convolutions halve the resolution ``n_down`` times; a linear
    head maps the flattened features to ``d_out``.
    """

    def __init__(self, shape: Sequence[int], d_out: int, width: int = 32, n_down: int = 2, act: type[nn.Module] = nn.SiLU) -> None:
        super().__init__()
        c, h, w = shape
        layers: list[nn.Module] = [nn.Conv2d(c, width, 3, padding=1), act()]
        ch = width
        for _ in range(n_down):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), act()]
            ch *= 2
            h, w = (h + 1) // 2, (w + 1) // 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(ch * h * w, d_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x).flatten(1))


class ConvDecoder(nn.Module):
    """(N, d_in) vectors -> (N, C_out, H, W) maps (logits or means).

    Mirror of :class:`ConvEncoder`; ``out_channels`` lets a decoder emit K
    logits per pixel (``C * K``) for discretized likelihoods.
    """

    def __init__(
        self, d_in: int, shape: Sequence[int], out_channels: int | None = None, width: int = 32, n_down: int = 2, act: type[nn.Module] = nn.SiLU
    ) -> None:
        super().__init__()
        c, h, w = shape
        self.out_shape = (out_channels or c, h, w)
        hs, ws = h, w
        for _ in range(n_down):
            hs, ws = (hs + 1) // 2, (ws + 1) // 2
        ch = width * 2**n_down
        self.start = (ch, hs, ws)
        self.fc = nn.Linear(d_in, ch * hs * ws)
        layers: list[nn.Module] = [act()]
        for _ in range(n_down):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, stride=2, padding=1), act()]
            ch //= 2
        layers.append(nn.Conv2d(ch, self.out_shape[0], 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        out = self.body(self.fc(z).view(-1, *self.start))
        return out[:, :, : self.out_shape[1], : self.out_shape[2]]


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style embedding of (continuous or integer) times t: (N,) -> (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/"auto" -> CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def progress(iterable, desc: str, total: int | None = None):
    """tqdm progress bar for training/sampling loops (``GENBENCH_PROGRESS=0`` silences it)."""
    import os

    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, mininterval=1.0, disable=os.environ.get("GENBENCH_PROGRESS", "1") == "0")


def minibatches(x: Tensor, batch_size: int, y: Tensor | None = None, generator: torch.Generator | None = None):
    """Endless iterator of random minibatches ``(xb, yb)`` (``yb`` None without labels).

    Reshuffles every epoch; ``batch_size`` is capped at ``len(x)``.
    """
    n = len(x)
    bs = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n - bs + 1, bs):
            idx = perm[i : i + bs]
            yield x[idx], (y[idx] if y is not None else None)
