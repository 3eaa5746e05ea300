"""Our embedded classifier extractors inside torch-fidelity, the other direction of :mod:`.fidelity`:
:func:`register_torch_fidelity` makes ``torch_fidelity.calculate_metrics(..., feature_extractor="digits-cnn")``
work, and :class:`Uint8ImageDataset` hands it our float images. (Not a registry target, so it may build
extractors through the package's :func:`~metrics.extractors.get_extractor`.)"""

from __future__ import annotations

from typing import Any

import torch
import torch_fidelity
from torch import Tensor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from . import get_extractor
from .base import ExtractorError, to_uint8_rgb
from .classifier import ClassifierExtractor

__all__ = ["FidelityClassifier", "register_torch_fidelity", "Uint8ImageDataset"]


# ------------------------------------------------------------------------------ our classifiers inside torch-fidelity
class FidelityClassifier(FeatureExtractorBase):
    """An embedded classifier extractor for torch-fidelity: uint8 (N, 1|3, H, W) -> ``"128"`` features, ``"logits"``.

    ``extractor_name`` (set by :func:`_fidelity_class`) names the genbench
    extractor; 3-channel input (torch-fidelity's RGB convention) is averaged
    to grey, i.e. grey images repeated over channels give the grey image back.
    """

    extractor_name = ""

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, features_list)
        kw = {"weights": feature_extractor_weights_path} if feature_extractor_weights_path else {}
        ext = get_extractor(self.extractor_name, **kw)
        if not isinstance(ext, ClassifierExtractor):
            raise ExtractorError(f"{self.extractor_name} is not an embedded classifier extractor")
        self.size = ext.image_size
        self.net = ext.make_net()
        self.net.load_state_dict(ext.net.state_dict())
        self.net.eval()

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting image as torch.Tensor with dtype=torch.uint8")
        vassert(x.dim() == 4 and x.shape[1] in (1, 3) and tuple(x.shape[2:]) == tuple(self.size),
                f"Input is not Bx(1|3)x{self.size[0]}x{self.size[1]}: {tuple(x.shape)}")  # fmt: skip
        x = x.float() / 255.0
        if x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        f, logits = self.net(x)
        out = {"128": f, "logits": logits}
        return tuple(out[a] for a in self.features_list)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("128", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "128", "kid": "128", "prc": "128"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return torch.zeros(1, 1, 8, 8, dtype=torch.uint8)


def _fidelity_class(extractor_name: str) -> type[FidelityClassifier]:
    return type(f"Fidelity_{extractor_name.replace('-', '_')}", (FidelityClassifier,), {"extractor_name": extractor_name})


def register_torch_fidelity(names: tuple[str, ...] = ("digits-cnn", "mnist-cnn")) -> None:
    """Register our embedded classifiers with torch-fidelity (idempotent), so that
    ``torch_fidelity.calculate_metrics(..., feature_extractor="digits-cnn")`` works."""
    for name in names:
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            torch_fidelity.register_feature_extractor(name, _fidelity_class(name))


class Uint8ImageDataset(torch.utils.data.Dataset):
    """float images (N, 1|3, H, W) in [0, 1] as a torch Dataset of uint8 RGB tensors:
    an input for ``torch_fidelity.calculate_metrics(input1=..., input2=...)``."""

    def __init__(self, x: Tensor) -> None:
        self.x = to_uint8_rgb(torch.as_tensor(x).float())

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Tensor:
        return self.x[i]
