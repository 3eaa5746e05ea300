"""The one rule for every file genbench writes or appends: no links, stay inside the root, atomic, complete.

- :func:`ensure_dir` creates a folder below a *root* one component at a time
  and refuses any component that is a symbolic link or not a folder, so no
  write can be steered outside the root by a link planted inside it (the root
  itself may be a link: that is the user's choice of where results go).
- :func:`atomic_write` writes a whole file through a temporary sibling
  (``O_EXCL``, never a link), ``fsync`` and ``os.replace``: readers see the old
  file or the complete new one; a link at the destination is replaced by the
  file, never written through.
- :func:`open_append` opens a file for appending with ``O_NOFOLLOW`` and
  refuses anything that is not a regular file.
- :func:`write_all` writes every byte or raises: a short ``os.write`` (a full
  disk) is an ``OSError``, never a silently cut record.

Refusals are :class:`UnsafePathError` (an ``OSError`` whose ``filename`` is the
offending path), so a command line can report them in one line.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["UnsafePathError", "atomic_write", "ensure_dir", "open_append", "with_path", "write_all"]


class UnsafePathError(OSError):
    """A write refused because its path passes through a link or leads outside its root."""

    def __init__(self, path: str | Path, why: str) -> None:
        super().__init__(errno.ELOOP, f"refusing to write: {why}", str(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def _below(root: Path, path: Path) -> list[str]:
    """The components of ``path`` below ``root`` (``UnsafePathError`` when ``path`` is not below it)."""
    root_abs, path_abs = Path(os.path.abspath(root)), Path(os.path.abspath(path))
    try:
        rel = path_abs.relative_to(root_abs)
    except ValueError:
        raise UnsafePathError(path, f"it is outside its root folder {root}") from None
    if any(part == ".." for part in rel.parts):
        raise UnsafePathError(path, f"it leaves its root folder {root}")
    return list(rel.parts)


def ensure_dir(path: str | Path, root: str | Path | None = None) -> Path:
    """Create folder ``path`` (and missing parents below ``root``); returns it.

    Every component from ``root`` (exclusive) down to ``path`` must be a real
    folder, not a symbolic link; ``root`` defaults to ``path``'s parent (only
    ``path`` itself is checked) and is created when missing.
    """
    p = Path(path)
    r = Path(root) if root is not None else p.parent
    r.mkdir(parents=True, exist_ok=True)
    cur = r
    for part in _below(r, p):
        cur = cur / part
        try:
            os.mkdir(cur, 0o755)
        except FileExistsError:
            pass
        st = os.lstat(cur)
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(cur, "it is a symbolic link")
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(cur))
    return p


_UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it), then put back
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() would give a new file: mkstemp's 0600 is for the temporary name only

_write_fd = os.write  # the one call that writes bytes (a seam for tests that simulate a full disk)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``; ``OSError`` (ENOSPC) when the file system takes none of a remainder."""
    view = memoryview(data)
    while view:
        n = _write_fd(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, "short write: no space left on device")
        view = view[n:]


def atomic_write(path: str | Path, data: bytes | str, root: str | Path | None = None) -> Path:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically, inside ``root``; returns the path.

    The folder is made with :func:`ensure_dir` (no links below ``root``); the
    bytes go to a fresh temporary file in the same folder, are fsync-ed and
    renamed over ``path``. On any failure (a full disk included) the temporary
    file is removed and the previous ``path`` is left as it was.
    """
    p = Path(path)
    ensure_dir(p.parent, root if root is not None else p.parent)
    if os.path.isdir(p) and not os.path.islink(p):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(p))
    blob = data.encode() if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name[:100]}.", suffix=".tmp", dir=p.parent)
    try:
        try:
            os.fchmod(fd, FILE_MODE)
            write_all(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise with_path(e, p) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def with_path(e: OSError, path: str | Path) -> OSError:
    """``e`` itself when it names a file, else the same error (errno, message) naming ``path``."""
    if e.filename is not None:
        return e
    return type(e)(e.errno, e.strerror or str(e), str(path)) if e.errno is not None else OSError(errno.EIO, str(e), str(path))


def open_append(path: str | Path, root: str | Path | None = None, mode: int = 0o644) -> int:
    """Open ``path`` for reading and appending (created when missing) without following links; returns the descriptor.

    Its folder is checked and made with :func:`ensure_dir` below ``root``; a
    link, folder, FIFO or device at ``path`` is refused.
    """
    p = Path(path)
    ensure_dir(p.parent, root if root is not None else p.parent)
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(p, flags, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafePathError(p, "it is a symbolic link") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafePathError(p, "it is not a regular file")
    os.set_blocking(fd, True)
    return fd
