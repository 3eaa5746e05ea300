"""What a personalization suite may say: its ``[personalization]`` table and ``[[personalization.methods]]``
entries, their defaults, and the validation that names any bad key (:func:`config_from_suite`).
The experiment itself is :mod:`bench.personalization`."""

from __future__ import annotations

from typing import Any

GRID_METRIC = "sample_grid"
"""The record name of the experiment's sample grids (one per method and seed; the section draws them)."""

__all__ = ["DEFAULTS", "METHOD_DEFAULTS", "METHOD_KINDS", "PersonalizationError", "config_from_suite"]


METHOD_KINDS = ("none", "full", "embedding", "kv", "cond-proj", "lora")

DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "model": "ddpm",
    "params": {"conditional": True, "width": 16},
    "pretrain": {"steps": 2000, "batch_size": 64},
    "sample_params": {"sampler": "ddim"},
    "sample_steps": 50,
    "concept": 9,
    "n_examples": 5,
    "n_prior": 200,
    "prior_weight": 1.0,
    "new_row_init": "mean",
    "clip_prompt": "a handwritten digit nine",
    "extractor": "digits-cnn",
    "grid_samples": 10,
}

METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "none": {},
    "full": {"steps": 300, "lr": 1e-4, "batch_size": 16, "prior": False},
    "embedding": {"steps": 300, "lr": 5e-3, "batch_size": 16, "prior": False},
    "kv": {"steps": 300, "lr": 1e-3, "batch_size": 16, "prior": True},
    "cond-proj": {"steps": 300, "lr": 1e-3, "batch_size": 16, "prior": True},
    "lora": {"steps": 300, "lr": 1e-3, "batch_size": 16, "prior": False, "r": 4, "alpha": None, "targets": None},
}

class PersonalizationError(ValueError):
    """Bad personalization configuration; the message names the problem."""


def config_from_suite(suite: dict) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Validated (settings, methods) from a suite dict's ``[personalization]`` table."""
    p = dict(suite.get("personalization", {}))
    methods_raw = p.pop("methods", None)
    unknown = set(p) - set(DEFAULTS)
    if unknown:
        raise PersonalizationError(f"[personalization] has unknown keys {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **p}
    cfg["params"] = {**DEFAULTS["params"], **p.get("params", {})}
    if not cfg["params"].get("conditional"):
        raise PersonalizationError("personalization needs a class-conditional model: set params.conditional = true")
    if cfg["new_row_init"] not in ("mean", "random"):
        raise PersonalizationError(f"new_row_init must be 'mean' or 'random', got {cfg['new_row_init']!r}")
    if not methods_raw:
        raise PersonalizationError("the suite needs [[personalization.methods]] entries (name, method, ...)")
    methods, seen = [], set()
    for i, m in enumerate(methods_raw):
        if "name" not in m or "method" not in m:
            raise PersonalizationError(
                f"personalization.methods[{i}] needs 'name' (row label) and 'method' (one of {', '.join(METHOD_KINDS)})"
            )
        kind = m["method"]
        if kind not in METHOD_KINDS:
            raise PersonalizationError(
                f"personalization.methods[{i}] ({m['name']}): unknown method {kind!r}; valid: {', '.join(METHOD_KINDS)}"
            )
        if m["name"] in seen:
            raise PersonalizationError(f"method name {m['name']!r} is used twice")
        seen.add(m["name"])
        extra = set(m) - {"name", "method"} - set(METHOD_DEFAULTS[kind])
        if extra:
            raise PersonalizationError(
                f"personalization.methods[{i}] ({m['name']}): unknown keys {sorted(extra)} for method {kind!r}; valid: {sorted(METHOD_DEFAULTS[kind])}"
            )
        methods.append({**METHOD_DEFAULTS[kind], **m})
    return cfg, methods
