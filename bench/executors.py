"""Where jobs run: in this process (``local``), in a pool of local processes
(``process``, ``--jobs N``) or on a Ray cluster (``ray``, optional extra).

Executors live in :data:`EXECUTORS` (a :class:`genbench.registry.Registry`);
each is a function ``execute(jobs, cfg, hooks, workers)``. They receive
:class:`bench.job.Job` objects, never job ids to re-plan. Before running a
job an executor asks ``hooks.start(job)`` (the driver claims the job's lock and
checks it is not done already); afterwards it calls ``hooks.finish(job, error,
records, n_appended, seconds=...)``. Workers limit their threads to
``cfg.threads`` and import ``cfg.imports`` (the user's modules) first
(:func:`prepare_worker`).

- ``local`` and ``process`` workers append to the results directory on this
  machine themselves (the store is append-only under a file lock) and report
  how many records they added.
- ``ray`` workers return their records (sample grids as PNG bytes with them)
  to the driver, which alone appends them to the store and writes the PNGs:
  no shared file system is needed. ``cfg.ray_address`` (``--ray-address`` or
  ``RAY_ADDRESS``) names the cluster; without one Ray starts a local cluster.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from genbench import safeio
from genbench.cache import Cache
from genbench.plugins import import_user_module
from genbench.registry import Registry
from metrics.latency import LoadMonitor

from .parallel import limit_threads, thread_env
from .pipeline import Job, JobContext, error_record, provenance, run_job
from .store import ResultStore

__all__ = ["EXECUTORS", "WorkerConfig", "Hooks", "job_context", "run_in_worker", "get_executor"]


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs besides the job: where results and the cache live, the device, threads."""

    results_dir: str
    suite: str
    device: str = "cpu"
    progress: bool = False
    threads: int | None = None
    ray_address: str | None = None
    save_samples: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)
    imports: tuple[str, ...] = ()  # user modules (--import, or a suite's module:factory) to import before a job runs
    job_lines: bool = False  # one line on stderr when a job starts (the driver writes one when it ends)

    @property
    def store_dir(self) -> Path:
        return Path(self.results_dir) / self.suite

    @property
    def cache_dir(self) -> Path:
        return Path(self.results_dir) / "cache"


class Hooks(Protocol):
    """The driver's side of an execution (see the module docstring)."""

    def start(self, job: Job) -> bool: ...

    def have(self, job: Job) -> set[tuple]: ...

    def finish(self, job: Job, error: str | None, records: list[dict[str, Any]] | None, n_appended: int, seconds: float | None = None) -> None: ...


def job_context(job: Job, cfg: WorkerConfig, emit: Callable[[dict[str, Any]], None], have: set[tuple], assets: Path | None = None) -> JobContext:
    """A :class:`JobContext` for ``job`` under ``cfg`` whose records go to ``emit``."""
    return JobContext(
        job=job, cache=Cache(cfg.cache_dir), device=cfg.device, assets=assets or cfg.store_dir / "assets", emit=emit,
        have=set(have), provenance=cfg.provenance or provenance(cfg.device), progress=cfg.progress,
        save_samples=cfg.save_samples, samples_dir=cfg.store_dir / "samples",
    )  # fmt: skip


def job_line(text: str) -> None:
    """One progress line on stderr (no bar, no redraw: readable in a log file)."""
    print(f"bench: {text}", file=sys.stderr, flush=True)


_THREADS_SET: int | None = None


def prepare_worker(cfg: WorkerConfig) -> None:
    """What a worker process does once before its jobs: its thread limit (``cfg.threads``) and the user's modules
    (``cfg.imports``), so that factories a script registers are known here too."""
    global _THREADS_SET
    if cfg.threads and _THREADS_SET != cfg.threads:
        limit_threads(cfg.threads)
        _THREADS_SET = cfg.threads
    for spec in cfg.imports:
        import_user_module(spec)


def run_in_worker(
    job: Job, cfg: WorkerConfig, have: set[tuple], collect: bool = False, label: str = ""
) -> tuple[str | None, list[dict[str, Any]] | None, int, dict[str, bytes]]:
    """Run one job in this process: ``(error or None, records if collect else None, records appended, assets)``.

    With ``collect`` the records are returned instead of appended, and the
    figures are returned as ``{file name: PNG bytes}`` (written to a
    temporary folder here, by the driver into its assets folder).
    ``label`` (e.g. ``"4/35"``) goes into the start line when ``cfg.job_lines``.
    """
    prepare_worker(cfg)
    if cfg.job_lines:
        job_line(f"start {label + ' ' if label else ''}{job.id} (pid {os.getpid()}, {torch.get_num_threads()} thread(s))")
    records: list[dict[str, Any]] = []
    store = ResultStore(cfg.store_dir)
    with tempfile.TemporaryDirectory(prefix="genbench-assets-") as tmp:
        assets = Path(tmp) if collect else None
        ctx = job_context(job, cfg, records.append if collect else store.append, have, assets)
        try:
            run_job(ctx)
            error = None
        except Exception as e:  # noqa: BLE001 - reported to the driver, which counts it as failed
            error = error_record(ctx, e)
        files = {p.name: p.read_bytes() for p in Path(tmp).glob("*.png")} if collect else {}
    return error, (records if collect else None), (0 if collect else ctx.added), files


EXECUTORS: Registry[Callable[..., None]] = Registry("executor")
RAY_RETRIES = 3  # Ray re-runs a job whose worker died (jobs are idempotent; records come back only from a finished job)


def _label(hooks: Hooks, job: Job) -> str:
    label = getattr(hooks, "label", None)
    return label(job) if callable(label) else ""


@EXECUTORS.register("local", description="jobs one after another in this process")
def execute_local(jobs: list[Job], cfg: WorkerConfig, hooks: Hooks, workers: int = 1) -> None:
    global _THREADS_SET
    old = torch.get_num_threads()
    restore = None
    try:
        if cfg.threads:
            restore = limit_threads(cfg.threads)
            _THREADS_SET = cfg.threads
        for job in jobs:
            if hooks.start(job):
                t0 = time.perf_counter()
                error, records, n, _ = run_in_worker(job, cfg, hooks.have(job), label=_label(hooks, job))
                hooks.finish(job, error, records, n, seconds=time.perf_counter() - t0)
    finally:  # the driver (a notebook, the API) gets its own thread counts back
        if cfg.threads:
            torch.set_num_threads(old)
            if restore is not None:
                restore()
            _THREADS_SET = None


def _process_worker(job: dict[str, Any], cfg: WorkerConfig, have: set[tuple], label: str = "") -> tuple[str | None, int, float]:
    t0 = time.perf_counter()
    error, _, n, _ = run_in_worker(Job.from_dict(job), cfg, have, label=label)
    return error, n, time.perf_counter() - t0


PARENT_POLL_S = 1.0  # how often a pool worker checks that the driver is still alive


def _exit_with_parent(parent: int, poll_s: float = PARENT_POLL_S) -> None:
    """Pool-worker initializer: a daemon thread ends this worker once the driver is gone.

    A driver killed by SIGTERM or SIGKILL (a scheduler's time limit, ``kill``)
    does not take its spawned workers with it; orphaned, they would go on
    burning the cores, and the next ``bench run`` (the driver's job locks died
    with it) would run the same jobs beside them. The worker is then
    reparented, so ``os.getppid()`` changes; the worker exits at once, like a
    SIGKILL mid-job, which resuming already handles (the next run redoes the
    job and keeps the records it already has).
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def worker_pool(workers: int) -> cf.ProcessPoolExecutor:
    """``workers`` spawned processes that exit when this (driver) process dies."""
    return cf.ProcessPoolExecutor(
        max_workers=max(1, workers), mp_context=mp.get_context("spawn"), initializer=_exit_with_parent, initargs=(os.getpid(),)
    )


@EXECUTORS.register("process", description="a pool of local processes (--jobs N), each appending to the store")
def execute_process(jobs: list[Job], cfg: WorkerConfig, hooks: Hooks, workers: int = 1) -> None:
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    wcfg = WorkerConfig(**{**cfg.__dict__, "threads": threads, "progress": False})
    # workers spawned with *_NUM_THREADS = threads: their BLAS/OpenMP pools start at that size (prepare_worker limits torch too)
    with thread_env(threads), worker_pool(workers) as pool:
        futs = {}
        for job in jobs:
            if hooks.start(job):
                futs[pool.submit(_process_worker, job.to_dict(), wcfg, hooks.have(job), _label(hooks, job))] = job
        for f in cf.as_completed(futs):
            job = futs[f]
            try:
                error, n, seconds = f.result()
            except Exception as e:  # noqa: BLE001 - a worker that died (e.g. out of memory): the job failed
                error, n, seconds = f"{type(e).__name__}: {e}", 0, None
            hooks.finish(job, error, None, n, seconds=seconds)


RAY_CONNECT_TIMEOUT_S = 10.0  # how long an explicit --ray-address may take to accept a TCP connection


def check_ray_address(address: str, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """``RuntimeError`` naming ``address`` when nothing accepts a TCP connection there within ``timeout_s`` seconds.

    ``address`` is ``host:port`` or ``ray://host:port``; ``auto``/``local`` (Ray finds or starts a cluster
    itself) and addresses without a port are left to Ray.
    """
    import socket

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if address in ("auto", "local") or not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise RuntimeError(f"--ray-address {address}: no Ray cluster answers at {host}:{port} within {timeout_s:g} s "
                           f"({e.strerror or type(e).__name__}); start one (ray start --head) or leave --ray-address out for a local one") from None  # fmt: skip


def _ray_worker(
    job: dict[str, Any], cfg: WorkerConfig, have: set[tuple], label: str = ""
) -> tuple[str | None, list[dict[str, Any]], dict[str, bytes], dict[str, Any]]:
    """Run one job on a Ray worker; the last element tells the driver what the job cost there (pid, host, CPU and wall
    seconds), so that a run's provenance counts its Ray workers as its own work (metrics.latency.LoadMonitor)."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    error, records, _, files = run_in_worker(Job.from_dict(job), cfg, have, collect=True, label=label)
    cost = {"pid": os.getpid(), "host": socket.gethostname(), "cpu_s": time.process_time() - cpu0, "seconds": time.perf_counter() - t0}
    return error, records or [], files, cost


@EXECUTORS.register("ray", description="a Ray cluster (pip install 'genbench[ray]'); workers return records to the driver")
def execute_ray(jobs: list[Job], cfg: WorkerConfig, hooks: Hooks, workers: int = 1) -> None:
    try:
        import ray  # optional extra: imported only when this executor runs
    except ModuleNotFoundError as e:
        raise RuntimeError("the ray executor needs the optional extra: pip install 'genbench[ray]'") from e
    started = not ray.is_initialized()  # a Ray this run started is shut down when its jobs are done
    watchdog = None
    if started:
        address = cfg.ray_address or os.environ.get("RAY_ADDRESS") or None
        if address is not None:
            check_ray_address(address)  # fail within RAY_CONNECT_TIMEOUT_S, not after Ray's own minutes of retries
        if address is None:  # a local instance: its workers are this run's main work, not background jobs (Ray's default nice is 15)
            os.environ.setdefault("RAY_worker_niceness", "0")
        if address is None:
            watchdog = _start_ray_watchdog()  # before ray.init, so it sees Ray's processes from their start
        ray.init(address=address, ignore_reinit_error=True, **({"include_dashboard": False} if address is None else {}))
    # a worker killed mid-job is retried by Ray; it returned nothing, so nothing is duplicated
    remote = ray.remote(num_gpus=1 if cfg.device.startswith("cuda") else 0, max_retries=RAY_RETRIES)(_ray_worker)
    wcfg = WorkerConfig(**{**cfg.__dict__, "progress": False})
    try:
        _ray_loop(ray, remote, jobs, cfg, wcfg, hooks)
    finally:
        if started:
            ray.shutdown()
        if watchdog is not None:
            watchdog.stdin.close()  # done: the watchdog ends whatever of Ray outlived the shutdown, then exits


RAY_WATCHDOG_GRACE_S = 5.0  # after the driver ends, how long a normal ray.shutdown() gets before the watchdog kills what is left

_WATCHDOG = r"""
import os, select, signal, sys, time

def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[1]), rest[19]  # parent pid, start time

driver, grace, me = int(sys.argv[1]), float(sys.argv[2]), os.getpid()
seen = {}  # pid -> start time of every process seen below the driver
while True:
    ready, _, _ = select.select([sys.stdin], [], [], 1.0)
    if ready and not os.read(sys.stdin.fileno(), 1):
        break  # end of file: the driver has exited, normally or killed
    procs = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                procs[int(p)] = stat(p)
            except (OSError, IndexError, ValueError):
                pass
    for pid, (ppid, start) in procs.items():
        q, hops = pid, 0
        while q in procs and q != driver and hops < 64:
            q, hops = procs[q][0], hops + 1
        if q == driver and pid not in (driver, me):
            seen[pid] = start
time.sleep(grace)
for pid, start in seen.items():
    try:
        if stat(pid)[1] == start:
            os.kill(pid, signal.SIGKILL)
    except (OSError, IndexError, ValueError):
        pass
"""


def _start_ray_watchdog() -> subprocess.Popen | None:
    """A small process that ends the local Ray instance this run started when the driver ends, however it ends.

    Ray's processes (GCS, raylet, the dashboard and runtime-env agents, workers) can outlive a driver that is
    SIGKILLed. The watchdog notes, once a second, every process descended from the driver (pid and start
    time, so a reused pid is never hit). It holds the read end of a pipe whose only writer is the driver; the
    kernel closes it when the driver dies, and the watchdog then kills the processes it noted that are still
    alive, after :data:`RAY_WATCHDOG_GRACE_S` so that a normal ``ray.shutdown()`` comes first. Linux only (it
    reads ``/proc``); elsewhere nothing is started.
    """
    if not os.path.isdir("/proc"):
        return None
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(RAY_WATCHDOG_GRACE_S)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def _ray_loop(ray: Any, remote: Any, jobs: list[Job], cfg: WorkerConfig, wcfg: WorkerConfig, hooks: Hooks) -> None:
    """Submit every job, then take results as they finish: the driver alone appends records and writes files."""
    pending = {}
    for job in jobs:
        if hooks.start(job):
            pending[remote.remote(job.to_dict(), wcfg, hooks.have(job), _label(hooks, job))] = job
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(done[0])
        try:
            error, records, files, cost = ray.get(done[0])
        except Exception as e:  # noqa: BLE001 - a lost worker: the job failed, a re-run retries it
            error, records, files, cost = f"{type(e).__name__}: {e}", [], {}, {}
        monitor = LoadMonitor.active
        if monitor is not None and cost:  # a worker of a cluster this run joined is not our descendant: count what it reports
            monitor.report_worker_cpu(int(cost.get("pid", -1)), str(cost.get("host", "")), float(cost.get("cpu_s", 0.0)))
        assets = cfg.store_dir / "assets"
        for name, blob in files.items():
            if "/" not in name and not name.startswith("."):
                safeio.atomic_write(assets / name, blob, root=cfg.store_dir)  # no link followed, never half-written
        hooks.finish(job, error, records, 0, seconds=cost.get("seconds"))


def get_executor(name: str) -> Callable[..., None]:
    """The executor registered as ``name``; ``ValueError`` listing the valid names."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS.names())}")
    return EXECUTORS.load(name)
