"""A pretrained open_clip model behind the :class:`~metrics.clip_model.ClipModel` interface.

Used when the user names a model *and* a local checkpoint (``load_clip("ViT-B-32",
pretrained="/path/open_clip_pytorch_model.bin")``); nothing is downloaded. Images are resized (bicubic) to the
model's input size, grey images repeated to 3 channels, and normalized with the model's mean/std.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .clip_model import ClipError, ClipModel
from .extractors import file_hash

__all__ = ["OpenClipModel", "load_open_clip"]


OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class OpenClipModel(ClipModel):
    """Any open_clip CLIP (pretrained weights loaded by :func:`load_clip`)."""

    def __init__(
        self,
        model,
        tokenizer,
        name: str,
        mean: Sequence[float] = OPENAI_MEAN,
        std: Sequence[float] = OPENAI_STD,
        weights_hash: str = "none",
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        size = getattr(model.visual, "image_size", 224)
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.weights_hash = weights_hash
        self.report = {}

    def _prep(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"{self.name}: expected 1 or 3 channels, got {x.shape[1]}")
        if tuple(x.shape[2:]) != self.image_size:
            x = F.interpolate(
                x, size=self.image_size, mode="bicubic", align_corners=False, antialias=x.shape[2] > self.image_size[0]
            ).clamp(0, 1)
        return (x - self.mean) / self.std

    def encode_images(self, x: Tensor, batch_size: int = 64) -> Tensor:
        x = self._check_images(x, self.name)
        dev = next(self.model.parameters()).device
        with torch.no_grad():
            out = [self.model.encode_image(self._prep(x[i : i + batch_size]).to(dev)).float().cpu() for i in range(0, len(x), batch_size)]
        return F.normalize(torch.cat(out), dim=-1)

    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        prompts = self._check_prompts(prompts)
        dev = next(self.model.parameters()).device
        with torch.no_grad():
            return F.normalize(self.model.encode_text(self.tokenizer(prompts).to(dev)).float().cpu(), dim=-1)


def load_open_clip(name: str, pretrained: str | Path | None, device: str | None) -> OpenClipModel:
    import open_clip

    if name not in open_clip.list_models():
        raise ClipError(f"unknown open_clip model {name!r}; valid: digits-clip, or one of open_clip.list_models() (e.g. ViT-B-32)")
    pretrained = pretrained or os.environ.get("GENBENCH_CLIP_WEIGHTS")
    tags = open_clip.list_pretrained_tags_by_model(name)
    hint = (
        f"open_clip model {name!r} needs a local checkpoint: pass pretrained=/path/to/weights (suite setting clip_pretrained, "
        f"or $GENBENCH_CLIP_WEIGHTS). genbench never downloads weights; on a machine with network, fetch e.g. "
        f"'open_clip_pytorch_model.bin' of {name} from the Hugging Face hub (open_clip.list_pretrained_tags_by_model({name!r}) "
        f"lists the tags{': ' + ', '.join(tags[:4]) + (' ...' if len(tags) > 4 else '') if tags else ': none'}) and copy the file here. "
        f"Without a checkpoint use the embedded model (clip_model = 'digits-clip')."
    )
    if not pretrained:
        raise ClipError(hint)
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise ClipError(f"checkpoint {str(path)!r} not found. " + hint)
    try:
        model = open_clip.create_model(name, pretrained=str(path), device=device or "cpu")
    except Exception as e:  # open_clip raises several types for bad checkpoints
        raise ClipError(f"could not load {str(path)!r} as open_clip model {name!r}: {e}") from e
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    return OpenClipModel(
        model,
        open_clip.get_tokenizer(name),
        f"{name}:{path.name}",
        cfg.get("mean", OPENAI_MEAN),
        cfg.get("std", OPENAI_STD),
        file_hash(path),
    )
