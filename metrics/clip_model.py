"""The interface every CLIP model of the project implements (:class:`ClipModel`), and its error type.

The models are in :mod:`metrics.clip` (the embedded ``digits-clip``, :func:`metrics.clip.load_clip`) and
:mod:`metrics.clip_open` (pretrained open_clip checkpoints).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

__all__ = ["ClipError", "ClipModel"]


class ClipError(RuntimeError):
    """A CLIP model cannot be built or loaded; the message says how to fix it."""


class ClipModel:
    """Common interface: L2-normalized image and text embeddings."""

    name = "clip"
    weights_hash = "none"
    report: dict[str, Any] = {}

    def encode_images(self, x: Tensor, batch_size: int = 512) -> Tensor:
        """Images float32 NCHW in [0, 1] -> (N, D) unit vectors (CPU)."""
        raise NotImplementedError

    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        """Strings -> (N, D) unit vectors (CPU)."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        return {"clip_model": self.name, "clip_weights_hash": self.weights_hash}

    @staticmethod
    def _check_prompts(prompts: Sequence[str]) -> list[str]:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not a single string")
        out = list(prompts)
        bad = [p for p in out if not isinstance(p, str)]
        if bad:
            raise TypeError(f"prompts must be strings, got {type(bad[0]).__name__}")
        return out

    @staticmethod
    def _check_images(x: Tensor, who: str) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{who}: expected a torch.Tensor of images, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"{who}: expected images (N, C, H, W), got shape {tuple(x.shape)}")
        x = x.float()
        if not torch.isfinite(x).all():
            raise ValueError(f"{who}: images contain NaN/inf values")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"{who}: images must be in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
        return x
