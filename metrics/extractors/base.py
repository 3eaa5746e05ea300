"""The extractors' common ground, imported by every extractor module (the package's registry names them lazily,
so they import this module, never the package): the :class:`Extractor` base class and its errors, the shipped
weights and their pinned hashes, and the training data trained extractors learn from (:data:`TRAINING_DATA`,
injected by the harness: ``metrics`` never imports ``bench``)."""

from __future__ import annotations

import hashlib
import pickle
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genbench.cache import default_cache_dir, file_hash  # noqa: F401 - default_cache_dir: re-exported for the extractor modules
from genbench.registry import Registry, UnknownNameError

SHIPPED_WEIGHTS_DIR = Path(__file__).with_name("weights")
# sha256 of each shipped weights file, pinned: a file that differs (damaged, or another valid file swapped in) is
# reported and not used. `python -m bench.ship_weights` prints the values to pin when the weights are re-shipped.
SHIPPED_SHA256 = {
    "digits-clip-v1.pt": "aa4d3b18e5bf271c55a9ddf0df64c20c8e3100e11f19834a153af22aa489118f",
    "digits-cnn-v2.pt": "08272a8d3d73dae26b9946a866369a950948bcfcb09bde4627a8d281d75394cc",
    "mnist-cnn-v1.pt": "1b36c76a78ec774844c678f83b7ef1e933d694dc5a91d0c298a21fbd0a1edfd0",
    "thick-digits-cnn-v1.pt": "fc3f5807b0504fb51ab12e7805243893ed0c2687e8574b36e897e3769a99833d",
}


class ShippedWeightsWarning(UserWarning):
    """A shipped weights file whose sha256 is not the pinned one: it is not used (the message names the file)."""


def load_failure_reason(e: BaseException) -> str:
    """One line saying why a weights file did not load; never torch's advice to retry with ``weights_only=False``."""
    if isinstance(e, pickle.UnpicklingError):
        return "it holds objects other than tensors and plain containers"
    return (str(e).strip().splitlines() or [""])[0][:200]


def shipped_weights(name: str, version: int) -> Path | None:
    """The packaged weights artifact of embedded extractor ``name`` at ``version``, or None when not shipped.

    The file's sha256 must equal its pin in :data:`SHIPPED_SHA256`; otherwise a
    :class:`ShippedWeightsWarning` names the file and None is returned, so the
    caller falls back to its cache or its training recipe instead of silently
    using weights that are not the shipped ones.
    """
    p = SHIPPED_WEIGHTS_DIR / f"{name}-v{version}.pt"
    if not p.is_file():
        return None
    pin, got = SHIPPED_SHA256.get(p.name), file_hash(p, 64)
    if got != pin:
        warnings.warn(f"{p}: shipped weights are unreadable as shipped: sha256 {got[:16]}... is not the pinned {pin[:16] + '...' if pin else '(none pinned)'}; "
                      "not used (the cache or the training recipe is used instead)", ShippedWeightsWarning, stacklevel=2)  # fmt: skip
        return None
    return p



class ExtractorError(RuntimeError):
    """An extractor cannot run (missing or corrupt weights, missing training data); the message says how to fix it."""


class MissingExtraError(ExtractorError):
    """An extractor needs an optional extra (``pip install 'genbench[EXTRA]'``) that is not installed; the message names it.

    A usage error, not a failed run: the CLI exits 2.
    """


def state_hash(state: dict[str, Tensor]) -> str:
    """sha256 (first 16 hex digits) of a state dict's names and raw tensor bytes, in sorted key order.

    Independent of how the weights were stored (file format, pickling), so it
    names the *weights*; it enters every feature-cache key.
    """
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def to_uint8_rgb(x: Tensor) -> Tensor:
    """float NCHW in [0, 1] -> uint8 NCHW 0-255 with 3 channels (grey repeated): torch-fidelity's input."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, 1|3, H, W) images, got shape {tuple(x.shape)}")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"expected images in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
    u = (x * 255).round_().to(torch.uint8)
    return u.expand(-1, 3, -1, -1).contiguous() if u.shape[1] == 1 else u


class Extractor:
    """Base class. Subclasses set ``name``, ``dim`` and implement ``_features``.

    ``features(x)`` returns float32 (N, dim) on the CPU; classifiers also
    implement ``logits(x)`` (N, num_classes).
    """

    name = "base"
    dim = 0
    has_logits = False
    num_classes = 0  # classes of the logits' classifier head
    weights_hash = "none"
    input_kind = "image"  # or "points"

    def classifier_classes(self, shape: tuple[int, ...]) -> int:
        """Classes of a single-head classifier on samples of ``shape`` (C, H, W), or 0 when the
        logits are not one classifier's (IS, class histograms and class accuracy need one)."""
        return self.num_classes if self.has_logits else 0

    def settings(self) -> dict[str, Any]:
        return {"extractor": self.name, "weights_hash": self.weights_hash, "dim": self.dim}

    # one-entry memo: features and logits of the same tensor come from one forward pass
    def _memo_get(self, x: Tensor, tag: tuple = ()) -> Any:
        last = getattr(self, "_last", None)
        if last is not None and last[0]() is x and last[1] == (x._version, *tag):
            return last[2]
        return None

    def _memo_set(self, x: Tensor, out: Any, tag: tuple = ()) -> None:
        self._last = (weakref.ref(x), (x._version, *tag), out)

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


class ExtractorUnavailable(ExtractorError):
    """The extractor of an evaluation could not be built (e.g. its weights are missing offline): every metric that
    needs its features is n/a with this reason; the others are still computed."""


class UnavailableExtractor(Extractor):
    """Stands in for an extractor that could not be built: metrics that ask for features or logits get
    :class:`ExtractorUnavailable` with the reason (each fails alone); metrics that need none still run."""

    weights_hash = "unavailable"

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def settings(self) -> dict[str, Any]:
        return {"extractor": self.name, "weights_hash": self.weights_hash, "unavailable": self.reason}

    def classifier_classes(self, shape: tuple[int, ...]) -> int:
        return 0

    def features(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        raise ExtractorUnavailable(self.reason)

    def logits(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        raise ExtractorUnavailable(self.reason)

    def channel_logits(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        raise ExtractorUnavailable(self.reason)


# ------------------------------------------------------------------------------ training data
@dataclass(frozen=True)
class LabeledSplit:
    """Training data of a trained extractor: images float32 (N, H, W) in [0, 1], labels int64 (N,).

    The order of the rows is part of the recipe: the weights (and their hash)
    depend on it.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __post_init__(self) -> None:
        for a, b, what in ((self.x_train, self.y_train, "train"), (self.x_test, self.y_test, "test")):
            if np.asarray(a).ndim != 3 or len(a) != len(b) or len(a) == 0:
                raise ValueError(f"LabeledSplit {what}: need images (N, H, W) and N labels, got {np.shape(a)} and {np.shape(b)}")


TRAINING_DATA: Registry[Callable[[], LabeledSplit]] = Registry("extractor training data")


def register_training_data(name: str, provider: Callable[[], Any]) -> None:
    """Register ``provider`` (zero arguments -> :class:`LabeledSplit` or a 4-tuple
    ``(x_train, x_test, y_train, y_test)`` as scikit-learn's ``train_test_split`` returns) under ``name``."""
    TRAINING_DATA.register(name, provider, replace=True)


def training_data(name: str, given: Any = None, *, for_extractor: str = "") -> LabeledSplit:
    """The training data ``name``: ``given`` (a :class:`LabeledSplit`, a provider or a 4-tuple) when
    passed, else the registered provider. :class:`ExtractorError` when neither exists."""
    src = given
    if src is None:
        try:
            src = TRAINING_DATA.load(name)
        except UnknownNameError:
            raise ExtractorError(
                f"{for_extractor or 'extractor'}: its weights are not cached and no training data {name!r} is registered. "
                f"Import the data set module that provides it (bench.data registers {name!r}), call "
                f"metrics.extractors.register_training_data({name!r}, provider), or pass train_data=..."
            ) from None
    if callable(src):
        src = src()
    if isinstance(src, LabeledSplit):
        return src
    if isinstance(src, (tuple, list)) and len(src) == 4:
        xtr, xte, ytr, yte = (np.asarray(a) for a in src)
        return LabeledSplit(_unit_float(xtr, name), ytr.astype(np.int64), _unit_float(xte, name), yte.astype(np.int64))
    raise ExtractorError(f"training data {name!r} must be a LabeledSplit or (x_train, x_test, y_train, y_test), got {type(src).__name__}")


def _unit_float(x: np.ndarray, name: str) -> np.ndarray:
    """Images as float32 in [0, 1]: uint8 0-255 is divided by 255; floats must already be in [0, 1]."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 1):
        raise ExtractorError(f"training data {name!r}: float images must be finite and in [0, 1] (uint8 0-255 is also accepted)")
    return x
