"""Device-dependent suite settings and the mixed-precision policy.

A suite states its settings once and may override any of them for one kind of
device: a ``[settings.cuda]`` (or ``[settings.cpu]``) table is merged over
``[settings]`` when the job runs on that device type, so larger GPU budgets are
a suite setting, not a code change::

    [settings]
    precision = "fp32"          # fp32 | bf16 | fp16: autocast of training and sampling
    sample_batch = 500          # samples per sample() call

    [settings.cuda]
    precision = "bf16"
    sample_batch = 5000
    budget = { batch_size = 512 }                 # merged into every row's training budget
    budgets = { vae = { steps = 20000 } }         # merged into one row's budget (row name -> table)

Precision: training (``fit``) and sampling run under :func:`torch.autocast`
with the chosen dtype on the job's device; metric features are always
computed in float32 outside autocast (the harness casts samples to float32
before the feature stage), so a number's meaning never depends on the
precision the generator ran in. ``fp16`` on CUDA also provides a
:class:`torch.amp.GradScaler` (:func:`current_scaler`) that the training loop
uses for loss scaling; ``bf16`` needs none (and runs on CPU too). Families
with their own multi-optimizer step (GANs) run under fp16 autocast without
loss scaling: prefer ``bf16`` for them.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import Any

import torch

from .protocol import Budget

__all__ = [
    "PRECISIONS",
    "DEVICE_TABLES",
    "PrecisionError",
    "autocast",
    "budget_for",
    "check_precision",
    "current_scaler",
    "device_type",
    "settings_for",
    "validate_settings",
]

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICE_TABLES = ("cuda", "cpu")  # settings sub-tables read on that device type
_BUDGET_KEYS = {f.name for f in fields(Budget)}
_SCALER: contextvars.ContextVar[Any] = contextvars.ContextVar("genbench_grad_scaler", default=None)


class PrecisionError(ValueError):
    """A precision or device-override setting that cannot be used; the message names it."""


def device_type(device: str | torch.device) -> str:
    """``"cuda"`` for ``cuda``/``cuda:1``..., else the device's type (``"cpu"``)."""
    return torch.device(device).type


def check_precision(precision: Any) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else :class:`PrecisionError` listing them."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def settings_for(settings: Mapping[str, Any], device: str | torch.device) -> dict[str, Any]:
    """The settings that apply on ``device``: ``settings`` without its device tables, with the table
    of ``device``'s type (``settings["cuda"]`` on any CUDA device) merged over them.

    Checks the tables are tables and ``precision`` is valid (:class:`PrecisionError`).
    """
    base = {k: v for k, v in settings.items() if k not in DEVICE_TABLES}
    over = settings.get(device_type(device), {})
    if not isinstance(over, Mapping):
        raise PrecisionError(f"settings.{device_type(device)} must be a table of settings overrides, got {type(over).__name__} {over!r}")
    out = {**base, **over}
    check_precision(out.get("precision", "fp32"))
    return out


def _budget_table(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise PrecisionError(f"{where} must be a table of budget fields, got {type(v).__name__} {v!r}")
    unknown = set(v) - _BUDGET_KEYS
    if unknown:
        raise PrecisionError(f"{where} has unknown budget keys {sorted(unknown)}; valid: {sorted(_BUDGET_KEYS)}")
    for k in ("steps", "batch_size"):
        if k in v and (isinstance(v[k], bool) or not isinstance(v[k], int) or v[k] < 1):
            raise PrecisionError(f"{where}.{k} must be an integer >= 1, got {v[k]!r}")
    return dict(v)


def budget_for(budget: Mapping[str, Any], settings: Mapping[str, Any], row: str) -> dict[str, Any]:
    """A row's training budget under (device-resolved) ``settings``: the row's own ``budget``, then
    ``settings["budget"]`` (every row), then ``settings["budgets"][row]`` (this row) merged over it."""
    out = dict(budget)
    if "budget" in settings:
        out.update(_budget_table(settings["budget"], "settings.budget"))
    per_row = settings.get("budgets", {})
    if not isinstance(per_row, Mapping):
        raise PrecisionError(f"settings.budgets must be a table (row name -> budget table), got {type(per_row).__name__}")
    if row in per_row:
        out.update(_budget_table(per_row[row], f"settings.budgets.{row}"))
    return out


def validate_settings(settings: Mapping[str, Any]) -> None:
    """Check, for every device type, the precision, the device tables and every budget override (:class:`PrecisionError`)."""
    for dev in DEVICE_TABLES:
        st = settings_for(settings, dev)
        budget_for({}, st, "")
        for row in st.get("budgets", {}):
            budget_for({}, st, row)


@contextlib.contextmanager
def autocast(device: str | torch.device, precision: str = "fp32") -> Iterator[None]:
    """Autocast to ``precision`` on ``device`` for the block (``fp32``: nothing changes).

    ``fp16`` on CUDA also makes a :class:`torch.amp.GradScaler` available
    through :func:`current_scaler` for the block.
    """
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        yield
        return
    kind = device_type(device)
    if kind not in ("cpu", "cuda"):
        raise PrecisionError(f"precision {precision} needs a cpu or cuda device, got {device!r}")
    scaler = torch.amp.GradScaler("cuda") if (kind == "cuda" and dtype == torch.float16) else None
    token = _SCALER.set(scaler)
    try:
        with torch.autocast(device_type=kind, dtype=dtype):
            yield
    finally:
        _SCALER.reset(token)


def current_scaler() -> Any:
    """The :class:`torch.amp.GradScaler` of the enclosing ``fp16`` CUDA :func:`autocast` block, else None."""
    return _SCALER.get()
