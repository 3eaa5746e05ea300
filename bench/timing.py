"""The timing phase: latency, ms per NFE, FLOPs, parameters and peak memory, measured quietly.

``Runner.run`` calls :func:`run_timing_phase` after every job of a suite has
run, so no training or sampling of the same run shares the cores with it.
For every (job, row) whose dataset asks for ``latency``, ``latency_b1`` or
``cost`` (the metrics registered with ``phase="timing"``), and whose records do not exist yet
(resume), it

1. loads the trained model from the artifact cache (``runner.load_model``)
   with the row's sampler (``runner.sampler_for``);
2. sets a fixed thread count (suite setting ``timing_threads``, default 1)
   and records it;
3. times every row of a data set *interleaved* (A B C A B C ...), after
   ``latency_warmup`` warm-up calls each, until each row's median is stable
   (``timing_rel_tol``, default 5%, over the last 3 calls, at least
   ``latency_repeats`` calls) or a cap (``timing_max_repeats`` calls,
   ``latency_max_seconds`` of timed calls per row) — at batch 1 and at the
   suite's ``latency_batch``; ``torch.cuda.synchronize`` on GPU;
4. records the machine's load over each timed block (1-min load average
   before/after; CPU time used by other processes, in cores); above
   ``timing_load_threshold`` cores (default 0.25) every record of the block
   carries ``loaded: true`` and the leaderboard flags it;
5. counts FLOPs per sample and peak memory of one call at batch
   ``cost_batch`` (default 1) and the parameters (``metrics/flops.py``).

Records (one per row and output; ``settings.phase = "timing"``):
``latency_ms`` / ``latency_b1_ms`` (median ms per sample; ``lo``/``hi`` the
quartiles), ``ms_per_nfe`` (median ms per sample at the suite batch divided
by the row's NFE), ``flops_per_sample``, ``params``, ``peak_mem_mb``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from genbench.cache import content_hash
from genbench.precision import autocast, settings_for
from genbench.protocol import Sampler
from metrics import registry as mreg
from metrics.flops import FLOPS_NOTE, count_flops, count_params, peak_memory
from metrics.latency import Latency, LoadMonitor, measure_round_robin

from .suite import metric_names

__all__ = ["TimingSettings", "run_timing_phase", "timing_outputs"]

@functools.cache
def _output_meta(record: str) -> dict[str, Any]:
    """Label, direction, unit of a timing record, from its metric's registration (looked up once per name)."""
    return mreg.output_meta(mreg.all_outputs()[record])


def timing_outputs(metrics: list[str] | tuple[str, ...]) -> set[str]:
    """Record names the timing phase writes for a row whose metric list is ``metrics``: the outputs of its metrics
    registered with ``phase="timing"`` (``latency``, ``latency_b1``, ``cost``)."""
    table = mreg.timing_metrics()
    return {o for m in metrics for o in table.get(m, ())}


_NUMERIC_SETTINGS = {  # TimingSettings field: (suite setting, default, type, lower bound)
    "threads": ("timing_threads", 1, int, 1),
    "batch": ("latency_batch", 64, int, 1),
    "warmup": ("latency_warmup", 1, int, 0),
    "min_repeats": ("latency_repeats", 5, int, 1),
    "max_repeats": ("timing_max_repeats", 50, int, 1),
    "rel_tol": ("timing_rel_tol", 0.05, float, 0.0),
    "max_seconds": ("latency_max_seconds", 10.0, float, 0.0),
    "load_threshold": ("timing_load_threshold", 0.25, float, 0.0),
    "cost_batch": ("cost_batch", 1, int, 1),
}
TIMING_SETTING_KEYS = (*(spec[0] for spec in _NUMERIC_SETTINGS.values()), "timing_seeds")  # the suite settings only the timing phase reads


@dataclass(frozen=True)
class TimingSettings:
    """Suite ``[settings]`` keys read by the timing phase (defaults in brackets).

    threads: torch threads during timing [1]; batch: ``latency_batch`` [64];
    warmup: ``latency_warmup`` calls per row [1]; min_repeats:
    ``latency_repeats`` [5]; max_repeats: ``timing_max_repeats`` [50];
    rel_tol: ``timing_rel_tol`` [0.05]; max_seconds: ``latency_max_seconds``
    of timed calls per row [10]; load_threshold: ``timing_load_threshold``
    cores used by other processes [0.25]; cost_batch: ``cost_batch`` [1];
    seeds: ``timing_seeds``, the seeds whose trained models are timed [all]:
    latency, FLOPs and memory depend on the architecture and the sampler, not
    on a seed's weights, so a suite with several seeds may time one of them
    (the other seeds' rows get no timing records; the table says 1 seed).
    """

    threads: int = 1
    batch: int = 64
    warmup: int = 1
    min_repeats: int = 5
    max_repeats: int = 50
    rel_tol: float = 0.05
    max_seconds: float | None = 10.0
    load_threshold: float = 0.25
    cost_batch: int = 1
    seeds: tuple[int, ...] | None = None

    @classmethod
    def from_settings(cls, s: dict[str, Any]) -> TimingSettings:
        def num(key: str, default: Any, kind: type, lo: float) -> Any:
            v = s.get(key, default)
            if v is None:
                return None
            try:
                v = kind(v)
            except (TypeError, ValueError):
                raise ValueError(f"suite setting {key!r} must be a number, got {v!r}") from None
            if v < lo:
                raise ValueError(f"suite setting {key!r} must be >= {lo}, got {v}")
            return v

        t = cls(**{name: num(*spec) for name, spec in _NUMERIC_SETTINGS.items()}, seeds=_seeds(s.get("timing_seeds")))
        if t.max_repeats < t.min_repeats:
            raise ValueError(f"suite setting timing_max_repeats ({t.max_repeats}) must be >= latency_repeats ({t.min_repeats})")
        return t


def timing_hash(settings: dict[str, Any]) -> str:
    """Hash of the timing phase's settings (defaults filled in) of a data set's merged ``settings``: every timing
    record carries it, and a record whose hash differs from the suite's now is timed again
    (``bench.store.CurrentConfig``)."""
    return content_hash(asdict(TimingSettings.from_settings(settings)))


def _seeds(v: Any) -> tuple[int, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list) or not v or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise ValueError(f"suite setting 'timing_seeds' must be a non-empty list of integer seeds, got {v!r}")
    return tuple(v)


@dataclass
class _Row:
    job: Any
    row: str
    steps: int | None
    want: set[str]  # record names still missing
    model: Any = None
    sampler: Any = None
    nfe: int | None = None

    @property
    def key(self) -> str:
        return f"{self.job.id}|{self.row}"


def _warn(msg: str) -> None:
    print(f"timing: {msg}", file=sys.stderr)


def _plan_rows(runner: Any, jobs: list[Any]) -> list[_Row]:
    have = runner.store.keys()
    redo = runner.store.loaded_keys() if getattr(runner, "retime", False) else set()  # bench run --retime
    done = runner.store.done_jobs() if callable(getattr(runner.store, "done_jobs", None)) else None
    rows = []
    for job in jobs:
        if done is not None and job.id not in done:  # a failed job: nothing trained to time (load_model would train it here)
            continue
        outs = timing_outputs(metric_names(job))
        if not outs:
            continue
        seeds = TimingSettings.from_settings({**(getattr(runner.suite, "settings", {}) or {}), **(job.dataset.settings or {})}).seeds
        if seeds is not None and job.seed not in seeds:
            continue
        for steps in job.gen.steps:
            row = job.gen.row_label(steps)
            missing = {o for o in outs if (job.id, row, o) not in have or (job.id, row, o) in redo}
            if missing:
                rows.append(_Row(job, row, steps, missing))
    return rows


def _sample_fn(r: _Row, n: int, seed: int, device: Any = None) -> Callable[[], object]:
    """One timed call: ``sample(n)`` under the suite's precision on ``device`` (none: as stored, fp32)."""
    prec = settings_for(r.job.dataset.settings, device).get("precision", "fp32") if device is not None else "fp32"
    g = torch.Generator().manual_seed(seed)
    kw: dict[str, Any] = {"steps": r.steps, "generator": g}
    if r.sampler is not None:
        kw["sampler"] = r.sampler
    model = r.model

    def call() -> object:
        with autocast(device or "cpu", prec):
            return model.sample(n, **kw)

    return call


NFE_UNKNOWN = "NFE unknown: the model reports no last_nfe, its sampler no nfe, and the suite's [speed_quality] nfe table has no entry"


def _nfe(r: _Row, suite_raw: dict) -> int | None:
    """Network evaluations per sample: the model's ``last_nfe``, else the suite's ``[speed_quality] nfe`` table, else 1 for one-shot models."""
    nfe = getattr(r.model, "last_nfe", None)
    if isinstance(nfe, int) and nfe > 0:
        return nfe
    if isinstance(r.sampler, Sampler) and isinstance(getattr(r.sampler, "nfe", None), int) and r.sampler.nfe > 0:
        return r.sampler.nfe
    table = (suite_raw.get("speed_quality") or {}).get("nfe") or {}
    for k in (r.job.gen.name, r.job.gen.model):
        if k in table:
            return int(table[k])
    info = getattr(r.model, "info", None)
    if info is not None and not getattr(info, "iterative", False):
        return 1
    return None


def _load_fields(load: Any, st: TimingSettings) -> dict[str, Any]:
    """Thread count, and the machine's load during the timed block (one sub-table: it describes the block, not the protocol)."""
    return {
        "threads": st.threads, "load_threshold_cores": st.load_threshold,
        "load": {"loadavg_before": load.loadavg_before, "loadavg_after": load.loadavg_after, "other_cpu_cores": load.other_cpu_cores,
                 "own_cpu_s": load.own_cpu_s, "method": load.method, "block_wall_s": load.wall_s},
    }  # fmt: skip


def _latency_fields(lat: Latency, st: TimingSettings, load: Any, r: _Row, n_rows: int, device: Any) -> dict[str, Any]:
    settings = {
        "phase": "timing", "batch_size": lat.batch_size, "repeats": lat.repeats, "warmup": st.warmup, "stable": lat.stable,
        "rel_tol": st.rel_tol, "statistic": "median over repeats", "interval": "IQR (q25, q75) over repeats, not a confidence interval",
        "interleaved_rows": n_rows, "device": str(device), **_load_fields(load, st),
    }  # fmt: skip
    return {
        "value": lat.per_sample_ms, "lo": lat.q25_ms, "hi": lat.q75_ms, "settings": settings, "loaded": bool(load.loaded),
        "extra": {"times_s": list(lat.times_s), "median_batch_s": lat.median_s, "iqr_ms": lat.per_sample_iqr_ms},
    }  # fmt: skip


def _append(runner: Any, r: _Row, metric: str, fields: dict[str, Any]) -> None:
    if r.nfe is not None:
        fields = {**fields, "nfe": r.nfe}
    fields = {**fields, "timing_hash": timing_hash(r.job.dataset.settings)}
    runner.append(r.job, r.row, metric, {**_output_meta(metric), **fields}, steps=r.steps)
    r.want.discard(metric)


def _time_block(rows: list[_Row], batch: int, st: TimingSettings, device: Any, seed: int) -> dict[str, tuple[Latency, Any]]:
    """Interleaved timing of ``rows`` at one batch size, with the load of the block."""
    fns = {r.key: _sample_fn(r, batch, seed, device) for r in rows}
    with LoadMonitor(st.load_threshold, st.threads) as mon:
        lats = measure_round_robin(
            fns, batch_size=batch, warmup=st.warmup, min_repeats=st.min_repeats, max_repeats=st.max_repeats,
            rel_tol=st.rel_tol, max_seconds=st.max_seconds, device=device,
        )  # fmt: skip
    return {k: (v, mon.result) for k, v in lats.items()}


def _time_rows(rows: list[_Row], batch: int, st: TimingSettings, device: Any, seed: int) -> dict[str, tuple[Latency, Any]]:
    """:func:`_time_block`; if a row fails inside the block (e.g. out of memory at a large batch), each row is retried alone
    so that only the failing one is lost (reported on stderr)."""
    try:
        return _time_block(rows, batch, st, device, seed)
    except Exception as e:
        _warn(f"batch {batch}: interleaved timing failed ({type(e).__name__}: {e}); timing each row on its own")
    out = {}
    for r in rows:
        try:
            out.update(_time_block([r], batch, st, device, seed))
        except Exception as e:
            _warn(f"{r.job.id} {r.row}: timing at batch {batch} failed ({type(e).__name__}: {e}); not timed")
    return out


def _probe(r: _Row, seed: int) -> bool:
    """One batch-1 call: the row works (else it is left out with a message) and its NFE is known."""
    try:
        with torch.no_grad():
            _sample_fn(r, 1, seed)()
        return True
    except Exception as e:  # a broken row must not stop the timing of the others
        _warn(f"{r.job.id} {r.row}: sampling failed ({type(e).__name__}: {e}); not timed")
        return False


def run_timing_phase(runner: Any, jobs: list[Any]) -> None:
    """Measure latency / ms per NFE / FLOPs / params / peak memory for every row of ``jobs`` that asks for them.

    ``runner`` provides ``suite``, ``store.keys()``, ``device``,
    ``load_model(job)``, ``sampler_for(job)`` and ``append(job, row, metric,
    fields, steps=...)`` (``bench.runner.Runner``). Rows whose timing records
    already exist are skipped, so a resumed run only times what is missing; with ``runner.retime``
    (``bench run --retime``) rows whose records were flagged ``loaded`` are timed again, and a
    quiet measurement replaces the flagged one (:meth:`bench.store.ResultStore.records`).
    """
    rows = _plan_rows(runner, jobs)
    if not rows:
        return
    suite = runner.suite
    raw = getattr(suite, "raw", {}) or {}
    device = getattr(runner, "device", None)
    models: dict[str, tuple[Any, Any]] = {}
    by_dataset: dict[str, list[_Row]] = {}
    for r in rows:
        if r.job.id not in models:
            try:
                models[r.job.id] = (runner.load_model(r.job), runner.sampler_for(r.job))
            except Exception as e:
                _warn(f"{r.job.id}: could not load the trained model ({type(e).__name__}: {e}); not timed")
                models[r.job.id] = (None, None)
        r.model, r.sampler = models[r.job.id]
        if r.model is not None:
            by_dataset.setdefault(r.job.dataset.name, []).append(r)
    old_threads = torch.get_num_threads()
    try:
        for ds_rows in by_dataset.values():
            job0 = ds_rows[0].job
            st = TimingSettings.from_settings({**(getattr(suite, "settings", {}) or {}), **(job0.dataset.settings or {})})
            torch.set_num_threads(st.threads)
            seed = int(job0.seed)
            ok = []
            for r in ds_rows:
                if _probe(r, seed):  # NFE right after the row's own call: rows of one job share the model
                    r.nfe = _nfe(r, raw)
                    ok.append(r)
            if getattr(runner, "progress", False):
                _warn(f"{job0.dataset.name}: timing {len(ok)} rows interleaved on {st.threads} thread(s) (batch 1 and {st.batch}) ...")
            b1 = [r for r in ok if "latency_b1_ms" in r.want]
            if b1:
                res = _time_rows(b1, 1, st, device, seed)
                for r in (r for r in b1 if r.key in res):
                    lat, load = res[r.key]
                    _append(runner, r, "latency_b1_ms", _latency_fields(lat, st, load, r, len(b1), device))
            bb = [r for r in ok if {"latency_ms", "ms_per_nfe"} & r.want]
            if bb:
                res = _time_rows(bb, st.batch, st, device, seed)
                for r in (r for r in bb if r.key in res):
                    lat, load = res[r.key]
                    fields = _latency_fields(lat, st, load, r, len(bb), device)
                    if "latency_ms" in r.want:
                        _append(runner, r, "latency_ms", fields)
                    per_nfe = {**fields["settings"], "definition": "median ms per sample at the suite batch / NFE"}
                    if "ms_per_nfe" in r.want and r.nfe:
                        per = {**fields, "value": lat.per_sample_ms / r.nfe, "lo": lat.q25_ms / r.nfe, "hi": lat.q75_ms / r.nfe}
                        _append(runner, r, "ms_per_nfe", {**per, "settings": {**per_nfe, "nfe": r.nfe}})
                    elif "ms_per_nfe" in r.want:  # recorded as n/a, so that later runs do not load the model again for it
                        na = {"value": None, "lo": None, "hi": None, "loaded": False, "na": True, "na_reason": NFE_UNKNOWN}
                        _append(runner, r, "ms_per_nfe", {**fields, **na, "settings": per_nfe})
            for r in ok:
                if {"flops_per_sample", "params", "peak_mem_mb"} & r.want:
                    _cost(runner, r, st, device, seed)
    finally:
        torch.set_num_threads(old_threads)


def _cost(runner: Any, r: _Row, st: TimingSettings, device: Any, seed: int) -> None:
    n = st.cost_batch
    base = {"phase": "timing", "batch_size": n, "steps": r.steps, "threads": st.threads}
    try:
        if "flops_per_sample" in r.want:
            flops = count_flops(_sample_fn(r, n, seed))
            _append(runner, r, "flops_per_sample", {"value": flops / n, "settings": {**base, "counted": FLOPS_NOTE, "exact": True}})
        if "params" in r.want:
            _append(runner, r, "params", {"value": float(count_params(r.model)), "settings": {"source": "info.n_params or module parameters", "exact": True}})
        if "peak_mem_mb" in r.want:
            mem, how = peak_memory(_sample_fn(r, n, seed, device), device)
            _append(runner, r, "peak_mem_mb", {"value": mem / 1e6, "settings": {**base, "measured": how, "exact": True}})
    except Exception as e:
        _warn(f"{r.job.id} {r.row}: cost measurement failed ({type(e).__name__}: {e})")

