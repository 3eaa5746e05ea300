"""Gated PixelCNN (van den Oord et al. 2016): an exact discrete autoregressive model.

P(x) = prod_i P(x_i | x_<i) over pixels in raster order, each conditional a
categorical over the K intensity levels, so ``log_prob`` is the *exact*
discrete log-likelihood log P(x_int) in nats (``info.likelihood == "exact"``).

Architecture: a vertical stack (sees the rows above) and a horizontal stack
(sees the pixels to the left in the current row, plus the vertical stack shifted
down by one row), with gated activations tanh(a) * sigmoid(b) and residual
connections in the horizontal stack. This removes the blind spot of the
original masked PixelCNN. Causality is enforced by padding and shifting
instead of weight masks:

* vertical conv: kernel (p+1, k), padded so position (i, j) sees rows i-p..i;
  its output enters the horizontal stack shifted down one row (rows < i).
* horizontal conv: kernel (1, p+1) seeing columns j-p..j of the same row; the
  first layer shifts right by one so a pixel never sees itself ("mask A").

Multi-channel images: the C channels of one pixel are predicted independently
given all previous pixels (a valid but simpler factorization than PixelCNN's
R -> G -> B ordering).

Sampling is sequential: one network evaluation per pixel (H * W evaluations),
so its latency grows with the pixel count.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Family
from .protocol import DataInfo, to_levels
from .registry import register
from .training import Batch

__all__ = ["PixelCNN"]




def _down(x: Tensor) -> Tensor:
    """Shift a feature map down one row (row 0 becomes zeros)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def _right(x: Tensor) -> Tensor:
    """Shift a feature map right one column (column 0 becomes zeros)."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


def _gate(x: Tensor) -> Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class _GatedLayer(nn.Module):
    """One gated layer of the two stacks; ``first`` applies the "mask A" shift."""

    def __init__(self, c_in: int, channels: int, kernel: int, first: bool) -> None:
        super().__init__()
        p = kernel // 2
        self.p = p
        self.first = first
        self.v_conv = nn.Conv2d(c_in, 2 * channels, (p + 1, kernel))
        self.h_conv = nn.Conv2d(c_in, 2 * channels, (1, p + 1))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        p = self.p
        v_feat = self.v_conv(F.pad(v, (p, p, p, 0)))  # (i, j) sees rows i-p..i
        h_feat = self.h_conv(F.pad(h, (p, 0, 0, 0)))  # (i, j) sees columns j-p..j
        if self.first:
            h_feat = _right(h_feat)  # columns j-p-1..j-1: never the pixel itself
        h_feat = h_feat + self.v_to_h(_down(v_feat))  # rows strictly above
        h_new = self.h_out(_gate(h_feat))
        if not self.first:
            h_new = h_new + h
        return _gate(v_feat), h_new


class _PixelCNNNet(nn.Module):
    def __init__(self, shape: Sequence[int], levels: int, channels: int, n_layers: int, kernel: int, dropout: float) -> None:
        super().__init__()
        c = shape[0]
        self.levels = levels
        self.c = c
        self.layers = nn.ModuleList([_GatedLayer(c if i == 0 else channels, channels, kernel, first=i == 0) for i in range(n_layers)])
        self.head = nn.Sequential(
            nn.ReLU(), nn.Dropout(dropout), nn.Conv2d(channels, 2 * channels, 1), nn.ReLU(), nn.Conv2d(2 * channels, c * levels, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        """x in [0, 1] (N, C, H, W) -> logits (N, C, H, W, K); position i depends only on pixels < i."""
        h = x * 2 - 1
        v = h
        for layer in self.layers:
            v, h = layer(v, h)
        n, _, hh, ww = x.shape
        return self.head(h).reshape(n, self.c, self.levels, hh, ww).movedim(2, -1)


class PixelCNN(Family):
    """Gated PixelCNN over K intensity levels: exact discrete log-likelihood, sequential sampling.

    Args:
        info: image data description (``info.levels`` = K).
        channels: feature channels of each stack.
        n_layers: number of gated layers (receptive field grows by kernel // 2 rows per layer).
        kernel: kernel size k (odd, >= 3).
        dropout: dropout before the output head (regularizes on small data sets).
        lr: Adam learning rate (``Budget.lr`` overrides it when given).
        weight_decay: Adam weight decay.
        device: ``"cpu"``, ``"cuda"`` or None (auto).
    """

    name = "pixelcnn"
    family = "autoregressive"
    curves = ("nll",)
    rng = "global"

    def __init__(
        self,
        info: DataInfo,
        *,
        channels: int = 32,
        n_layers: int = 5,
        kernel: int = 3,
        dropout: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        device: str | None = None,
    ) -> None:
        if not info.is_image:
            raise ValueError(f"pixelcnn models images; {info.name} is {info.kind} data")
        if not info.levels or info.levels < 2:
            raise ValueError("pixelcnn: image data needs info.levels >= 2 (number of intensity levels K)")
        if kernel < 3 or kernel % 2 == 0:
            raise ValueError(f"pixelcnn: kernel must be odd and >= 3, got {kernel}")
        if n_layers < 1:
            raise ValueError(f"pixelcnn: n_layers must be >= 1, got {n_layers}")
        super().__init__(info, lr=lr, weight_decay=weight_decay, device=device)
        self.levels = int(info.levels)
        self.net = _PixelCNNNet(info.shape, self.levels, channels, n_layers, kernel, dropout).to(self.device)

    def info_fields(self) -> dict[str, Any]:
        return {"likelihood": "exact"}

    def _prep(self, x: Tensor) -> Tensor:
        return self.check_x(x).to(self.device)

    def _log_prob(self, x: Tensor) -> Tensor:
        logp = F.log_softmax(self.net(x), dim=-1)
        idx = to_levels(x, self.levels).unsqueeze(-1)
        return logp.gather(-1, idx).squeeze(-1).flatten(1).sum(1)

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Mean negative log-likelihood of the batch, nats per example (``"loss"``, also ``"nll"``)."""
        loss = -self._log_prob(batch.x.to(self.device)).mean()
        return {"loss": loss, "nll": loss}

    def conditionals(self, x: Tensor) -> Tensor:
        """Per-pixel conditional probabilities P(x_i = level | x_<i): (N, C, H, W, K), summing to 1 over K."""
        self.net.eval()
        with torch.no_grad():
            return F.softmax(self.net(self._prep(x)), dim=-1).cpu()

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log P(x_int) in nats per example, shape (N,)."""
        self.net.eval()
        with torch.no_grad():
            return self._log_prob(self._prep(x)).float().cpu()

    def draw(self, n: int, labels: Tensor | None, steps: int | None, generator: torch.Generator | None, sampler: Any) -> Tensor:
        """n images, pixel by pixel in raster order (H * W network evaluations); values on the K levels."""
        c, h, w = self.data_info.shape
        k = self.levels
        u = torch.rand(n, c, h, w, generator=generator).to(self.device)  # inverse-CDF uniforms, drawn on CPU
        x = torch.zeros(n, c, h, w, device=self.device)
        self.net.eval()
        with torch.no_grad():
            for i in range(h):
                for j in range(w):
                    probs = F.softmax(self.net(x)[:, :, i, j], dim=-1)  # (n, c, K)
                    level = (probs.cumsum(-1) < u[:, :, i, j, None]).sum(-1).clamp(max=k - 1)
                    x[:, :, i, j] = level.float() / (k - 1)
        return x.cpu()


register("pixelcnn", family="autoregressive", kinds=("image",), description="Gated PixelCNN, exact likelihood over K levels; sequential pixel-by-pixel sampling.")(PixelCNN)
