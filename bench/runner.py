"""The harness: plan jobs, hand them to an executor, keep the store.

A job is (suite, dataset, generator, seed) (:class:`bench.job.Job`); its
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

import dataclasses
import datetime as _dt
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from baselines import registry as greg
from genbench.cache import Cache
from genbench.plugins import import_user_module
from metrics.latency import Load, LoadMonitor

from . import data as dreg
from .capabilities import require_complete_capabilities
from .executors import WorkerConfig, get_executor, job_context, job_line
from .experiments import run_experiment
from .parallel import Parallelism, choose_parallelism
from .pipeline import (
    Job,
    JobContext,
    RunSummary,
    SampleError,
    error_record,
    load_data,
    provenance,
    run_job,
    train,
    validate_samples,
)
from .pipeline import choose_sampler as _choose_sampler
from .provenance import device_description, resolve_device
from .store import ResultStore, suite_store
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
    """Runs one suite into ``results_dir/<suite>/records.jsonl`` (cache in ``results_dir/cache``).

    ``imports``: the user's modules (``--import``) every worker imports before its jobs; ``job_lines``: one
    progress line on stderr per job start and end (plain lines, also into a log file).
    """

    def __init__(
        self, suite: Suite, *, results_dir: str | Path = "results", device: str | None = "auto", progress: bool = True, save_samples: bool = False,
        imports: tuple[str, ...] | list[str] = (), job_lines: bool = False, retime: bool = False,
    ) -> None:  # fmt: skip
        self.suite = suite
        self.results_dir = Path(results_dir)
        self.store = suite_store(self.results_dir, suite)  # records of an earlier configuration: not done, not reused
        self.cache = Cache(self.results_dir / "cache")
        self.assets = self.results_dir / suite.name / "assets"
        self.device = resolve_device(device)
        self.progress = progress
        self.save_samples = save_samples
        self.imports = tuple(imports)
        self.job_lines = job_lines
        self.retime = retime  # time again the rows whose timing records are flagged loaded
        self._provenance = provenance(self.device)
        self._samplers: dict[str, Any] = {}
        self._appended = 0  # records written through append() (the timing phase)
        self._threads: int | None = None

    def config(self, threads: int | None = None, ray_address: str | None = None) -> WorkerConfig:
        threads = threads if threads is not None else self._threads
        return WorkerConfig(
            results_dir=str(self.results_dir), suite=self.suite.name, device=self.device, progress=self.progress,
            threads=threads, ray_address=ray_address, save_samples=self.save_samples, provenance=self._provenance,
            imports=self.imports, job_lines=self.job_lines,
        )  # fmt: skip

    # ------------------------------------------------------------------ public
    def run(
        self, seeds: list[int] | None = None, executor: str | None = "local", workers: int = 1, ray_address: str | None = None,
        threads: int | None = None,
    ) -> RunSummary:  # fmt: skip
        """Run (or resume) every planned job not yet done, then the timing phase.

        ``executor`` None picks ``process`` when more than one worker would be busy, else ``local``; ``workers``
        is capped at the number of jobs left (a pool never idles); ``threads`` limits every worker's threads.
        """
        t0 = time.perf_counter()
        require_complete_capabilities(self.suite)  # half-implemented generators fail here, before any work (bench/check.py)
        jobs = plan(self.suite, seeds)
        summary = RunSummary(planned=len(jobs))
        done = self.store.done_jobs()
        todo = [j for j in jobs if j.id not in done]
        summary.skipped = len(jobs) - len(todo)
        busy = max(1, min(int(workers), len(todo)))
        if executor is None:
            executor = "process" if busy > 1 else "local"
        execute = get_executor(executor)
        if executor != "ray":
            workers = busy
        self._threads = threads
        if threads is not None and self._provenance.get("device", "").startswith("cpu:"):  # what every worker runs with
            self._provenance = {**self._provenance, "device": device_description(self.device, threads)}
        summary.executor, summary.workers, summary.threads = executor, int(workers), threads
        if self.job_lines and todo:
            job_line(
                f"suite {self.suite.name}: {len(todo)} of {len(jobs)} jobs to run ({summary.skipped} already done), "
                f"executor {executor}, {workers} worker(s) x {threads or 'default'} thread(s)"
            )
        hooks = _Hooks(self, summary, todo, wait=False)
        try:
            execute(todo, self.config(ray_address=ray_address), hooks, workers)
            if hooks.deferred:  # held by another run: wait for it, then run what it left undone
                later = _Hooks(self, summary, todo, wait=True, start_at=hooks)
                try:
                    execute(hooks.deferred, self.config(ray_address=ray_address), later, workers)
                finally:
                    later.release_all()
        finally:
            hooks.release_all()  # an interrupted run (Ctrl-C, crash) gives its claims back
        before = self._appended
        with self.store.claim("_timing-phase", wait=True), LoadMonitor.quiet():  # a concurrent run waits, then finds the timings written
            run_timing_phase(self, jobs)  # latency/cost, quietly, after every job (bench/timing.py)
        summary.records_added += self._appended - before
        summary.na_errors = sum(1 for r in self.store.records() if r.get("na_error"))
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
        got = train(ctx)
        if got is not None and not got["extra"].get("cached") and (self.job_lines or self.progress):  # not an error, but it costs a training run
            print(f"bench: {job.id}: its trained model was not in the cache (the family's code changed since the job ran, or the cache "
                  f"was cleared): trained again ({got['value'] or 0:.0f} s) to be timed", file=sys.stderr)  # fmt: skip
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
    """Driver side of an execution: claim each job's lock, skip jobs another run finished, append returned records, count.

    With the runner's ``job_lines`` it writes one line per finished job (the worker writes the start line):
    which job, how long it took, how many of the run's jobs are finished.
    """

    def __init__(self, runner: Runner, summary: RunSummary, todo: list[Job], wait: bool, start_at: _Hooks | None = None) -> None:
        self.runner, self.summary, self.wait = runner, summary, wait
        self.deferred: list[Job] = []
        self._claims: dict[str, int] = {}
        self._index = {j.id: i + 1 for i, j in enumerate(todo)}
        self._total = len(todo)
        self._finished = start_at._finished if start_at is not None else 0
        self._t0 = start_at._t0 if start_at is not None else time.perf_counter()

    def label(self, job: Job) -> str:
        """``"4/35"``: the job's place among the jobs this run has to do."""
        return f"{self._index.get(job.id, '?')}/{self._total}"

    def _line(self, text: str) -> None:
        if self.runner.job_lines:
            job_line(text)

    def start(self, job: Job) -> bool:
        handle = self.runner.store.try_claim(job.id, wait=self.wait)
        if handle is None:
            self.deferred.append(job)
            return False
        if job.id in self.runner.store.done_jobs():  # another run finished it meanwhile
            self.runner.store.release(handle)
            self.summary.skipped += 1
            self._finished += 1
            self._line(f"skip  {self.label(job)} {job.id}: another run finished it ({self._finished} of {self._total} finished)")
            return False
        self._claims[job.id] = handle
        return True

    def release_all(self) -> None:
        for handle in self._claims.values():
            self.runner.store.release(handle)
        self._claims.clear()

    def have(self, job: Job) -> set[tuple]:
        return {k for k in self.runner.store.keys() if k[0] == job.id}

    def finish(self, job: Job, error: str | None, records: list[dict[str, Any]] | None, n_appended: int, seconds: float | None = None) -> None:
        try:
            for r in records or ():
                self.runner.store.append(r)
                n_appended += 1
        finally:
            handle = self._claims.pop(job.id, None)
            if handle is not None:
                self.runner.store.release(handle)
        self.summary.records_added += _metric_records(records, n_appended)
        self._finished += 1
        took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
        status = "done " if error is None else "FAILED"
        tail = f"; {error}" if error else ""
        self._line(
            f"{status} {self.label(job)} {job.id}{took} ({self._finished} of {self._total} finished, "
            f"{time.perf_counter() - self._t0:.0f} s elapsed){tail}"
        )
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
    executor: str | None = "local",
    workers: int | None = 1,
    threads: int | None = None,
    ray_address: str | None = None,
    save_samples: bool = False,
    imports: tuple[str, ...] | list[str] = (),
    job_lines: bool = False,
    retime: bool = False,
) -> RunSummary:
    """Run (or resume) every job of ``suite``; returns what was done.

    ``executor``: ``local`` (this process), ``process`` (``workers`` local
    processes) or ``ray`` (optional extra; ``ray_address`` or ``RAY_ADDRESS``
    names the cluster); None: ``process`` when more than one worker would be
    busy, else ``local``. ``workers`` / ``threads``: None lets
    :func:`bench.parallel.choose_parallelism` choose (``bench run``'s default:
    one single-threaded worker per usable core); the choice is logged in
    ``runs.jsonl``. ``save_samples`` keeps every row's samples under
    ``results_dir/<suite>/samples/`` (``.npz`` + PNG grid). ``imports``: the
    user's modules to import in every worker (``--import``); ``job_lines``:
    one progress line on stderr per job start and end; ``retime``: the timing
    phase measures again every row whose latency records are flagged loaded
    (a quiet measurement replaces them).
    """
    started = _dt.datetime.now(_dt.UTC)
    dev = resolve_device(device)
    # local, and experiment suites (they run in this process): one worker, every core
    par = choose_parallelism(1 if (executor == "local" and workers is None) or suite.experiment else workers, threads, device=dev)
    if suite.experiment:
        par = dataclasses.replace(par, source="an experiment suite runs in one process")
    for spec in imports:  # the driver plans with the user's registrations too
        import_user_module(spec)
    validate_names(suite)  # once per run, before any work (load_suite checked the fields)
    with LoadMonitor(threshold_cores=0.25, own_threads=max(1, par.workers * par.threads), track_children=True, poll_s=1.0) as mon:
        if suite.experiment:
            before = torch.get_num_threads()
            torch.set_num_threads(par.threads)
            try:
                summary = run_experiment(suite, seeds=seeds, results_dir=Path(results_dir), device=dev, progress=progress)
            finally:
                torch.set_num_threads(before)
            summary.executor, summary.workers, summary.threads = "local", 1, par.threads
        else:
            runner = Runner(suite, results_dir=results_dir, device=dev, progress=progress, save_samples=save_samples, imports=imports, job_lines=job_lines,
                            retime=retime)  # fmt: skip
            summary = runner.run(seeds, executor=executor, workers=par.workers, ray_address=ray_address, threads=par.threads)
    ResultStore(Path(results_dir) / suite.name).log_run(run_log_entry(summary, mon.result, started, summary.executor or str(executor), summary.workers or par.workers, par))
    return summary


def run_log_entry(
    summary: RunSummary, load: Load | None, started: _dt.datetime, executor: str, workers: int, parallelism: Parallelism | None = None
) -> dict[str, Any]:
    """One line of ``runs.jsonl``: when a run started, its wall time, what it did and how loaded the machine was.

    ``own_cpu_cores``: CPU time of this process and of its descendants (the
    process executor's workers; a local Ray instance's raylet and workers; Ray
    workers of a joined cluster on this machine as they report it) divided by
    wall time; ``other_cpu_cores``: the rest of the machine's busy time over
    the run, in cores. ``workers`` x ``threads`` and ``parallelism`` (how they
    were chosen, :mod:`bench.parallel`) say what the run used. The
    leaderboard's provenance prints these, so a reader sees whether a suite
    shared the machine.
    """
    entry: dict[str, Any] = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M:%S UTC"), "wall_s": load.wall_s if load else summary.wall_s, "planned": summary.planned,
        "ran": summary.ran, "skipped": summary.skipped, "failed": len(summary.failed), "records_added": summary.records_added,
        "executor": executor, "workers": workers, "threads": summary.threads, "cpu_count": os.cpu_count(),
    }  # fmt: skip
    if parallelism is not None:
        entry.update({"usable_cores": parallelism.cores, "parallelism": parallelism.describe(), "parallelism_source": parallelism.source})
    if load is not None:
        entry.update({
            "loadavg_before": load.loadavg_before, "loadavg_after": load.loadavg_after,
            "other_cpu_cores": load.other_cpu_cores, "own_cpu_cores": (load.own_cpu_s / load.wall_s) if load.own_cpu_s is not None and load.wall_s > 0 else None,
            "load_method": load.method,
        })  # fmt: skip
    return entry
