"""The result record: one flat dict per (job, row, metric), the unit of ``records.jsonl``, of the leaderboards and
of ``bench compare``.

:func:`new_record` is the one constructor every writer uses: ``bench run``'s stages and timing phase (through
``bench.job.JobContext.append``), ``bench eval`` / :func:`genbench.evaluate` (``bench.api.evaluate``) and the
experiment suites (``bench.experiments``). A record holds

* its identity: ``suite``, ``job`` (``dataset/generator/seedN``), ``dataset``, ``generator`` (the row label,
  e.g. ``ddpm@50``), ``base`` (the suite's generator row), ``model`` (the registered name), ``family`` (its
  registered family, e.g. ``diffusion``; None for a user's model), ``reference`` (True for the floors and ceilings:
  models registered with ``family="reference"``; the report ranks them never), ``seed``, ``steps``, ``metric``;
* the hashes that say which configuration produced it (``config_hash``, ``row_hash``, ``timing_hash`` or
  ``experiment_hash``; :class:`bench.store.CurrentConfig` reads them);
* ``timestamp`` (seconds since the epoch) and the provenance (``git_commit``, ``versions``, ``device``);
* the metric's fields: ``value`` (None when not available, with ``na`` and ``na_reason``), ``lo``/``hi``,
  ``label``, ``direction``, ``unit``, ``n_real``, ``n_fake``, ``extractor``, ``settings``, ``extra`` ...
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["RECORD_COLUMNS", "REFERENCE_FAMILY", "REPORT_COLUMNS", "Record", "new_record"]

REFERENCE_FAMILY = "reference"
"""The family of the floor and ceiling rows (the data row, uniform noise, reconstruction floors)."""

Record = dict[str, Any]
"""A result record (see the module docstring); JSON-serializable."""

RECORD_COLUMNS = (
    "suite", "job", "dataset", "generator", "base", "model", "family", "reference", "seed", "steps", "metric", "value", "lo", "hi", "label",
    "direction", "unit", "n_real", "n_fake", "extractor", "settings", "extra", "na", "config_hash", "git_commit", "device",
    "versions", "timestamp",
)  # fmt: skip
"""The columns every record has (a frame of records fills the missing ones with None)."""

REPORT_COLUMNS = (*(c for c in RECORD_COLUMNS if c != "config_hash"), "per_extractor", "nfe", "loaded")
"""The columns the leaderboard's sections rely on."""


def new_record(
    *,
    suite: str | None,
    job: str,
    dataset: str,
    generator: str,
    base: str | None,
    model: str | None,
    seed: int | None,
    steps: int | None,
    metric: str,
    hashes: dict[str, Any],
    provenance: dict[str, Any],
    fields: dict[str, Any],
    timestamp: float | None = None,
    family: str | None = None,
) -> Record:
    """A record: identity, ``hashes`` (e.g. ``{"config_hash": ..., "row_hash": ...}``), ``timestamp`` (default
    now), ``provenance`` and the metric's ``fields``; a key given twice keeps the last (the metric's fields win).
    ``family``: the model's registered family; ``reference`` is derived from it."""
    return {
        "suite": suite, "job": job, "dataset": dataset, "generator": generator, "base": base, "model": model,
        "family": family, "reference": family == REFERENCE_FAMILY, "seed": seed,
        "steps": steps, "metric": metric, **hashes, "timestamp": time.time() if timestamp is None else timestamp,
        **provenance, **fields,
    }  # fmt: skip


EXTRACTOR_SEP = "@"
"""Joins a metric and a second extractor in a suite's metric entry and in record names (``fid@effnet-lite0``)."""


def split_metric(entry: str) -> tuple[str, str | None]:
    """A suite's metric entry -> (metric, extractor): ``"fid@effnet-lite0"`` -> ``("fid", "effnet-lite0")``;
    ``"fid"`` -> ``("fid", None)`` (None: the data set's own ``extractor``)."""
    metric, sep, extractor = entry.partition(EXTRACTOR_SEP)
    return (metric, extractor) if sep else (entry, None)


def qualified(name: str, extractor: str | None) -> str:
    """The record name of a metric output measured on ``extractor`` (``"fid@effnet-lite0"``); ``name`` itself for the
    data set's own extractor (None), so the records of a suite without extra extractors keep their names."""
    return name if extractor is None else f"{name}{EXTRACTOR_SEP}{extractor}"
