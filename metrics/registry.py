"""The metric registry: every metric the harness computes, in one place.

A metric is a function ``fn(ctx: EvalContext) -> dict[str, MetricValue]``
registered with the outputs it produces (name, column label, direction) and
a predicate saying when it applies. The harness builds one
:class:`metrics.context.EvalContext` per (job, steps): features are extracted
once there and shared by every metric. A metric that does not apply is
recorded as "n/a" in the leaderboard.

Where each metric is *defined* (the math): ``metrics/fid.py`` (FID),
``metrics/likelihood.py`` (NLL, bits/dim), ``metrics/latency.py`` (latency);
this module only wires them to the context (see ``metrics/panel.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import EvalContext


@dataclass
class MetricValue:
    """One number with its protocol: ``settings`` says how it was computed
    (N, k, extractor, subsets...); ``interval`` is (lo, hi) when available."""

    value: float
    interval: tuple[float, float] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Output:
    name: str  # record key, e.g. "fid"
    label: str  # column header, e.g. "FID"
    direction: str | None  # "min", "max", "zero" (closest to 0 is best: unbiased estimates such as KID) or None
    per_extractor: bool = False  # label gets "[extractor]" appended


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: Callable[[EvalContext], dict[str, MetricValue]]
    outputs: tuple[Output, ...]
    applies: Callable[[EvalContext], bool]
    description: str = ""


_METRICS: dict[str, MetricSpec] = {}


def register_metric(
    name: str,
    outputs: list[Output] | tuple[Output, ...],
    applies: Callable[[EvalContext], bool] = lambda ctx: True,
    description: str = "",
) -> Callable:
    def deco(fn: Callable) -> Callable:
        _METRICS[name] = MetricSpec(name, fn, tuple(outputs), applies, description or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


# Modules whose import registers metrics; optional ones may not exist yet.
_METRIC_MODULES = ("metrics.panel", "metrics.bounds", "metrics.clip_score")


def _load() -> None:
    from importlib import import_module

    for mod in _METRIC_MODULES:
        try:
            import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def available() -> dict[str, MetricSpec]:
    _load()
    return dict(_METRICS)


def get_metric(name: str) -> MetricSpec:
    metrics = available()
    if name not in metrics:
        raise KeyError(f"unknown metric {name!r}; valid: {', '.join(sorted(metrics))}")
    return metrics[name]


def all_outputs() -> dict[str, Output]:
    return {o.name: o for spec in available().values() for o in spec.outputs}
