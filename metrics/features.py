"""Feature extractors: a registry, with ``raw`` (identity, 2-D data) and the
embedded ``digits-cnn`` (offline default for images).

An extractor maps samples (float32 NCHW in [0, 1], or (N, 2) points) to
features (N, D) and, where it is a classifier, to logits (N, classes). Its
``weights_hash`` enters every feature-cache key, so features computed with
other weights are never reused.

``digits-cnn`` is a small CNN trained deterministically on the digits train
split (fixed stratified split, seed 0) and cached under the genbench cache
directory (``$GENBENCH_CACHE`` or ``~/.cache/genbench``). Its penultimate
layer (128-D) feeds FID/KID/PRDC and its logits feed IS and mode counting.
Images with 3 channels (stacked digits) are embedded channel by channel and
concatenated (3 x 128-D); logits are per channel (see ``channel_logits``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

_EXTRACTORS: dict[str, Callable[..., "Extractor"]] = {}
_INSTANCES: dict[tuple, "Extractor"] = {}


def default_cache_dir() -> Path:
    """Root of genbench's caches: ``$GENBENCH_CACHE`` or ``~/.cache/genbench``."""
    return Path(os.environ.get("GENBENCH_CACHE", Path.home() / ".cache" / "genbench"))


class ExtractorError(RuntimeError):
    """An extractor cannot run (e.g. missing weights); the message says how to fix it."""


class Extractor:
    """Base class. Subclasses set ``name``, ``dim`` and implement ``_features``."""

    name = "base"
    dim = 0
    has_logits = False
    weights_hash = "none"
    input_kind = "image"  # or "points"

    def settings(self) -> dict:
        return {"extractor": self.name, "weights_hash": self.weights_hash, "dim": self.dim}

    def _check(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{self.name}: expected a torch.Tensor, got {type(x).__name__}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{self.name}: samples contain {int((~torch.isfinite(x)).sum())} NaN/inf values")
        return x.float()

    def features(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        x = self._check(x)
        with torch.no_grad():
            return torch.cat([self._features(x[i : i + batch_size]).cpu() for i in range(0, len(x), batch_size)])

    def logits(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        raise ExtractorError(f"{self.name} has no classifier logits")

    def _features(self, x: Tensor) -> Tensor:
        raise NotImplementedError


def register_extractor(name: str) -> Callable:
    def deco(factory: Callable[..., Extractor]) -> Callable[..., Extractor]:
        _EXTRACTORS[name] = factory
        return factory

    return deco


def available() -> list[str]:
    return sorted(_EXTRACTORS)


def get_extractor(name: str, **kwargs) -> Extractor:
    """Build (once per process and kwargs) the extractor ``name``."""
    if name not in _EXTRACTORS:
        raise KeyError(f"unknown extractor {name!r}; valid: {', '.join(available())}")
    key = (name, tuple(sorted((k, str(v)) for k, v in kwargs.items())))
    if key not in _INSTANCES:
        _INSTANCES[key] = _EXTRACTORS[name](**kwargs)
    return _INSTANCES[key]


# ------------------------------------------------------------------------------ raw
class RawExtractor(Extractor):
    """Identity: the samples themselves, flattened (for 2-D data)."""

    name = "raw"
    input_kind = "points"
    weights_hash = "identity"

    def _features(self, x: Tensor) -> Tensor:
        return x.reshape(len(x), -1)


register_extractor("raw")(RawExtractor)


# ------------------------------------------------------------------------------ digits-cnn
DIGITS_CNN_VERSION = 1  # bump when the architecture or training recipe changes


def digits_split(test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn digits as ([0,1] float32 (N,8,8), labels), fixed stratified split.

    The single definition of the digits split, shared with ``bench.data``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)


class DigitsNet(nn.Module):
    """Small CNN for 1x8x8 digits: 128-D penultimate features, 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(256, 128), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.body(x)
        return f, self.head(f)


def _shift_augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Random integer shifts of up to 1 pixel (zero padding)."""
    pad = nn.functional.pad(x, (1, 1, 1, 1))
    dx, dy = torch.randint(0, 3, (2,), generator=g).tolist()
    return pad[:, :, dy : dy + 8, dx : dx + 8]


def train_digits_cnn(epochs: int = 40, seed: int = 0) -> tuple[DigitsNet, dict]:
    """Deterministic training on the digits train split; returns (net, report)."""
    xtr, xte, ytr, yte = digits_split()
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = DigitsNet()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    xt, yt = torch.as_tensor(xtr)[:, None], torch.as_tensor(ytr)
    t0 = time.perf_counter()
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            _, logits = net(_shift_augment(xt[idx], g))
            loss = nn.functional.cross_entropy(logits, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(torch.as_tensor(xte)[:, None])[1].argmax(1) == torch.as_tensor(yte)).float().mean().item()
    return net, {"test_accuracy": acc, "epochs": epochs, "seed": seed, "train_seconds": time.perf_counter() - t0, "version": DIGITS_CNN_VERSION}


def _hash_state(state: dict) -> str:
    buf = io.BytesIO()
    for k in sorted(state):
        buf.write(k.encode())
        buf.write(state[k].detach().cpu().contiguous().numpy().tobytes())
    return hashlib.sha256(buf.getvalue()).hexdigest()[:16]


class DigitsCNNExtractor(Extractor):
    """Embedded classifier-based extractor for 8x8 digits (offline default)."""

    name = "digits-cnn"
    dim = 128
    has_logits = True
    MIN_ACCURACY = 0.95

    def __init__(self, weights: str | None = None, cache_dir: str | Path | None = None) -> None:
        self.net = DigitsNet()
        path = Path(weights) if weights else Path(cache_dir or default_cache_dir()) / "extractors" / f"digits-cnn-v{DIGITS_CNN_VERSION}.pt"
        meta_path = path.with_suffix(".json")
        if path.exists():
            self.net.load_state_dict(torch.load(path, weights_only=True))
            self.report = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        else:
            if weights:
                raise ExtractorError(f"digits-cnn weights not found at {path}")
            self.net, self.report = train_digits_cnn()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(self.net.state_dict(), tmp)
            os.replace(tmp, path)
            meta_path.write_text(json.dumps(self.report, indent=2))
        self.net.eval()
        self.weights_hash = _hash_state(self.net.state_dict())
        acc = self.report.get("test_accuracy")
        if acc is not None and acc < self.MIN_ACCURACY:
            raise ExtractorError(f"digits-cnn test accuracy {acc:.3f} is below {self.MIN_ACCURACY}; delete {path} to retrain")

    @property
    def test_accuracy(self) -> float | None:
        return self.report.get("test_accuracy")

    def settings(self) -> dict:
        return {**super().settings(), "test_accuracy": self.test_accuracy}

    def _check(self, x: Tensor) -> Tensor:
        x = super()._check(x)
        if x.ndim != 4 or x.shape[2:] != (8, 8):
            raise ValueError(f"digits-cnn expects (N, C, 8, 8) images, got shape {tuple(x.shape)}")
        if x.min() < 0 or x.max() > 1:
            raise ValueError(f"digits-cnn expects images in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
        return x

    def _per_channel(self, x: Tensor, which: int) -> Tensor:
        n, c = x.shape[:2]
        out = self.net(x.reshape(n * c, 1, 8, 8))[which]
        return out.reshape(n, c, -1)

    def _features(self, x: Tensor) -> Tensor:
        return self._per_channel(x, 0).reshape(len(x), -1)

    def channel_logits(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Logits per channel: (N, C, 10)."""
        x = self._check(x)
        with torch.no_grad():
            return torch.cat([self._per_channel(x[i : i + batch_size], 1) for i in range(0, len(x), batch_size)])

    def logits(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Logits (N, 10) for single-channel digits; for C channels, (N, C*10)."""
        return self.channel_logits(x, batch_size).reshape(len(x), -1)


register_extractor("digits-cnn")(DigitsCNNExtractor)
