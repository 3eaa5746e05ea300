"""Write the packaged weights of the embedded extractors (``metrics/extractors/weights/``).

``python -m bench.ship_weights [--check]``

Each embedded extractor (``digits-cnn``, ``thick-digits-cnn``, ``mnist-cnn``,
``digits-clip``) is trained from its recipe and data (registered by
``bench.data``) into a temporary cache, and the checksummed artifact is copied
to ``metrics/extractors/weights/<name>-v<version>.pt``. The recipes are
deterministic on one machine (seed 0, one thread), but another CPU trains
other weights (for digits-cnn: ``bbd7b8abd39db1d7`` on the machine that first
trained it, ``244bf800a4a63d8c`` on an AVX2 AMD EPYC), so the package ships one
set and every machine reads samples with the same ruler. Bump an extractor's
version when its architecture or recipe changes, and run this again.

``--check`` retrains into a temporary cache and prints, per extractor, this
machine's weights hash beside the shipped one, without writing anything.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from genbench.cache import file_hash, read_artifact
from metrics.clip import CLIP_DIGITS_VERSION, _digits_clip_path, _load_or_train_digits_clip
from metrics.extractors import SHIPPED_WEIGHTS_DIR, shipped_weights, training_data
from metrics.extractors.digits_cnn import DigitsCNNExtractor
from metrics.extractors.mnist_cnn import MnistCNNExtractor
from metrics.extractors.thick_digits_cnn import ThickDigitsCNNExtractor

from . import data as _data  # noqa: F401 - registers the training data providers

CLASSIFIERS = (DigitsCNNExtractor, ThickDigitsCNNExtractor, MnistCNNExtractor)


def _train_all(cache: Path) -> dict[str, tuple[Path, object]]:
    """Train every embedded extractor from its recipe into ``cache``: name -> (artifact path, extractor)."""
    out: dict[str, tuple[Path, object]] = {}
    for cls in CLASSIFIERS:
        ext = cls(cache_dir=cache, train_data=training_data(cls.data_name, for_extractor=cls.name))
        out[cls.name] = (Path(ext.weights_path), ext)
    clip = _load_or_train_digits_clip(cache_dir=cache, train_data=training_data("digits", for_extractor="digits-clip"))
    out["digits-clip"] = (_digits_clip_path(cache), clip)
    return out


VERSIONS = {**{c.name: c.version for c in CLASSIFIERS}, "digits-clip": CLIP_DIGITS_VERSION}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ship_weights", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="retrain and compare with the shipped weights; write nothing")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        trained = _train_all(Path(tmp))
        for name, (path, ext) in trained.items():
            dest = SHIPPED_WEIGHTS_DIR / f"{name}-v{VERSIONS[name]}.pt"
            if args.check:
                shipped = shipped_weights(name, VERSIONS[name])
                print(f"{name}: this machine {ext.weights_hash}, shipped {read_artifact(shipped)['report']['weights_hash'] if shipped else 'none'}")
                continue
            SHIPPED_WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            print(f"{name}: {ext.weights_hash} -> {dest} ({dest.stat().st_size} bytes); pin in SHIPPED_SHA256: {file_hash(dest, 64)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
