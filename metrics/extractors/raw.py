"""``raw``: the identity extractor, for 2-D data (features are the points themselves)."""

from __future__ import annotations

from torch import Tensor

from .base import Extractor

__all__ = ["RawExtractor"]


class RawExtractor(Extractor):
    """Identity: the samples themselves, flattened to (N, D)."""

    name = "raw"
    input_kind = "points"
    weights_hash = "identity"

    def _features(self, x: Tensor) -> Tensor:
        return x.reshape(len(x), -1)
