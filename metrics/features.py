"""Compatibility alias: the extractors moved to :mod:`metrics.extractors`.

Import from ``metrics.extractors`` (registry, base class, ``get_extractor``),
``metrics.extractors.digits_cnn``, ``metrics.extractors.fidelity`` and
``metrics.extractors.dinov2``. This module re-exports the old names for code
not yet updated, and keeps ``digits_split`` until ``bench.data`` (which now
defines the split) no longer imports it from here; then delete this file.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from .extractors import (  # noqa: F401
    EXTRACTORS,
    TRAINING_DATA,
    Extractor,
    ExtractorError,
    LabeledSplit,
    available,
    default_cache_dir,
    file_hash,
    get_extractor,
    register_extractor,
    register_training_data,
    state_hash,
    to_uint8_rgb,
)
from .extractors.digits_cnn import DIGITS_CNN_VERSION, DigitsCNNExtractor, DigitsNet  # noqa: F401
from .extractors.dinov2 import DinoV2Extractor  # noqa: F401
from .extractors.fidelity import (  # noqa: F401
    ClipExtractor,
    FidelityExtractor,
    InceptionExtractor,
    Uint8ImageDataset,
    downloads_allowed,
    register_torch_fidelity,
)
from .extractors.raw import RawExtractor  # noqa: F401

_hash_state = state_hash


def digits_split(test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn digits ((N, 8, 8) float32 in [0, 1], int64 labels), stratified split: (x_train, x_test, y_train, y_test).

    Transitional copy for the old ``bench/data.py``; the definition lives in ``bench.data``.
    """
    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)


# The old bench/data.py does not register the digits training data; bench.data (package) does.
if "digits" not in TRAINING_DATA:
    register_training_data("digits", digits_split)
