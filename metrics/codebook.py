"""Codebook usage of discrete-latent models (VQ-VAE and its priors).

A VQ-VAE with K codes that routes the data through only a few of them wastes
capacity (codebook collapse). For any generator with the
:class:`genbench.protocol.DiscreteLatent` capability, the held-out test split
is encoded to codes and the histogram of all code positions gives:

* ``codebook_usage``: fraction of the K codes used at least once (in [0, 1]);
* ``codebook_perplexity``: ``exp(H)`` with ``H = -sum_k p_k ln p_k`` (nats) of
  the code histogram: 1 when one code takes everything, K when all are
  equally used (van den Oord et al. 2017; Razavi et al. 2019).

The dead codes (K minus the used ones) and K are in each value's ``extra``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genbench.protocol import DiscreteLatent

from .context import EvalContext
from .registry import MetricValue, Output, register_metric

__all__ = ["codebook_usage"]


def codebook_usage(codes: Tensor, num_codes: int) -> dict[str, float]:
    """Usage statistics of integer codes (any shape, values in [0, num_codes)).

    Returns ``usage`` (fraction of codes used), ``perplexity`` (exp of the
    histogram's entropy in nats), ``dead`` (codes never used) and ``n`` (code positions counted).
    """
    if num_codes < 1:
        raise ValueError(f"codebook_usage: num_codes must be >= 1, got {num_codes}")
    flat = torch.as_tensor(codes).reshape(-1).long().cpu()
    if flat.numel() == 0:
        raise ValueError("codebook_usage: no codes to count")
    if flat.min() < 0 or flat.max() >= num_codes:
        raise ValueError(f"codebook_usage: codes must lie in [0, {num_codes - 1}], got [{int(flat.min())}, {int(flat.max())}]")
    counts = torch.bincount(flat, minlength=num_codes).double()
    p = counts[counts > 0] / flat.numel()
    entropy = float(-(p * p.log()).sum())
    used = int((counts > 0).sum())
    return {"usage": used / num_codes, "perplexity": math.exp(entropy), "dead": num_codes - used, "n": int(flat.numel())}


def _applies(ctx: EvalContext) -> bool:
    return isinstance(ctx.generator, DiscreteLatent) and ctx.test is not None


@register_metric(
    "codebook",
    [Output("codebook_usage", "codebook usage", "max", unit="fraction of K"), Output("codebook_perplexity", "codebook perplexity", "max")],
    applies=_applies,
)
def codebook(ctx: EvalContext) -> dict[str, MetricValue]:
    """Codebook usage and perplexity of the test split's codes (discrete-latent models)."""
    k = int(ctx.generator.num_codes)
    with torch.no_grad():
        codes = ctx.generator.encode_codes(ctx.test)
    s = codebook_usage(codes, k)
    settings = {"split": "test", "codebook_size": k, "code_positions": s["n"], "perplexity": "exp(entropy in nats) of the code histogram"}
    extra = {"dead_codes": s["dead"], "codebook_size": k}
    return {
        "codebook_usage": MetricValue(s["usage"], None, settings, extra),
        "codebook_perplexity": MetricValue(s["perplexity"], None, settings, extra),
    }
