"""Append-only JSONL result store, safe against crashes.

One record per (job, row, metric). Each record is written as a single line
with ``O_APPEND`` under an exclusive ``flock`` and ``fsync``-ed before the
lock is released, so a kill leaves at most one partial trailing line; that
line is ignored when reading and cut off before the next append. Duplicate
keys (e.g. two processes racing) are dropped on read: the first one wins.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

JOB_DONE = "_job_done"
ERROR = "_error"


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
    """Records of one suite under ``root/records.jsonl``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.path = self.root / "records.jsonl"

    def append(self, record: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(_clean(record), sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._repair_tail(fd)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

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

    def records(self, include_internal: bool = False) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out, seen = [], set()
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # partial line from a crash
                try:
                    r = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                k = record_key(r)
                if k in seen:
                    continue
                seen.add(k)
                if include_internal or not str(r.get("metric", "")).startswith("_"):
                    out.append(r)
        return out

    def keys(self) -> set[tuple]:
        return {record_key(r) for r in self.records(include_internal=True) if r.get("metric") != ERROR}

    def done_jobs(self) -> set[str]:
        return {r["job"] for r in self.records(include_internal=True) if r.get("metric") == JOB_DONE}
