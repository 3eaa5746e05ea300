"""The one training loop of every family.

A family supplies what differs: a loss (``loss(batch, generator) -> Tensor |
dict``) and its parameters and optimizer, or, for models with more than one
optimizer (GANs), a whole step (``step(batches, generator) -> dict``). The loop
owns the rest, written once:

* the budget: ``budget.steps`` optimizer steps of ``budget.batch_size``
  examples, stopping early once ``budget.max_seconds`` have passed;
* seeding: with ``rng="generator"`` (the default) every random draw of the
  loop (minibatch order) and of the loss comes from one CPU
  ``torch.Generator`` seeded from the global torch RNG, so
  ``torch.manual_seed`` before ``fit`` fixes the run; ``rng="global"`` uses the
  global RNG directly (``generator`` is then None);
* optional linear LR warm-up and gradient-norm clipping;
* the exponential moving average of the weights (:class:`EMA`);
* a progress bar on stderr (:func:`progress`);
* the loss curves, averaged to at most :data:`MAX_CURVE_POINTS` points
  (:func:`thin_curve`), returned in a :class:`~genbench.protocol.TrainReport`.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from genbench.precision import current_scaler

from .protocol import Budget, TrainReport

__all__ = [
    "MAX_CURVE_POINTS",
    "Batch",
    "EMA",
    "LossFn",
    "StepFn",
    "default_warmup",
    "minibatches",
    "progress",
    "progress_enabled",
    "seeded_generator",
    "thin_curve",
    "train",
]

MAX_CURVE_POINTS = 200


# ----------------------------------------------------------------------------- small pieces
def progress_enabled(enabled: bool | None = None) -> bool:
    """Whether a progress bar is drawn: never when ``enabled`` is False, when the
    environment sets ``GENBENCH_PROGRESS=0``, or when stderr is not a terminal."""
    if enabled is False or os.environ.get("GENBENCH_PROGRESS", "1") == "0":
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress(iterable: Iterable[Any], desc: str, total: int | None = None, enabled: bool | None = None) -> Iterable[Any]:
    """``iterable`` wrapped in a tqdm bar on stderr (see :func:`progress_enabled` for when it is silent)."""
    return tqdm(iterable, desc=desc, total=total, leave=False, mininterval=1.0, file=sys.stderr, disable=not progress_enabled(enabled))


def thin_curve(values: Sequence[float], n: int = MAX_CURVE_POINTS) -> list[float]:
    """A loss curve with ``min(len(values), n)`` points: the values are cut into
    ``n`` consecutive chunks of near-equal length (edges ``round(linspace(0, len, n + 1))``)
    and each chunk is averaged (in float64)."""
    if n < 1:
        raise ValueError(f"thin_curve: n must be >= 1, got {n}")
    if len(values) <= n:
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64)
    edges = torch.linspace(0, len(values), n + 1).round().long()
    return [float(t[edges[i] : edges[i + 1]].mean()) for i in range(n)]


def seeded_generator(high: int = 2**31 - 1) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with one draw in [0, high) from the global torch RNG."""
    return torch.Generator().manual_seed(int(torch.randint(0, high, (1,)).item()))


def default_warmup(steps: int) -> int:
    """The LR warm-up length used by the diffusion-type families: 10 % of the steps, between 1 and 100."""
    return max(1, min(100, steps // 10))


@dataclass
class Batch:
    """One minibatch handed to a loss: examples ``x``, labels ``y`` (None when
    unlabelled or not requested) and the 0-based index ``step`` of the optimizer step."""

    x: Tensor
    y: Tensor | None
    step: int


def minibatches(
    x: Tensor, batch_size: int, y: Tensor | None = None, generator: torch.Generator | None = None, replacement: bool = False
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Endless iterator of random minibatches ``(xb, yb)`` (``yb`` None without labels).

    Reshuffles every epoch (``torch.randperm`` from ``generator``, the global
    RNG when None); ``batch_size`` is capped at ``len(x)``; the incomplete
    batch at the end of an epoch is dropped. With ``replacement`` every batch
    is ``batch_size`` independent uniform draws (for a handful of examples,
    e.g. few-shot adaptation).
    """
    n = len(x)
    if n < 1:
        raise ValueError("minibatches: no training examples")
    if batch_size < 1:
        raise ValueError(f"minibatches: batch_size must be >= 1, got {batch_size}")
    if replacement:
        while True:
            idx = torch.randint(0, n, (batch_size,), generator=generator)
            yield x[idx], (y[idx] if y is not None else None)
    bs = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n - bs + 1, bs):
            idx = perm[i : i + bs]
            yield x[idx], (y[idx] if y is not None else None)


class EMA:
    """Exponential moving average of a module's parameters (buffers are copied).

    ``update()`` after each optimizer step. The decay warms up as
    ``min(decay, (1 + t) / (10 + t))`` with ``t = n + offset`` (``n`` updates
    made so far), so short runs are not dominated by the random
    initialisation. ``module`` is the averaged copy (eval mode, no grad).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, *, offset: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.offset = int(offset)
        self.n = 0
        self.source = model
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module | None = None) -> None:
        """Move the average towards ``model`` (default: the module it was built from)."""
        model = self.source if model is None else model
        t = self.n + self.offset
        d = min(self.decay, (1 + t) / (10 + t))
        self.n += 1
        for pe, p in zip(self.module.parameters(), model.parameters()):
            pe.lerp_(p.detach(), 1.0 - d)
        for be, b in zip(self.module.buffers(), model.buffers()):
            be.copy_(b)


LossFn = Callable[[Batch, "torch.Generator | None"], "Tensor | dict[str, Tensor]"]
StepFn = Callable[[Iterator[Batch], "torch.Generator | None"], "dict[str, float | Tensor]"]


def _as_float(v: Any) -> float:
    return float(v.detach()) if isinstance(v, Tensor) else float(v)


# ----------------------------------------------------------------------------- the loop
def train(
    name: str,
    budget: Budget,
    x: Tensor,
    y: Tensor | None = None,
    *,
    loss: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    params: Iterable[nn.Parameter] | None = None,
    step: StepFn | None = None,
    batch_size: int | None = None,
    replacement: bool = False,
    warmup: int = 0,
    clip_grad: float | None = None,
    ema: EMA | None = None,
    curves: Sequence[str] | None = None,
    rng: Literal["generator", "global"] = "generator",
    generator: torch.Generator | None = None,
    check_finite: bool = False,
    started: float | None = None,
    show_progress: bool | None = None,
) -> TrainReport:
    """Run ``budget.steps`` training steps and return the report.

    Args:
        name: used in the progress bar and in error messages.
        budget: steps, batch size, wall-time limit (``budget.lr`` is the
            family's business: it builds ``optimizer``).
        x, y: training examples and optional labels (minibatches are drawn
            from them; ``y=None`` gives ``Batch.y = None``).
        loss: ``loss(batch, generator)`` returns a scalar tensor or a dict of
            named scalars whose ``"loss"`` entry is minimised. Needs ``optimizer``.
        optimizer: the optimizer of ``params`` (for ``loss``).
        params: the parameters to clip (``clip_grad``) and average (no
            default: clipping needs them explicitly).
        step: instead of ``loss``/``optimizer``, a whole step for
            multi-optimizer models: ``step(batches, generator)`` draws as many
            batches as it needs and returns its named scalars.
        batch_size: overrides ``budget.batch_size`` (e.g. PacGAN packs).
        replacement: draw batches with replacement (see :func:`minibatches`).
        warmup: linear LR warm-up over this many steps (0 = none).
        clip_grad: clip the gradient norm of ``params`` to this value.
        ema: an :class:`EMA` updated after every step.
        curves: the dict entries recorded as loss curves (default: all).
        rng: ``"generator"``: one seeded CPU generator for batches and the
            loss; ``"global"``: the global torch RNG (``generator=None``).
        generator: with ``rng="generator"``, the generator to use (when the
            family needs it after the loop); default a new
            :func:`seeded_generator`.
        check_finite: raise ``FloatingPointError`` when a recorded value is NaN/inf.
        started: ``time.perf_counter()`` when the family's ``fit`` began (the
            wall-time limit and ``wall_time_s`` count from it); default now.
        show_progress: False silences the bar (see :func:`progress_enabled`); default ``budget.progress``.

    Returns:
        ``TrainReport`` with the steps done, the wall time (s) from
        ``started`` and the curves, one value per step thinned to <= 200
        points (:func:`thin_curve`).
    """
    t0 = time.perf_counter() if started is None else started
    if (loss is None) == (step is None):
        raise TypeError(f"{name}: give exactly one of loss= (with optimizer=) or step=")
    if loss is not None and optimizer is None:
        raise TypeError(f"{name}: loss= needs optimizer=")
    if budget.steps < 0:
        raise ValueError(f"{name}: budget.steps must be >= 0, got {budget.steps}")
    bs = budget.batch_size if batch_size is None else batch_size
    if bs < 1:
        raise ValueError(f"{name}: batch size must be >= 1, got {bs}")
    if rng not in ("generator", "global"):
        raise ValueError(f"{name}: rng must be 'generator' or 'global', got {rng!r}")
    params = list(params) if params is not None else []
    if clip_grad is not None and not params:
        raise TypeError(f"{name}: clip_grad needs params=")
    sched = None
    if warmup > 0:
        if optimizer is None:
            raise TypeError(f"{name}: warmup needs optimizer=")
        sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    if rng == "global" and generator is not None:
        raise ValueError(f"{name}: rng='global' takes no generator")
    gen = (generator if generator is not None else seeded_generator()) if rng == "generator" else None
    raw = minibatches(x, bs, y, generator=gen, replacement=replacement)
    history: dict[str, list[float]] = {k: [] for k in curves} if curves is not None else {}
    done = 0

    def batches() -> Iterator[Batch]:
        for xb, yb in raw:
            yield Batch(xb, yb, done)

    stream = batches()
    scaler = current_scaler()  # fp16 autocast on CUDA (genbench.precision): scaled losses, unscaled before clipping
    shown = budget.progress if show_progress is None else show_progress
    for i in progress(range(budget.steps), f"{name} fit", total=budget.steps, enabled=shown):
        if step is not None:
            out = step(stream, gen)
        else:
            out = loss(next(stream), gen)  # type: ignore[misc]
            if isinstance(out, Tensor):
                out = {"loss": out}
            if "loss" not in out:
                raise KeyError(f"{name}: the loss dict has no 'loss' entry to minimise (keys: {sorted(out)})")
            optimizer.zero_grad(set_to_none=True)  # type: ignore[union-attr]
            (out["loss"] if scaler is None else scaler.scale(out["loss"])).backward()
            if scaler is not None:
                scaler.unscale_(optimizer)
            if clip_grad is not None:
                nn.utils.clip_grad_norm_(params, clip_grad)
            if scaler is None:
                optimizer.step()  # type: ignore[union-attr]
            else:
                scaler.step(optimizer)
                scaler.update()
            if sched is not None:
                sched.step()
        if ema is not None:
            ema.update()
        for key in curves if curves is not None else out:
            history.setdefault(key, []).append(_as_float(out[key]))
        done = i + 1
        if check_finite:
            bad = {k: v[-1] for k, v in history.items() if not math.isfinite(v[-1])}
            if bad:
                raise FloatingPointError(f"{name}: loss became non-finite at step {done} ({', '.join(f'{k}={v}' for k, v in bad.items())})")
        if budget.max_seconds is not None and time.perf_counter() - t0 > budget.max_seconds:
            break
    return TrainReport(steps=done, wall_time_s=time.perf_counter() - t0, losses={k: thin_curve(v) for k, v in history.items()})
