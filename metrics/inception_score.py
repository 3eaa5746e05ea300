"""Inception Score (Salimans et al., 2016) from classifier logits.

    IS = exp( E_x KL( p(y|x) || p(y) ) )

computed on ``splits`` equal parts of the (shuffled) samples, with p(y) the
mean of p(y|x) within each part; the value is the mean over parts and the
spread their standard deviation (numpy's, ddof = 0). Softmax in float64. The
shuffle follows torch-fidelity's ``isc_features_to_metric`` (a
``np.random.RandomState(seed)`` permutation), so both agree on the same logits
and seed. Range [1, number of classes]; higher is better.

With the ``inception-v3-compat`` extractor the logits are torch-fidelity's
``logits_unbiased`` (the literature's protocol); with ``digits-cnn`` they are
its 10 digit logits (an "IS[digits-cnn]", comparable only with itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ISResult:
    value: float
    std: float
    splits: int
    n: int
    classes: int


def inception_score(logits, splits: int = 10, seed: int = 0, shuffle: bool = True) -> ISResult:
    """Inception Score of (N, C) logits over ``splits`` parts; range [1, C].

    ``ValueError`` for NaN/inf, too few samples, or rows that are already
    probabilities (non-negative, summing to 1: the softmax of those would give
    an IS near 1 silently).
    """
    t = torch.as_tensor(logits).detach().cpu()
    if t.ndim != 2 or t.shape[1] < 2:
        raise ValueError(f"inception score needs (N, C>=2) logits, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError("inception score: logits contain NaN or inf")
    rows = t.double()
    if len(rows) and bool((rows >= 0).all()) and bool(torch.allclose(rows.sum(1), torch.ones(len(rows), dtype=torch.float64), atol=1e-4)):
        raise ValueError(
            "inception score expects logits (or log-probabilities), got rows that are probabilities "
            "(non-negative, summing to 1); pass logits, e.g. probs.log()"
        )
    n, c = t.shape
    if splits < 1 or n < splits:
        raise ValueError(f"inception score with {splits} splits needs at least {splits} samples, got N={n}")
    if shuffle:
        t = t[torch.as_tensor(np.random.RandomState(seed).permutation(n))]
    t = t.double()
    log_p = t.log_softmax(1)
    p = log_p.exp()
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        log_q = p[lo:hi].mean(0, keepdim=True).log()
        kl = (p[lo:hi] * (log_p[lo:hi] - log_q)).sum(1).mean()
        scores.append(float(kl.exp()))
    return ISResult(float(np.mean(scores)), float(np.std(scores)), splits, n, c)
