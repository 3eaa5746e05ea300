"""Constructed sample sets for the metric-sanity suite: known failures as generators.

Each construction is a generator that returns real images, transformed in a
known way, with their real labels, so that a table can show which metric
notices which failure (``bench run --suite metric-sanity``). They draw from
the held-out test split (handed over by the harness through ``use_pool``, as
for the ``data`` row) and, where they copy or summarise training data, from
the train split (``use_train``).

Registered generators (family ``constructed``, images only), each taking the
parameters of its construction:

* ``sanity-copy`` (``fraction`` in [0, 1], default 1): that share of the samples
  are exact training images, the rest held-out images.
* ``sanity-drop`` (``classes``, default 1): held-out images of the classes
  ``0 .. classes-1`` removed (class dropping, a partial mode collapse).
* ``sanity-collapse``: one held-out image per class, repeated (mode collapse
  within every class; the class histogram stays right).
* ``sanity-noise`` (``std``, default 0.1): held-out images + Gaussian noise of
  that standard deviation (intensity units, [0, 1] scale), clipped to [0, 1].
* ``sanity-blur`` (``sigma``, default 0.7 pixels): held-out images blurred with
  a Gaussian kernel (size 2 ceil(3 sigma) + 1, edges replicated).
* ``sanity-truncate`` (``scale``, default 0.5): each held-out image pulled toward
  its class mean over the train split, ``mean_c + scale (x - mean_c)`` — the
  low-variance, high-fidelity samples of the truncation trick.
* ``sanity-mixture`` (``parts``, default ``["copy", "noise"]``): equal shares of
  the named constructions with their default parameters.

Sampling is reproducible from the ``torch.Generator`` the harness passes.
Within one construction, held-out images are drawn without replacement while
the pool suffices (``with_replacement`` says when it did not).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from genbench.registry import Registry

from .protocol import DataInfo, GeneratorInfo
from .registry import register

__all__ = ["CONSTRUCTIONS", "Pools", "ConstructedSet", "gaussian_blur"]

Construction = Callable[..., tuple[Tensor, Tensor | None]]
CONSTRUCTIONS: Registry[Construction] = Registry("construction")
"""Construction name -> ``fn(pools, n, generator, **params) -> (images, labels)``."""


@dataclass
class Pools:
    """The splits a construction draws from (images float32 NCHW in [0, 1]) and what it reports."""

    test_x: Tensor
    test_y: Tensor | None
    train_x: Tensor | None = None
    train_y: Tensor | None = None
    with_replacement: bool = False

    def need_train(self, who: str) -> Tensor:
        if self.train_x is None:
            raise RuntimeError(f"{who}: needs the train split; the harness hands it over through use_train(x, labels)")
        return self.train_x

    def draw(self, x: Tensor, y: Tensor | None, n: int, g: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        if n <= len(x):
            idx = torch.randperm(len(x), generator=g)[:n]
        else:
            self.with_replacement = True
            idx = torch.randint(0, len(x), (n,), generator=g)
        return x[idx].clone(), (y[idx].clone() if y is not None else None)

    def heldout(self, n: int, g: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        return self.draw(self.test_x, self.test_y, n, g)


def _cat(parts: Sequence[tuple[Tensor, Tensor | None]], g: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
    x = torch.cat([p[0] for p in parts])
    y = None if any(p[1] is None for p in parts) else torch.cat([p[1] for p in parts])
    perm = torch.randperm(len(x), generator=g)  # shuffle: a prefix of the set must not be one part only
    return x[perm], (y[perm] if y is not None else None)


@CONSTRUCTIONS.register("copy", description="a fraction of exact training images, the rest held-out")
def copy_train(pools: Pools, n: int, g: torch.Generator | None, fraction: float = 1.0) -> tuple[Tensor, Tensor | None]:
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"sanity-copy: fraction must be in [0, 1], got {fraction}")
    k = int(round(float(fraction) * n))
    train_x = pools.need_train("sanity-copy")
    # held-out part first: the train draw must not be randperm(len(train)) of a freshly seeded generator, the
    # very subset a metric seeded alike would take as its reference subset (PRDC's equal-N subset does)
    held = pools.heldout(n - k, g)
    return _cat([pools.draw(train_x, pools.train_y, k, g), held], g)


@CONSTRUCTIONS.register("drop", description="held-out images without classes 0..classes-1")
def drop_classes(pools: Pools, n: int, g: torch.Generator | None, classes: int = 1) -> tuple[Tensor, Tensor | None]:
    if pools.test_y is None:
        raise ValueError("sanity-drop: needs class labels")
    num = int(pools.test_y.max()) + 1
    if not 1 <= int(classes) < num:
        raise ValueError(f"sanity-drop: classes must be in [1, {num - 1}], got {classes}")
    keep = pools.test_y >= int(classes)
    return pools.draw(pools.test_x[keep], pools.test_y[keep], n, g)


@CONSTRUCTIONS.register("collapse", description="one held-out image per class, repeated")
def collapse(pools: Pools, n: int, g: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
    if pools.test_y is None:
        raise ValueError("sanity-collapse: needs class labels")
    x, y = pools.heldout(n, g)
    out = x.clone()
    for c in y.unique().tolist():
        members = torch.nonzero(pools.test_y == c).flatten()
        rep = pools.test_x[members[torch.randint(0, len(members), (1,), generator=g)]]
        out[y == c] = rep
    return out, y


@CONSTRUCTIONS.register("noise", description="held-out images + Gaussian noise, clipped")
def noise(pools: Pools, n: int, g: torch.Generator | None, std: float = 0.1) -> tuple[Tensor, Tensor | None]:
    if float(std) < 0:
        raise ValueError(f"sanity-noise: std must be >= 0, got {std}")
    x, y = pools.heldout(n, g)
    return (x + float(std) * torch.randn(x.shape, generator=g)).clamp(0, 1), y


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of NCHW images (sigma in pixels, kernel 2 ceil(3 sigma) + 1, edges replicated)."""
    if sigma <= 0:
        raise ValueError(f"blur sigma must be > 0, got {sigma}")
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


@CONSTRUCTIONS.register("blur", description="held-out images, Gaussian blur")
def blur(pools: Pools, n: int, g: torch.Generator | None, sigma: float = 0.7) -> tuple[Tensor, Tensor | None]:
    x, y = pools.heldout(n, g)
    return gaussian_blur(x, float(sigma)).clamp(0, 1), y


@CONSTRUCTIONS.register("truncate", description="held-out images pulled toward their train class mean")
def truncate(pools: Pools, n: int, g: torch.Generator | None, scale: float = 0.5) -> tuple[Tensor, Tensor | None]:
    if not 0.0 <= float(scale) <= 1.0:
        raise ValueError(f"sanity-truncate: scale must be in [0, 1], got {scale}")
    train = pools.need_train("sanity-truncate")
    if pools.train_y is None or pools.test_y is None:
        raise ValueError("sanity-truncate: needs class labels")
    x, y = pools.heldout(n, g)
    means = {c: train[pools.train_y == c].mean(0) for c in y.unique().tolist()}
    mu = torch.stack([means[int(c)] for c in y])
    return (mu + float(scale) * (x - mu)).clamp(0, 1), y


@CONSTRUCTIONS.register("mixture", description="equal shares of other constructions (default parameters)")
def mixture(pools: Pools, n: int, g: torch.Generator | None, parts: Sequence[str] = ("copy", "noise")) -> tuple[Tensor, Tensor | None]:
    parts = list(parts)
    if not parts or "mixture" in parts:
        raise ValueError(
            f"sanity-mixture: parts must name other constructions ({', '.join(n for n in CONSTRUCTIONS.names() if n != 'mixture')})"
        )
    sizes = [n // len(parts) + (1 if i < n % len(parts) else 0) for i in range(len(parts))]
    return _cat([CONSTRUCTIONS.load(p)(pools, k, g) for p, k in zip(parts, sizes)], g)


class ConstructedSet:
    """A construction as a generator (``LabeledSampler``, ``HeldOutReference``, ``TrainReference``)."""

    def __init__(
        self, info: DataInfo, construction: str, params: dict[str, Any], pool: Tensor | None = None, pool_labels: Tensor | None = None
    ) -> None:
        if not info.is_image:
            raise ValueError(f"sanity-{construction}: constructed sets are built from images, got {info.kind} data ({info.name})")
        self.data_info = info
        self.construction = construction
        self.fn = CONSTRUCTIONS.load(construction)
        self.params = dict(params)
        self.pools: Pools | None = None
        self._train: tuple[Tensor, Tensor | None] | None = None
        if pool is not None:
            self.use_pool(pool, pool_labels)

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(name=f"sanity-{self.construction}", family="constructed", shape=tuple(self.data_info.shape))

    @property
    def with_replacement(self) -> bool:
        return bool(self.pools and self.pools.with_replacement)

    def use_pool(self, x: Tensor, labels: Tensor | None = None) -> None:
        if x is None or len(x) == 0:
            raise ValueError(f"sanity-{self.construction}: needs a non-empty held-out pool")
        self.pools = Pools(x.float(), labels)
        if self._train is not None:
            self.pools.train_x, self.pools.train_y = self._train

    def use_train(self, x: Tensor, labels: Tensor | None = None) -> None:
        self._train = (x.float(), labels)
        if self.pools is not None:
            self.pools.train_x, self.pools.train_y = self._train

    def sample_labeled(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """``n`` constructed images (float32 NCHW in [0, 1]) with the real labels of their source images."""
        if self.pools is None:
            raise RuntimeError(f"sanity-{self.construction}: no held-out pool; the harness hands it over through use_pool(x, labels)")
        x, y = self.fn(self.pools, int(n), generator, **self.params)
        return x.float().contiguous(), y

    def sample(self, n: int, *, labels=None, prompts=None, steps=None, generator: torch.Generator | None = None) -> Tensor:
        if labels is not None or prompts is not None:
            raise ValueError(f"sanity-{self.construction}: constructed sets are unconditional")
        return self.sample_labeled(n, generator=generator)[0]


def _factory(construction: str) -> Callable[..., ConstructedSet]:
    def make(
        info: DataInfo, pool: Tensor | None = None, pool_labels: Tensor | None = None, device: Any = None, **params: Any
    ) -> ConstructedSet:
        """``device`` is accepted and ignored: the sets are built on the CPU from the splits."""
        return ConstructedSet(info, construction, params, pool, pool_labels)

    make.__doc__ = f"Constructed sample set: {CONSTRUCTIONS.get(construction).description}."
    make.__name__ = f"make_sanity_{construction}"
    return make


for _name in CONSTRUCTIONS.names():
    register(f"sanity-{_name}", family="constructed", kinds=("image",))(_factory(_name))
