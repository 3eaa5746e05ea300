"""The Python API: genbench from a notebook, in one import.

    import genbench
    res = genbench.evaluate(samples, dataset="digits")     # samples: (N, 1, 8, 8) float in [0, 1], a .npz or a PNG folder
    res["fid"]                                             # a float
    res.frame                                              # pandas DataFrame: one protocol record per metric
    run = genbench.run_suite("smoke", results_dir="results")
    df = genbench.load_results("results", suite="smoke")   # every record of a suite as a DataFrame

(``from bench import api`` gives the same functions.) :func:`evaluate` is
``bench eval`` (it calls :func:`bench.evaluate.run_eval`), :func:`run_suite`
is ``bench run`` and :func:`load_results` reads what ``bench run`` wrote.

Units: every value is in the unit its metric is registered with, carried in
the record's ``unit`` column — FID/KID on the extractor's feature scale (no
unit), precision/recall/density/coverage fractions in [0, 1], NLL in
bits/dim for images and nats/point for 2-D data, latency in milliseconds.
``n_fake`` / ``n_real`` state the sample counts each number was computed
at; compare FIDs only at equal N.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from metrics import registry as mreg
from metrics.registry import MetricValue

from . import data as dreg
from . import runner as _runner
from .evaluate import default_extractor, format_eval, run_eval
from .leaderboard import write_leaderboard
from .provenance import device_description, git_commit, package_versions
from .record import RECORD_COLUMNS, new_record
from .store import ResultStore, suite_store
from .suite import Suite, load_suite, validate_names

__all__ = ["EvalResult", "SuiteRun", "evaluate", "run_suite", "load_results", "RECORD_COLUMNS"]



def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(records)
    for c in RECORD_COLUMNS:
        if c not in df.columns:
            df[c] = None
    rest = [c for c in df.columns if c not in RECORD_COLUMNS]
    return df[list(RECORD_COLUMNS) + rest]


# ----------------------------------------------------------------------------- evaluate
@dataclass
class EvalResult(Mapping[str, float]):
    """What :func:`evaluate` returns: a mapping metric -> value (float, NaN for n/a) and the records.

    ``values`` holds each :class:`~metrics.registry.MetricValue` (value,
    interval, settings such as N and k, extra diagnostics); ``records`` the
    protocol records, one per metric, with the fields ``bench run`` writes;
    ``frame`` the same records as a pandas DataFrame. ``print(result)`` shows
    the table ``bench eval`` prints.
    """

    values: dict[str, MetricValue]
    records: list[dict[str, Any]] = field(default_factory=list)

    def __getitem__(self, name: str) -> float:
        if name not in self.values:
            raise KeyError(f"no metric {name!r} in this result; have: {', '.join(self.values)}")
        v = self.values[name].value
        return math.nan if v is None else float(v)

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def frame(self) -> pd.DataFrame:
        """The records as a DataFrame (columns :data:`RECORD_COLUMNS`)."""
        return _frame(self.records)

    @property
    def notes(self) -> list[str]:
        """Warnings about the evaluation as a whole (samples off the data's K levels, small N, an extractor that could not load)."""
        return list(getattr(self.values, "notes", []))

    def interval(self, name: str) -> tuple[float, float] | None:
        """The (lo, hi) interval of metric ``name`` when it has one (bootstrap or subsets)."""
        return self.values[name].interval

    def __str__(self) -> str:
        return format_eval(self.values)

    def __repr__(self) -> str:
        return f"EvalResult({', '.join(f'{k}={self[k]:.4g}' for k in self.values)})"

    def _repr_html_(self) -> str:  # notebooks show the tidy table
        cols = ["metric", "label", "value", "lo", "hi", "unit", "n_fake", "n_real", "extractor"]
        return self.frame[cols]._repr_html_()


def _samples_tag(samples: Any) -> str:
    if isinstance(samples, (str, Path)):
        return str(samples)
    a = samples.detach().cpu().numpy() if isinstance(samples, Tensor) else np.asarray(samples)
    return "array-" + hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:12]


def evaluate(
    samples: str | Path | Tensor | np.ndarray,
    *,
    dataset: str,
    metrics: list[str] | None = None,
    extractor: str | None = None,
    extractor_weights: str | None = None,
    seed: int = 0,
    reference: str = "train",
    settings: dict[str, Any] | None = None,
    dataset_params: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    name: str = "samples",
    device: str | None = None,
    batch_size: int | None = None,
    npz_key: str | None = None,
) -> EvalResult:
    """Score samples made anywhere against data set ``dataset`` (the ``bench eval`` panel).

    Args:
        samples: images as float NCHW in [0, 1] or uint8 0-255 (a tensor, an
            array, a ``.npz`` file or a folder of PNG/JPEG), or 2-D points (N, 2).
            They must have the data set's shape.
        dataset: a data set name (``bench list datasets``).
        metrics: metric names (``bench list metrics``); default the full
            panel that applies to samples without a model (no NLL, no latency).
            A requested metric that does not apply comes back as NaN with its
            reason in the record's ``settings["na"]``.
        extractor: feature extractor (default: the data set's own, ``bench list
            datasets``: every embedded data set has one that works offline, e.g.
            ``mnist-cnn`` for ``mnist5k``; by shape for data from files: ``raw``
            for 2-D points, ``digits-cnn`` for 8x8 digits, otherwise
            ``effnet-lite0`` when the ``imagenet`` extra is installed, else
            ``inception-v3-compat``).
        extractor_weights: a local weights file for the extractor (offline machines).
        seed: seed of KID subsets, IS shuffling and bootstrap.
        reference: split the distribution metrics compare with, ``train``
            (as in the suites) or ``test``.
        settings: metric settings (``k_prc``, ``k_dc``, ``kid_subsets``, ``bootstrap`` ...).
        dataset_params: parameters of the data set loader.
        cache_dir: where reference features are cached (default under the genbench cache).
        name: the ``generator`` column of the records.
        device: where the extractor runs (default: its own choice).
        batch_size: samples per extractor forward pass.
        npz_key: the array to score when ``samples`` is a ``.npz`` holding several.

    Returns:
        :class:`EvalResult`: ``result["fid"]`` is a float; ``result.frame`` a
        DataFrame with one record per metric (value, lo/hi, label, direction,
        unit, n_fake, n_real, extractor, settings, provenance).

    Each metric fails alone: one whose precondition fails (FLS without held-out
    test points, a k-NN metric with too few samples, an extractor that cannot
    load) comes back as NaN with the reason in ``settings["na"]`` (the record's
    ``na_reason``), and every other metric is computed. ``result.notes`` holds
    warnings about the evaluation as a whole (samples off the data's intensity
    levels, N below the test split's size). Bad input (unknown names, wrong
    shape, values outside [0, 1], NaN) raises ``KeyError`` / ``ValueError``
    with a message naming the problem.
    """
    t0 = time.time()
    values = run_eval(
        samples, dataset, extractor=extractor, extractor_weights=extractor_weights, metrics=metrics, seed=seed,
        cache_dir=cache_dir, reference=reference, settings=settings, dataset_params=dataset_params, device=device, batch_size=batch_size,
        npz_key=npz_key,
    )  # fmt: skip
    ext = values.extractor or extractor or default_extractor(dreg.load(dataset, **(dataset_params or {})).info, dataset)
    outputs = mreg.all_outputs()
    config = {"samples": _samples_tag(samples), "dataset": dataset, "dataset_params": dataset_params or {}, "extractor": ext,
              "reference": reference, "settings": settings or {}, "seed": seed}  # fmt: skip
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    prov = {"git_commit": git_commit(), "versions": package_versions(), "device": device_description("cpu")}
    records = []
    for metric, v in values.items():
        out = outputs.get(metric)
        s = dict(v.settings or {})
        na = v.value is None or (isinstance(v.value, float) and math.isnan(v.value))
        fields = {
            "value": None if na else float(v.value), "lo": v.interval[0] if v.interval else None, "hi": v.interval[1] if v.interval else None,
            **(mreg.output_meta(out, v) if out is not None else {"label": metric, "direction": None, "unit": v.unit}),
            "n_fake": s.get("n_fake"), "n_real": s.get("n_real"), "extractor": s.get("extractor", ext), "settings": s,
            "extra": dict(v.extra or {}), "na": na or None, **({"na_reason": s.get("na")} if na and s.get("na") else {}),
        }  # fmt: skip
        records.append(new_record(
            suite=None, job=f"{dataset}/{name}/seed{seed}", dataset=dataset, generator=name, base=name, model=None, seed=seed,
            steps=None, metric=metric, hashes={"config_hash": config_hash}, provenance=prov, fields=fields, timestamp=t0,
        ))  # fmt: skip
    return EvalResult(values, records)


# ----------------------------------------------------------------------------- suites
@dataclass
class SuiteRun:
    """What :func:`run_suite` returns: the run summary and the records of the suite as configured for this run.

    ``summary`` counts planned / ran / skipped jobs and records added (wall
    time ``summary.wall_s`` in seconds); ``failed`` lists (job id, error
    message); ``frame`` is :func:`load_results` for the suite (its current configuration) after the run;
    ``leaderboard`` the markdown file written, when asked for.
    """

    suite: Suite
    summary: Any
    frame: pd.DataFrame
    leaderboard: Path | None = None

    @property
    def failed(self) -> list[tuple[str, str]]:
        return list(self.summary.failed)

    @property
    def ok(self) -> bool:
        return not self.summary.failed


def run_suite(
    suite: str | Path | Suite,
    *,
    seeds: list[int] | None = None,
    results_dir: str | Path = "results",
    device: str = "auto",
    progress: bool = False,
    executor: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    leaderboard: bool = False,
    out_dir: str | Path | None = None,
    leaderboard_format: str = "md",
    **runner_options: Any,
) -> SuiteRun:
    """Run (or resume) a suite, as ``bench run`` does; returns a :class:`SuiteRun`.

    Args:
        suite: a suite name (``bench list suites``), a path to a ``.toml``, or a loaded :class:`~bench.suite.Suite`.
        seeds: override the suite's seeds.
        results_dir: where records (``<results_dir>/<suite>/records.jsonl``) and caches go.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` ...
        progress: draw progress bars on stderr (off by default in the API).
        executor, workers, threads: ``local``, ``process`` (``workers`` processes of
            ``threads`` threads) or ``ray``; None (default) chooses as ``bench run``
            does: one single-threaded worker process per usable core
            (:mod:`bench.parallel`), in this process when only one job is left.
        leaderboard: also write the leaderboard, ``<out_dir>/<suite>.<leaderboard_format>``
            (``md`` with figures, or the same tables as ``csv`` / ``json`` rows);
            ``out_dir`` defaults to ``<results_dir>/leaderboards``.
        runner_options: further options of :func:`bench.runner.run_suite`
            (e.g. ``save_samples=True`` where the runner offers it); an
            option it does not take raises ``TypeError`` naming it.

    Raises:
        bench.suite.SuiteError: unknown suite or names inside it;
        ValueError: a generator with a half-implemented capability (named), a bad device.
    """
    s = suite if isinstance(suite, Suite) else load_suite(str(suite))
    validate_names(s)
    accepted = inspect.signature(_runner.run_suite).parameters
    unknown = [k for k in runner_options if k not in accepted]
    if unknown:
        raise TypeError(f"run_suite: unknown option(s) {unknown}; the runner takes {[p for p in accepted if p != 'suite']}")
    summary = _runner.run_suite(
        s, seeds=seeds, results_dir=results_dir, device=device, progress=progress, executor=executor, workers=workers, threads=threads,
        **runner_options,
    )  # fmt: skip
    lb = None
    if leaderboard:
        lb = Path(write_leaderboard(s, results_dir, out_dir if out_dir is not None else Path(results_dir) / "leaderboards", fmt=leaderboard_format))
    return SuiteRun(s, summary, load_results(results_dir, suite=s), lb)


def load_results(results_dir: str | Path = "results", suite: str | Suite | None = None, *, include_internal: bool = False) -> pd.DataFrame:
    """Every record under ``results_dir`` (``<results_dir>/<suite>/records.jsonl``) as one DataFrame.

    Args:
        results_dir: the ``--results`` directory of ``bench run``.
        suite: only this suite's records (default: every suite found). A
            suite *name* gives every record in its file, those of earlier
            configurations of the suite included; a :class:`Suite` gives only
            the records of its current configuration, as its leaderboard does
            (``bench.store.CurrentConfig``).
        include_internal: also the bookkeeping records (``_job_done``, ``_error``).

    Returns:
        A DataFrame with the columns :data:`RECORD_COLUMNS` (plus any other
        field a record has); one row per (job, row, metric). ``value`` is in
        the record's ``unit``; ``lo``/``hi`` its interval when it has one.
        Empty (with those columns) when there are no records.
    """
    root = Path(results_dir)
    if suite is not None:
        stores = [suite_store(root, suite)]
        if not stores[0].path.is_file():
            have = sorted(p.parent.name for p in root.glob("*/records.jsonl"))
            raise FileNotFoundError(f"no records for suite {stores[0].root.name!r} under {root}; suites with records: {', '.join(have) or '(none)'}")
    else:
        stores = [ResultStore(p.parent) for p in sorted(root.glob("*/records.jsonl"))]
    records = [r for st in stores for r in st.records(include_internal=include_internal)]
    return _frame(records)
