"""The harness: plan jobs, hand them to an executor, keep the store.

A job is (suite, dataset, generator, seed) (:class:`bench.pipeline.Job`); its
stages (train -> sample -> features -> measure -> record) live in
``bench/pipeline.py``. Jobs are idempotent: trained models, samples and
features are cached by content hash (``genbench/cache.py``) and every metric
is recorded as soon as it is computed (``bench/store.py``), so a finished job
is skipped and an interrupted run resumes where it stopped with no lost and no
duplicated records. Two runs on one results directory claim jobs with a
per-job lock, so no job runs twice.

After the jobs, the timing phase (``bench/timing.py``) measures
latency quietly in one process; it uses :meth:`Runner.load_model` and
:meth:`Runner.append`.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from baselines import registry as greg
from genbench.cache import Cache
from metrics.latency import Load, LoadMonitor

from . import data as dreg
from .check import require_complete_capabilities
from .executors import WorkerConfig, get_executor, job_context
from .experiments import run_experiment
from .pipeline import (
    Job,
    JobContext,
    RunSummary,
    SampleError,
    error_record,
    load_data,
    provenance,
    run_job,
    suite_store,
    train,
    validate_samples,
)
from .pipeline import choose_sampler as _choose_sampler
from .provenance import resolve_device
from .store import ResultStore
from .suite import Suite, validate_names
from .timing import run_timing_phase

__all__ = ["Job", "RunSummary", "Runner", "SampleError", "plan", "run_suite", "validate_names", "validate_samples"]


def plan(suite: Suite, seeds: list[int] | None = None) -> list[Job]:
    """All jobs of a suite, in a stable order.

    A generator is planned only on the data kinds it supports (e.g. PixelCNN
    on images, not on 2-D points), as declared when it was registered.
    A generator's own ``seeds`` replace the suite's for its rows; ``seeds``
    (e.g. ``--seeds``) replaces both, for every row; duplicates are dropped.
    Sample grids and the latent figure come from the suite's seeds
    (``figure_seeds``, ``latent_seed``) whatever a row lists.
    """
    override = list(dict.fromkeys(seeds)) if seeds else None
    figure_seeds = tuple(dict.fromkeys((suite.seeds[0], min(suite.seeds)))) if suite.seeds else ()
    latent_seed = min(suite.seeds) if suite.seeds else None
    jobs = []
    for d in suite.datasets:
        kind = dreg.load(d.name, **d.params).info.kind
        for g in suite.generators_for(d.name):
            if kind in greg.get(g.model).kinds:
                jobs += [Job(suite.name, d, g, s, figure_seeds, latent_seed) for s in override or g.seeds or suite.seeds]
    return jobs


class Runner:
    """Runs one suite into ``results_dir/<suite>/records.jsonl`` (cache in ``results_dir/cache``)."""

    def __init__(
        self, suite: Suite, *, results_dir: str | Path = "results", device: str | None = "auto", progress: bool = True, save_samples: bool = False
    ) -> None:
        self.suite = suite
        self.results_dir = Path(results_dir)
        self.store = suite_store(self.results_dir, suite)  # records of an earlier configuration: not done, not reused
        self.cache = Cache(self.results_dir / "cache")
        self.assets = self.results_dir / suite.name / "assets"
        self.device = resolve_device(device)
        self.progress = progress
        self.save_samples = save_samples
        self._provenance = provenance(self.device)
        self._samplers: dict[str, Any] = {}
        self._appended = 0  # records written through append() (the timing phase)

    def config(self, threads: int | None = None, ray_address: str | None = None) -> WorkerConfig:
        return WorkerConfig(
            results_dir=str(self.results_dir), suite=self.suite.name, device=self.device, progress=self.progress,
            threads=threads, ray_address=ray_address, save_samples=self.save_samples, provenance=self._provenance,
        )  # fmt: skip

    # ------------------------------------------------------------------ public
    def run(self, seeds: list[int] | None = None, executor: str = "local", workers: int = 1, ray_address: str | None = None) -> RunSummary:
        """Run (or resume) every planned job not yet done, then the timing phase."""
        t0 = time.perf_counter()
        validate_names(self.suite)
        require_complete_capabilities(self.suite)  # half-implemented generators fail here, before any work (bench/check.py)
        execute = get_executor(executor)
        jobs = plan(self.suite, seeds)
        summary = RunSummary(planned=len(jobs))
        done = self.store.done_jobs()
        todo = [j for j in jobs if j.id not in done]
        summary.skipped = len(jobs) - len(todo)
        bar = tqdm(total=len(todo), desc=f"suite {self.suite.name}", disable=not self.progress, mininterval=1.0)
        hooks = _Hooks(self, summary, bar, wait=False)
        try:
            execute(todo, self.config(ray_address=ray_address), hooks, workers)
            if hooks.deferred:  # held by another run: wait for it, then run what it left undone
                later = _Hooks(self, summary, bar, wait=True)
                try:
                    execute(hooks.deferred, self.config(ray_address=ray_address), later, workers)
                finally:
                    later.release_all()
        finally:
            hooks.release_all()  # an interrupted run (Ctrl-C, crash) gives its claims back
            bar.close()
        before = self._appended
        with self.store.claim("_timing-phase", wait=True):  # a concurrent run waits, then finds the timings written
            run_timing_phase(self, jobs)  # latency/cost, quietly, after every job (bench/timing.py)
        summary.records_added += self._appended - before
        summary.wall_s = time.perf_counter() - t0
        return summary

    def context(self, job: Job) -> JobContext:
        """A pipeline context for ``job`` whose records go straight to this runner's store."""
        return job_context(job, self.config(), self.store.append, self.store.keys(), self.assets)

    def run_job(self, job: Job) -> None:
        """Run one job in this process (records appended as they are computed)."""
        run_job(self.context(job))

    def record_error(self, job: Job, e: BaseException) -> str:
        """Record a failed job (it is not marked done, so a re-run retries it)."""
        return error_record(job_context(job, self.config(), self.store.append, set(), self.assets), e)

    def load_model(self, job: Job) -> Any:
        """The job's generator, trained (from the artifact cache when present), with the row's sampler chosen.

        The sampler object (for :class:`genbench.protocol.SamplerChoice` models
        with ``sample_params``) is available as ``runner.sampler_for(job)``.
        """
        ctx = self.context(job)
        load_data(ctx)
        train(ctx)
        _choose_sampler(ctx)
        self._samplers[job.id] = ctx.sampler
        return ctx.model

    def sampler_for(self, job: Job) -> Any:
        """The sampler object chosen by the last :meth:`load_model` of ``job`` (None: the model's default)."""
        return self._samplers.get(job.id)

    def append(self, job: Job, row: str | None, metric: str, fields: dict[str, Any], steps: int | None = None) -> None:
        """Append one record of ``job`` (row label, metric name, value fields) with the usual provenance."""
        job_context(job, self.config(), self.store.append, set(), self.assets).append(row, metric, fields, steps=steps)
        if not metric.startswith("_"):
            self._appended += 1


class _Hooks:
    """Driver side of an execution: claim each job's lock, skip jobs another run finished, append returned records, count."""

    def __init__(self, runner: Runner, summary: RunSummary, bar: Any, wait: bool) -> None:
        self.runner, self.summary, self.bar, self.wait = runner, summary, bar, wait
        self.deferred: list[Job] = []
        self._claims: dict[str, int] = {}

    def start(self, job: Job) -> bool:
        handle = self.runner.store.try_claim(job.id, wait=self.wait)
        if handle is None:
            self.deferred.append(job)
            return False
        if job.id in self.runner.store.done_jobs():  # another run finished it meanwhile
            self.runner.store.release(handle)
            self.summary.skipped += 1
            self.bar.update(1)
            return False
        self._claims[job.id] = handle
        self.bar.set_postfix_str(job.id)
        return True

    def release_all(self) -> None:
        for handle in self._claims.values():
            self.runner.store.release(handle)
        self._claims.clear()

    def have(self, job: Job) -> set[tuple]:
        return {k for k in self.runner.store.keys() if k[0] == job.id}

    def finish(self, job: Job, error: str | None, records: list[dict[str, Any]] | None, n_appended: int) -> None:
        try:
            for r in records or ():
                self.runner.store.append(r)
                n_appended += 1
        finally:
            handle = self._claims.pop(job.id, None)
            if handle is not None:
                self.runner.store.release(handle)
        self.summary.records_added += _metric_records(records, n_appended)
        self.bar.update(1)
        if error is None:
            self.summary.ran += 1
        else:
            self.summary.failed.append((job.id, error))


def _metric_records(records: list[dict[str, Any]] | None, n_appended: int) -> int:
    """Records a job added, without its internal markers when they are known (done marker, error)."""
    if records is not None:
        return sum(1 for r in records if not str(r.get("metric", "")).startswith("_"))
    return n_appended


def run_suite(
    suite: Suite,
    *,
    seeds: list[int] | None = None,
    results_dir: str | Path = "results",
    device: str | None = "auto",
    progress: bool = True,
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    save_samples: bool = False,
) -> RunSummary:
    """Run (or resume) every job of ``suite``; returns what was done.

    ``executor``: ``local`` (this process), ``process`` (``workers`` local
    processes) or ``ray`` (optional extra; ``ray_address`` or ``RAY_ADDRESS``
    names the cluster). ``save_samples`` keeps every row's samples under
    ``results_dir/<suite>/samples/`` (``.npz`` + PNG grid).
    """
    started = _dt.datetime.now(_dt.UTC)
    with LoadMonitor(threshold_cores=0.25, own_threads=max(1, workers)) as mon:
        if suite.experiment:
            summary = run_experiment(suite, seeds=seeds, results_dir=Path(results_dir), device=resolve_device(device), progress=progress)
        else:
            runner = Runner(suite, results_dir=results_dir, device=device, progress=progress, save_samples=save_samples)
            summary = runner.run(seeds, executor=executor, workers=workers, ray_address=ray_address)
    ResultStore(Path(results_dir) / suite.name).log_run(run_log_entry(summary, mon.result, started, executor, workers))
    return summary


def run_log_entry(summary: RunSummary, load: Load | None, started: _dt.datetime, executor: str, workers: int) -> dict[str, Any]:
    """One line of ``runs.jsonl``: when a run started, its wall time, what it did and how loaded the machine was.

    ``own_cpu_cores``: CPU time of this process and its finished child processes
    (the process executor's workers) divided by wall time; ``other_cpu_cores``:
    the rest of the machine's busy time over the run, in cores (Ray workers count
    there). The leaderboard's provenance prints these, so a reader sees whether a
    suite shared the machine.
    """
    entry: dict[str, Any] = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M:%S UTC"), "wall_s": load.wall_s if load else summary.wall_s, "planned": summary.planned,
        "ran": summary.ran, "skipped": summary.skipped, "failed": len(summary.failed), "records_added": summary.records_added,
        "executor": executor, "workers": workers, "cpu_count": os.cpu_count(),
    }  # fmt: skip
    if load is not None:
        entry.update({
            "loadavg_before": load.loadavg_before, "loadavg_after": load.loadavg_after,
            "other_cpu_cores": load.other_cpu_cores, "own_cpu_cores": (load.own_cpu_s / load.wall_s) if load.own_cpu_s is not None and load.wall_s > 0 else None,
            "load_method": load.method,
        })  # fmt: skip
    return entry
