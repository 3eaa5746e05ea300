"""Content-addressed cache of trained models, samples and features.

A key is any JSON-able dict; its SHA-256 names the file. Writes go to a
temporary file and are renamed into place, so a crash never leaves a
half-written entry. Tensors load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch


def content_hash(key: Any, n: int = 20) -> str:
    blob = json.dumps(key, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def file_hash(path: str | Path, n: int = 12) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:n]


class Cache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: Any, suffix: str = ".pt") -> Path:
        return self.root / kind / f"{content_hash(key)}{suffix}"

    def get(self, kind: str, key: Any) -> Any | None:
        p = self.path(kind, key)
        if not p.exists():
            return None
        try:
            return torch.load(p, weights_only=True)
        except Exception:  # corrupt entry (should not happen with atomic writes): recompute
            return None

    def put(self, kind: str, key: Any, obj: Any) -> Path:
        p = self.path(kind, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".tmp{os.getpid()}")
        torch.save(obj, tmp)
        os.replace(tmp, p)
        return p

    def get_json(self, kind: str, key: Any) -> Any | None:
        p = self.path(kind, key, ".json")
        return json.loads(p.read_text()) if p.exists() else None

    def put_json(self, kind: str, key: Any, obj: Any) -> Path:
        p = self.path(kind, key, ".json")
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(obj, default=str))
        os.replace(tmp, p)
        return p

    def cached(self, kind: str, key: Any, compute) -> Any:
        """``get`` or ``compute`` then ``put``."""
        obj = self.get(kind, key)
        if obj is None:
            obj = compute()
            self.put(kind, key, obj)
        return obj
