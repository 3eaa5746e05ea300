"""Field-by-field check of one result-store record (a line of ``records.jsonl``), before any reader uses it.

A record that fails is damage: :class:`bench.store.ResultStore` skips it,
reports it with file and line, and its job is recomputed. The checks cover
every field the readers (runner, leaderboard, sections, compare) use: its
type, and for numbers their range, so no reader meets a string where it
expects a number, an integer too large for a float, or a non-finite value.
Nesting is bounded (:data:`MAX_DEPTH`), so no reader recurses without limit.
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 24  # levels of dict/list nesting in one record (real records use under 8)
MAX_ABS = 1e300  # numbers beyond this (or non-finite) are damage: they overflow float arithmetic
MAX_INT = 2**63 - 1

_STR = ("suite", "dataset", "base", "model", "extractor", "git_commit", "device", "label", "direction", "unit")
_NUM = ("value", "lo", "hi", "std", "se", "nfe", "wall_s", "timestamp")
_INT = ("seed", "n_real", "n_fake", "n_records", "steps")
_DICT = ("settings", "extra", "versions")


def depth(obj: Any, limit: int = MAX_DEPTH) -> int:
    """Levels of dict/list nesting of ``obj`` (0 for a scalar), counted without recursion; stops past ``limit``."""
    best, stack = 0, [(obj, 0)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (dict, list)):
            d += 1
            best = max(best, d)
            if best > limit:
                return best
            stack.extend((v, d) for v in (o.values() if isinstance(o, dict) else o))
    return best


def _number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return abs(v) <= MAX_ABS and (isinstance(v, int) or math.isfinite(v))


def check_record(r: Any) -> None:
    """``ValueError`` naming the first bad field of record ``r`` (None when every field the readers use is sound)."""
    if not isinstance(r, dict):
        raise ValueError(f"a JSON {type(r).__name__}, not an object")
    if depth(r) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    bad: list[str] = [k for k in ("job", "metric") if not isinstance(r.get(k), str)]
    if not isinstance(r.get("generator"), (str, type(None))):
        bad.append("generator")
    bad += [k for k in _STR if r.get(k) is not None and not isinstance(r[k], str)]
    bad += [k for k in _NUM if r.get(k) is not None and not _number(r[k])]
    bad += [k for k in _INT if r.get(k) is not None and not (isinstance(r[k], int) and not isinstance(r[k], bool) and 0 <= r[k] <= MAX_INT)]
    bad += [k for k in _DICT if r.get(k) is not None and not isinstance(r[k], dict)]
    if bad:
        raise ValueError(f"field(s) {', '.join(bad)} missing or of the wrong type or range")
