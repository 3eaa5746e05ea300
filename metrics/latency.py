"""Sampling latency: wall time per batch and per sample, median and IQR after warm-up.

Two ways to time:

* :func:`measure_latency` times one function ``repeats`` times (used by
  ``bench check`` and by the pytest-benchmark runs);
* :func:`measure_round_robin` times several functions interleaved
  (A B C A B C ...), each warmed up first, and keeps timing each one until
  its median is stable (or a cap is hit). Interleaving spreads any slow
  period of the machine over every row instead of penalising whichever row
  happened to run during it. This is what the harness's timing phase uses
  (``bench/timing.py``).

:class:`LoadMonitor` records what else the machine did meanwhile: the 1-min
load average before and after, and the CPU time used by *other* processes
(from ``/proc/stat`` minus this process's own ``/proc/self/stat``), in cores;
with ``track_children`` (``bench run``) the run's worker processes, its
descendants, count as its own.

On CUDA the clock is read after ``torch.cuda.synchronize`` so that queued
kernels are counted. All times in this module: seconds in raw fields
(``*_s``), milliseconds in per-sample fields (``*_ms``).
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

__all__ = ["Latency", "latency_stats", "measure_latency", "measure_round_robin", "LoadMonitor", "Load", "descendants"]


@dataclass
class Latency:
    """Timing of one function that samples ``batch_size`` examples per call.

    ``median_s``/``iqr_s``: per call (batch), seconds; ``per_sample_ms`` and
    ``per_sample_iqr_ms``: the same divided by ``batch_size``, milliseconds;
    ``q25_ms``/``q75_ms``: quartiles per sample, ms. ``stable``: whether the
    median had settled (relative change below the tolerance) when timing
    stopped; ``times_s``: every timed call.
    """

    batch_size: int
    repeats: int
    median_s: float
    iqr_s: float
    per_sample_ms: float
    per_sample_iqr_ms: float
    q25_ms: float = float("nan")
    q75_ms: float = float("nan")
    stable: bool = True
    times_s: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


def latency_stats(times_s: list[float], batch_size: int, stable: bool = True) -> Latency:
    """Median, quartiles and IQR of per-call times (s) -> :class:`Latency`."""
    if not times_s:
        raise ValueError("latency_stats needs at least one timed call")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    med = statistics.median(times_s)
    if len(times_s) >= 2:
        q = statistics.quantiles(times_s, n=4, method="inclusive")
        q25, q75 = q[0], q[2]
    else:
        q25 = q75 = med
    k = 1000.0 / batch_size
    return Latency(batch_size, len(times_s), med, q75 - q25, k * med, k * (q75 - q25), k * q25, k * q75, stable, tuple(times_s))


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure_latency(
    fn: Callable[[], object], *, batch_size: int, warmup: int = 1, repeats: int = 5, device: torch.device | str | None = None, max_seconds: float | None = None
) -> Latency:
    """Time ``fn`` (which samples one batch of ``batch_size``) ``repeats`` times.

    ``max_seconds`` caps the total timed wall time (at least 2 repeats are
    kept, so the IQR is defined), useful for slow sequential samplers.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        _sync(device)
        times: list[float] = []
        t_start = time.perf_counter()
        for i in range(repeats):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
            if max_seconds is not None and i >= 1 and time.perf_counter() - t_start > max_seconds:
                break
    return latency_stats(times, batch_size)


def _settled(times: list[float], rel_tol: float, window: int) -> bool:
    """The median moved by less than ``rel_tol`` (relative) over the last ``window`` calls."""
    if len(times) < window + 2:
        return False
    now, before = statistics.median(times), statistics.median(times[:-window])
    return now > 0 and abs(now - before) / now < rel_tol


def measure_round_robin(
    fns: dict[str, Callable[[], object]],
    *,
    batch_size: int,
    warmup: int = 1,
    min_repeats: int = 5,
    max_repeats: int = 50,
    rel_tol: float = 0.05,
    max_seconds: float | None = 10.0,
    device: torch.device | str | None = None,
    window: int = 3,
) -> dict[str, Latency]:
    """Time several sampling functions interleaved: A B C A B C ...

    Each function samples one batch of ``batch_size``. All are warmed up
    (``warmup`` calls each, round-robin), then timed in rounds; a function
    leaves the rotation when it has at least ``min_repeats`` timed calls and
    its median moved by less than ``rel_tol`` over the last ``window`` calls
    (``stable``), or at ``max_repeats`` calls, or when its timed calls exceed
    ``max_seconds`` in total (keeping at least 2, so the IQR is defined).
    Returns one :class:`Latency` per key.
    """
    if min_repeats < 1 or max_repeats < min_repeats:
        raise ValueError(f"need 1 <= min_repeats <= max_repeats, got {min_repeats}, {max_repeats}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    times: dict[str, list[float]] = {k: [] for k in fns}
    stable: dict[str, bool] = {k: False for k in fns}
    with torch.no_grad():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
                _sync(device)
        active = list(fns)
        while active:
            for k in list(active):
                t0 = time.perf_counter()
                fns[k]()
                _sync(device)
                times[k].append(time.perf_counter() - t0)
                n = len(times[k])
                if n >= min_repeats and _settled(times[k], rel_tol, window):
                    stable[k] = True
                    active.remove(k)
                elif n >= max_repeats or (max_seconds is not None and n >= 2 and sum(times[k]) > max_seconds):
                    active.remove(k)
    return {k: latency_stats(times[k], batch_size, stable[k]) for k in fns}


# ---------------------------------------------------------------- machine load
@dataclass
class Load:
    """What other processes did during a timed phase.

    ``other_cpu_cores``: CPU time used by all other processes divided by the
    wall time (cores; 0.5 = half a core busy on average), ``None`` when
    ``/proc`` is unavailable (then ``loaded`` comes from the load average:
    ``max(loadavg before, after) - own threads``). ``loaded``: other
    processes used more than the threshold.
    """

    wall_s: float
    loadavg_before: float | None
    loadavg_after: float | None
    other_cpu_cores: float | None
    own_cpu_s: float | None
    threshold_cores: float
    loaded: bool
    method: str

    def to_dict(self) -> dict:
        return asdict(self)


_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (guest time is already inside user)


def _proc_busy_s() -> float | None:
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()
        if parts[0] != "cpu":
            return None
        vals = [int(x) for x in parts[1:]]
        return sum(vals[i] for i in _BUSY_FIELDS if i < len(vals)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _self_cpu_s(children: bool = True) -> float | None:
    """CPU seconds of this process (user + system), with those of its reaped children (``children``)."""
    try:
        with open("/proc/self/stat") as f:
            data = f.read()
        fields = data[data.rindex(")") + 2 :].split()
        # after "pid (comm) ": state=0 ... utime=11 stime=12 cutime=13 cstime=14
        return sum(int(fields[i]) for i in ((11, 12, 13, 14) if children else (11, 12))) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _process_table() -> dict[int, tuple[int, int, float]] | None:
    """Every process of this machine: pid -> (parent pid, start time in ticks, CPU seconds of its own threads), from /proc."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except (OSError, ValueError, AttributeError):
        return None
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                data = f.read()
            fields = data[data.rindex(")") + 2 :].split()
            # state=0 ppid=1 ... utime=11 stime=12 ... starttime=19
            out[pid] = (int(fields[1]), int(fields[19]), (int(fields[11]) + int(fields[12])) / tick)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return out


def descendants(table: dict[int, tuple[int, int, float]], root: int) -> set[int]:
    """Pids of every descendant of ``root`` in a :func:`_process_table` (children, their children ...)."""
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        for c in kids.get(todo.pop(), ()):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _loadavg() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return None


class LoadMonitor:
    """Context manager: ``with LoadMonitor(0.25) as mon: ...``; then ``mon.result`` is a :class:`Load`.

    ``threshold_cores``: other processes using more CPU than this (in cores,
    averaged over the phase) mark the phase as loaded. ``own_threads``: the
    thread count of the timed work, subtracted from the load average in the
    fallback without ``/proc``.

    ``track_children``: count the CPU of this process's descendants as the
    monitored work's own (``bench run``: its process-pool workers, and a local
    Ray instance's raylet and workers, which are not reaped children). A thread
    samples ``/proc`` every ``poll_s`` seconds and keeps, per descendant
    process, the CPU time it used since the monitor started (a process that
    lives less than one poll is missed); own = this process's own threads plus
    its descendants'. CPU that workers elsewhere in the process tree report
    (:meth:`report_worker_cpu`: Ray workers of a cluster this run joined) is
    added when they ran on this machine and were not seen as descendants.
    Without it, own = this process and its reaped children, as the timing
    phase measures itself.
    """

    active: LoadMonitor | None = None  # the tracking monitor of this process, for report_worker_cpu

    def __init__(self, threshold_cores: float = 0.25, own_threads: int = 1, track_children: bool = False, poll_s: float = 0.5) -> None:
        self.threshold = float(threshold_cores)
        self.own_threads = int(own_threads)
        self.track_children = bool(track_children)
        self.poll_s = float(poll_s)
        self.result: Load | None = None
        self._seen: dict[tuple[int, int], tuple[float, float]] = {}  # (pid, start tick) -> (CPU s at first sight, last CPU s)
        self._reported: dict[int, float] = {}  # pid -> CPU s reported by workers on this machine
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self, first: bool = False) -> bool:
        table = _process_table()
        if table is None:
            return False
        with self._lock:
            for pid in descendants(table, os.getpid()):
                _, start, cpu = table[pid]
                key = (pid, start)
                base = self._seen.get(key, (cpu if first else 0.0, cpu))[0]
                self._seen[key] = (base, cpu)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            if not self._paused.is_set():
                self._poll()

    @classmethod
    @contextmanager
    def quiet(cls) -> Iterator[None]:
        """Pause the active tracking monitor's sampling thread (the timing phase: nothing else wakes up while it
        times); one poll afterwards catches up."""
        mon = cls.active
        if mon is None:
            yield
            return
        mon._poll()
        mon._paused.set()
        try:
            yield
        finally:
            mon._paused.clear()
            mon._poll()

    def report_worker_cpu(self, pid: int, host: str, cpu_s: float) -> None:
        """A worker process ``pid`` on ``host`` used ``cpu_s`` CPU seconds for this run (added to own when on this machine)."""
        if pid != os.getpid() and host == socket.gethostname() and isinstance(cpu_s, (int, float)) and cpu_s > 0:  # our own CPU is counted
            with self._lock:
                self._reported[pid] = self._reported.get(pid, 0.0) + float(cpu_s)

    def __enter__(self) -> LoadMonitor:
        self._la0 = _loadavg()
        self._busy0 = _proc_busy_s()
        self._self0 = _self_cpu_s(children=False) if self.track_children else _self_cpu_s()
        self._tracking = self.track_children and self._poll(first=True)
        if self._tracking:
            self._thread = threading.Thread(target=self._run, name="load-monitor", daemon=True)
            self._thread.start()
            LoadMonitor.active = self
        self._t0 = time.perf_counter()
        return self

    def descendant_cpu_s(self) -> float:
        """CPU seconds the descendants used since the monitor started (what the last poll saw), plus reported worker CPU."""
        with self._lock:
            seen = sum(last - base for base, last in self._seen.values())
            pids = {pid for pid, _ in self._seen}
            reported = sum(v for pid, v in self._reported.items() if pid not in pids)
        return max(0.0, seen) + reported

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        if self._tracking:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self._poll()
            if LoadMonitor.active is self:
                LoadMonitor.active = None
        busy1, self1, la1 = _proc_busy_s(), (_self_cpu_s(children=False) if self.track_children else _self_cpu_s()), _loadavg()
        other = own = None
        if None not in (self._busy0, busy1, self._self0, self1) and wall > 0:
            own = self1 - self._self0
            method = "/proc/stat busy time minus /proc/self/stat"
            if self._tracking:
                own += self.descendant_cpu_s()
                method = "/proc/stat busy time minus this process and its descendants (/proc/<pid>/stat, sampled)"
            other = max(0.0, (busy1 - self._busy0) - own) / wall
            loaded = other > self.threshold
        else:
            las = [x for x in (self._la0, la1) if x is not None]
            loaded = bool(las) and max(las) - self.own_threads > self.threshold
            method = "1-min load average minus own threads (no /proc)"
        self.result = Load(wall, self._la0, la1, other, own, self.threshold, bool(loaded), method)
