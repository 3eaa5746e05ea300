"""Data sets: embedded (offline) ones and loaders for files the user has.

Every loader returns a :class:`Dataset` with fixed train/test splits and a
:class:`baselines.protocol.DataInfo`. Images are float32 NCHW in [0, 1]
(``x_int / (K - 1)``); 2-D data are float32 (N, 2).

Embedded: ``ring8``, ``grid25`` (PacGAN protocol), ``swissroll``, ``digits``
(scikit-learn 8x8, 1797 images, K = 17), ``stacked-digits`` (three digits as
channels, 1000 modes). From files: ``mnist``, ``fashion-mnist`` (idx),
``cifar10`` (python batches), ``folder`` (PNG/JPEG), ``npz``.
"""

from __future__ import annotations

import gzip
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from baselines.protocol import DataInfo


class DataError(ValueError):
    """Bad input data: the message names the file or the problem."""


@dataclass
class Dataset:
    info: DataInfo
    train_x: Tensor
    test_x: Tensor
    train_y: Tensor | None = None
    test_y: Tensor | None = None

    @property
    def name(self) -> str:
        return self.info.name


DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_LOADERS: dict[str, Callable[..., Dataset]] = {}


def register_dataset(name: str) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    def deco(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        _LOADERS[name] = fn
        return fn

    return deco


def available() -> list[str]:
    return sorted(_LOADERS)


_CACHE: dict[tuple, Dataset] = {}


def load(name: str, **params: Any) -> Dataset:
    """Load data set ``name``; unknown names raise ``KeyError`` listing the valid ones."""
    if name not in _LOADERS:
        raise KeyError(f"unknown dataset {name!r}; valid: {', '.join(available())}")
    key = (name, tuple(sorted((k, str(v)) for k, v in params.items())))
    if key not in _CACHE:
        _CACHE[key] = _LOADERS[name](**params)
    return _CACHE[key]


# --------------------------------------------------------------------- 2-D mixtures
def _mixture(name: str, centres: np.ndarray, std: float, n_train: int, n_test: int, seed: int) -> Dataset:
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


@register_dataset("ring8")
def ring8(n_train: int = 20000, n_test: int = 2500, seed: int = 0) -> Dataset:
    """8 Gaussians on a circle of radius 1, std 0.01 (PacGAN protocol)."""
    ang = 2 * math.pi * np.arange(8) / 8
    centres = np.stack([np.cos(ang), np.sin(ang)], 1)
    return _mixture("ring8", centres, 0.01, n_train, n_test, seed)


@register_dataset("grid25")
def grid25(n_train: int = 20000, n_test: int = 2500, seed: int = 0) -> Dataset:
    """25 Gaussians on {-4,-2,0,2,4}^2, std 0.05 (PacGAN protocol)."""
    g = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
    centres = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    return _mixture("grid25", centres, 0.05, n_train, n_test, seed)


@register_dataset("swissroll")
def swissroll(n_train: int = 20000, n_test: int = 2500, seed: int = 0, noise: float = 0.25) -> Dataset:
    """2-D Swiss roll (scikit-learn's, x/z plane), scaled by 1/5."""
    from sklearn.datasets import make_swiss_roll

    x, _ = make_swiss_roll(n_train + n_test, noise=noise, random_state=seed)
    xt = torch.as_tensor(x[:, [0, 2]] / 5.0, dtype=torch.float32)
    info = DataInfo(name="swissroll", shape=(2,), kind="points")
    return Dataset(info, xt[:n_train], xt[n_train:])


# --------------------------------------------------------------------- digits
def _digit_captions() -> tuple[str, ...]:
    return tuple(f"a handwritten digit {w}" for w in DIGIT_NAMES)


@register_dataset("digits")
def digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn digits: 1797 8x8 images, 17 levels, fixed stratified split."""
    from metrics.features import digits_split

    xtr, xte, ytr, yte = digits_split(test_fraction, seed)
    info = DataInfo(name="digits", shape=(1, 8, 8), kind="image", levels=17, class_names=DIGIT_NAMES, captions=_digit_captions())
    t = lambda a: torch.as_tensor(a)[:, None]  # noqa: E731
    return Dataset(info, t(xtr), t(xte), torch.as_tensor(ytr), torch.as_tensor(yte))


@register_dataset("stacked-digits")
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
    info = DataInfo(name="stacked-digits", shape=(3, 8, 8), kind="image", levels=17, class_names=tuple(f"{i:03d}" for i in range(1000)))
    return Dataset(info, xtr, xte, ytr, yte)


# --------------------------------------------------------------------- validation
def validate_images(x: Any, source: str) -> Tensor:
    """Turn an array of images into float32 NCHW in [0, 1], or raise DataError.

    Accepts uint8 (0-255) or floats already in [0, 1]; NHWC or NCHW with 1 or
    3 channels; (N, H, W) grey images. Rejects NaN/inf, other dtypes, values
    out of range, and empty arrays, naming ``source``.
    """
    a = np.asarray(x)
    if a.size == 0 or a.shape[0] == 0:
        raise DataError(f"{source}: no images (empty array)")
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise DataError(f"{source}: contains NaN or inf values ({int((~np.isfinite(a)).sum())} entries)")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 1:
            raise DataError(f"{source}: float images must be in [0, 1], found range [{lo:.3g}, {hi:.3g}] (uint8 0-255 is also accepted)")
    else:
        raise DataError(f"{source}: unsupported dtype {a.dtype}; use uint8 (0-255) or float in [0, 1]")
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise DataError(f"{source}: expected images of shape (N, C, H, W), (N, H, W, C) or (N, H, W), got {a.shape}")
    if a.shape[1] not in (1, 3) and a.shape[3] in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    if a.shape[1] not in (1, 3):
        raise DataError(f"{source}: expected 1 or 3 channels, got shape {a.shape}")
    return torch.from_numpy(np.ascontiguousarray(a))


def validate_points(x: Any, source: str) -> Tensor:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2:
        raise DataError(f"{source}: expected 2-D points of shape (N, 2), got {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"{source}: contains NaN or inf values")
    return torch.as_tensor(a, dtype=torch.float32)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def load_image_folder(path: str | Path) -> Tensor:
    """All images in a folder (sorted by name) -> float32 NCHW in [0, 1]."""
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    arrays, first = [], None
    for f in files:
        try:
            with Image.open(f) as im:
                mode = "L" if im.mode in ("L", "1", "I;16", "I", "LA") else "RGB"
                a = np.asarray(im.convert(mode))
        except Exception as e:  # PIL raises several types for corrupt files
            raise DataError(f"{f}: cannot read image ({e})") from e
        if first is None:
            first = (f, a.shape)
        elif a.shape != first[1]:
            raise DataError(f"{f}: image size/channels {a.shape} differs from {first[0].name} {first[1]}; all images must match")
        arrays.append(a)
    return validate_images(np.stack(arrays), str(root))


def load_npz(path: str | Path, key: str | None = None) -> Tensor:
    """Images (or 2-D points) from a ``.npz``: the array ``key``, or the only /
    first of ``x``, ``images``, ``samples``, ``arr_0``."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as e:
        raise DataError(f"{p}: not a readable .npz ({e})") from e
    names = list(z.keys())
    if key is None:
        key = next((k for k in ("x", "images", "samples", "arr_0") if k in names), names[0] if len(names) == 1 else None)
    if key is None or key not in names:
        raise DataError(f"{p}: choose an array with key=...; found {names}")
    a = z[key]
    if a.ndim == 2 and a.shape[1] == 2:
        return validate_points(a, f"{p}[{key}]")
    return validate_images(a, f"{p}[{key}]")


def _split(x: Tensor, y: Tensor | None, test_fraction: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    n_test = max(1, int(round(len(x) * test_fraction)))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], x[te], (y[tr] if y is not None else None), (y[te] if y is not None else None)


def _image_info(name: str, x: Tensor, levels: int = 256, class_names: tuple[str, ...] = ()) -> DataInfo:
    return DataInfo(name=name, shape=tuple(x.shape[1:]), kind="image", levels=levels, class_names=class_names,
                    captions=tuple(f"a photo of a {c}" for c in class_names))


@register_dataset("folder")
def folder(path: str, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """An image folder (8-bit images), split at random with ``seed``."""
    x = load_image_folder(path)
    xtr, xte, _, _ = _split(x, None, test_fraction, seed)
    return Dataset(_image_info(Path(path).name, x), xtr, xte)


@register_dataset("npz")
def npz(path: str, key: str | None = None, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """A ``.npz`` of images (uint8 or [0,1] floats) or 2-D points."""
    x = load_npz(path, key)
    xtr, xte, _, _ = _split(x, None, test_fraction, seed)
    if x.ndim == 2:
        return Dataset(DataInfo(name=Path(path).stem, shape=(2,), kind="points"), xtr, xte)
    return Dataset(_image_info(Path(path).stem, x), xtr, xte)


# --------------------------------------------------------------------- MNIST / CIFAR files
def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (optionally .gz), the MNIST format."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{p}: not an unsigned-byte idx file (bad magic {data[:4].hex()})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataError(f"{p}: idx header says {dims} but holds {arr.size} bytes")
    return arr.reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for cand in (root / stem, root / f"{stem}.gz", root / "raw" / stem, root / "raw" / f"{stem}.gz"):
        if cand.exists():
            return cand
    raise DataError(f"{root}: missing {stem}[.gz]; put the idx files there, or pass download=true where the network allows")


def _mnist_like(name: str, root: str, class_names: tuple[str, ...], download: bool) -> Dataset:
    r = Path(root)
    if download:
        import torchvision.datasets as tvd

        cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
        cls(str(r), train=True, download=True)
        cls(str(r), train=False, download=True)
        r = r / cls.__name__
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(_find(r, f"{prefix}-images-idx3-ubyte"))
        y = read_idx(_find(r, f"{prefix}-labels-idx1-ubyte"))
        parts[split] = (validate_images(x, name), torch.as_tensor(y.astype(np.int64)))
    info = _image_info(name, parts["train"][0], 256, class_names)
    if name == "mnist":
        info = DataInfo(**{**info.to_dict(), "captions": tuple(f"a handwritten digit {w}" for w in DIGIT_NAMES)})
    return Dataset(info, parts["train"][0], parts["test"][0], parts["train"][1], parts["test"][1])


@register_dataset("mnist")
def mnist(root: str = "data/mnist", download: bool = False) -> Dataset:
    """MNIST from idx files under ``root`` (train-/t10k- images and labels)."""
    return _mnist_like("mnist", root, DIGIT_NAMES, download)


FASHION = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")


@register_dataset("fashion-mnist")
def fashion_mnist(root: str = "data/fashion-mnist", download: bool = False) -> Dataset:
    """Fashion-MNIST from idx files under ``root``."""
    return _mnist_like("fashion-mnist", root, FASHION, download)


CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@register_dataset("cifar10")
def cifar10(root: str = "data/cifar10", download: bool = False) -> Dataset:
    """CIFAR-10 from the python batches (``data_batch_1..5``, ``test_batch``)."""
    r = Path(root)
    if download:
        import torchvision.datasets as tvd

        tvd.CIFAR10(str(r), download=True)
    if (r / "cifar-10-batches-py").is_dir():
        r = r / "cifar-10-batches-py"

    def read(files: list[str]) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for fn in files:
            p = r / fn
            if not p.exists():
                raise DataError(f"{p}: missing CIFAR-10 batch; put the python batches there, or pass download=true")
            with open(p, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(d[b"labels"], dtype=np.int64))
        return validate_images(np.concatenate(xs), str(r)), torch.as_tensor(np.concatenate(ys))

    xtr, ytr = read([f"data_batch_{i}" for i in range(1, 6)])
    xte, yte = read(["test_batch"])
    return Dataset(_image_info("cifar10", xtr, 256, CIFAR10), xtr, xte, ytr, yte)
