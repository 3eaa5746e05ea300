"""Reference generators that give every table its anchors.

* ``data``: draws held-out real examples (the noise floor of every metric).
  The harness hands it the pool (the test split) with ``use_pool``.
* ``uniform``: independent uniform levels per pixel; its exact NLL is
  log2(K) bits/dim, the ceiling any image model must beat.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .protocol import DataInfo, GeneratorInfo
from .registry import register


class DataGenerator:
    """Held-out real examples as a generator (sampling without replacement).

    The harness hands it the held-out split with :meth:`use_pool` (the
    :class:`~genbench.protocol.HeldOutReference` capability) before sampling;
    :meth:`sample_labeled` returns the drawn examples' real labels
    (:class:`~genbench.protocol.LabeledSampler`). With ``n`` larger than the
    pool it draws with replacement and says so in ``with_replacement``.
    """

    def __init__(self, info: DataInfo, pool: Tensor | None = None, pool_labels: Tensor | None = None) -> None:
        self.data_info = info
        self.pool: Tensor | None = None
        self.pool_labels: Tensor | None = None
        self.with_replacement = False
        if pool is not None:
            self.use_pool(pool, pool_labels)

    def use_pool(self, x: Tensor, labels: Tensor | None = None) -> None:
        """Draw from these real examples (N, *shape) and their optional labels (N,)."""
        if x is None or len(x) == 0:
            raise ValueError("data generator needs a non-empty pool of real examples")
        if tuple(x.shape[1:]) != tuple(self.data_info.shape):
            raise ValueError(f"data generator: pool has shape {tuple(x.shape)}; expected (N, {', '.join(map(str, self.data_info.shape))})")
        if labels is not None and len(labels) != len(x):
            raise ValueError(f"data generator: {len(labels)} labels for a pool of {len(x)} examples")
        self.pool = x.float()
        self.pool_labels = labels
        self.with_replacement = False

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(name="data", family="reference", shape=tuple(self.data_info.shape))

    def sample(self, n: int, *, labels=None, prompts=None, steps=None, generator=None) -> Tensor:
        return self.sample_labeled(n, generator=generator)[0]

    def sample_labeled(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """Like ``sample`` but also returns the real labels of the drawn examples."""
        if self.pool is None:
            raise RuntimeError("data generator has no pool of real examples: call use_pool(x, labels) first (the harness passes the test split)")
        if n <= len(self.pool):
            idx = torch.randperm(len(self.pool), generator=generator)[:n]
        else:
            self.with_replacement = True
            idx = torch.randint(0, len(self.pool), (n,), generator=generator)
        return self.pool[idx].clone(), (self.pool_labels[idx].clone() if self.pool_labels is not None else None)


class UniformGenerator:
    """Each pixel uniform over the K levels: NLL = D log K nats exactly."""

    def __init__(self, info: DataInfo) -> None:
        if not info.is_image:
            raise ValueError("uniform reference needs image data with K levels")
        self.data_info = info

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(name="uniform", family="reference", shape=tuple(self.data_info.shape), likelihood="exact")

    def sample(self, n: int, *, labels=None, prompts=None, steps=None, generator=None) -> Tensor:
        k = self.data_info.levels
        x_int = torch.randint(0, k, (n, *self.data_info.shape), generator=generator)
        return x_int.float() / (k - 1)

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.full((x.shape[0],), -self.data_info.dim * math.log(self.data_info.levels))


@register("data", family="reference")
def make_data(info: DataInfo) -> DataGenerator:
    """Held-out real samples (test split): the noise floor."""
    return DataGenerator(info)


register("uniform", family="reference", kinds=("image",), description="Uniform over the K intensity levels: log2(K) bits/dim.")(UniformGenerator)
