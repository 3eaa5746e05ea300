"""Where a number came from: git commit, package versions, device."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

PACKAGES = ("genbench", "torch", "torchvision", "torch-fidelity", "open-clip-torch", "numpy", "scipy", "scikit-learn", "pandas")


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=5)
        return commit + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


def device_description(device: str | torch.device, threads: int | None = None) -> str:
    """``cuda:<name>`` or ``cpu:<processor> xN threads``; ``threads``: the thread count the work ran with
    (default: this process's torch threads)."""
    d = torch.device(device)
    if d.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(d)}"
    n = int(threads) if threads else torch.get_num_threads()
    return f"cpu:{platform.processor() or platform.machine()} x{n} threads"


def resolve_device(device: str | None) -> str:
    """The torch device string for ``device`` (``auto``/None: ``cuda`` when available, else ``cpu``).

    ``ValueError`` naming the device unless it exists on this machine: ``cpu``,
    ``cuda``/``cuda:N`` with N below the number of CUDA devices, ``mps`` where
    Apple's backend is available; anything else (``meta``, ``xla``, garbage) is refused.
    """
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device; valid: auto, cpu, cuda, cuda:N, mps") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif d.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device {device!r} requested but the MPS backend is not available on this machine")
    elif d.type != "cpu":
        raise ValueError(f"device {device!r} cannot run jobs; valid: auto, cpu, cuda, cuda:N, mps")
    return str(d)
