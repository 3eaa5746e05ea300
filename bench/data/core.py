"""The data-set registry, the :class:`Dataset` container and the shared split helpers.

Every data set is a factory registered on the one :class:`genbench.registry.Registry`
type (``DATASETS``), with a one-line description and metadata (``kind``:
``"points"``, ``"image"``, ``"paired"`` or ``"unpaired"``; ``source``:
``"embedded"`` or ``"file"``). :func:`load` validates the parameters it is
given against the factory's signature, so a typo is a :class:`DataError`
naming the accepted parameters, not a ``TypeError`` from deep inside.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from genbench.protocol import DataInfo
from genbench.registry import Entry, Registry, package_modules

__all__ = [
    "DataError",
    "Dataset",
    "DATASETS",
    "DatasetDescription",
    "register_dataset",
    "available",
    "describe",
    "default_extractor",
    "load",
    "clear_cache",
    "DIGIT_NAMES",
    "digit_captions",
    "photo_captions",
    "stratified_split",
    "random_split",
]


class DataError(ValueError):
    """Bad input data or parameters: the message names the file or the problem."""


@dataclass
class Dataset:
    """A data set with fixed splits.

    Attributes:
        info: metadata (shape, kind, levels K, class names, captions ...).
        train_x, test_x: float32; images NCHW in [0, 1] (``x_int / (K - 1)``),
            2-D points (N, 2).
        train_y, test_y: int64 class labels (N,), or ``None`` when unlabelled.
    """

    info: DataInfo
    train_x: Tensor
    test_x: Tensor
    train_y: Tensor | None = None
    test_y: Tensor | None = None

    def __post_init__(self) -> None:
        """Validate what a factory (built-in or a user's) returns: one bad data set must not reach a metric."""
        name = self.info.name
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if not isinstance(x, Tensor) or not x.is_floating_point() or len(x) == 0:
                got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
                raise DataError(f"dataset {name!r}: {split}_x must be a non-empty floating-point tensor, got {got}")
            if tuple(x.shape[1:]) != tuple(self.info.shape):
                raise DataError(f"dataset {name!r}: {split}_x has examples of shape {tuple(x.shape[1:])}, DataInfo.shape says {tuple(self.info.shape)}")
            if self.info.kind == "image" and (x.min() < 0 or x.max() > 1):
                raise DataError(f"dataset {name!r}: {split}_x images must be in [0, 1], found [{float(x.min()):.3g}, {float(x.max()):.3g}]")
            if not torch.isfinite(x).all():
                raise DataError(f"dataset {name!r}: {split}_x contains NaN or inf")
            if y is not None and (not isinstance(y, Tensor) or y.ndim != 1 or len(y) != len(x) or y.is_floating_point()):
                got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, Tensor) else type(y).__name__
                raise DataError(f"dataset {name!r}: {split}_y must be integer labels, one per example ({len(x)}), got {got}")

    @property
    def name(self) -> str:
        return self.info.name


@dataclass(frozen=True)
class DatasetDescription:
    """What ``bench list datasets`` shows for one name: description, kind, where the data come from."""

    name: str
    description: str
    kind: str
    source: str
    params: tuple[str, ...]
    extractor: str | None = None  # the extractor it is scored with by default (None: chosen by the samples' shape)

    def line(self) -> str:
        """One line: ``name  [kind, source]  description  (extractor: ...)``."""
        ext = self.extractor or "by shape: " + SHAPE_DEFAULTS_TEXT
        return f"{self.name:20s} [{self.kind}, {self.source}] {self.description} (default extractor: {ext})"


DATASETS: Registry[Callable[..., Any]] = Registry(
    "dataset",
    modules=package_modules("bench.data", Path(__file__).parent, exclude=("core",)),  # every loader module of the package
    entry_point_group="genbench.datasets",
    meta={"kind": str, "source": str, "extractor": (str, type(None))},
)


def register_dataset(
    name: str, *, description: str = "", kind: str = "image", source: str = "embedded", replace: bool = False, extractor: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a data-set factory under ``name``.

    The factory takes keyword parameters (``seed``, ``path`` ...) and returns a
    :class:`Dataset` (or a :class:`bench.data.TranslationDataset` for the
    ``paired``/``unpaired`` kinds). ``description`` defaults to the first line
    of the factory's docstring. ``kind`` is the data kind the factory returns
    (``"points"``, ``"image"``, ``"paired"``, ``"unpaired"``; ``"any"`` when it
    depends on the file); ``source`` is ``"embedded"`` (works offline) or ``"file"``.
    ``extractor``: the feature extractor ``bench eval`` / ``genbench.evaluate``
    use for it when none is given (:func:`default_extractor`); an embedded data
    set names one whose weights ship, so that scoring works offline.
    """

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        DATASETS.register(name, fn, description=description, replace=replace, kind=kind, source=source, extractor=extractor)
        return fn

    return deco


def available() -> list[str]:
    """Names of every registered data set, sorted."""
    return DATASETS.names()


def _entry(name: str) -> Entry[Callable[..., Any]]:
    return DATASETS.get(name)  # UnknownNameError (a KeyError) lists the valid names


def _params(fn: Callable[..., Any]) -> tuple[str, ...]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return ()
    return tuple(p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def describe(name: str) -> DatasetDescription:
    """The description of data set ``name`` (for ``bench list datasets``), without loading any data."""
    e = _entry(name)
    fn = e.load()
    text = e.description.replace("``", "")  # docstring markup is not for the terminal
    return DatasetDescription(name, text, e.meta.get("kind", "image"), e.meta.get("source", "embedded"), _params(fn), e.meta.get("extractor"))


SHAPE_DEFAULTS_TEXT = "2-D points raw, 8x8 digits-cnn, other images inception-v3-compat"


def default_extractor(name: str | None, info: Any) -> str:
    """The extractor data set ``name`` is scored with when none is given: the one it was registered with
    (``register_dataset(..., extractor=)``: every embedded data set names one that works offline), else by the
    samples' shape: ``raw`` for 2-D points, ``digits-cnn`` for 8x8 digits; for other images ``effnet-lite0``
    (ImageNet-1k, offline) when the ``imagenet`` extra is installed, else ``inception-v3-compat`` (whose weights
    must be downloaded or given with ``--extractor-weights``; its error says how)."""
    if name is not None:
        try:
            registered = _entry(name).meta.get("extractor")
        except KeyError:
            registered = None
        if registered:
            return str(registered)
    if info.kind == "points":
        return "raw"
    if tuple(info.shape[1:]) == (8, 8):
        return "digits-cnn"
    from metrics.extractors.effnet import is_installed

    return "effnet-lite0" if is_installed() else "inception-v3-compat"


_CACHE: dict[tuple, Any] = {}


def clear_cache() -> None:
    """Forget every data set :func:`load` has built (they are kept in memory per (name, params))."""
    _CACHE.clear()


def _check_params(name: str, fn: Callable[..., Any], params: dict[str, Any]) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    accepted = _params(fn)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise DataError(f"dataset {name!r}: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted) or '(none)'}")
    missing = [p.name for p in sig.parameters.values() if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in params]
    if missing:
        raise DataError(f"dataset {name!r}: missing required parameter(s) {', '.join(missing)} (e.g. path=... for data from files)")


def load(name: str, **params: Any) -> Any:
    """Load data set ``name`` with ``params`` (kept in memory per name and params).

    Unknown names raise :class:`genbench.registry.UnknownNameError` (a
    ``KeyError``) listing the valid ones; unknown or missing parameters raise
    :class:`DataError` listing the accepted ones.
    """
    e = _entry(name)
    fn = e.load()
    _check_params(name, fn, params)
    key = (name, tuple(sorted((k, repr(v)) for k, v in params.items())))
    if key not in _CACHE:
        _CACHE[key] = fn(**params)
    return _CACHE[key]


# --------------------------------------------------------------------- class names and captions
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def digit_captions() -> tuple[str, ...]:
    """The captions of the digit classes: ``"a handwritten digit {word}"`` for zero..nine."""
    return tuple(f"a handwritten digit {w}" for w in DIGIT_NAMES)


def photo_captions(class_names: tuple[str, ...]) -> tuple[str, ...]:
    """Generic captions for labelled photos: ``"a photo of a {class}"``."""
    return tuple(f"a photo of a {c}" for c in class_names)


# --------------------------------------------------------------------- splits
def stratified_split(x: np.ndarray, y: np.ndarray, test_size: float | int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_test, y_train, y_test): a stratified split, fixed by ``seed``.

    ``test_size`` is a fraction in (0, 1) or a count. This is scikit-learn's
    ``train_test_split(x, y, test_size=..., stratify=y, random_state=seed)``;
    the embedded splits (digits, mnist5k) are defined by it, and the trained
    extractors' weights hashes depend on them, so do not change it.
    """
    return train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)


def random_split(x: Tensor, y: Tensor | None, test_fraction: float, seed: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """A random (unstratified) split for unlabelled files: at least one example on each side."""
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if len(x) < 2:
        raise DataError(f"need at least 2 examples to split into train and test, got {len(x)}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    n_test = min(len(x) - 1, max(1, int(round(len(x) * test_fraction))))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], x[te], (y[tr] if y is not None else None), (y[te] if y is not None else None)
