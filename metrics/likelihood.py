"""Likelihood metrics: negative log-likelihood per point (nats) for 2-D data
and bits per dimension for images.

A model exposes ``log_prob(x)`` (nats per example, exact or a dequantization
bound) and/or ``elbo(x)`` (a lower bound, nats per example). For images the
number is of the discrete data x_int over K levels (see DESIGN): bits/dim =
-log P(x_int) / (D ln 2); the uniform model scores log2(K).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def _batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int) -> Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(fn(x[i : i + batch_size]).detach().double().cpu())
    return torch.cat(out)


def nll_nats(score: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 512) -> Tensor:
    """Per-example negative log-likelihood in nats from a ``log_prob``/``elbo`` function."""
    lp = _batched(score, x, batch_size)
    if not torch.isfinite(lp).all():
        raise ValueError(f"log-likelihood has {int((~torch.isfinite(lp)).sum())} non-finite values")
    return -lp


def bits_per_dim(nll_nats_per_example: Tensor | float, dim: int) -> float:
    """Convert a mean NLL in nats per example to bits per dimension."""
    v = float(torch.as_tensor(nll_nats_per_example, dtype=torch.float64).mean())
    return v / (dim * math.log(2))


def likelihood_summary(model: Any, x: Tensor, *, is_image: bool, dim: int, batch_size: int = 512) -> dict[str, float]:
    """Test NLL of ``model`` on ``x``: ``nll`` (nats/point, 2-D) or ``bpd`` (bits/dim, images).

    Uses ``log_prob`` when the model has it, else ``elbo``; ``kind`` in the
    result says which (``exact``, ``dequantized`` or ``elbo``).
    """
    info = getattr(model, "info", None)
    if hasattr(model, "log_prob"):
        nll = nll_nats(model.log_prob, x, batch_size)
        kind = getattr(info, "likelihood", None) or "exact"
    elif hasattr(model, "elbo"):
        nll = nll_nats(model.elbo, x, batch_size)
        kind = "elbo"
    else:
        raise TypeError("model has neither log_prob nor elbo")
    se = float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else float("nan")
    if is_image:
        scale = dim * math.log(2)
        return {"value": float(nll.mean()) / scale, "se": se / scale, "unit": "bits/dim", "kind": kind}
    return {"value": float(nll.mean()), "se": se, "unit": "nats/point", "kind": kind}
