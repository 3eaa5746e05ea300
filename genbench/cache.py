"""The project's one artifact cache, atomic-write helper and file-hash helper.

Everything genbench keeps between runs goes through here: trained models and
their training reports, samples, feature sets, extractor weights, CLIP
weights, personalization checkpoints.

- :func:`atomic_write` writes a file through a temporary sibling and
  ``os.replace``: a crash leaves either the old file or the new one, never a
  half-written one.
- :func:`file_hash` is the sha256 of a file's bytes (memoised per path, size
  and mtime); :func:`content_hash` the sha256 of a JSON-able key.
- :class:`Cache` stores content-addressed *artifacts*: a key (any JSON-able
  dict) names the file ``root/<kind>/<sha256(key)[:20]><suffix>``. Each
  artifact file carries the sha256 of its payload in a short header
  (``GENBENCH-ARTIFACT 1 <sha256> <torch|json> [<sha256 of the key>]``) that is verified on every
  read. A checksum mismatch, a truncated file or a payload that torch / JSON
  cannot parse is reported once (a warning naming the file on the
  ``genbench.cache`` logger: metric code that silences ``warnings`` cannot
  hide it), the file is removed and the caller recomputes it. Tensors load with
  ``torch.load(weights_only=True)``: no cached file can run code.
  :meth:`Cache.lock` serialises the making of one artifact across processes
  (jobs that share a trained network train it once: the second waits, then
  loads it).

Trust: cached files are data, never code; a damaged or tampered cache costs a
recomputation, never a wrong number.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from . import filelock, safeio
from .registry import check_name

__all__ = [
    "ArtifactError",
    "Cache",
    "atomic_write",
    "content_hash",
    "default_cache_dir",
    "file_hash",
    "key_hash",
    "read_artifact",
    "write_artifact",
]

MAGIC = b"GENBENCH-ARTIFACT"
VERSION = b"1"
FORMATS = ("torch", "json")


class ArtifactError(ValueError):
    """An artifact file that cannot be trusted: bad header, checksum mismatch, truncated, unparsable."""


log = logging.getLogger("genbench.cache")


def default_cache_dir() -> Path:
    """Root of genbench's caches: ``$GENBENCH_CACHE`` or ``~/.cache/genbench``."""
    return Path(os.environ.get("GENBENCH_CACHE", Path.home() / ".cache" / "genbench"))


def content_hash(key: Any, n: int = 20) -> str:
    """First ``n`` hex digits of the sha256 of ``key`` as canonical JSON (sorted keys; non-JSON values via ``str``)."""
    blob = json.dumps(key, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_hash(path: str | Path, n: int = 16) -> str:
    """First ``n`` hex digits of the sha256 of a file's bytes, memoised per (resolved path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key][:n]


def atomic_write(path: str | Path, data: bytes | str, root: str | Path | None = None) -> Path:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically; creates parent folders; returns the path.

    The data goes to a temporary file in the same folder, is fsync-ed and then
    renamed over ``path``, so readers see the old file or the complete new one.
    No link is followed below ``root`` (default: ``path``'s folder); see
    :func:`genbench.safeio.atomic_write`.
    """
    return safeio.atomic_write(path, data, root)


def _encode(obj: Any, fmt: str) -> bytes:
    if fmt == "torch":
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()
    if fmt == "json":
        return json.dumps(obj, default=str, sort_keys=True).encode()
    raise ValueError(f"unknown artifact format {fmt!r}; valid: {', '.join(FORMATS)}")


def key_hash(key: Any) -> str:
    """The full sha256 (64 hex digits) of a cache key; the first 20 digits name its file."""
    return content_hash(key, 64)


def write_artifact(path: str | Path, obj: Any, fmt: str = "torch", key: Any = None, root: str | Path | None = None) -> Path:
    """Atomically write ``obj`` as a checksummed artifact (``fmt``: ``torch`` for tensors/state dicts, ``json``).

    With ``key``, the header also records :func:`key_hash` of the key the
    artifact is written under, so a copy of it under another key's name is
    detected on read. ``root``: no link is followed below it (see :func:`atomic_write`).
    """
    payload = _encode(obj, fmt)
    fields = [MAGIC, VERSION, hashlib.sha256(payload).hexdigest().encode(), fmt.encode()]
    if key is not None:
        fields.append(key_hash(key).encode())
    return atomic_write(path, b" ".join(fields) + b"\n" + payload, root)


def read_artifact(path: str | Path, key: Any = None) -> Any:
    """The object in a checksummed artifact; :class:`ArtifactError` naming the file when it cannot be trusted.

    With ``key``, the artifact must have been written under that same key
    (see :func:`write_artifact`): one written under another key, or with no
    key recorded, is an ``ArtifactError``. Raises ``FileNotFoundError`` when
    the file does not exist.
    """
    p = Path(path)
    blob = p.read_bytes()
    head, sep, payload = blob.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) not in (4, 5) or parts[0] != MAGIC or parts[1] != VERSION or parts[3].decode(errors="replace") not in FORMATS:
        raise ArtifactError(f"{p}: not a genbench artifact (bad or missing header)")
    if hashlib.sha256(payload).hexdigest().encode() != parts[2]:
        raise ArtifactError(f"{p}: checksum mismatch ({len(payload)} payload bytes): the file was damaged or modified")
    if key is not None and (len(parts) != 5 or parts[4] != key_hash(key).encode()):
        raise ArtifactError(f"{p}: written under another cache key (copied or renamed from another artifact), not the one it is read under")
    fmt = parts[3].decode()
    try:
        if fmt == "torch":
            return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        return json.loads(payload)
    except Exception as e:  # noqa: BLE001 - any parse failure means the artifact is unusable
        raise ArtifactError(f"{p}: {fmt} payload cannot be parsed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from e


_WARNED: set[str] = set()


def _report_corrupt(path: Path, err: Exception) -> None:
    """Warn once per file (logger ``genbench.cache``) that it is damaged and will be recomputed."""
    key = f"{path}:{err}"
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning("%s; recomputing it", err)


class Cache:
    """Content-addressed, checksummed artifacts under ``root/<kind>/``.

    ``kind`` is a folder name (``models``, ``samples``, ``features`` ...),
    validated with :func:`genbench.registry.check_name`; the file name is the
    sha256 of the key, so no key can name a path outside ``root``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: Any, suffix: str = ".pt") -> Path:
        """Where the artifact ``(kind, key)`` lives (whether or not it exists)."""
        check_name(kind, "cache kind")
        if suffix not in (".pt", ".json"):
            raise ValueError(f"cache suffix must be .pt or .json, got {suffix!r}")
        return self.root / kind / f"{content_hash(key)}{suffix}"

    def _get(self, p: Path, key: Any) -> Any | None:
        if not p.exists():
            return None
        try:
            return read_artifact(p, key)
        except (ArtifactError, OSError) as e:
            _report_corrupt(p, e)
            p.unlink(missing_ok=True)
            return None

    def get(self, kind: str, key: Any) -> Any | None:
        """The cached object, or None when absent or damaged (damage is warned about once and the file removed)."""
        return self._get(self.path(kind, key), key)

    def put(self, kind: str, key: Any, obj: Any) -> Path:
        """Store tensors / state dicts / plain containers (``torch.save`` format, checksummed)."""
        return write_artifact(self.path(kind, key), obj, "torch", key=key, root=self.root)

    def get_json(self, kind: str, key: Any) -> Any | None:
        """Like :meth:`get` for a JSON artifact."""
        return self._get(self.path(kind, key, ".json"), key)

    def put_json(self, kind: str, key: Any, obj: Any) -> Path:
        """Store a JSON-able object (checksummed)."""
        return write_artifact(self.path(kind, key, ".json"), obj, "json", key=key, root=self.root)

    @contextmanager
    def lock(self, kind: str, key: Any) -> Iterator[None]:
        """Hold the exclusive lock of artifact ``(kind, key)`` (``fcntl.flock`` on
        ``root/.locks/<kind>-<hash>.lock``, beside the artifact folders, which hold
        artifacts only), waiting while another process or thread holds it. Check
        the cache inside the lock: whoever waited finds the artifact made. The
        lock vanishes with its process, so a killed run blocks nobody."""
        art = self.path(kind, key)
        with filelock.held(self.root / ".locks" / f"{kind}-{art.stem}.lock", root=self.root):
            yield

    def discard(self, kind: str, key: Any) -> None:
        """Remove both the tensor and the JSON artifact of ``(kind, key)`` (e.g. a cache hit that failed validation)."""
        for suffix in (".pt", ".json"):
            self.path(kind, key, suffix).unlink(missing_ok=True)

    def cached(self, kind: str, key: Any, compute: Callable[[], Any], validate: Callable[[Any], Any] | None = None) -> Any:
        """``get`` or ``compute`` then ``put``.

        ``validate(obj)`` (optional) runs on a cache hit and must raise on a bad
        object; the artifact is then reported once and recomputed.
        """
        obj = self.get(kind, key)
        if obj is not None and validate is not None:
            try:
                validate(obj)
            except Exception as e:  # noqa: BLE001 - any failure means "recompute"
                p = self.path(kind, key)
                _report_corrupt(p, ArtifactError(f"{p}: cached {kind} failed validation ({e})"))
                p.unlink(missing_ok=True)
                obj = None
        if obj is None:
            obj = compute()
            self.put(kind, key, obj)
        return obj
