"""Image-to-image translation tasks: the ``paired`` and ``unpaired`` data kinds.

A :class:`TranslationDataset` holds a *source* domain and a *target* domain
(pix2pix learns source -> target from aligned pairs; CycleGAN from two
unaligned sets). Images follow the image conventions: float32 NCHW in
[0, 1], ``x_int / (K - 1)``.

Embedded tasks, built deterministically from the scikit-learn digits and its
fixed stratified split (1437 train / 360 test), no download:

* ``digits-complete`` (paired): the bottom half (rows 4-7) set to 0 -> the
  full digit; source and target 1x8x8.
* ``digits-sr`` (paired): 2x super-resolution, 4x4 -> 8x8; the source is the
  2x2 average of the digit rounded to its 17 levels.
* ``digits-thick`` (unpaired): digits <-> stroke-thickened digits (3x3 max
  filter, zero padding). Each split is cut in two stratified halves (seed 0):
  domain A shows the first half as they are, domain B the *other* half
  thickened, so no image appears in both domains. The thickened version of
  every test source is kept as ``test_truth`` for evaluation only.

From files: ``paired-folder`` (``A/`` and ``B/`` with matching file names)
and ``unpaired-folder`` (``A/`` and ``B/`` with any names and counts); either
may instead hold ``trainA/ trainB/ testA/ testB/`` (the CycleGAN layout) to
fix the split. Every file is validated as the ``folder`` loader does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genbench.protocol import DataInfo
from metrics.extractors import register_training_data

from .core import DIGIT_NAMES, DataError, digit_captions, random_split, register_dataset, stratified_split
from .embedded import digits_split
from .files import _image_files, _stack_images, safe_data_name

__all__ = [
    "TranslationDataset",
    "mask_bottom_half",
    "downsample_levels",
    "thicken",
    "digits_complete",
    "digits_sr",
    "digits_thick",
    "paired_folder",
    "unpaired_folder",
]


@dataclass
class TranslationDataset:
    """An image-to-image translation task (data kind ``"paired"`` or ``"unpaired"``).

    Attributes:
        info: metadata. ``info.kind`` is ``"paired"`` or ``"unpaired"``;
            ``info.shape`` the shape of one *target* image (what a model
            outputs), ``info.source_shape`` of one *source* image (what
            ``translate`` receives); ``info.levels`` the levels K of both
            domains; ``class_names``/``captions`` those of the labels.
        train_source, test_source: source-domain images (domain A),
            float32 (N, *source_shape) in [0, 1].
        train_target, test_target: target-domain images (domain B),
            float32 (M, *shape) in [0, 1].
            *Paired*: row i of ``*_target`` is the translation of row i of
            ``*_source`` (N == M).
            *Unpaired*: the two domains hold different images; N and M may
            differ and row i of one says nothing about row i of the other.
        train_source_y, test_source_y, train_target_y, test_target_y: int64
            class labels of each domain's images, or ``None``. Paired: the
            source and target labels are the same tensor. Unpaired: labels
            are for **evaluation only** (class preservation: the classifier's
            label of ``translate(test_source)`` against ``test_source_y``);
            an unpaired model must not train on them.
        test_truth: the true target-domain image of each test source,
            (N_test, *shape), when the task knows it: ``test_target`` for
            paired tasks (set automatically), the known mapping applied to
            ``test_source`` for embedded unpaired tasks, ``None`` for user
            folders. For evaluation only (L1/PSNR/SSIM against the truth).
        description: one line saying what the task is.

    As a plain data set (``train_x``/``test_x``/``train_y``/``test_y``,
    ``name``) it is its *target* domain: the distribution a model's outputs
    are compared to (FID/PRDC of outputs against the target domain).
    """

    info: DataInfo
    train_source: Tensor
    train_target: Tensor
    test_source: Tensor
    test_target: Tensor
    train_source_y: Tensor | None = None
    test_source_y: Tensor | None = None
    train_target_y: Tensor | None = None
    test_target_y: Tensor | None = None
    test_truth: Tensor | None = None
    description: str = field(default="")

    def __post_init__(self) -> None:
        info = self.info
        if info.kind not in ("paired", "unpaired"):
            raise DataError(f"{info.name}: a TranslationDataset has kind 'paired' or 'unpaired', got {info.kind!r}")
        if info.source_shape is None:
            raise DataError(f"{info.name}: DataInfo.source_shape must be set for a translation task")
        if self.paired and self.test_truth is None:
            self.test_truth = self.test_target
        for attr, shape in (("train_source", info.source_shape), ("test_source", info.source_shape),
                            ("train_target", info.shape), ("test_target", info.shape), ("test_truth", info.shape)):  # fmt: skip
            t = getattr(self, attr)
            if t is None and attr == "test_truth":
                continue
            if not isinstance(t, Tensor) or t.dtype != torch.float32 or tuple(t.shape[1:]) != tuple(shape) or len(t) == 0:
                got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
                raise DataError(f"{info.name}: {attr} must be non-empty float32 (N, {', '.join(map(str, shape))}), got {got}")
            if t.min() < 0 or t.max() > 1 or not torch.isfinite(t).all():
                raise DataError(f"{info.name}: {attr} must be finite and in [0, 1]")
        for split in ("train", "test"):
            src, tgt = getattr(self, f"{split}_source"), getattr(self, f"{split}_target")
            if self.paired and len(src) != len(tgt):
                raise DataError(f"{info.name}: paired task with {len(src)} {split} sources but {len(tgt)} targets")
            for side, x in (("source", src), ("target", tgt)):
                y = getattr(self, f"{split}_{side}_y")
                if y is not None and (y.ndim != 1 or len(y) != len(x)):
                    raise DataError(f"{info.name}: {split}_{side}_y must hold one label per image ({len(x)}), got shape {tuple(y.shape)}")
        if self.test_truth is not None and len(self.test_truth) != len(self.test_source):
            raise DataError(f"{info.name}: test_truth must hold one image per test source ({len(self.test_source)}), got {len(self.test_truth)}")

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def paired(self) -> bool:
        """Whether row i of the targets is the translation of row i of the sources."""
        return self.info.kind == "paired"

    # the target domain, for code that treats the task as a plain data set
    @property
    def train_x(self) -> Tensor:
        return self.train_target

    @property
    def test_x(self) -> Tensor:
        return self.test_target

    @property
    def train_y(self) -> Tensor | None:
        return self.train_target_y

    @property
    def test_y(self) -> Tensor | None:
        return self.test_target_y


# --------------------------------------------------------------------- the embedded mappings
def mask_bottom_half(x: Tensor) -> Tensor:
    """Images with their bottom half (rows H//2 .. H-1) set to 0 (background)."""
    out = x.clone()
    out[..., x.shape[-2] // 2 :, :] = 0.0
    return out


def downsample_levels(x: Tensor, levels: int, factor: int = 2) -> Tensor:
    """``factor`` x ``factor`` average pooling, rounded back to ``levels`` intensity levels (values stay on the grid)."""
    return torch.round(F.avg_pool2d(x, factor) * (levels - 1)) / (levels - 1)


def thicken(x: Tensor) -> Tensor:
    """Stroke thickening: a 3x3 maximum filter with zero padding (grey dilation); values stay on the grid."""
    return F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, stride=1)


def _digits_tensors() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    xtr, xte, ytr, yte = digits_split()
    return torch.as_tensor(xtr)[:, None], torch.as_tensor(xte)[:, None], torch.as_tensor(ytr), torch.as_tensor(yte)


def _digits_info(name: str, kind: str, source_shape: tuple[int, ...]) -> DataInfo:
    return DataInfo(name=name, shape=(1, 8, 8), kind=kind, levels=17, class_names=DIGIT_NAMES, captions=digit_captions(), source_shape=source_shape)


def _paired_digits(name: str, mapping, source_shape: tuple[int, ...], description: str) -> TranslationDataset:
    xtr, xte, ytr, yte = _digits_tensors()
    return TranslationDataset(_digits_info(name, "paired", source_shape), mapping(xtr), xtr, mapping(xte), xte,
                              ytr, yte, ytr, yte, description=description)  # fmt: skip


COMPLETE_DESCRIPTION = "paired: digit completion, 8x8 digits with the bottom half masked -> the full digit (17 levels)"
SR_DESCRIPTION = "paired: 2x super-resolution of digits, 4x4 (2x2 average, 17 levels) -> 8x8"
THICK_DESCRIPTION = "unpaired: digits <-> stroke-thickened digits (3x3 max filter), different images in each domain"


@register_dataset("digits-complete", kind="paired", description=COMPLETE_DESCRIPTION, extractor="digits-cnn")
def digits_complete() -> TranslationDataset:
    """Paired: digit completion, bottom half masked -> full digit (digits' fixed split, 1437/360)."""
    return _paired_digits("digits-complete", mask_bottom_half, (1, 8, 8), COMPLETE_DESCRIPTION)


@register_dataset("digits-sr", kind="paired", description=SR_DESCRIPTION, extractor="digits-cnn")
def digits_sr() -> TranslationDataset:
    """Paired: 2x super-resolution 4x4 -> 8x8 (digits' fixed split, 1437/360)."""
    return _paired_digits("digits-sr", lambda x: downsample_levels(x, 17), (1, 4, 4), SR_DESCRIPTION)


@register_dataset("digits-thick", kind="unpaired", description=THICK_DESCRIPTION, extractor="thick-digits-cnn")
def digits_thick(seed: int = 0) -> TranslationDataset:
    """Unpaired: digits (A) <-> stroke-thickened digits (B); each split halved (stratified, ``seed``), one half per domain."""
    xtr, xte, ytr, yte = _digits_tensors()
    parts = {}
    for split, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        idx = np.arange(len(x))
        ia, ib, _, _ = stratified_split(idx, y.numpy(), 0.5, seed)  # disjoint halves: A shows ia, B shows ib thickened
        ia, ib = torch.as_tensor(np.sort(ia)), torch.as_tensor(np.sort(ib))
        parts[split] = (x[ia], thicken(x[ib]), y[ia], y[ib])
    (tra, trb, trya, tryb), (tea, teb, teya, teyb) = parts["train"], parts["test"]
    return TranslationDataset(_digits_info("digits-thick", "unpaired", (1, 8, 8)), tra, trb, tea, teb,
                              trya, teya, tryb, teyb, test_truth=thicken(tea), description=THICK_DESCRIPTION)  # fmt: skip


def _thick_digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits split with every image thickened: training data of the ``thick-digits-cnn`` extractor."""
    xtr, xte, ytr, yte = digits_split()
    th = lambda a: thicken(torch.as_tensor(a)[:, None])[:, 0].numpy()  # noqa: E731
    return th(xtr), th(xte), ytr, yte


register_training_data("digits-thick", _thick_digits_split)


# --------------------------------------------------------------------- user folders
def _layout(root: Path) -> dict[str, tuple[Path, Path]]:
    """``{"all": (A, B)}`` or ``{"train": (trainA, trainB), "test": (testA, testB)}``; DataError naming what is missing."""
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    if (root / "A").is_dir() or (root / "B").is_dir():
        for d in ("A", "B"):
            if not (root / d).is_dir():
                raise DataError(f"{root}: has {'A/' if d == 'B' else 'B/'} but no {d}/ folder; a translation task needs both domains")
        return {"all": (root / "A", root / "B")}
    split_dirs = [root / d for d in ("trainA", "trainB", "testA", "testB")]
    if any(d.is_dir() for d in split_dirs):
        missing = [d.name for d in split_dirs if not d.is_dir()]
        if missing:
            raise DataError(f"{root}: missing {', '.join(m + '/' for m in missing)} (the split layout needs trainA/ trainB/ testA/ testB/)")
        return {"train": (root / "trainA", root / "trainB"), "test": (root / "testA", root / "testB")}
    raise DataError(f"{root}: expected folders A/ and B/ (or trainA/ trainB/ testA/ testB/) holding the source and target images")


def _matched_files(a_dir: Path, b_dir: Path) -> tuple[list[Path], list[Path]]:
    """Files of A/ and B/ paired by name without suffix (``x.png`` <-> ``x.jpg``); every name must have its partner."""
    sides = {}
    for d in (a_dir, b_dir):
        by_stem: dict[str, Path] = {}
        for f in _image_files(d):
            if f.stem in by_stem:
                raise DataError(f"{f}: two files named {f.stem!r} ({by_stem[f.stem].name}, {f.name}); pairs are matched by name")
            by_stem[f.stem] = f
        sides[d] = by_stem
    a, b = sides[a_dir], sides[b_dir]
    for stems, own, other in ((a, a_dir, b_dir), (b, b_dir, a_dir)):
        for stem in sorted(stems):
            if stem not in (b if own == a_dir else a):
                raise DataError(f"{stems[stem]}: no image named {stem!r} in {other}; a paired task needs the same file names in A/ and B/")
    stems = sorted(a)
    return [a[s] for s in stems], [b[s] for s in stems]


def _folder_splits(
    root: Path, files: Callable[[Path, Path], tuple[list[Path], list[Path]]], test_fraction: float, seed: int
) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], int]:
    """The images of ``root``'s ``A/`` and ``B/`` folders (``files`` lists the two folders' files: matched pairs or
    all of each) as (train A, train B, test A, test B) and the grey levels K (at least 256). Without
    ``train/``/``test/`` sub-folders each domain is split at random with ``seed``: the same permutation for equal
    lengths, so matched pairs stay pairs."""
    parts: dict[str, tuple[Tensor, Tensor]] = {}
    levels = 256
    for split, (a_dir, b_dir) in _layout(root).items():
        fa, fb = files(a_dir, b_dir)
        (xa, _), (xb, kb) = _stack_images(fa, str(a_dir)), _stack_images(fb, str(b_dir))
        levels = max(levels, kb)
        parts[split] = (xa, xb)
    if "all" in parts:
        xa, xb = parts["all"]
        tra, tea, _, _ = random_split(xa, None, test_fraction, seed)
        trb, teb, _, _ = random_split(xb, None, test_fraction, seed)
        return (tra, trb, tea, teb), levels
    (tra, trb), (tea, teb) = parts["train"], parts["test"]
    return (tra, trb, tea, teb), levels


def _folder_info(root: Path, kind: str, src: Tensor, tgt: Tensor, levels: int) -> DataInfo:
    return DataInfo(name=safe_data_name(root), shape=tuple(tgt.shape[1:]), kind=kind, levels=levels, source_shape=tuple(src.shape[1:]))


@register_dataset("paired-folder", kind="paired", source="file")
def paired_folder(path: str, test_fraction: float = 0.2, seed: int = 0) -> TranslationDataset:
    """Paired images from ``A/`` (sources) and ``B/`` (targets) with matching file names, split at random with ``seed``."""
    root = Path(path)
    (tra, trb, tea, teb), levels = _folder_splits(root, _matched_files, test_fraction, seed)  # a test size differing from train is a DataError below
    desc = f"paired images from {root}"
    return TranslationDataset(_folder_info(root, "paired", tra, trb, levels), tra, trb, tea, teb, description=desc)


@register_dataset("unpaired-folder", kind="unpaired", source="file")
def unpaired_folder(path: str, test_fraction: float = 0.2, seed: int = 0) -> TranslationDataset:
    """Unpaired domains from ``A/`` (sources) and ``B/`` (targets), any names and counts, each split at random with ``seed``."""
    root = Path(path)
    (tra, trb, tea, teb), levels = _folder_splits(root, lambda a, b: (_image_files(a), _image_files(b)), test_fraction, seed)
    return TranslationDataset(_folder_info(root, "unpaired", tra, trb, levels), tra, trb, tea, teb, description=f"unpaired domains from {root}")
