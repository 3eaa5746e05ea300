"""``dinov2``: DINOv2 ViT CLS features (the FD_DINOv2 protocol), built in code — no ``hubconf.py``.

torch-fidelity gets DINOv2 with ``torch.hub.load("facebookresearch/dinov2", ...)``,
which imports and runs the repository's ``hubconf.py``. Here the network is
built from timm's ViT blocks (an installed package, not a downloaded file)
and the original checkpoint ``dinov2_vit?14_pretrain.pth`` is read with
``torch.load(weights_only=True)``: no file can run code.

The forward pass is DINOv2's own: patch embedding, class token, position
embeddings of the 37 x 37 training grid interpolated to the input's grid the
way DINOv2 does it (bicubic with ``scale_factor = (grid + 0.1) / 37``, no
antialias), the blocks, the final norm, the CLS token. The input pipeline is
torch-fidelity's: uint8 RGB, TF1-compatible bilinear resize to 224, ImageNet
mean/std.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
import torchvision
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import Tensor, nn
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from .base import ExtractorError
from .fidelity import FidelityExtractor

__all__ = ["DinoV2Net", "DinoV2Extractor", "DINOV2_DIMS"]

DINOV2_DIMS = {"dinov2-vit-s-14": 384, "dinov2-vit-b-14": 768, "dinov2-vit-l-14": 1024, "dinov2-vit-g-14": 1536}
_TIMM_NAMES = {"s": "small", "b": "base", "l": "large", "g": "giant"}
TRAIN_GRID = 37  # 518 / 14: the grid the position embeddings were trained on
INTERPOLATE_OFFSET = 0.1  # DINOv2's interpolate_offset
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DinoV2Net(nn.Module):
    """A DINOv2 ViT-{S,B,L,G}/14: images (N, 3, H, W), normalized -> CLS features (N, dim)."""

    def __init__(self, size: str) -> None:
        super().__init__()
        if size not in _TIMM_NAMES:
            raise ExtractorError(f"dinov2: unknown size {size!r}; valid: {', '.join(_TIMM_NAMES)}")
        self.vit = timm.create_model(
            f"vit_{_TIMM_NAMES[size]}_patch14_dinov2", pretrained=False, num_classes=0, img_size=14 * TRAIN_GRID, dynamic_img_size=True
        )

    def pos_embed(self, h: int, w: int) -> Tensor:
        """Position embeddings (1, 1 + h*w, dim) for an h x w patch grid, interpolated as DINOv2 does."""
        pe = self.vit.pos_embed.float()
        cls_pe, patch_pe = pe[:, :1], pe[:, 1:]
        m = int(math.sqrt(patch_pe.shape[1]))
        if (h, w) == (m, m):
            return pe
        dim = patch_pe.shape[-1]
        grid = patch_pe.reshape(1, m, m, dim).permute(0, 3, 1, 2)
        scale = ((h + INTERPOLATE_OFFSET) / m, (w + INTERPOLATE_OFFSET) / m)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
        if tuple(grid.shape[-2:]) != (h, w):
            raise ExtractorError(f"dinov2: position-embedding interpolation gave {tuple(grid.shape[-2:])}, expected {(h, w)}")
        return torch.cat([cls_pe, grid.permute(0, 2, 3, 1).reshape(1, h * w, dim)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        v = self.vit
        t = v.patch_embed(x)  # (N, h, w, dim) with dynamic_img_size
        n, h, w, dim = t.shape
        t = torch.cat([v.cls_token.expand(n, -1, -1), t.reshape(n, h * w, dim)], dim=1)
        t = t + self.pos_embed(h, w).to(t.dtype)
        t = v.norm(v.blocks(v.norm_pre(t)))
        return t[:, 0]

    def load_original(self, state: dict[str, Tensor]) -> None:
        """Load an original ``dinov2_vit?14_pretrain.pth`` state dict (``mask_token`` is dropped)."""
        state = {k: v for k, v in state.items() if k != "mask_token"}
        self.vit.load_state_dict(checkpoint_filter_fn(state, self.vit))


class _FidelityInput(nn.Module):
    """torch-fidelity's DINOv2 input pipeline around a network: uint8 RGB -> resize -> normalize -> net."""

    def __init__(self, net: nn.Module, size: int) -> None:
        super().__init__()
        self.net = net
        self.size = size

    def forward(self, x: Tensor) -> tuple[Tensor]:
        x = interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(self.size, self.size), align_corners=False)
        x = torchvision.transforms.functional.normalize(x, [255 * m for m in IMAGENET_MEAN], [255 * s for s in IMAGENET_STD])
        return (self.net(x).float(),)


class DinoV2Extractor(FidelityExtractor):
    """DINOv2 CLS features (default ``dinov2-vit-l-14``, the FD_DINOv2 protocol) from the original weights file.

    No ``torch.hub`` code runs: see the module docstring. A weights file that
    is not a plain state dict of the variant raises :class:`ExtractorError`
    naming the file.
    """

    name = "dinov2"
    variants = tuple(DINOV2_DIMS)
    default_variant = "dinov2-vit-l-14"
    feature_layer = "dinov2"
    input_size = 224
    arch = "genbench DinoV2Net (timm ViT blocks, DINOv2 position interpolation)"

    def _short(self) -> str:
        return "vit" + self.variant.split("-")[2] + "14"  # dinov2-vit-s-14 -> vits14

    def _weights_source(self) -> tuple[str, str]:
        s = self._short()
        return f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{s}/dinov2_{s}_pretrain.pth", f"dinov2_{s}_pretrain.pth"

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "arch": self.arch}

    def _build(self, path: Path) -> nn.Module:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise ExtractorError(f"dinov2: {path} is not a state dict of tensors (got {type(state).__name__}). {self.how_to()}")
        net = DinoV2Net(self.variant.split("-")[2])
        net.load_original(state)
        self.dim = DINOV2_DIMS[self.variant]
        return _FidelityInput(net, self.input_size)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the network code is part of what the features depend on
        self.weights_hash = hashlib.sha256(f"{self.weights_hash}|{self.arch}".encode()).hexdigest()[:16]
