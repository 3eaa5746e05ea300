"""The standard data sets' own file formats, validated: nothing in a data file is trusted.

* ``mnist``, ``fashion-mnist``: idx files (optionally gzipped), sizes checked
  against their headers before anything is allocated.
* ``cifar10``: the CIFAR-10 python batches, read with a restricted unpickler
  (plain containers, bytes/str/numbers and numpy arrays only): a pickle that
  names any other global (``os.system`` ...) is refused before it runs.

The files are read from ``root``; ``download=True`` fetches them with
torchvision first, where the network allows.
"""

from __future__ import annotations

import codecs
import gzip
import importlib
import io
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .core import DIGIT_NAMES, DataError, Dataset, digit_captions, register_dataset
from .files import _check_size, _image_info, validate_images

__all__ = ["CIFAR10", "FASHION", "cifar10", "fashion_mnist", "mnist", "read_cifar_batch", "read_idx", "safe_unpickle"]


# --------------------------------------------------------------------- MNIST idx files
def read_idx(path: str | Path) -> np.ndarray:
    """Read an unsigned-byte idx file (optionally .gz), the MNIST format, validating its header against its size."""
    p = Path(path)
    try:
        with (gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
                raise DataError(f"{p}: not an unsigned-byte idx file (bad magic {head.hex() or 'empty file'})")
            ndim = head[3]
            if ndim == 0:
                raise DataError(f"{p}: idx header declares 0 dimensions")
            raw = f.read(4 * ndim)
            if len(raw) < 4 * ndim:
                raise DataError(f"{p}: idx header truncated")
            dims = [int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(ndim)]
            n = math.prod(dims)
            _check_size(n, str(p), f"idx array of shape {dims}")
            data = f.read(n + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{p}: cannot read ({type(e).__name__}: {e})") from e
    if len(data) != n:
        raise DataError(f"{p}: idx header says {dims} ({n} bytes) but the file holds {'more' if len(data) > n else len(data)} bytes")
    if n == 0:
        raise DataError(f"{p}: idx file holds an empty array of shape {dims}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for cand in (root / stem, root / f"{stem}.gz", root / "raw" / stem, root / "raw" / f"{stem}.gz"):
        if cand.exists():
            return cand
    raise DataError(f"{root}: missing {stem}[.gz]; put the idx files there, or pass download=true where the network allows")


def _labels(y: np.ndarray, n_images: int, n_classes: int, source: str) -> Tensor:
    y = np.asarray(y).reshape(-1) if np.asarray(y).ndim <= 1 else np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{source}: labels must be one number per image, got shape {y.shape}")
    if len(y) != n_images:
        raise DataError(f"{source}: {len(y)} labels for {n_images} images; the counts must match")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: labels must be integers, got dtype {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"{source}: labels must be in 0..{n_classes - 1}, found range [{int(y.min())}, {int(y.max())}]")
    return torch.as_tensor(y.astype(np.int64))


def _mnist_like(name: str, root: str, class_names: tuple[str, ...], download: bool) -> Dataset:
    r = Path(root)
    if download:
        import torchvision.datasets as tvd  # optional dependency, only when the user asks to download

        cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
        cls(str(r), train=True, download=True)
        cls(str(r), train=False, download=True)
        r = r / cls.__name__
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        xp, yp = _find(r, f"{prefix}-images-idx3-ubyte"), _find(r, f"{prefix}-labels-idx1-ubyte")
        x = read_idx(xp)
        if x.ndim != 3:
            raise DataError(f"{xp}: expected images of shape (N, H, W), got {x.shape}")
        parts[split] = (validate_images(x, str(xp)), _labels(read_idx(yp), len(x), len(class_names), f"{yp} (for {xp.name})"))
    captions = digit_captions() if name == "mnist" else None
    info = _image_info(name, parts["train"][0], 256, class_names, captions)
    return Dataset(info, parts["train"][0], parts["test"][0], parts["train"][1], parts["test"][1])


@register_dataset("mnist", source="file", extractor="mnist-cnn")
def mnist(root: str = "data/mnist", download: bool = False) -> Dataset:
    """MNIST from idx files under ``root`` (train-/t10k- images and labels)."""
    return _mnist_like("mnist", root, DIGIT_NAMES, download)


FASHION = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")


@register_dataset("fashion-mnist", source="file")
def fashion_mnist(root: str = "data/fashion-mnist", download: bool = False) -> Dataset:
    """Fashion-MNIST from idx files under ``root``."""
    return _mnist_like("fashion-mnist", root, FASHION, download)


# --------------------------------------------------------------------- CIFAR-10 python batches
def _numpy_global(*paths: str) -> Any:
    for path in paths:
        mod, _, attr = path.rpartition(".")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError):
            continue
    return None


# The only globals a CIFAR batch may name: numpy's array/scalar reconstruction and the bytes codec
# that protocol-2 pickles written by Python 3 use. Everything else (os.system, builtins.eval, ...) is refused.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _SAFE_GLOBALS[(_mod, "_reconstruct")] = _numpy_global("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct")
    _SAFE_GLOBALS[(_mod, "scalar")] = _numpy_global("numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar")
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _SAFE_GLOBALS[(_mod, "_frombuffer")] = _numpy_global("numpy._core.numeric._frombuffer", "numpy.core.numeric._frombuffer")
_SAFE_GLOBALS = {k: v for k, v in _SAFE_GLOBALS.items() if v is not None}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f: Any, source: str) -> None:
        super().__init__(f, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        obj = _SAFE_GLOBALS.get((module, name))
        if obj is None:
            raise DataError(
                f"{self.source}: refused to load: the pickle names {module}.{name}, which is not a plain container, "
                "number, string or numpy array (a data file must not run code)"
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.source}: refused to load: the pickle uses persistent ids")


def _check_plain(obj: Any, source: str, depth: int = 0, seen: set[int] | None = None) -> None:
    """Only plain values, containers and numeric numpy arrays; each container checked once
    (a pickle can reference one list a million times: walking every reference would never end)."""
    seen = set() if seen is None else seen
    if depth > 20:
        raise DataError(f"{source}: nested more than 20 levels deep")
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, bytearray, np.generic)):
        if isinstance(obj, np.generic) and np.asarray(obj).dtype.hasobject:
            raise DataError(f"{source}: holds a numpy object scalar")
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise DataError(f"{source}: holds a numpy object array")
        return
    if not isinstance(obj, (dict, list, tuple)):
        raise DataError(f"{source}: holds a {type(obj).__name__}, not a plain container, number, string or numpy array")
    if id(obj) in seen:
        return
    seen.add(id(obj))
    for v in (x for kv in obj.items() for x in kv) if isinstance(obj, dict) else obj:
        _check_plain(v, source, depth + 1, seen)


def safe_unpickle(data: bytes, source: str) -> Any:
    """Unpickle ``data`` allowing only dicts, lists, tuples, bytes/str, numbers and numpy arrays.

    Any other global named in the pickle (a function or class: ``os.system``,
    ``builtins.eval`` ...) raises :class:`DataError` naming ``source`` before
    anything is called. Python-2 strings are returned as bytes.
    """
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except Exception as e:  # truncated or garbled pickles raise several types
        raise DataError(f"{source}: not a readable pickle ({type(e).__name__}: {e})") from e
    _check_plain(obj, source)
    return obj


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> (uint8 images (N, 3, 32, 32), int64 labels (N,)), validated."""
    p = Path(path)
    try:
        size = p.stat().st_size
        _check_size(size // 4, str(p), f"a {size / 2**20:.0f} MiB batch file")
        raw = p.read_bytes()
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e})") from e
    if not raw:
        raise DataError(f"{p}: empty file")
    d = safe_unpickle(raw, str(p))
    if not isinstance(d, dict):
        raise DataError(f"{p}: expected a dict with 'data' and 'labels', got {type(d).__name__}")
    get = lambda k: d.get(k.encode(), d.get(k))  # noqa: E731  (py2 batches use bytes keys)
    data, labels = get("data"), get("labels")
    if data is None or labels is None:
        raise DataError(f"{p}: missing 'data' or 'labels' (keys: {sorted(map(repr, d))})")
    x = np.asarray(data)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or x.shape[0] == 0:
        raise DataError(f"{p}: 'data' must be a non-empty uint8 array of shape (N, 3072), got {x.dtype} {x.shape}")
    y = _labels(np.asarray(labels), len(x), 10, str(p))
    return x.reshape(-1, 3, 32, 32), y.numpy()


CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@register_dataset("cifar10", source="file")
def cifar10(root: str = "data/cifar10", download: bool = False) -> Dataset:
    """CIFAR-10 from the python batches (``data_batch_1..5``, ``test_batch``), read without running code."""
    r = Path(root)
    if download:
        import torchvision.datasets as tvd  # optional dependency, only when the user asks to download

        tvd.CIFAR10(str(r), download=True)
    if (r / "cifar-10-batches-py").is_dir():
        r = r / "cifar-10-batches-py"

    def read(files: list[str]) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for fn in files:
            p = r / fn
            if not p.exists():
                raise DataError(f"{p}: missing CIFAR-10 batch; put the python batches there, or pass download=true")
            x, y = read_cifar_batch(p)
            xs.append(x)
            ys.append(y)
        return validate_images(np.concatenate(xs), str(r)), torch.as_tensor(np.concatenate(ys))

    xtr, ytr = read([f"data_batch_{i}" for i in range(1, 6)])
    xte, yte = read(["test_batch"])
    return Dataset(_image_info("cifar10", xtr, 256, CIFAR10), xtr, xte, ytr, yte)
