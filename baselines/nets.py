"""Shared network building blocks: MLPs, small conv encoders/decoders, and
time embeddings. Families import from here and from torch only."""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def conv_codec(channels: int, width: int, n_down: int, z_out: int, z_in: int, levels: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The latent models' convolutional encoder and decoder (SiLU): the encoder maps images (N, ``channels``, H, W)
    to ``z_out`` channels on an H / 2^n_down grid (``n_down`` stride-2 convolutions, doubling the width); the
    decoder maps ``z_in`` channels back to ``channels * levels`` logits per pixel (K-level images)."""
    enc: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.SiLU()]
    ch = width
    for _ in range(n_down):
        enc += [nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1), nn.SiLU()]
        ch *= 2
    enc += [nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU(), nn.Conv2d(ch, z_out, 1)]
    dec: list[nn.Module] = [nn.Conv2d(z_in, ch, 3, padding=1), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU()]
    for _ in range(n_down):
        dec += [nn.ConvTranspose2d(ch, ch // 2, 4, stride=2, padding=1), nn.SiLU()]
        ch //= 2
    dec += [nn.Conv2d(ch, channels * levels, 3, padding=1)]
    return nn.Sequential(*enc), nn.Sequential(*dec)


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


# ----------------------------------------------------------------------------- denoisers
# Networks for diffusion and flow matching: f(x, t, y) with a continuous or
# integer time t (N,) and optional class labels y (N,) (the index
# ``num_classes`` is the "no label" token used for classifier-free guidance).


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of t followed by a 2-layer MLP: (N,) -> (N, dim).

    ``t_scale`` multiplies t first, so times in [0, 1] (flow matching) can be
    spread over the same frequency range as integer diffusion steps 0..T-1.
    """

    def __init__(self, dim: int, t_scale: float = 1.0) -> None:
        super().__init__()
        self.base = dim // 4 * 2 or 2
        self.t_scale = t_scale
        self.net = nn.Sequential(nn.Linear(self.base, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.net(sinusoidal_embedding(t.float() * self.t_scale, self.base))


class ClassEmbedding(nn.Module):
    """Label embedding with an extra "null" label (index ``num_classes``) for
    classifier-free guidance; ``y=None`` means null for the whole batch."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.emb = nn.Embedding(num_classes + 1, dim)

    def forward(self, y: Tensor | None, n: int, device: torch.device) -> Tensor:
        if y is None:
            y = torch.full((n,), self.num_classes, dtype=torch.long, device=device)
        return self.emb(y.long())


def _groups(ch: int) -> int:
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the embedding added in between and a
    1x1 convolution on the skip path when the channel count changes."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(nn.functional.silu(self.norm2(h))))
        return h + self.skip(x)


class UNet(nn.Module):
    """A small U-Net for diffusion / flow matching on small images.

    One resolution level per entry of ``mults`` (channel multipliers of
    ``width``); each level has ``blocks`` residual blocks, levels are joined by
    stride-2 convolutions down and nearest-neighbour upsampling + conv up, and
    every down-path activation is concatenated into the up path (skip
    connections). Time (sinusoidal + MLP) and optional class embeddings are
    summed and added inside every residual block. For 8x8 digits the default
    ``mults=(1, 2)`` gives resolutions 8 and 4.

    ``forward(x, t, y=None)``: x (N, C, H, W), t (N,) times (scaled by
    ``t_scale`` before the sinusoidal embedding), y (N,) long labels in
    0..num_classes (num_classes = null label) or None. Output (N, out_channels, H, W).
    H and W must be divisible by 2 ** (len(mults) - 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        width: int = 32,
        mults: Sequence[int] = (1, 2),
        blocks: int = 1,
        num_classes: int = 0,
        t_scale: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if width < 1 or blocks < 1 or not mults:
            raise ValueError(f"UNet: width and blocks must be >= 1 and mults non-empty, got {width}, {blocks}, {mults}")
        out_channels = out_channels or in_channels
        self.n_levels = len(mults)
        emb_dim = 4 * width
        self.time = TimeEmbedding(emb_dim, t_scale)
        self.label = ClassEmbedding(num_classes, emb_dim) if num_classes > 0 else None
        self.conv_in = nn.Conv2d(in_channels, width, 3, padding=1)
        chans = [width]
        ch = width
        self.down = nn.ModuleList()
        for i, m in enumerate(mults):
            level = nn.ModuleList()
            for _ in range(blocks):
                level.append(ResBlock(ch, width * m, emb_dim, dropout))
                ch = width * m
                chans.append(ch)
            self.down.append(level)
            if i < len(mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                chans.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout), ResBlock(ch, ch, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(mults))):
            level = nn.ModuleList()
            for _ in range(blocks + 1):
                level.append(ResBlock(ch + chans.pop(), width * m, emb_dim, dropout))
                ch = width * m
            self.up.append(level)
            if i > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)]))
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        f = 2 ** (self.n_levels - 1)
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"UNet: image size {tuple(x.shape[-2:])} must be divisible by {f}")
        emb = self.time(t)
        if self.label is not None:
            emb = emb + self.label(y, x.shape[0], x.device)
        h = self.conv_in(x)
        hs = [h]
        for level in self.down:
            for block in level:
                h = block(h, emb) if isinstance(block, ResBlock) else block(h)
                hs.append(h)
        for block in self.mid:
            h = block(h, emb)
        for level in self.up:
            if isinstance(level[0], ResBlock):
                for block in level:
                    h = block(torch.cat([h, hs.pop()], 1), emb)
            else:
                for layer in level:
                    h = layer(h)
        return self.conv_out(nn.functional.silu(self.norm_out(h)))


class TimeMLP(nn.Module):
    """MLP denoiser for vector data: f(x, t, y) = MLP([x, emb(t) (+ emb(y))]).

    ``forward(x, t, y=None)`` with x (N, d), t (N,) (scaled by ``t_scale``),
    y (N,) long labels or None; output (N, d_out).
    """

    def __init__(
        self, d: int, d_out: int | None = None, hidden: Sequence[int] = (256, 256, 256), emb_dim: int = 64, num_classes: int = 0, t_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.time = TimeEmbedding(emb_dim, t_scale)
        self.label = ClassEmbedding(num_classes, emb_dim) if num_classes > 0 else None
        self.net = mlp(d + emb_dim, d_out or d, hidden)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        emb = self.time(t)
        if self.label is not None:
            emb = emb + self.label(y, x.shape[0], x.device)
        return self.net(torch.cat([x, emb], 1))
