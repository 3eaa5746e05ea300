"""Types and ranges of a suite's ``[settings]`` fields and ``[[quoted]]`` rows, checked when the suite loads.

The metric and pipeline code reads these settings (``ctx.setting(name,
default)``) only after a row has trained; a wrong value found there would
fail every job late and without naming the file. :func:`check_settings`
refuses it up front with the file and the field. Fields not listed here
(``precision``, device tables, budgets: see :mod:`genbench.precision`; a
plugin's own settings) are checked by their owners or passed through.
"""

from __future__ import annotations

import math
from typing import Any

from bench.record_schema import depth

MAX_DEPTH = 16  # levels of table/array nesting in a suite file (the bundled suites use at most 4)

# field -> (kind, low bound or None, high bound or None, choices): kind "int", "num", "bool", "str"
_INT1 = ("int", 1, None, None)
SETTINGS: dict[str, tuple[str, float | None, float | None, tuple[str, ...] | None]] = {
    "sample_batch": _INT1, "k_prc": _INT1, "k_dc": _INT1, "kid_subsets": _INT1, "kid_subset_size": ("int", 2, None, None),
    "is_splits": _INT1, "bootstrap": ("int", 0, None, None), "n_real": _INT1, "cost_batch": _INT1,
    "ct_cells": _INT1, "ct_pca_dim": _INT1, "ct_seed": ("int", 0, None, None), "sw_seed": ("int", 0, None, None),
    "sw_projections": _INT1, "diversity_n": _INT1, "diversity_seeds": _INT1, "fd_inf_draws": _INT1,
    "fd_inf_points": ("int", 2, None, None), "iwae_k": _INT1, "iwae_n": _INT1, "latency_batch": _INT1,
    "latency_repeats": _INT1, "latency_warmup": ("int", 0, None, None), "ssim_kernel": _INT1,
    "latency_max_seconds": ("num", 0, None, None), "sw_p": ("num", 0, None, None), "psnr_max": ("num", 0, None, None),
    "copy_ratio": ("num", 0, None, None), "prdc_equal_n": ("bool", None, None, None),
    "reference": ("str", None, None, ("train", "test")), "clip_model": ("str", None, None, None),
    "extractor_weights": ("str", None, None, None),
}  # fmt: skip


def check_settings(settings: dict[str, Any], where: str, field: str) -> None:
    """``ValueError`` ``"<where>: <field>.<key> must be ..."`` for the first listed setting of the wrong type or range.

    Integers exclude booleans; numbers must be finite and above their lower
    bound (strictly, for ``num`` fields); ``reference`` is ``train`` or ``test``.
    """
    for key, v in settings.items():
        spec = SETTINGS.get(key)
        if spec is None:
            continue
        kind, lo, _hi, choices = spec
        name = f"{where}: {field}.{key}"
        if kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{name} must be an integer, got {type(v).__name__} {v!r}")
            if lo is not None and v < lo:
                raise ValueError(f"{name} must be >= {int(lo)}, got {v}")
        elif kind == "num":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {type(v).__name__} {v!r}")
            if lo is not None and v <= lo:
                raise ValueError(f"{name} must be > {lo:g}, got {v}")
        elif kind == "bool":
            if not isinstance(v, bool):
                raise ValueError(f"{name} must be true or false, got {v!r}")
        elif not isinstance(v, str) or not v or (choices and v not in choices):
            raise ValueError(f"{name} must be {' or '.join(repr(c) for c in choices) if choices else 'a non-empty string'}, got {v!r}")


def check_quoted(rows: list[dict[str, Any]], where: str) -> None:
    """``ValueError`` naming file and field for a ``[[quoted]]`` row without a ``dataset``/``label`` string or whose
    ``values`` is not a table of finite numbers."""
    for i, q in enumerate(rows):
        for key in ("dataset", "label"):
            if not isinstance(q.get(key), str) or not q[key]:
                raise ValueError(f"{where}: quoted[{i}].{key} must be a non-empty string, got {q.get(key)!r}")
        values = q.get("values", {})
        if not isinstance(values, dict):
            raise ValueError(f"{where}: quoted[{i}].values must be a table of numbers, got {values!r}")
        for m, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{where}: quoted[{i}].values.{m} must be a finite number, got {v!r}")


def check_depth(raw: dict[str, Any], where: str) -> None:
    """``ValueError`` when the parsed suite nests tables/arrays deeper than :data:`MAX_DEPTH`."""
    if depth(raw, MAX_DEPTH) > MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {MAX_DEPTH} levels of tables/arrays")
