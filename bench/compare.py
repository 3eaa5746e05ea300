"""Reproduction check: do two runs of one suite agree on every non-timing record?

``bench compare --suite smoke RESULTS_A RESULTS_B`` reads
``RESULTS_A/smoke/records.jsonl`` and ``RESULTS_B/smoke/records.jsonl`` (two
machines, two thread counts, two CPU instruction sets...) and compares, record
by record (job, row, metric), the value and its interval bounds. Wall-clock
records (:data:`WALL_CLOCK`) are left out: they measure the machine. The
report gives, per metric, how many records are bit-for-bit equal, the largest
absolute and relative difference, and every record outside the tolerance
``|a - b| <= atol + rtol * max(|a|, |b|)`` (numpy's ``isclose`` made
symmetric). A record missing from one side, or a value present on one side
and absent (``None``: not finite or not applicable) on the other, is a
mismatch whatever the tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .store import record_key, suite_store
from .suite import Suite

__all__ = ["WALL_CLOCK", "Comparison", "compare_runs"]

WALL_CLOCK = frozenset({"latency_ms", "latency_b1_ms", "ms_per_nfe", "train_s"})  # wall time: differs run to run by design
FIELDS = ("value", "lo", "hi")


@dataclass
class MetricDiff:
    """Agreement of one metric's records: counts and the largest differences (over value, lo and hi)."""

    n: int = 0
    identical: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    outside: list[tuple[tuple, str, Any, Any]] = field(default_factory=list)  # (key, field, a, b)


@dataclass
class Comparison:
    """Result of :func:`compare_runs`."""

    suite: str
    rtol: float
    atol: float
    metrics: dict[str, MetricDiff]
    only_a: list[tuple]
    only_b: list[tuple]

    @property
    def ok(self) -> bool:
        return not self.only_a and not self.only_b and not any(d.outside for d in self.metrics.values())

    def format(self, limit: int = 20) -> str:
        """Plain-text report: one line per metric, then the mismatches (at most ``limit`` of each kind)."""
        n = sum(d.n for d in self.metrics.values())
        same = sum(d.identical for d in self.metrics.values())
        lines = [
            f"suite {self.suite}: {n} non-timing records compared ({', '.join(sorted(WALL_CLOCK))} left out), "
            f"{same} bit-for-bit equal; tolerance |a - b| <= {self.atol:g} + {self.rtol:g} * max(|a|, |b|)",
            f"{'metric':<22} {'records':>7} {'identical':>9} {'max |a-b|':>11} {'max rel':>11} {'outside':>7}",
        ]
        for name, d in sorted(self.metrics.items()):
            lines.append(f"{name:<22} {d.n:>7} {d.identical:>9} {d.max_abs:>11.3g} {d.max_rel:>11.3g} {len(d.outside):>7}")
        bad = [(name, o) for name, d in sorted(self.metrics.items()) for o in d.outside]
        for name, (key, fld, a, b) in bad[:limit]:
            lines.append(f"outside tolerance: {key[0]} {key[1]} {name}.{fld}: {a!r} vs {b!r}")
        if len(bad) > limit:
            lines.append(f"... and {len(bad) - limit} more outside tolerance")
        for side, keys in (("first", self.only_a), ("second", self.only_b)):
            for key in keys[:limit]:
                lines.append(f"only in the {side} run: {key[0]} {key[1]} {key[2]}")
            if len(keys) > limit:
                lines.append(f"... and {len(keys) - limit} more only in the {side} run")
        lines.append("reproduced" if self.ok else "NOT reproduced")
        return "\n".join(lines)


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _records(results_dir: str | Path, suite: str | Suite) -> dict[tuple, dict[str, Any]]:
    store = suite_store(results_dir, suite)
    name, path = store.root.name, store.path
    if not path.is_file():
        raise FileNotFoundError(f"no records of suite {name!r} under {results_dir}: {path} does not exist (run `bench run --suite {name} --results {results_dir}` first)")
    return {record_key(r): r for r in store.records() if r.get("metric") not in WALL_CLOCK}


def compare_runs(a: str | Path, b: str | Path, suite: str | Suite, *, rtol: float = 0.0, atol: float = 0.0) -> Comparison:
    """Compare the non-timing records of ``suite`` in two results directories (see the module docstring).

    A :class:`Suite` compares only the records of its current configuration
    (``bench.store.CurrentConfig``); a suite name, every record in the files.

    ``rtol`` and ``atol`` must be >= 0; the defaults ask for bit-for-bit equality.
    """
    if not (rtol >= 0 and atol >= 0):
        raise ValueError(f"rtol and atol must be >= 0, got rtol={rtol!r}, atol={atol!r}")
    ra, rb = _records(a, suite), _records(b, suite)
    metrics: dict[str, MetricDiff] = {}
    for key in sorted(set(ra) & set(rb), key=str):
        d = metrics.setdefault(str(key[2]), MetricDiff())
        d.n += 1
        same = True
        for fld in FIELDS:
            x, y = _num(ra[key].get(fld)), _num(rb[key].get(fld))
            if x is None and y is None:
                continue
            if x is None or y is None:
                same = False
                d.outside.append((key, fld, ra[key].get(fld), rb[key].get(fld)))
                continue
            diff = abs(x - y)
            scale = max(abs(x), abs(y))
            same = same and diff == 0
            d.max_abs = max(d.max_abs, diff)
            d.max_rel = max(d.max_rel, diff / scale if scale > 0 else 0.0)
            if diff > atol + rtol * scale:
                d.outside.append((key, fld, x, y))
        d.identical += same
    return Comparison(
        suite=suite.name if isinstance(suite, Suite) else str(suite), rtol=rtol, atol=atol, metrics=metrics,
        only_a=sorted(set(ra) - set(rb), key=str), only_b=sorted(set(rb) - set(ra), key=str),
    )  # fmt: skip
