"""The metric registry: every metric the harness computes, in one place.

A metric is a function ``fn(ctx: EvalContext) -> dict[str, MetricValue]``
registered with the outputs it produces and a predicate saying when it
applies. Each :class:`Output` carries the record name, the column label, the
direction (``"min"``, ``"max"``, ``"zero"``, ``"one"`` or ``None``) and the unit, so the
runner can copy them into every record and the leaderboard needs no special
case on metric names. A metric that does not apply is recorded as "n/a".

The registry is a :class:`genbench.registry.Registry` (``METRICS``); the entry
of a metric holds its function as target and ``outputs``/``applies`` as
metadata. Built-in metrics register themselves when their module is imported:
every module of the ``metrics`` package (:data:`METRIC_MODULES`, found by
listing the package, not kept by hand) is imported on the first query, and an
import error inside one is raised.

Where each metric is *defined* (the math): ``metrics/fid.py`` (FID, KID),
``metrics/prdc.py``, ``metrics/likelihood.py`` ...; ``metrics/panel.py`` wires
them to the context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genbench.registry import Registry, UnknownNameError, package_modules

if TYPE_CHECKING:
    from .context import EvalContext

__all__ = [
    "ARROWS",
    "DIRECTIONS",
    "MetricValue",
    "Output",
    "MetricSpec",
    "METRICS",
    "METRIC_MODULES",
    "register_metric",
    "get_metric",
    "available",
    "all_outputs",
    "output_meta",
]

DIRECTIONS = ("min", "max", "zero", "one", None)
# How a direction reads in a column header: lower / higher is better, closest to 0 / to 1 is best, not ranked.
ARROWS = {"min": "↓", "max": "↑", "zero": "→0", "one": "→1", None: ""}


@dataclass
class MetricValue:
    """One number with its protocol.

    ``settings`` says how it was computed (N, k, extractor, subsets...);
    ``interval`` is (lo, hi) when available; ``unit`` overrides the
    registration's :attr:`Output.unit` when the unit depends on the data
    (``nll``: bits/dim for images, nats/point for 2-D data).
    """

    value: float
    interval: tuple[float, float] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    unit: str | None = None


@dataclass(frozen=True)
class Output:
    """One record a metric produces.

    Attributes:
        name: record key, e.g. ``"fid"``.
        label: column header, e.g. ``"FID"``.
        direction: ``"min"``, ``"max"``, ``"zero"`` (closest to 0 is best:
            unbiased estimates such as KID), ``"one"`` (closest to 1 is best:
            ratios to real data's own value) or ``None`` (no ranking).
        per_extractor: the label gets ``"[extractor]"`` appended.
        unit: unit of the value (``"nats/point"``, ``"bits/dim"``, ``"ms"``),
            ``None`` when dimensionless or when it depends on the data (then
            each :class:`MetricValue` states it).
    """

    name: str
    label: str
    direction: str | None
    per_extractor: bool = False
    unit: str | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"output {self.name!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: its function, outputs, applicability predicate and description."""

    name: str
    fn: Callable[[EvalContext], dict[str, MetricValue]]
    outputs: tuple[Output, ...]
    applies: Callable[[EvalContext], bool]
    description: str = ""
    phase: str = "measure"


METRIC_MODULES = package_modules("metrics", Path(__file__).parent, exclude=("registry",))
"""Every module of the ``metrics`` package but this one (subpackages such as the extractors are not metrics)."""


METRICS: Registry = Registry("metric", modules=METRIC_MODULES, meta={"outputs": tuple, "applies": Callable, "phase": str})


def _always(ctx: EvalContext) -> bool:
    return True


PHASES = ("measure", "timing")
"""When ``bench run`` computes a metric: ``measure``, in each job right after sampling; ``timing``, in the timing
phase after every job of the run, alone on the machine (wall-clock and memory metrics: ``bench.timing``)."""


def register_metric(
    name: str,
    outputs: list[Output] | tuple[Output, ...],
    applies: Callable[[EvalContext], bool] = _always,
    description: str = "",
    phase: str = "measure",
) -> Callable:
    """Decorator: register ``fn(ctx) -> {output name: MetricValue}`` as metric ``name``.

    ``outputs`` lists every record the function returns (with label,
    direction and unit); ``applies(ctx)`` says whether the metric can run on a
    context (else "n/a"); ``description`` defaults to the docstring's first line;
    ``phase`` (one of :data:`PHASES`) says when ``bench run`` computes it.
    """
    outputs = tuple(outputs)
    if not outputs or not all(isinstance(o, Output) for o in outputs):
        raise TypeError(f"metric {name!r}: outputs must be a non-empty list of metrics.registry.Output")
    if phase not in PHASES:
        raise ValueError(f"metric {name!r}: phase must be one of {PHASES}, got {phase!r}")

    def deco(fn: Callable) -> Callable:
        desc = description or (fn.__doc__ or "").strip().split("\n")[0]
        METRICS.register(name, fn, description=desc, replace=True, outputs=outputs, applies=applies, phase=phase)
        return fn

    return deco


def _spec(name: str) -> MetricSpec:
    e = METRICS.get(name)
    return MetricSpec(name, e.load(), e.meta["outputs"], e.meta.get("applies", _always), e.description, e.meta.get("phase", "measure"))


def available() -> dict[str, MetricSpec]:
    """Every registered metric by name (imports the built-in metric modules on first use)."""
    return {name: _spec(name) for name in METRICS.names()}


def get_metric(name: str) -> MetricSpec:
    """The metric ``name``; ``KeyError`` (:class:`UnknownNameError`) lists the valid names."""
    try:
        return _spec(name)
    except UnknownNameError:
        raise
    except KeyError as e:  # an entry registered without outputs (not through register_metric)
        raise UnknownNameError(f"metric {name!r} was registered without outputs; use metrics.registry.register_metric") from e


def all_outputs() -> dict[str, Output]:
    """Every output of every metric, by record name."""
    return {o.name: o for spec in available().values() for o in spec.outputs}


def timing_metrics() -> dict[str, tuple[str, ...]]:
    """The metrics of the timing phase (``phase="timing"``), each with the record names it writes."""
    return {name: tuple(o.name for o in spec.outputs) for name, spec in available().items() if spec.phase == "timing"}


def output_meta(output: Output, value: MetricValue | None = None) -> dict[str, Any]:
    """What a record carries from the registration: label, direction, unit (the value's unit wins)."""
    unit = (value.unit if value is not None and value.unit else None) or output.unit
    if unit is None and value is not None:
        unit = value.settings.get("unit")
    return {"label": output.label, "direction": output.direction, "unit": unit, "per_extractor": output.per_extractor}
