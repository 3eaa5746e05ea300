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

from genbench.protocol import ExactLikelihood, LikelihoodBound


def _batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int) -> Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(fn(x[i : i + batch_size]).detach().double().cpu())
    return torch.cat(out)


def nll_nats(score: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 512, seed: int | None = 0) -> Tensor:
    """Per-example negative log-likelihood in nats (float64, (N,)) from a ``log_prob``/``elbo`` function.

    Stochastic scores (dequantization noise, the ELBO's posterior sample, IWAE)
    draw from torch's default generator, which the protocol gives no way to
    replace. With ``seed`` (the job seed) they run inside ``torch.random.fork_rng``
    seeded with it: the value is reproducible (a resumed run gets the same
    number) and the caller's global RNG state is left untouched.
    ``seed=None`` uses the global RNG as it is.
    """
    if len(x) == 0:
        raise ValueError("log-likelihood of an empty set: need at least one example")
    if seed is None:
        lp = _batched(score, x, batch_size)
    else:
        with torch.random.fork_rng(devices=_cuda_devices(x)):
            torch.manual_seed(int(seed))
            lp = _batched(score, x, batch_size)
    if not torch.isfinite(lp).all():
        raise ValueError(f"log-likelihood has {int((~torch.isfinite(lp)).sum())} non-finite values")
    return -lp


def _cuda_devices(x: Tensor) -> list[int]:
    return [x.device.index or 0] if x.is_cuda else ([torch.cuda.current_device()] if torch.cuda.is_available() else [])


def bits_per_dim(nll_nats_per_example: Tensor | float, dim: int) -> float:
    """Mean NLL in nats per example -> bits per dimension: mean / (dim ln 2).

    Raises ``ValueError`` for an empty input, NaN/inf values or ``dim < 1``.
    """
    t = torch.as_tensor(nll_nats_per_example, dtype=torch.float64)
    if t.numel() == 0:
        raise ValueError("bits_per_dim of an empty tensor: need at least one NLL value")
    if not torch.isfinite(t).all():
        raise ValueError(f"bits_per_dim: {int((~torch.isfinite(t)).sum())} of {t.numel()} NLL values are NaN or inf")
    if int(dim) < 1:
        raise ValueError(f"bits_per_dim: dim must be >= 1, got {dim}")
    return float(t.mean()) / (int(dim) * math.log(2))


def likelihood_summary(
    model: Any, x: Tensor, *, is_image: bool, dim: int, batch_size: int = 512, seed: int | None = 0
) -> dict[str, Any]:
    """Test NLL of ``model`` on ``x``: nats/point (2-D data) or bits/dim (images).

    Uses ``log_prob`` (:class:`~genbench.protocol.ExactLikelihood`) when the
    model has it, else ``elbo`` (:class:`~genbench.protocol.LikelihoodBound`);
    ``kind`` in the result says which (``exact``, ``dequantized`` or ``elbo``).
    Random draws inside the score are seeded with ``seed`` (see :func:`nll_nats`).
    Returns ``{"value", "se", "unit", "kind"}`` (se: standard error of the mean).
    """
    info = getattr(model, "info", None)
    if isinstance(model, ExactLikelihood):
        nll = nll_nats(model.log_prob, x, batch_size, seed)
        kind = getattr(info, "likelihood", None) or "exact"
    elif isinstance(model, LikelihoodBound):
        nll = nll_nats(model.elbo, x, batch_size, seed)
        kind = "elbo"
    else:
        raise TypeError(f"{type(model).__name__} has neither log_prob (ExactLikelihood) nor elbo (LikelihoodBound)")
    se = float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else float("nan")
    if is_image:
        scale = dim * math.log(2)
        return {"value": float(nll.mean()) / scale, "se": se / scale, "unit": "bits/dim", "kind": kind}
    return {"value": float(nll.mean()), "se": se, "unit": "nats/point", "kind": kind}
