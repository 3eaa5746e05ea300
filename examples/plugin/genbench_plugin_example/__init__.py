"""An example genbench plug-in: every pixel an independent categorical over K levels.

The whole contract a generator meets (see the README's "Bring your own model"):

* ``info`` -> :class:`genbench.protocol.GeneratorInfo` (name, family, shape of one sample ...);
* ``sample(n, *, labels=None, prompts=None, steps=None, generator=None)`` ->
  float32 tensor (n, C, H, W) in [0, 1], every random number drawn from ``generator``;
* optional ``fit(data, budget)`` -> ``TrainReport``, which needs ``state_dict()`` /
  ``load_state_dict()`` (tensors only: checkpoints load with ``weights_only=True``);
* optional ``log_prob(x)`` -> one log-likelihood per example, in nats.

The factory ``make_independent_pixels(info, **params)`` is what the entry
point names; its ``family`` and ``kinds`` attributes tell the registry the
family and the data kinds it supports.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from genbench.protocol import Budget, DataInfo, GeneratorInfo, TrainData, TrainReport

__all__ = ["IndependentPixels", "make_independent_pixels"]


class IndependentPixels:
    """p(x) = prod_d Cat(x_d; theta_d) over the K levels, theta fitted by counting with add-``alpha`` smoothing."""

    def __init__(self, info: DataInfo, alpha: float = 1.0) -> None:
        if info.kind != "image" or not info.levels:
            raise ValueError(f"independent-pixels needs image data with K intensity levels; {info.name} is {info.kind!r}")
        if alpha <= 0:
            raise ValueError(f"independent-pixels: alpha must be > 0, got {alpha}")
        self.data_info = info
        self.alpha = float(alpha)
        self.probs = torch.full((info.dim, info.levels), 1.0 / info.levels)  # (D, K), uniform until fitted

    @property
    def info(self) -> GeneratorInfo:
        n = self.probs.numel()
        return GeneratorInfo(
            name="independent-pixels",
            family="independent",
            shape=tuple(self.data_info.shape),
            n_params=n,
            n_trainable=n,
            likelihood="exact",
        )

    def _levels(self, x: Tensor) -> Tensor:
        return torch.round(x.reshape(len(x), -1).clamp(0, 1) * (self.data_info.levels - 1)).long()  # (N, D) in 0..K-1

    def fit(self, data: TrainData, budget: Budget) -> TrainReport:
        """Closed-form fit (one pass; the budget's steps do not matter)."""
        t0 = time.perf_counter()
        counts = torch.zeros_like(self.probs)
        counts.scatter_add_(1, self._levels(data.x).T, torch.ones(self.data_info.dim, len(data)))
        self.probs = (counts + self.alpha) / (counts.sum(1, keepdim=True) + self.alpha * self.data_info.levels)
        nll = float(-self.log_prob(data.x).mean())
        return TrainReport(steps=1, wall_time_s=time.perf_counter() - t0, losses={"nll_nats": [nll]})

    def sample(
        self,
        n: int,
        *,
        labels: Tensor | None = None,
        prompts: Sequence[str] | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if labels is not None or prompts is not None:
            raise ValueError("independent-pixels is unconditional: labels and prompts are not accepted")
        idx = torch.multinomial(self.probs, n, replacement=True, generator=generator).T  # (n, D)
        return (idx.float() / (self.data_info.levels - 1)).reshape(n, *self.data_info.shape)

    def log_prob(self, x: Tensor) -> Tensor:
        """log P(x_int), nats per example (exact, discrete)."""
        return self.probs.log().gather(1, self._levels(x).T).sum(0)

    def state_dict(self) -> dict[str, Any]:
        return {"probs": self.probs.clone(), "alpha": self.alpha}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["probs"].shape) != tuple(self.probs.shape):
            raise ValueError(
                f"independent-pixels: state has probs of shape {tuple(state['probs'].shape)}, expected {tuple(self.probs.shape)}"
            )
        self.probs = state["probs"].float()
        self.alpha = float(state["alpha"])


def make_independent_pixels(info: DataInfo, alpha: float = 1.0) -> IndependentPixels:
    """Independent per-pixel categorical over the K levels (exact NLL)."""
    return IndependentPixels(info, alpha=alpha)


make_independent_pixels.family = "independent"  # type: ignore[attr-defined]
make_independent_pixels.kinds = ("image",)  # type: ignore[attr-defined]
