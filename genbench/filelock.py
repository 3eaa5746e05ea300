"""Exclusive advisory file locks between processes and threads (``fcntl.flock``).

A lock lives as long as its file descriptor: closing the descriptor, or the
death of its process, releases it, so a killed run leaves no stale lock. Two
``acquire`` calls open two descriptors, so they exclude each other even in
threads of one process. The lock file itself stays empty and is never removed
(removing it would let a waiter lock a file that a newcomer no longer sees).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .safeio import open_append


def acquire(path: Path, wait: bool = True, append: bool = False, root: Path | None = None) -> int | None:
    """Open (creating it and its folder) ``path`` and take its exclusive lock.

    Returns the descriptor that holds the lock, for :func:`release`; with
    ``wait=False`` returns None at once when another holder has it. With
    ``append=True`` the descriptor writes at the end of the file (``O_APPEND``),
    for a file that is both the lock and the data it guards (lock files are
    opened the same way: they stay empty). No link is followed: the file and
    every folder below ``root`` (default: the file's folder) must be real
    (:func:`genbench.safeio.open_append`), else ``UnsafePathError``.
    """
    fd = open_append(path, root if root is not None else path.parent)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def release(fd: int) -> None:
    """Give back a lock taken with :func:`acquire` and close its descriptor."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def held(path: Path, root: Path | None = None) -> Iterator[None]:
    """``with held(path):`` -- hold the exclusive lock of ``path``, waiting for it (``root``: see :func:`acquire`)."""
    fd = acquire(path, wait=True, root=root)
    assert fd is not None  # a waiting acquire returns a descriptor or raises
    try:
        yield
    finally:
        release(fd)
