"""Embedded classifier extractors: a small CNN trained deterministically, cached, hashed.

:class:`ClassifierExtractor` holds what ``digits-cnn`` and ``mnist-cnn`` share:
training on a :class:`~metrics.extractors.LabeledSplit` with a fixed seed
(single-threaded, so the weights do not depend on the machine's thread count),
caching weights and report (test accuracy, epochs, seed, training time) as one
checksummed :mod:`genbench.cache` artifact
``default_cache_dir()/extractors/<name>-v<version>.pt`` (a damaged or
tampered file is reported and retrained, never used),
a minimum test accuracy enforced on every load, and the weights hash that
enters every feature-cache key.

Images with C channels are embedded channel by channel: features are the C
per-channel feature vectors concatenated, logits are per channel
(:meth:`ClassifierExtractor.channel_logits`); a single-head classifier (IS,
class histograms) exists only for 1-channel images. ``DataInfo.channel_classes``
marks data sets whose channels each carry a class (stacked digits).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from genbench.cache import MAGIC as ARTIFACT_MAGIC
from genbench.cache import read_artifact, write_artifact

from .base import (
    Extractor,
    ExtractorError,
    LabeledSplit,
    default_cache_dir,
    load_failure_reason,
    shipped_weights,
    state_hash,
    training_data,
)

__all__ = ["ClassifierExtractor", "train_classifier", "shift_augment"]


def shift_augment(x: Tensor, g: torch.Generator, max_shift: int = 1) -> Tensor:
    """Shift a batch by one random integer offset of up to ``max_shift`` pixels per axis (zero padding)."""
    h, w = x.shape[-2:]
    m = max_shift
    pad = nn.functional.pad(x, (m, m, m, m))
    dx, dy = torch.randint(0, 2 * m + 1, (2,), generator=g).tolist()
    return pad[:, :, dy : dy + h, dx : dx + w]


def train_classifier(
    make_net: Callable[[], nn.Module],
    data: LabeledSplit,
    *,
    epochs: int,
    seed: int = 0,
    lr: float = 2e-3,
    batch_size: int = 64,
    max_shift: int = 1,
) -> tuple[nn.Module, dict[str, Any]]:
    """Deterministic training of ``make_net()`` (forward -> (features, logits)) on ``data``.

    Adam, cross-entropy, random shifts; initialisation seeded with ``seed``
    under a forked RNG, batch order and shifts from a generator seeded with
    ``seed``. Runs with one thread: multi-threaded CPU reductions are not
    bit-stable across thread counts, and the weights hash must not depend on
    the machine. Returns (net in eval mode, report with test accuracy in [0, 1]).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = make_net()
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        xt, yt = torch.as_tensor(data.x_train)[:, None], torch.as_tensor(data.y_train)
        t0 = time.perf_counter()
        net.train()
        for _ in range(epochs):
            perm = torch.randperm(len(xt), generator=g)
            for i in range(0, len(xt), batch_size):
                idx = perm[i : i + batch_size]
                _, logits = net(shift_augment(xt[idx], g, max_shift))
                loss = nn.functional.cross_entropy(logits, yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        train_s = time.perf_counter() - t0
        net.eval()
        with torch.no_grad():
            xte = torch.as_tensor(data.x_test)[:, None]
            pred = torch.cat([net(xte[i : i + 1000])[1].argmax(1) for i in range(0, len(xte), 1000)])
            acc = (pred == torch.as_tensor(data.y_test)).float().mean().item()
    finally:
        torch.set_num_threads(threads)
    return net, {"test_accuracy": acc, "n_train": len(data.y_train), "n_test": len(data.y_test), "epochs": epochs, "seed": seed,
                 "train_seconds": train_s}  # fmt: skip


class SmallCNN(nn.Module):
    """The embedded classifiers' network, for 1-channel square images of side ``side``: three 3x3 convolutions
    (32, 64, 64 channels, ReLU) with 2x2 max-pooling after the second and third (and after the first when
    ``pool_first``), then a 128-D ReLU layer (the features) and a linear 10-class head.
    ``forward`` -> (features (N, 128), logits (N, 10))."""

    def __init__(self, side: int, pool_first: bool) -> None:
        super().__init__()
        first = [nn.Conv2d(1, 32, 3, padding=1), nn.ReLU()] + ([nn.MaxPool2d(2)] if pool_first else [])
        out = side
        for _ in range(3 if pool_first else 2):
            out //= 2
        self.body = nn.Sequential(
            *first,
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * out * out, 128), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.body(x)
        return f, self.head(f)


class ClassifierExtractor(Extractor):
    """A small CNN classifier used as extractor (penultimate features, class logits).

    Subclasses set ``name``, ``version``, ``dim``, ``num_classes``, ``image_size``,
    ``data_name`` (the :data:`~metrics.extractors.TRAINING_DATA` provider),
    ``epochs``, ``MIN_ACCURACY``; the network is a :class:`SmallCNN` for ``image_size`` (``pool_first``: pool
    after the first convolution too, for 28x28 inputs); a subclass may override :meth:`make_net`.

    Args:
        weights: a weights file instead of the cached/trained one: a plain
            state dict (``torch.load(weights_only=True)``) or a genbench
            artifact as cached; a missing or unreadable file raises
            :class:`ExtractorError` naming it.
        cache_dir: genbench cache root (default ``$GENBENCH_CACHE`` or ``~/.cache/genbench``).
        train_data: training data (a :class:`LabeledSplit`, a provider or a
            ``train_test_split`` 4-tuple), used only when the weights are not
            cached; default: the registered provider ``data_name``.

    Without ``weights`` and ``train_data`` the packaged weights
    (:func:`~metrics.extractors.shipped_weights`) are used when present, so
    every machine reads samples with the same ruler; else (or when they are
    damaged: a warning) the cached or freshly trained ones.
    """

    has_logits = True
    version: ClassVar[int] = 1
    image_size: ClassVar[tuple[int, int]] = (8, 8)
    data_name: ClassVar[str] = ""
    epochs: ClassVar[int] = 40
    max_shift: ClassVar[int] = 1
    MIN_ACCURACY: ClassVar[float] = 0.95
    pool_first: ClassVar[bool] = False

    @classmethod
    def make_net(cls) -> nn.Module:
        """A freshly initialised network (forward -> (features, logits))."""
        return SmallCNN(side=cls.image_size[0], pool_first=cls.pool_first)

    def classifier_classes(self, shape: tuple[int, ...]) -> int:
        """``num_classes`` for 1-channel images; 0 for C > 1 channels (logits are per channel)."""
        return self.num_classes if tuple(shape)[:1] == (1,) else 0

    def cache_path(self, cache_dir: str | Path | None = None) -> Path:
        return Path(cache_dir or default_cache_dir()) / "extractors" / f"{self.name}-v{self.version}.pt"

    def __init__(self, weights: str | Path | None = None, cache_dir: str | Path | None = None, train_data: Any = None) -> None:
        self.net = self.make_net()
        if weights is not None:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise ExtractorError(f"{self.name} weights file {path} not found")
            self._load(path, explicit=True)
        else:
            shipped = shipped_weights(self.name, self.version) if train_data is None else None
            if shipped is not None and self._load(shipped, explicit=False):
                path = shipped  # the packaged weights: the same features on every machine
            else:
                path = self.cache_path(cache_dir)
                if not (path.is_file() and self._load(path, explicit=False)):
                    self._train_and_cache(path, train_data)
        self.weights_path = str(path)
        self.net.eval()
        self.weights_hash = state_hash(self.net.state_dict())
        acc = self.report.get("test_accuracy")
        if acc is not None and acc < self.MIN_ACCURACY:
            raise ExtractorError(f"{self.name} test accuracy {acc:.3f} is below {self.MIN_ACCURACY}; delete {path} to retrain")

    def _load(self, path: Path, explicit: bool) -> bool:
        """Load weights from ``path``; a bad file is an error if the user named it, else a warning and a retrain."""
        try:
            with open(path, "rb") as f:
                is_artifact = f.read(len(ARTIFACT_MAGIC)) == ARTIFACT_MAGIC
            if is_artifact or not explicit:
                obj = read_artifact(path)  # checksum verified
            else:  # a user's plain state dict
                obj = {"state_dict": torch.load(path, map_location="cpu", weights_only=True), "report": {}}
            if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
                raise ExtractorError("not a {'state_dict', 'report'} artifact")
            self.net.load_state_dict(obj["state_dict"])
            self.report = dict(obj.get("report") or {})
        except Exception as e:  # checksum mismatch, unpickling refused, truncated file, wrong keys/shapes
            if explicit:
                raise ExtractorError(
                    f"{self.name}: cannot load weights from {path} ({type(e).__name__}: {load_failure_reason(e)}); expected a state dict of tensors "
                    "or a genbench artifact (files are loaded with weights_only=True: no code in them runs)"
                ) from e
            warnings.warn(f"{self.name}: cached weights {path} are unreadable ({type(e).__name__}); retraining", stacklevel=3)
            self.net = self.make_net()
            return False
        return True

    def _train_and_cache(self, path: Path, train_data: Any) -> None:
        data = training_data(self.data_name, train_data, for_extractor=self.name)
        self.net, report = train_classifier(self.make_net, data, epochs=self.epochs, seed=0, max_shift=self.max_shift)
        self.report = {**report, "version": self.version, "data": self.data_name, "max_shift": self.max_shift}
        self.report["weights_hash"] = state_hash(self.net.state_dict())
        write_artifact(path, {"state_dict": self.net.state_dict(), "report": self.report}, "torch")

    @property
    def test_accuracy(self) -> float | None:
        return self.report.get("test_accuracy")

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "test_accuracy": self.test_accuracy}

    def _check(self, x: Tensor) -> Tensor:
        x = super()._check(x)
        h, w = self.image_size
        if x.ndim != 4 or tuple(x.shape[2:]) != (h, w):
            raise ValueError(f"{self.name} expects (N, C, {h}, {w}) images, got shape {tuple(x.shape)}")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"{self.name} expects images in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
        return x

    def _per_channel(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n, c = x.shape[:2]
        f, lg = self.net(x.reshape(n * c, 1, *self.image_size))
        return f.reshape(n, -1), lg.reshape(n, c, -1)

    def _features(self, x: Tensor) -> Tensor:
        return self._per_channel(x)[0]

    def _both(self, x: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
        """(features (N, C*dim), channel logits (N, C, classes)) from one pass, memoised for the last tensor."""
        out = self._memo_get(x)
        if out is None:
            xc = self._check(x)
            with torch.no_grad():
                parts = [self._per_channel(xc[i : i + batch_size]) for i in range(0, len(xc), batch_size)]
            out = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
            self._memo_set(x, out)
        return out

    def features(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        return self._both(x, batch_size)[0]

    def channel_logits(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Logits per channel: (N, C, num_classes)."""
        return self._both(x, batch_size)[1]

    def logits(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Logits (N, num_classes) for 1-channel images; for C channels, (N, C*num_classes)."""
        return self.channel_logits(x, batch_size).reshape(len(x), -1)
