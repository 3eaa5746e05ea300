import gzip
import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from bench import data
from bench.data import DataError


def test_unknown_dataset_lists_valid():
    with pytest.raises(KeyError, match="valid: .*digits"):
        data.load("nope")


@pytest.mark.parametrize("name,n_modes,std", [("ring8", 8, 0.01), ("grid25", 25, 0.05)])
def test_mixture_geometry(name, n_modes, std):
    d = data.load(name)
    modes = torch.tensor(d.info.modes)
    assert modes.shape == (n_modes, 2)
    assert d.info.mode_std == std
    if name == "ring8":
        assert torch.allclose(modes.norm(dim=1), torch.ones(8), atol=1e-6)
    else:
        assert sorted(set(modes[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    # every point is within a few std of its own mode and the per-axis std matches
    resid = d.train_x - modes[d.train_y]
    assert resid.abs().max() < 6 * std
    assert resid.std().item() == pytest.approx(std, rel=0.05)


def test_splits_are_fixed_by_seed():
    a, b = data.ring8(seed=0), data.ring8(seed=0)
    assert torch.equal(a.train_x, b.train_x)
    assert not torch.equal(data.ring8(seed=1).train_x, a.train_x)


def test_digits_metadata_and_split(digits):
    assert digits.info.levels == 17 and digits.info.shape == (1, 8, 8)
    assert len(digits.train_x) + len(digits.test_x) == 1797
    assert len(digits.test_x) == 360
    vals = torch.unique(digits.train_x * 16)
    assert torch.allclose(vals, vals.round()) and vals.min() >= 0 and vals.max() <= 16
    # stratified: every class is 10% +- 1% of the test split
    counts = torch.bincount(digits.test_y, minlength=10).float() / len(digits.test_y)
    assert (counts - 0.1).abs().max() < 0.01
    assert len(digits.info.captions) == 10 and "seven" in digits.info.captions[7]


def test_stacked_digits_modes():
    d = data.load("stacked-digits")
    assert d.train_x.shape[1:] == (3, 8, 8)
    assert d.train_y.max() < 1000 and len(torch.unique(d.train_y)) > 900
    assert d.info.num_classes == 1000


def _png(path, arr):
    Image.fromarray(arr).save(path)


def test_image_folder_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 8, 8), dtype=np.uint8)
    for i, a in enumerate(imgs):
        _png(tmp_path / f"{i}.png", a)
    x = data.load_image_folder(tmp_path)
    assert x.shape == (5, 1, 8, 8) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0] * 255, torch.as_tensor(imgs, dtype=torch.float32))


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no image files"):
        data.load_image_folder(tmp_path)
    _png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    _png(tmp_path / "b.png", np.zeros((9, 8), np.uint8))
    with pytest.raises(DataError, match="b.png.*differs"):
        data.load_image_folder(tmp_path)
    with pytest.raises(DataError, match="not a directory"):
        data.load_image_folder(tmp_path / "missing")


def test_npz_validation(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, x=np.full((4, 8, 8, 1), 0.5, np.float32))
    assert data.load_npz(p).shape == (4, 1, 8, 8)
    np.savez(p, x=np.full((4, 8, 8), 2.0, np.float32))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        data.load_npz(p)
    bad = np.zeros((4, 8, 8), np.float32)
    bad[0, 0, 0] = np.nan
    np.savez(p, x=bad)
    with pytest.raises(DataError, match="NaN"):
        data.load_npz(p)
    np.savez(p, x=np.zeros((4, 8, 8), np.int32))
    with pytest.raises(DataError, match="dtype int32"):
        data.load_npz(p)
    np.savez(p, x=np.zeros((0, 8, 8), np.uint8))
    with pytest.raises(DataError, match="empty"):
        data.load_npz(p)
    np.savez(p, a=np.zeros((2, 8, 8), np.uint8), b=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(DataError, match="key="):
        data.load_npz(p)


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_mnist_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)))
    d = data.mnist(root=str(tmp_path))
    assert d.train_x.shape == (6, 1, 28, 28) and d.test_x.shape == (4, 1, 28, 28)
    assert d.info.levels == 256 and d.train_y.shape == (6,)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels"):
        data.mnist(root=str(tmp_path))


def test_cifar_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": [0, 1, 2]}, f)
    d = data.cifar10(root=str(tmp_path))
    assert d.train_x.shape == (15, 3, 32, 32) and d.test_x.shape == (3, 3, 32, 32)
    assert d.info.class_names[0] == "airplane"


def test_dim_and_kinds():
    assert data.load("ring8").info.dim == 2 and data.load("digits").info.dim == 64
    assert math.isclose(data.load("digits").info.levels, 17)
