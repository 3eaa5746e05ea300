"""Samplers of discrete codes from a transformer prior over a code grid (the VQ models' stage 2), registered in
:data:`baselines.samplers.SAMPLERS` as ``ancestral`` (kind ``tokens-causal``: raster order, one network
evaluation per token) and ``maskgit`` (kind ``tokens-masked``: T parallel steps with confidence-based
re-masking). Both draw codes with :func:`draw_categorical`."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AutoregressiveSampler", "MaskGITSampler", "cosine_mask_ratio", "draw_categorical"]


def draw_categorical(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One index per row of ``probs`` (..., K), by the inverse CDF of uniforms drawn on the CPU from ``generator``
    (so a seed gives the same codes on every device); long, shape ``probs.shape[:-1]``, on ``probs``' device."""
    u = torch.rand(probs.shape[:-1], generator=generator).to(probs.device)
    return (probs.cumsum(-1) < u.unsqueeze(-1)).sum(-1).clamp(max=probs.shape[-1] - 1)


def cosine_mask_ratio(r: Tensor | float) -> Tensor:
    """MaskGIT's cosine schedule gamma(r) = cos(pi r / 2): fraction of tokens masked at progress r in [0, 1]."""
    return torch.cos(torch.as_tensor(r, dtype=torch.float64) * math.pi / 2)


def _check_temperature(who: str, t: float) -> float:
    if not float(t) > 0:
        raise ValueError(f"{who}: temperature must be > 0, got {t}")
    return float(t)


class MaskGITSampler:
    """MaskGIT decoding (Chang et al. 2022): T parallel steps with confidence-based re-masking.

    Start with every token ``[MASK]``. At step t = 1..T the network predicts all
    tokens once; a code is drawn for every masked position (softmax at
    ``temperature``); its confidence is its log-probability plus Gumbel noise
    scaled by ``choice_temperature * (1 - t / T)``; the
    ``n_t = floor(L cos(pi t / (2 T)))`` least confident *new* tokens are
    masked again (at least one new token is kept per step, so all L are
    filled after step T). Already fixed tokens never change.

    ``nfe`` = T network evaluations per sample; requires 1 <= T <= L.
    """

    name = "maskgit"

    def __init__(self, steps: int = 8, *, temperature: float = 1.0, choice_temperature: float = 4.5) -> None:
        if int(steps) < 1:
            raise ValueError(f"maskgit: steps (T) must be >= 1, got {steps}")
        if choice_temperature < 0:
            raise ValueError(f"maskgit: choice_temperature must be >= 0, got {choice_temperature}")
        self.steps = int(steps)
        self.temperature = _check_temperature("maskgit", temperature)
        self.choice_temperature = float(choice_temperature)
        self.nfe = 0

    def __call__(self, net: Callable[[Tensor], Tensor], n: int, length: int, mask_id: int, *, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        """Codes (n, length) sampled with ``net(tokens) -> logits (n, length, K)``."""
        T = self.steps
        if T > length:
            raise ValueError(f"maskgit: steps (T = {T}) must be at most the number of tokens L = {length}")
        tokens = torch.full((n, length), mask_id, dtype=torch.long, device=device)
        for t in range(1, T + 1):
            logits = net(tokens).float()
            masked = tokens == mask_id
            probs = F.softmax(logits / self.temperature, dim=-1)
            draw = draw_categorical(probs, generator)
            conf = probs.gather(-1, draw.unsqueeze(-1)).squeeze(-1).clamp_min(1e-30).log()
            if self.choice_temperature > 0:
                g = -torch.log(-torch.log(torch.rand(conf.shape, generator=generator).clamp(1e-20, 1 - 1e-7))).to(device)
                conf = conf + self.choice_temperature * (1 - t / T) * g
            conf = torch.where(masked, conf, torch.full_like(conf, math.inf))  # fixed tokens stay
            candidate = torch.where(masked, draw, tokens)
            n_masked = masked.sum(1)  # same for every row
            keep_masked = torch.floor(length * cosine_mask_ratio(t / T)).long().item() if t < T else 0
            keep_masked = torch.clamp(torch.full_like(n_masked, int(keep_masked)), max=(n_masked - 1).clamp_min(0))
            order = conf.argsort(dim=1)  # least confident first
            rank = order.argsort(dim=1)
            remask = rank < keep_masked[:, None]
            tokens = torch.where(remask, torch.full_like(candidate, mask_id), candidate)
        self.nfe = T
        return tokens


class AutoregressiveSampler:
    """Ancestral sampling of a causal prior in raster order: one network
    evaluation per token (``nfe`` = L), codes drawn at ``temperature``."""

    name = "ancestral"

    def __init__(self, *, temperature: float = 1.0) -> None:
        self.temperature = _check_temperature("vq-ar", temperature)
        self.nfe = 0

    def __call__(self, net: Callable[[Tensor], Tensor], n: int, length: int, bos_id: int, *, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        """Codes (n, length) drawn from ``net([BOS, c_1 .. c_{L-1}]) -> logits (n, length, K)``."""
        seq = torch.full((n, length), bos_id, dtype=torch.long, device=device)
        codes = torch.zeros((n, length), dtype=torch.long, device=device)
        for i in range(length):
            logits = net(seq[:, : i + 1])[:, i].float()
            c = draw_categorical(F.softmax(logits / self.temperature, dim=-1), generator)
            codes[:, i] = c
            if i + 1 < length:
                seq[:, i + 1] = c
        self.nfe = length
        return codes
