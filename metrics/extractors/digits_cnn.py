"""``digits-cnn``: the embedded extractor for 8x8 digits (works offline).

A small CNN trained deterministically (seed 0, 40 epochs, Adam 2e-3, batch
64, random 1-pixel shifts, one thread) on the scikit-learn digits train split
— the fixed stratified split that ``bench.data`` registers as training data
``"digits"`` — and cached (see :mod:`metrics.extractors.classifier`). Its
penultimate layer (128-D) feeds FID/KID/PRDC; its 10 logits feed IS, class
histograms and mode counting. Test accuracy >= 0.95 is enforced; the
hash of the shipped weights is :data:`REFERENCE_WEIGHTS_HASH`.

Images with 3 channels (stacked digits) are embedded channel by channel and
concatenated (3 x 128-D); logits are per channel (``channel_logits``).
"""

from __future__ import annotations

from .classifier import ClassifierExtractor

__all__ = ["DigitsCNNExtractor", "DIGITS_CNN_VERSION", "REFERENCE_WEIGHTS_HASH"]

DIGITS_CNN_VERSION = 2  # bump when the architecture or training recipe changes
REFERENCE_WEIGHTS_HASH = "244bf800a4a63d8c"  # the shipped weights (weights/digits-cnn-v2.pt); the recipe retrained on another CPU differs


class DigitsCNNExtractor(ClassifierExtractor):
    """Embedded classifier-based extractor for 8x8 digits (offline default)."""

    name = "digits-cnn"
    version = DIGITS_CNN_VERSION
    dim = 128
    num_classes = 10
    image_size = (8, 8)
    data_name = "digits"
    epochs = 40
    MIN_ACCURACY = 0.95

