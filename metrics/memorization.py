"""Memorization: does a generator copy its training set?

In extractor feature space (Euclidean):

* ``copy_rate``: fraction of samples whose nearest train neighbour is much
  closer than the second nearest: d1 < ratio * d2 (default ratio 1/3), or
  d1 = 0 (an exact copy, even of a duplicated train image). The held-out test
  split scored the same way gives the chance level of the data itself.
* ``dist_ratio``: mean nearest-train-neighbour distance of the samples
  divided by the same mean for the test split. About 1 for a model whose
  samples are as new as held-out data, much less than 1 for one that copies,
  above 1 for samples far from the data.

Read FID with these: a model that copies the train split reaches the FID
floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .prdc import DEFAULT_CHUNK, _as_tensor, check_knn


def nn_distances(x, ref, k: int = 2, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """(N, k) distances of each row of ``x`` to its k nearest rows of ``ref`` (ascending)."""
    a, b = _as_tensor(x, "samples"), _as_tensor(ref, "reference")
    if len(a) == 0:
        raise ValueError("nearest-neighbour distances of an empty sample set: need at least one sample")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    if len(b) < k:
        raise ValueError(f"nearest-neighbour distances with k={k} need at least {k} reference samples, got {len(b)}")
    return torch.cat(
        [torch.topk(torch.cdist(a[i : i + chunk], b), k, 1, largest=False, sorted=True).values for i in range(0, len(a), chunk)]
    )


@dataclass
class MemorizationResult:
    copy_rate: float
    dist_ratio: float
    mean_nn_fake: float  # mean distance sample -> nearest train
    mean_nn_test: float  # mean distance test -> nearest train
    copy_rate_test: float  # copy rate of the test split itself (chance level)
    ratio: float
    n_fake: int
    n_train: int
    n_test: int


def copy_rate(fake, train, ratio: float = 1 / 3, chunk: int = DEFAULT_CHUNK) -> float:
    """Fraction of samples with d1 < ratio * d2 (or d1 = 0) to the train set."""
    d = nn_distances(fake, train, 2, chunk)
    return float(((d[:, 0] < ratio * d[:, 1]) | (d[:, 0] == 0)).double().mean())


def memorization(fake, train, test, ratio: float = 1 / 3, chunk: int = DEFAULT_CHUNK) -> MemorizationResult:
    """Copy rate and NN-distance ratio of ``fake`` against ``train``, with ``test`` as the reference level."""
    if not 0 < ratio <= 1:
        raise ValueError(f"copy ratio must be in (0, 1], got {ratio}")
    n_train = len(train)
    check_knn("memorization (copy rate)", 1, n_train=n_train)
    for what, x in (("samples (fake)", fake), ("test split", test)):
        if len(x) == 0:
            raise ValueError(f"memorization: the {what} set is empty; need at least one example")
    df = nn_distances(fake, train, 2, chunk)
    dt = nn_distances(test, train, 2, chunk)
    copies = lambda d: float(((d[:, 0] < ratio * d[:, 1]) | (d[:, 0] == 0)).double().mean())  # noqa: E731
    m_fake, m_test = float(df[:, 0].double().mean()), float(dt[:, 0].double().mean())
    return MemorizationResult(
        copy_rate=copies(df),
        dist_ratio=m_fake / m_test if m_test > 0 else float("inf"),
        mean_nn_fake=m_fake,
        mean_nn_test=m_test,
        copy_rate_test=copies(dt),
        ratio=ratio,
        n_fake=len(df),
        n_train=n_train,
        n_test=len(dt),
    )
