"""torch-fidelity's extractors behind ours (the other direction, ours inside it, is :mod:`.fidelity_bridge`).

* :class:`FidelityExtractor` runs one of torch-fidelity's feature extractors
  (``inception-v3-compat``, ``clip``; ``dinov2`` in :mod:`.dinov2`) with weights
  from a local file (``weights=PATH`` / ``--extractor-weights PATH``), the torch
  hub checkpoints directory, or a download (unless ``$GENBENCH_OFFLINE``).
  Images reach it as torch-fidelity expects them: uint8 0-255, 3 channels
  (grey repeated), resized inside the extractor (TF1-compatible bilinear).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch_fidelity.feature_extractor_clip import MODEL_METADATA as CLIP_METADATA
from torch_fidelity.feature_extractor_clip import MODEL_URLS as CLIP_URLS
from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

from .base import Extractor, ExtractorError, file_hash, to_uint8_rgb

__all__ = [
    "FidelityExtractor",
    "InceptionExtractor",
    "ClipExtractor",
    "downloads_allowed",
    "hub_checkpoints",
]


def downloads_allowed() -> bool:
    """False when ``$GENBENCH_OFFLINE`` is set (to anything but 0/empty)."""
    return os.environ.get("GENBENCH_OFFLINE", "0") in ("", "0")


def hub_checkpoints() -> Path:
    """``<torch hub dir>/checkpoints``: where torch-fidelity keeps downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


class FidelityExtractor(Extractor):
    """An extractor run through one of torch-fidelity's feature extractors.

    Weights: ``weights=PATH`` (the CLI's ``--extractor-weights``), else the file
    torch-fidelity expects in ``<torch hub dir>/checkpoints/``, else a download
    (unless ``$GENBENCH_OFFLINE`` is set or ``download=False``). Missing or
    unreadable weights raise :class:`ExtractorError` naming the file and saying
    where to get the right one.

    Subclasses set ``name``, ``variants`` (torch-fidelity names), ``default_variant``,
    ``feature_layer``, ``logits_layer`` and implement ``_weights_source`` and ``_build``.
    """

    variants: tuple[str, ...] = ()
    default_variant = ""
    feature_layer = ""
    logits_layer: str | None = None
    input_size = 0

    def __init__(self, weights: str | Path | None = None, variant: str | None = None, device: str | None = None,
                 batch_size: int = 64, download: bool = True) -> None:  # fmt: skip
        self.variant = variant or self.default_variant
        if self.variant not in self.variants:
            raise ExtractorError(f"{self.name}: unknown variant {self.variant!r}; valid: {', '.join(self.variants)}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size
        path = self._resolve_weights(weights, download)
        try:
            self.module = self._build(path)
        except ExtractorError:
            raise
        except Exception as e:  # a wrong or corrupt file: say which and how to get the right one
            raise ExtractorError(f"{self.name}: cannot load weights from {path} ({type(e).__name__}: {e}). {self.how_to()}") from e
        self.module.requires_grad_(False).eval().to(self.device)
        self.weights_path = str(path)
        self.weights_hash = file_hash(path)

    # --- weights
    def _weights_source(self) -> tuple[str, str]:
        """(url, file name in the torch hub checkpoints dir) of the variant's weights."""
        raise NotImplementedError

    def how_to(self) -> str:
        url, fname = self._weights_source()
        return (
            f"Get {fname} from {url} (on a machine with network), then either copy it to {hub_checkpoints()}/ "
            f"or pass its path with --extractor-weights PATH (Python: get_extractor({self.name!r}, weights=PATH))."
        )

    def _resolve_weights(self, weights: str | Path | None, download: bool) -> Path:
        url, fname = self._weights_source()
        if weights is not None:
            p = Path(weights).expanduser()
            if not p.is_file():
                raise ExtractorError(f"{self.name}: weights file {p} not found. {self.how_to()}")
            return p
        cached = hub_checkpoints() / fname
        if cached.is_file():
            return cached
        if not (download and downloads_allowed()):
            raise ExtractorError(f"{self.name}: weights {fname} are not in {cached.parent} and downloads are off. {self.how_to()}")
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{fname}.part{os.getpid()}")
        try:
            torch.hub.download_url_to_file(url, str(tmp), progress=False)
            os.replace(tmp, cached)
        except Exception as e:
            tmp.unlink(missing_ok=True)
            raise ExtractorError(
                f"{self.name}: weights {fname} missing and the download from {url} failed ({type(e).__name__}: {e}). {self.how_to()}"
            ) from e
        return cached

    def _build(self, path: Path) -> nn.Module:
        raise NotImplementedError

    # --- extraction
    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "variant": self.variant, "input": "uint8 RGB 0-255 (grey repeated)",
                "resize": f"bilinear (TF1-compatible) to {self.input_size}"}  # fmt: skip

    def _check(self, x: Tensor) -> Tensor:
        x = super()._check(x)
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"{self.name} expects (N, 1|3, H, W) images, got shape {tuple(x.shape)}")
        if x.min() < 0 or x.max() > 1:
            raise ValueError(f"{self.name} expects images in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
        return x

    def _layers(self) -> list[str]:
        return [self.feature_layer] + ([self.logits_layer] if self.logits_layer else [])

    def _run(self, x: Tensor, batch_size: int | None = None) -> dict[str, Tensor]:
        out = self._memo_get(x)
        if out is not None:
            return out
        x_in, x = x, self._check(x)
        bs = batch_size or self.batch_size
        outs: dict[str, list[Tensor]] = {k: [] for k in self._layers()}
        with torch.no_grad():
            for i in range(0, len(x), bs):
                res = self.module(to_uint8_rgb(x[i : i + bs]).to(self.device))
                for k, v in zip(self._layers(), res):
                    outs[k].append(v.float().cpu())
        out = {k: torch.cat(v) for k, v in outs.items()}
        self._memo_set(x_in, out)
        return out

    def features(self, x: Tensor, batch_size: int | None = None) -> Tensor:
        return self._run(x, batch_size)[self.feature_layer]

    def logits(self, x: Tensor, batch_size: int | None = None) -> Tensor:
        if not self.logits_layer:
            raise ExtractorError(f"{self.name} has no classifier logits")
        return self._run(x, batch_size)[self.logits_layer]


class InceptionExtractor(FidelityExtractor):
    """torch-fidelity's ``inception-v3-compat``: the literature's FID/KID/IS network.

    2048-D pool features (FID, KID, PRDC), 1008 ``logits_unbiased`` (IS), input
    resized to 299 x 299.
    """

    name = "inception-v3-compat"
    variants = ("inception-v3-compat",)
    default_variant = "inception-v3-compat"
    feature_layer = "2048"
    logits_layer = "logits_unbiased"
    dim = 2048
    num_classes = 1008
    has_logits = True
    input_size = 299

    def _weights_source(self) -> tuple[str, str]:
        return URL_INCEPTION_V3, URL_INCEPTION_V3.rsplit("/", 1)[1]

    def _build(self, path: Path) -> nn.Module:
        return FeatureExtractorInceptionV3(self.variant, self._layers(), feature_extractor_weights_path=str(path), verbose=False)


class ClipExtractor(FidelityExtractor):
    """torch-fidelity's CLIP image encoders (default ``clip-vit-b-32``); weights are OpenAI's TorchScript files."""

    name = "clip"
    variants = tuple(CLIP_URLS)
    default_variant = "clip-vit-b-32"
    feature_layer = "clip"

    def _weights_source(self) -> tuple[str, str]:
        return CLIP_URLS[self.variant], f"{self.variant}-{CLIP_METADATA[self.variant]['hash']}.pt"

    def _build(self, path: Path) -> nn.Module:
        m = FeatureExtractorCLIP(self.variant, [self.feature_layer], feature_extractor_weights_path=str(path), verbose=False)
        self.dim = int(m.model.visual.output_dim)
        self.input_size = int(m.resolution)
        return m
