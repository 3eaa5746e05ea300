"""How many workers and threads a run uses, when the user does not say.

Small networks on a CPU lose most of their time to threads waiting for each
other (on a 2-core machine shared with other jobs, one worker with two torch
threads ran the smoke suite in 558-707 s; one single-threaded process in
61 s). So ``bench run`` defaults to **as many single-threaded worker processes
as the machine has usable cores** (:func:`choose_parallelism`), unless
``--jobs`` / ``--threads`` (or ``OMP_NUM_THREADS``) say otherwise:

========================  =====================================================
given                     workers x threads
========================  =====================================================
nothing                   usable cores x 1 (one worker on a CUDA device)
``--jobs N``              N x max(1, cores // N)
``--threads T``           max(1, cores // T) x T
both                      as given
========================  =====================================================

``OMP_NUM_THREADS`` in the environment counts as ``--threads`` when the flag is
absent. Usable cores (:func:`usable_cores`) are the CPUs of this process's
affinity mask (``os.sched_getaffinity``: ``taskset``, ``docker --cpuset-cpus``,
Slurm) capped by a cgroup CPU quota (v2 ``cpu.max``, v1
``cpu.cfs_quota_us / cpu.cfs_period_us``: ``docker --cpus``, Kubernetes
limits), rounded down, at least 1. The thread count of a worker limits torch
(:func:`torch.set_num_threads`) and the BLAS/OpenMP pools of NumPy and SciPy
(``threadpoolctl``, and the ``*_NUM_THREADS`` variables of spawned workers).

The choice is written to ``runs.jsonl`` (``workers``, ``threads``,
``parallelism``) and the leaderboard's provenance prints it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Parallelism", "usable_cores", "cgroup_cpu_limit", "choose_parallelism", "limit_threads", "thread_env", "THREAD_ENV_VARS"]

# Environment variables that size the thread pools of OpenMP, OpenBLAS, MKL and friends in a process that starts after them.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(frozen=True)
class Parallelism:
    """What a run uses: ``workers`` processes (1: jobs run in the driver) of ``threads`` threads each, and why."""

    workers: int
    threads: int
    cores: int
    source: str  # "default", "--jobs", "--threads", "--jobs and --threads", "OMP_NUM_THREADS", ...
    affinity: int | None = None
    cgroup_limit: float | None = None

    def describe(self) -> str:
        """One line for the provenance: ``2 workers x 1 thread (default: one single-threaded worker per usable core; 2 usable cores)``."""
        why = {"default": "default: one single-threaded worker per usable core"}.get(self.source, f"from {self.source}")
        limits = [f"{self.cores} usable cores"]
        if self.affinity is not None:
            limits.append(f"affinity {self.affinity}")
        if self.cgroup_limit is not None:
            limits.append(f"cgroup quota {self.cgroup_limit:g} CPUs")
        w, t = self.workers, self.threads
        return f"{w} worker{'s' if w != 1 else ''} x {t} thread{'s' if t != 1 else ''} ({why}; {', '.join(limits)})"

    def to_dict(self) -> dict:
        return asdict(self)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: str | Path = "/sys/fs/cgroup", proc_self_cgroup: str | Path = "/proc/self/cgroup") -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None when there is none.

    cgroup v2: ``cpu.max`` (``"max 100000"`` = no limit, ``"150000 100000"`` = 1.5 CPUs) of this process's
    group (from ``/proc/self/cgroup``) or the root; cgroup v1: ``cpu/cpu.cfs_quota_us`` (-1 = no limit) over
    ``cpu.cfs_period_us``. The smallest quota found on the way from the group up to the root wins.
    """
    root = Path(root)
    groups: list[Path] = []
    text = _read(Path(proc_self_cgroup)) or ""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and (parts[0] == "0" or "cpu" in parts[1].split(",")):
            rel = parts[2].lstrip("/")
            base = root if parts[0] == "0" else root / ("cpu,cpuacct" if (root / "cpu,cpuacct").is_dir() else "cpu")
            p = base / rel if rel else base
            while True:
                groups.append(p)
                if p == base or p.parent == p:
                    break
                p = p.parent
    groups += [root, root / "cpu", root / "cpu,cpuacct"]
    limits = []
    for g in dict.fromkeys(groups):
        v2 = _read(g / "cpu.max")
        if v2:
            quota, _, period = v2.partition(" ")
            if quota != "max":
                try:
                    q, per = float(quota), float(period or 100000)
                    if q > 0 and per > 0:
                        limits.append(q / per)
                except ValueError:
                    pass
            continue
        q1, p1 = _read(g / "cpu.cfs_quota_us"), _read(g / "cpu.cfs_period_us")
        if q1 and p1:
            try:
                q, per = float(q1), float(p1)
                if q > 0 and per > 0:
                    limits.append(q / per)
            except ValueError:
                pass
    return min(limits) if limits else None


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return None


def usable_cores(affinity: int | None = -1, cgroup_limit: float | None = -1.0) -> int:
    """Cores this process may use: the affinity mask's CPUs (else ``os.cpu_count()``), capped by the cgroup
    quota rounded down; at least 1. The arguments override what is read from the system (tests)."""
    n = _affinity() if affinity == -1 else affinity
    n = n or os.cpu_count() or 1
    quota = cgroup_cpu_limit() if cgroup_limit == -1.0 else cgroup_limit
    if quota is not None:
        n = min(n, max(1, math.floor(quota + 1e-9)))
    return max(1, int(n))


def _env_threads(env: dict[str, str] | os._Environ) -> int | None:
    v = env.get("OMP_NUM_THREADS", "").strip()
    try:
        t = int(v)
    except ValueError:
        return None
    return t if t >= 1 else None


def choose_parallelism(
    jobs: int | None = None,
    threads: int | None = None,
    *,
    device: str = "cpu",
    cores: int | None = None,
    env: dict[str, str] | None = None,
    affinity: int | None = -1,
    cgroup_limit: float | None = -1.0,
) -> Parallelism:
    """Workers and threads of a run (module docstring). ``jobs``/``threads``: the user's ``--jobs``/``--threads``
    (None: not given); ``cores``: usable cores (default :func:`usable_cores`); ``env``: the environment read
    for ``OMP_NUM_THREADS`` (default ``os.environ``)."""
    for name, v in (("jobs", jobs), ("threads", threads)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    aff = _affinity() if affinity == -1 else affinity
    quota = cgroup_cpu_limit() if cgroup_limit == -1.0 else cgroup_limit
    n = cores if cores is not None else usable_cores(aff, quota)
    source_threads = "--threads"
    if threads is None:
        threads = _env_threads(os.environ if env is None else env)
        source_threads = "OMP_NUM_THREADS"
    meta = {"cores": n, "affinity": aff, "cgroup_limit": quota}
    if jobs is not None and threads is not None:
        return Parallelism(jobs, threads, source=f"--jobs and {source_threads}", **meta)
    if jobs is not None:
        return Parallelism(jobs, max(1, n // jobs), source="--jobs", **meta)
    if threads is not None:
        return Parallelism(max(1, n // threads), threads, source=source_threads, **meta)
    if str(device).startswith("cuda"):  # one device: its jobs run one after another in one process with every core
        return Parallelism(1, n, source="default on CUDA: one worker", **meta)
    return Parallelism(n, 1, source="default", **meta)


def limit_threads(threads: int) -> Callable[[], None]:
    """Limit this process to ``threads`` threads: torch's intra-op pool and the BLAS/OpenMP pools NumPy and SciPy
    loaded (``threadpoolctl``). Returns a function that gives the BLAS/OpenMP pools their old sizes back (torch's
    count is the caller's to restore)."""
    import torch

    torch.set_num_threads(int(threads))
    try:
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn
    except ModuleNotFoundError:
        return lambda: None
    limiter = threadpool_limits(limits=int(threads))
    return limiter.restore_original_limits


@contextmanager
def thread_env(threads: int) -> Iterator[None]:
    """``*_NUM_THREADS = threads`` in this process's environment while worker processes are spawned (they inherit it,
    so their BLAS and OpenMP pools start at that size); the old values come back afterwards."""
    old = {k: os.environ.get(k) for k in THREAD_ENV_VARS}
    os.environ.update({k: str(int(threads)) for k in THREAD_ENV_VARS})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
