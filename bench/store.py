"""Append-only JSONL result store, safe against crashes.

One record per (job, row, metric). Each record is written as a single line
with ``O_APPEND`` under an exclusive ``flock`` and ``fsync``-ed before the
lock is released, so a kill leaves at most one partial trailing line; that
line is ignored when reading and cut off before the next append. Duplicate
keys (e.g. two processes racing) are dropped on read: the first one wins.
Damaged lines (garbled, invalid UTF-8, not a JSON object) are skipped and
reported once with file and line number; the job they belong to is no longer
counted as done, so it is recomputed: damage costs time, never records. Two
runs on one results directory claim jobs with a per-job lock (:meth:`ResultStore.claim`).

A store may be given ``keep``, a predicate on records: only records it keeps
are read back (by ``records``, ``keys`` and ``done_jobs``), before duplicates
are dropped. A runner and a leaderboard pass the suite's current-configuration
test (:class:`CurrentConfig`, below), so after the suite is edited the
records of its earlier configuration stay in the file but are neither shown
nor counted as done.

Each process parses a records file once: the lines read so far are kept in an
index shared by every store on that path (:class:`_Index`), and a later read
parses only the lines appended since (by this process or another one). A file
that was replaced or shrank is read again from the start.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genbench import filelock, safeio
from genbench.cache import content_hash
from genbench.precision import settings_for

from .record_schema import check_record
from .suite import DatasetSpec, GeneratorSpec, Suite, metric_names, split_metric
from .timing import TIMING_SETTING_KEYS, timing_hash

JOB_DONE = "_job_done"  # carries n_records: the job counts as done only when that many of its records are readable
ERROR = "_error"


_REPORTED: set[tuple[str, int]] = set()


class DamagedRecordWarning(UserWarning):
    """A line of records.jsonl that cannot be read (the message gives file and line number)."""


def _parse_line(raw: bytes) -> dict[str, Any]:
    """One line of records.jsonl as a checked record; ``ValueError`` / ``UnicodeDecodeError`` when it is damaged."""
    try:
        r = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None
    check_record(r)  # every field the readers use, with types and ranges
    return r


class _Index:
    """The readable records of one file, in file order, and how far the file has been read.

    ``refresh`` parses only the complete lines appended since the last call. The file is read again from the
    beginning when it was replaced (another inode), is shorter than what was read, or no longer starts with the
    bytes read before (its first ``HEAD`` bytes and the last line read are compared): an edited file is never
    served from a stale index."""

    HEAD = 1 << 16

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._reset(None)

    def _reset(self, ident: tuple[int, int] | None) -> None:
        self.ident = ident
        self.offset = 0
        self.lineno = 0
        self.head = b""
        self.last = b""
        self.records: list[dict[str, Any]] = []

    def _unchanged(self, path: Path) -> bool:
        """Do the bytes read before still sit where they were?"""
        with open(path, "rb") as f:
            if f.read(len(self.head)) != self.head:
                return False
            f.seek(self.offset - len(self.last))
            return f.read(len(self.last)) == self.last

    def refresh(self, path: Path) -> list[dict[str, Any]]:
        with self.lock:
            try:
                st = os.stat(path)
                ident = (st.st_dev, st.st_ino)
                if ident != self.ident or st.st_size < self.offset or not self._unchanged(path):
                    self._reset(ident)
                if st.st_size > self.offset:
                    self._read_new(path)
            except FileNotFoundError:
                self._reset(None)
            return self.records

    def _read_new(self, path: Path) -> None:
        with open(path, "rb") as f:
            f.seek(self.offset)
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # partial line from a crash (or being written): read again next time
                if len(self.head) < self.HEAD:
                    self.head += raw[: self.HEAD - len(self.head)]
                self.offset += len(raw)
                self.lineno += 1
                self.last = raw
                if not raw.strip():
                    continue
                try:
                    self.records.append(_parse_line(raw))
                except (UnicodeDecodeError, ValueError) as e:
                    key = (str(path), self.lineno)
                    if key not in _REPORTED:
                        _REPORTED.add(key)
                        why = str(e).splitlines()[0][:120]
                        warnings.warn(f"{path}:{self.lineno}: unreadable record skipped ({why}); its job will be recomputed", DamagedRecordWarning, stacklevel=5)


_INDEXES: dict[str, _Index] = {}
_INDEXES_LOCK = threading.Lock()


def _index(path: Path) -> _Index:
    """The process-wide index of ``path`` (one per resolved path, shared by every :class:`ResultStore`)."""
    key = os.path.realpath(path)
    with _INDEXES_LOCK:
        return _INDEXES.setdefault(key, _Index())


def record_key(r: dict[str, Any]) -> tuple:
    return (r.get("job"), r.get("generator"), r.get("metric"))


def _clean(v: Any) -> Any:
    """JSON-safe values: NaN/inf become None, tuples lists, tensors floats."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return _clean(v.item())
    return v


class ResultStore:
    """Records of one suite under ``root/records.jsonl``; one line per ``bench run`` invocation in ``root/runs.jsonl``.

    ``keep``: read back only the records it returns True for (None: all).
    """

    def __init__(self, root: str | Path, keep: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.root = Path(root)
        self.keep = keep
        self.path = self.root / "records.jsonl"
        self.runs_path = self.root / "runs.jsonl"

    def append(self, record: dict[str, Any]) -> None:
        self._append_line(self.path, record)

    def log_run(self, entry: dict[str, Any]) -> None:
        """Append one run's conditions (wall time, jobs, machine load; see ``bench.runner.run_suite``) to ``runs.jsonl``.

        The log is informative, not a result: when it cannot be written (a full disk) a warning names the file and
        the run's records, already written, still count."""
        try:
            self._append_line(self.runs_path, entry)
        except OSError as e:
            warnings.warn(f"{self.runs_path}: run log not written ({e.strerror or e})", RuntimeWarning, stacklevel=2)

    def runs(self) -> list[dict[str, Any]]:
        """Every readable line of ``runs.jsonl`` (damaged lines are skipped: the run log is informative, not a result)."""
        if not self.runs_path.exists():
            return []
        out = []
        for raw in self.runs_path.read_bytes().splitlines():
            try:
                r = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                continue
            if isinstance(r, dict):
                out.append(r)
        return out

    def _append_line(self, path: Path, record: dict[str, Any]) -> None:
        line = (json.dumps(_clean(record), sort_keys=True) + "\n").encode()
        fd = filelock.acquire(path, append=True, root=self.root.parent)  # no link at the suite folder or the file
        assert fd is not None  # a waiting acquire returns a descriptor or raises
        try:
            self._repair_tail(fd)
            size = os.lseek(fd, 0, os.SEEK_END)
            try:
                safeio.write_all(fd, line)
                os.fsync(fd)
            except OSError as e:
                os.ftruncate(fd, size)  # a short write (full disk) leaves no cut record behind
                raise safeio.with_path(e, path) from None
        finally:
            filelock.release(fd)

    @staticmethod
    def _repair_tail(fd: int) -> None:
        """Cut a partial last line left by a crash (file not ending in newline)."""
        size = os.lseek(fd, 0, os.SEEK_END)
        if size == 0:
            return
        os.lseek(fd, size - 1, os.SEEK_SET)
        if os.read(fd, 1) == b"\n":
            return
        pos = size
        chunk = 4096
        while pos > 0:
            start = max(0, pos - chunk)
            os.lseek(fd, start, os.SEEK_SET)
            buf = os.read(fd, pos - start)
            i = buf.rfind(b"\n")
            if i >= 0:
                os.ftruncate(fd, start + i + 1)
                return
            pos = start
        os.ftruncate(fd, 0)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records())

    def _read(self) -> list[dict[str, Any]]:
        """Every readable record in file order (a copy of the process's index, see :class:`_Index`). Bad lines
        (garbled JSON, invalid UTF-8, JSON that is not an object) are skipped and reported once per (file, line)
        as a :class:`DamagedRecordWarning`; a partial last line from a crash is ignored silently (the next append
        cuts it)."""
        return list(_index(self.path).refresh(self.path))

    def records(self, include_internal: bool = False) -> list[dict[str, Any]]:
        """Readable records, first of each key; internal markers (``_job_done``, ``_error``) only with ``include_internal``.

        One exception: a timing record flagged ``loaded`` (measured while other processes used the CPU) is
        replaced by a later record of its key that is not (``bench run --retime`` appends those)."""
        first: dict[tuple, dict[str, Any]] = {}  # a replacement keeps the key's place
        for r in self._read():
            if self.keep is not None and not self.keep(r):
                continue
            k = record_key(r)
            old = first.get(k)
            if old is None or (old.get("loaded") is True and r.get("loaded") is False):
                first[k] = r
        return [r for r in first.values() if include_internal or not str(r.get("metric", "")).startswith("_")]

    def loaded_keys(self) -> set[tuple]:
        """Keys whose current record is a timing flagged ``loaded``: what ``bench run --retime`` measures again."""
        return {record_key(r) for r in self.records() if r.get("loaded") is True}

    def left_out(self) -> int:
        """Readable records (internal markers not counted) that ``keep`` rejects: e.g. records of an earlier
        configuration of the suite."""
        if self.keep is None:
            return 0
        return sum(1 for r in self._read() if not str(r.get("metric", "")).startswith("_") and not self.keep(r))

    def keys(self) -> set[tuple]:
        return {record_key(r) for r in self.records(include_internal=True) if r.get("metric") != ERROR}

    def done_jobs(self) -> set[str]:
        """Jobs whose done marker *and* all their records are readable (a damaged line means the job is recomputed)."""
        recs = self.records(include_internal=True)
        counts: dict[Any, int] = {}
        for r in recs:
            if not str(r.get("metric", "")).startswith("_"):
                counts[r.get("job")] = counts.get(r.get("job"), 0) + 1
        done = set()
        for r in recs:
            if r.get("metric") == JOB_DONE:
                need = r.get("n_records")
                if not isinstance(need, int) or counts.get(r.get("job"), 0) >= need:
                    done.add(r["job"])
        return done

    # ---------------------------------------------------------------- job claims
    def try_claim(self, job_id: str, wait: bool = False) -> int | None:
        """Take the per-job lock of ``job_id`` (``fcntl.flock`` on ``locks/<sha256>.lock``); returns its handle for
        :meth:`release`, or None when another process holds it (``wait=False``). Locks vanish with their process,
        so a killed run leaves no stale claim."""
        name = hashlib.sha256(job_id.encode()).hexdigest()[:24] + ".lock"
        return filelock.acquire(self.root / "locks" / name, wait, root=self.root.parent)

    @staticmethod
    def release(handle: int) -> None:
        """Give back a claim taken with :meth:`try_claim`."""
        filelock.release(handle)

    @contextmanager
    def claim(self, job_id: str, wait: bool = False) -> Iterator[bool]:
        """``with store.claim(job_id) as mine:`` -- ``mine`` is True while this process holds the job's lock."""
        fd = self.try_claim(job_id, wait)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                self.release(fd)

# ----------------------------------------------------------------------------- the suite's current configuration
@dataclass(frozen=True)
class _Pair:
    """A (dataset, generator) pair of a suite: what the configuration hashes read of a job."""

    dataset: DatasetSpec
    gen: GeneratorSpec


_HASH_DEVICES = ("cpu", "cuda", "mps")  # the device types a record may come from (CurrentConfig checks each against its own)


def _device_dataset(job: Any, device: str | None) -> dict[str, Any]:
    """The data set's configuration as a job run on ``device`` reads it: settings resolved for the device's type
    (:func:`genbench.precision.settings_for`), so a ``[settings.cuda]`` table is not part of a CPU job's
    configuration and adding or editing the GPU budgets keeps the CPU records current. ``device=None``: the
    settings as written, every device table included (how records were hashed before; still accepted)."""
    return {**job.dataset.__dict__, "settings": dict(job.dataset.settings) if device is None else settings_for(job.dataset.settings, device)}


def _gen_fields(job: Any, drop: tuple[str, ...]) -> dict[str, Any]:
    """The row's fields that its hashes cover: all but ``drop``, and ``teacher`` only where the row has one (rows
    without a teacher hash as they did before students existed)."""
    return {k: v for k, v in job.gen.__dict__.items() if k not in drop and not (k == "teacher" and v is None)}


def _config_hash(job: Any, device: str | None = "cpu") -> str:
    """Hash of the row's and data set's configuration as it applies on ``device`` (:func:`_device_dataset`);
    the row's list of seeds is not part of a job (it has one seed)."""
    gen = _gen_fields(job, drop=("seeds",))
    return content_hash({"gen": gen, "dataset": _device_dataset(job, device)})


def _own_metrics(entries: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Metric entries without the ``METRIC@EXTRACTOR`` ones (None stays None)."""
    return None if entries is None else tuple(m for m in entries if split_metric(m)[1] is None)


def _row_hash(job: Any, device: str | None = "cpu") -> str:
    """What one row (one step count) of the job depends on: the configuration without the step list, without
    the settings only the timing phase reads (its records carry those settings themselves) and without the
    ``METRIC@EXTRACTOR`` entries (adding a second extractor keeps the first one's records current;
    :class:`CurrentConfig` checks the second extractor's records against the entries listed now); settings
    resolved for ``device`` as in :func:`_config_hash`."""
    gen = _gen_fields(job, drop=("seeds", "steps"))
    gen["metrics"] = _own_metrics(job.gen.metrics)
    ds = _device_dataset(job, device)
    ds.update(metrics=_own_metrics(job.dataset.metrics), settings={k: v for k, v in ds["settings"].items() if k not in TIMING_SETTING_KEYS})
    return content_hash({"gen": gen, "dataset": ds})


class CurrentConfig:
    """Which records of a results directory belong to the suite as it is configured now.

    Every record of a job carries ``config_hash`` (the generator row's and data
    set's configuration, step list and settings included) and ``row_hash``
    (the same without the step list and the timing-phase settings). A record
    is *current* when its (dataset, generator) pair is still in the suite, its
    row label is one of the pair's rows now and its ``row_hash`` matches. A
    job's done marker is current only when its ``config_hash`` matches, so
    adding a step count re-opens the job, which then computes only the new
    row. Timing-phase records also carry ``timing_hash`` (the timing
    settings, defaults filled in) and are current only while it matches, so a
    changed ``latency_repeats`` re-times the rows and recomputes nothing else.
    A record of a second extractor (metric ``"fid@effnet-lite0"``) is current
    only while the pair's metrics still name that extractor.
    The hashes resolve the settings for the record's own device (a CPU record
    ignores ``[settings.cuda]``); a record hashed the earlier way, with every
    device table in its settings, stays current while those settings are unchanged.
    Records written before ``row_hash`` existed are kept when their pair
    and row are current (their hash cannot be split); records with neither
    hash are always kept. Records of an experiment suite (personalization)
    carry ``experiment_hash`` (:func:`experiment_hash`) and are current while
    it matches.
    Use it as a :class:`bench.store.ResultStore` ``keep`` predicate.
    """

    def __init__(self, jobs: Iterable[Any], experiment: str | None = None) -> None:
        self._experiment = experiment
        self._spec: dict[tuple[str, str], tuple[dict[str, str], dict[str, str], str, frozenset[str]]] = {}
        self._extra: dict[tuple[str, str], frozenset[str]] = {}  # the second extractors each pair's metrics name
        self._legacy: dict[tuple[str, str], tuple[str, str]] = {}  # hashes of the settings as written (records made before)
        for job in jobs:
            labels = frozenset({job.gen.name, *(job.gen.row_label(s) for s in job.gen.steps)})
            full = {d: _config_hash(job, d) for d in _HASH_DEVICES}  # a record is checked against its own device's settings
            row = {d: _row_hash(job, d) for d in _HASH_DEVICES}
            self._legacy[(job.dataset.name, job.gen.name)] = (_config_hash(job, None), _row_hash(job, None))
            self._spec[(job.dataset.name, job.gen.name)] = (full, row, timing_hash(job.dataset.settings), labels)
            self._extra[(job.dataset.name, job.gen.name)] = frozenset(e for e in job.dataset.metric_groups(metric_names(job)) if e is not None)

    def __call__(self, r: dict[str, Any]) -> bool:
        if "experiment_hash" in r:
            return r["experiment_hash"] == self._experiment
        if "config_hash" not in r and "row_hash" not in r:
            return True
        spec = self._spec.get((r.get("dataset"), r.get("base")))
        if spec is None:
            return False
        full, row, timing, labels = spec
        dev = str(r.get("device", "")).split(":")[0]  # "cpu:<processor> xN threads", "cuda:<name>"
        legacy_full, legacy_row = self._legacy[(r.get("dataset"), r.get("base"))]
        full_ok = ({full[dev]} if dev in full else set(full.values())) | {legacy_full}
        row_ok = ({row[dev]} if dev in row else set(row.values())) | {legacy_row}
        if r.get("metric") == JOB_DONE:
            return r.get("config_hash") in full_ok
        extractor = split_metric(str(r.get("metric")))[1]
        if extractor is not None and extractor not in self._extra[(r.get("dataset"), r.get("base"))]:
            return False
        return r.get("generator") in labels and ("row_hash" not in r or r["row_hash"] in row_ok) and r.get("timing_hash", timing) == timing


def experiment_hash(suite: Suite) -> str | None:
    """Hash of an experiment suite's configuration: everything in its file but its name, prose, seeds and the
    leaderboard's rendering (``sections``, ``quoted``). None for a grid suite."""
    if not suite.experiment:
        return None
    return content_hash({k: v for k, v in suite.raw.items() if k not in ("name", "description", "seeds", "sections", "quoted")})


def current_config(suite: Suite) -> CurrentConfig:
    """The test of which records belong to ``suite`` as configured now (:class:`CurrentConfig`):
    one (dataset, generator) pair per row; no data is loaded."""
    return CurrentConfig((_Pair(d, g) for d in suite.datasets for g in suite.generators_for(d.name)), experiment_hash(suite))


def suite_store(results_dir: str | Path, suite: str | Suite) -> ResultStore:
    """The store of ``suite`` under ``results_dir``: for a :class:`Suite`, reading back only the records of its
    current configuration (:class:`CurrentConfig`); for a suite name, every record in its file."""
    if isinstance(suite, Suite):
        return ResultStore(Path(results_dir) / suite.name, keep=current_config(suite))
    return ResultStore(Path(results_dir) / suite)
