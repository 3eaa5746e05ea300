"""Data from files the user has, validated: nothing in a data file is trusted.

* ``folder``: PNG/JPEG/BMP/WebP images. 8-bit images are scaled by 255;
  16-bit PNGs (mode ``I;16``) by 65535, their true range; 32-bit integer
  images (mode ``I``) have no defined range and are rejected, float images
  (mode ``F``) are rejected too; 16-bit RGB PNGs keep their true scale with
  8 bits of precision (Pillow reads the high byte). A 16-bit file whose values never
  exceed 255 (8-bit data stored in a 16-bit container, nearly black at its
  true scale) is rejected with a message instead of guessed.
* ``npz``: one array of images (uint8 0-255 or floats in [0, 1]) or 2-D
  points; with several arrays, the one named by ``key`` (``--npz-key``).
  Arrays larger than :data:`MAX_BYTES` are refused from their header, before
  they are read.

The standard data sets' formats (MNIST idx files, CIFAR-10 pickles) are read
in :mod:`bench.data.archives`.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from genbench.protocol import DataInfo
from genbench.registry import check_name

from .core import DataError, Dataset, photo_captions, random_split, register_dataset

__all__ = [
    "MAX_BYTES",
    "IMAGE_SUFFIXES",
    "validate_images",
    "validate_points",
    "safe_data_name",
    "read_image",
    "read_image_folder",
    "load_image_folder",
    "load_npz",
    "folder",
    "npz",
]

# Largest decoded array a loader builds (float32 bytes); a header or a folder that asks for more is refused
# before the memory is taken. Override with $GENBENCH_MAX_DATA_BYTES.
MAX_BYTES = int(os.environ.get("GENBENCH_MAX_DATA_BYTES", 8 * 2**30))


def _check_size(n_values: int, source: str, what: str = "data") -> None:
    if n_values * 4 > MAX_BYTES:
        raise DataError(
            f"{source}: {what} would take {n_values * 4 / 2**30:.1f} GiB as float32, more than the limit of "
            f"{MAX_BYTES / 2**30:.1f} GiB (set GENBENCH_MAX_DATA_BYTES to raise it)"
        )


# --------------------------------------------------------------------- validation
def validate_images(x: Any, source: str) -> Tensor:
    """Turn an array of images into float32 NCHW in [0, 1], or raise DataError.

    Accepts uint8 (0-255) or floats already in [0, 1]; NHWC or NCHW with 1 or
    3 channels; (N, H, W) grey images. Rejects NaN/inf, other dtypes, values
    out of range, and empty arrays, naming ``source``.
    """
    a = np.asarray(x)
    if a.ndim == 0 or a.size == 0:
        raise DataError(f"{source}: no images (empty array of shape {a.shape})")
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise DataError(f"{source}: expected images of shape (N, C, H, W), (N, H, W, C) or (N, H, W), got {a.shape}")
    _check_size(a.size, source, "the images")
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise DataError(f"{source}: contains NaN or inf values ({int((~np.isfinite(a)).sum())} entries)")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 1:
            raise DataError(f"{source}: float images must be in [0, 1], found range [{lo:.3g}, {hi:.3g}] (uint8 0-255 is also accepted)")
    elif a.dtype == np.uint16:
        raise DataError(f"{source}: dtype uint16 (16-bit) images are not accepted in arrays: divide by their true maximum (65535 for 16-bit) to floats in [0, 1], or save PNG files")
    else:
        raise DataError(f"{source}: unsupported dtype {a.dtype}; use uint8 (0-255) or float in [0, 1]")
    if a.shape[1] not in (1, 3) and a.shape[3] in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    if a.shape[1] not in (1, 3):
        raise DataError(f"{source}: expected 1 or 3 channels, got shape {a.shape}")
    return torch.from_numpy(np.ascontiguousarray(a))


def validate_points(x: Any, source: str) -> Tensor:
    """2-D points as float32 (N, 2), or DataError (wrong shape, empty, NaN/inf, not numbers)."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{source}: points must be numbers ({e})") from e
    if a.ndim != 2 or a.shape[1] != 2:
        raise DataError(f"{source}: expected 2-D points of shape (N, 2), got {a.shape}")
    if a.shape[0] == 0:
        raise DataError(f"{source}: no points (empty array)")
    if not np.isfinite(a).all():
        raise DataError(f"{source}: contains NaN or inf values")
    return torch.as_tensor(a, dtype=torch.float32)


# --------------------------------------------------------------------- image files
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
MAX_IMAGE_PIXELS = 2**26  # 8192 x 8192: larger single images are refused before decoding

_GREY_8BIT = ("L", "1", "LA", "La")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _decode(p: Path) -> tuple[np.ndarray, int, int]:
    """(array, bits of the array: 8 or 16, bits of the file: 8 or 16) for one image file."""
    try:
        with Image.open(p) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS or w == 0 or h == 0:
                raise DataError(f"{p}: image is {w}x{h} pixels; expected between 1 and {MAX_IMAGE_PIXELS} pixels")
            mode = im.mode
            if mode in _SIXTEEN_BIT or (mode == "I" and im.format == "PNG"):
                # Pillow opens 16-bit grey PNGs as I;16 (or I in older versions): values 0..65535
                a = np.asarray(im).astype(np.int64)
                if a.min() < 0 or a.max() > 65535:
                    raise DataError(f"{p}: 16-bit image with values outside 0..65535")
                return a.astype(np.uint16), 16, 16
            if mode in ("I", "F"):
                kind = "32-bit integer" if mode == "I" else "32-bit float"
                raise DataError(f"{p}: {kind} images (mode {mode}) have no defined intensity range; save them as 8- or 16-bit PNG, or as floats in [0, 1] in a .npz")
            # 16-bit RGB(A) PNGs: Pillow keeps the high byte of each sample (the true scale, 8 bits of precision)
            file_bits = 16 if im.format == "PNG" and im.tile and str(im.tile[0][3]).endswith(";16B") else 8
            a = np.asarray(im.convert("L" if mode in _GREY_8BIT else "RGB"))
            return a, 8, file_bits
    except DataError:
        raise
    except Image.DecompressionBombError as e:
        raise DataError(f"{p}: image too large ({e})") from e
    except Exception as e:  # PIL raises several types for corrupt or empty files
        raise DataError(f"{p}: cannot read image ({type(e).__name__}: {e})") from e


def read_image(path: str | Path) -> tuple[np.ndarray, int]:
    """One image file -> (array, bits): uint8/uint16 (H, W) grey or (H, W, 3) RGB, and its bit depth (8 or 16).

    Alpha is dropped; palette and CMYK images become RGB. 16-bit grey PNGs
    keep their 16 bits (never clipped to 8); 16-bit RGB PNGs come as the high
    byte of each sample (uint8, the true scale). 32-bit integer (``I``) and
    float (``F``) images are rejected with a message: they have no defined range.
    """
    a, bits, _ = _decode(Path(path))
    return a, bits


def _image_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    return files


def _declared_values(f: Path) -> int:
    """Values (width x height x channels after decoding: 1 grey, else 3) an image file declares in its header; 0 when
    the header cannot be read (decoding then reports the file)."""
    try:
        with Image.open(f) as im:
            w, h = im.size
            grey = im.mode in _GREY_8BIT or im.mode in _SIXTEEN_BIT or im.mode in ("I", "F")
    except Exception:  # noqa: BLE001 - reported by _decode with the file name
        return 0
    return w * h * (1 if grey else 3)


def _stack_images(files: list[Path], source: str) -> tuple[Tensor, int]:
    """Read ``files`` (all of one size) -> float32 NCHW in [0, 1] and the levels K (256, or 65536 when any is 16-bit)."""
    arrays: list[np.ndarray] = []
    bits: list[int] = []
    peaks: list[int] = []  # a lower bound of the largest value of each 16-bit file, on its 0..65535 scale
    first: tuple[Path, tuple[int, ...]] | None = None
    first16: Path | None = None
    declared = sum(_declared_values(f) for f in files)  # from the headers, before any image is decoded
    _check_size(declared, source, f"{len(files)} images ({declared} values)")
    for f in files:
        a, b, file_bits = _decode(f)
        if file_bits == 16:
            first16 = first16 or f
            peaks.append(int(a.max()) if b == 16 else 256 * int(a.max()))
        if first is None:
            first = (f, a.shape)
            _check_size(len(files) * a.size, source, f"{len(files)} images of shape {a.shape}")
        elif a.shape != first[1]:
            raise DataError(f"{f}: image size/channels {a.shape} differs from {first[0].name} {first[1]}; all images must match")
        arrays.append(a)
        bits.append(b)
    sixteen = [i for i, b in enumerate(bits) if b == 16]
    if peaks and max(peaks) <= 255 and (max(peaks) > 0 or len(sixteen) < len(peaks)):
        raise DataError(
            f"{first16}: 16-bit image(s) whose values never exceed 255 (of 65535): this looks like 8-bit data saved "
            "in a 16-bit file and would be nearly black at its true scale; save it as an 8-bit PNG (or scale it to 0..65535)"
        )
    x = np.stack([a.astype(np.float32) / (65535.0 if b == 16 else 255.0) for a, b in zip(arrays, bits)])
    levels = 65536 if sixteen else 256
    return validate_images(x, source), levels


def read_image_folder(path: str | Path) -> tuple[Tensor, int]:
    """All images in a folder (sorted by name) -> (float32 NCHW in [0, 1], levels K: 256 for 8-bit, 65536 when 16-bit)."""
    root = Path(path)
    return _stack_images(_image_files(root), str(root))


def load_image_folder(path: str | Path) -> Tensor:
    """All images in a folder (sorted by name) -> float32 NCHW in [0, 1], each scaled by its bit depth."""
    return read_image_folder(path)[0]


# --------------------------------------------------------------------- npz
def _npz_shapes(p: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of the arrays in a .npz, read from their headers (no data decoded).

    Every member counts, whatever its name (numpy reads a member not named
    ``*.npy`` too): one whose declared uncompressed size exceeds
    :data:`MAX_BYTES` is refused (:class:`DataError`) before it is read, and
    one that is not an ``.npy`` array is listed with shape ``()`` and dtype
    ``object``, so it is never loaded.
    """
    out = {}
    with zipfile.ZipFile(p) as zf:
        for info in zf.infolist():
            member = info.filename
            name = member[:-4] if member.endswith(".npy") else member
            if info.file_size > MAX_BYTES:
                raise DataError(f"{p}[{name}]: member of {info.file_size / 2**30:.1f} GiB uncompressed, more than the limit of "
                                f"{MAX_BYTES / 2**30:.1f} GiB (set GENBENCH_MAX_DATA_BYTES to raise it)")  # fmt: skip
            with zf.open(member) as f:
                if f.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
                    out[name] = ((), np.dtype(object))  # not an array: refused as an object array if asked for
                    continue
                f.seek(0)
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            _check_size(math.prod(shape) * max(1, dtype.itemsize) // 4, f"{p}[{name}]", f"array of shape {shape}")
            out[name] = (tuple(shape), dtype)
    return out


def load_npz(path: str | Path, key: str | None = None) -> Tensor:
    """Images (or 2-D points) from a ``.npz``.

    With one array, that array; with several, the one named ``key`` (on the
    command line ``--npz-key``) — or the first of ``x``, ``images``,
    ``samples``, ``arr_0`` present. Otherwise :class:`DataError` lists the
    keys with their shapes and says how to choose. Object arrays (pickles)
    are never loaded.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    try:
        shapes = _npz_shapes(p)
        z = np.load(p, allow_pickle=False)
        names = list(z.keys())
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{p}: not a readable .npz ({type(e).__name__}: {e})") from e
    if not names:
        raise DataError(f"{p}: the .npz holds no arrays")
    listing = ", ".join(f"{k} {shapes[k][0] if k in shapes else '?'}" for k in names)
    if key is None:
        if len(names) == 1:
            key = names[0]
        else:
            key = next((k for k in ("x", "images", "samples", "arr_0") if k in names), None)
            if key is None:
                raise DataError(f"{p}: holds {len(names)} arrays ({listing}); choose one with key=NAME (bench eval: --npz-key NAME)")
    elif key not in names:
        raise DataError(f"{p}: no array {key!r}; it holds {listing}")
    if key not in shapes:
        raise DataError(f"{p}[{key}]: not a member whose header could be read; refusing to load it")
    if key in shapes:
        shape, dtype = shapes[key]
        if dtype.hasobject:
            raise DataError(f"{p}[{key}]: object arrays (pickles) are not loaded; save numeric arrays")
        _check_size(math.prod(shape), f"{p}[{key}]", f"array of shape {shape}")
    try:
        a = z[key]
    except Exception as e:
        raise DataError(f"{p}[{key}]: cannot read the array ({type(e).__name__}: {e})") from e
    if a.ndim == 2 and a.shape[1] == 2:
        return validate_points(a, f"{p}[{key}]")
    return validate_images(a, f"{p}[{key}]")


def safe_data_name(path: str | Path) -> str:
    """A data-set name for a user's file or folder that is safe in file names (letters, digits, ``_ . + @ = -``).

    Other characters become ``_``; a name that would still be unsafe (empty, ``..``) becomes ``data``.
    """
    name = re.sub(r"[^A-Za-z0-9_.+@=-]", "_", Path(path).name)[:100].lstrip(".-")
    try:
        return check_name(name, "data set name")
    except ValueError:
        return "data"


def _image_info(name: str, x: Tensor, levels: int = 256, class_names: tuple[str, ...] = (), captions: tuple[str, ...] | None = None) -> DataInfo:
    caps = photo_captions(class_names) if captions is None else captions
    return DataInfo(name=name, shape=tuple(x.shape[1:]), kind="image", levels=levels, class_names=class_names, captions=caps)


@register_dataset("folder", kind="image", source="file")
def folder(path: str, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """An image folder (8- or 16-bit PNG/JPEG/...), split at random with ``seed``."""
    x, levels = read_image_folder(path)
    xtr, xte, _, _ = random_split(x, None, test_fraction, seed)
    return Dataset(_image_info(safe_data_name(path), x, levels), xtr, xte)


@register_dataset("npz", kind="any", source="file")
def npz(path: str, key: str | None = None, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """A ``.npz`` of images (uint8 or [0,1] floats) or 2-D points; ``key`` picks one of several arrays."""
    x = load_npz(path, key)
    xtr, xte, _, _ = random_split(x, None, test_fraction, seed)
    name = safe_data_name(Path(path).stem)
    if x.ndim == 2:
        return Dataset(DataInfo(name=name, shape=(2,), kind="points"), xtr, xte)
    return Dataset(_image_info(name, x), xtr, xte)
