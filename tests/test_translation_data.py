"""The translation data kind (issue #14 items 1-2): embedded tasks and folder loaders."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import maximum_filter

from bench import data
from bench.data import DataError, TranslationDataset


def _digits():
    xtr, xte, ytr, yte = data.digits_split()
    return xtr, xte, ytr, yte


def test_registry_kinds_and_descriptions():
    for name, kind in (("digits-complete", "paired"), ("digits-sr", "paired"), ("digits-thick", "unpaired"),
                       ("paired-folder", "paired"), ("unpaired-folder", "unpaired")):  # fmt: skip
        d = data.describe(name)
        assert d.kind == kind and d.description and "\n" not in d.description
    for name in ("digits-complete", "digits-sr", "digits-thick"):
        ds = data.load(name)
        assert isinstance(ds, TranslationDataset) and ds.info.is_translation and ds.info.is_image
        assert ds.info.kind == data.describe(name).kind and ds.description == data.describe(name).description
        assert ds.info.levels == 17 and ds.info.class_names[0] == "zero"


def test_digits_complete_masks_the_bottom_half():
    ds = data.load("digits-complete")
    xtr, xte, ytr, yte = _digits()
    assert ds.paired and ds.info.shape == (1, 8, 8) and ds.info.source_shape == (1, 8, 8)
    assert np.array_equal(ds.train_target[:, 0].numpy(), xtr) and np.array_equal(ds.test_target[:, 0].numpy(), xte)
    src = ds.train_source[:, 0].numpy()
    assert np.array_equal(src[:, :4], xtr[:, :4]) and (src[:, 4:] == 0).all()
    assert torch.equal(ds.train_source_y, torch.as_tensor(ytr)) and torch.equal(ds.test_target_y, torch.as_tensor(yte))
    assert ds.test_truth is ds.test_target
    # the plain-data-set view is the target domain
    assert ds.train_x is ds.train_target and ds.test_y is ds.test_target_y


def test_digits_sr_is_the_rounded_2x2_average():
    ds = data.load("digits-sr")
    xtr, xte, _, _ = _digits()
    assert ds.info.source_shape == (1, 4, 4) and ds.test_source.shape == (360, 1, 4, 4)
    expect = np.round(xte.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)) * 16) / 16
    np.testing.assert_allclose(ds.test_source[:, 0].numpy(), expect, atol=1e-6)
    v = ds.train_source * 16
    assert torch.allclose(v, v.round(), atol=1e-5)


def test_digits_thick_domains_hold_different_images():
    ds = data.load("digits-thick")
    xtr, xte, ytr, yte = _digits()
    assert not ds.paired and ds.info.kind == "unpaired"
    for split, x, y, a, b, ya, yb in (("train", xtr, ytr, ds.train_source, ds.train_target, ds.train_source_y, ds.train_target_y),
                                       ("test", xte, yte, ds.test_source, ds.test_target, ds.test_source_y, ds.test_target_y)):  # fmt: skip
        thick = np.stack([maximum_filter(im, size=3, mode="constant", cval=0.0) for im in x])
        # locate every domain-A image among the originals and every domain-B image among the thickened originals
        ia = [int(np.flatnonzero((x == im).all(axis=(1, 2)))[0]) for im in a[:, 0].numpy()]
        ib = [int(np.flatnonzero((thick == im).all(axis=(1, 2)))[0]) for im in b[:, 0].numpy()]
        assert len(ia) + len(ib) == len(x), split
        assert sorted(ia + ib) == list(range(len(x))), f"{split}: the halves must partition the split"
        assert np.array_equal(y[ia], ya.numpy()) and np.array_equal(y[ib], yb.numpy())
        # stratified halves: each class split evenly (+-1) between the domains
        ca, cb = np.bincount(ya.numpy(), minlength=10), np.bincount(yb.numpy(), minlength=10)
        assert np.abs(ca - cb).max() <= 1
    truth = np.stack([maximum_filter(im, size=3, mode="constant", cval=0.0) for im in ds.test_source[:, 0].numpy()])
    np.testing.assert_array_equal(ds.test_truth[:, 0].numpy(), truth)
    assert float(ds.train_target.mean()) > 1.5 * float(ds.train_source.mean())  # strokes are thicker


def test_translation_dataset_validation():
    info = data.load("digits-complete").info
    x = torch.zeros(4, 1, 8, 8)
    with pytest.raises(DataError, match="paired task with 4 train sources but 3 targets"):
        TranslationDataset(info, x, x[:3], x, x)
    with pytest.raises(DataError, match=r"test_target must be non-empty float32 \(N, 1, 8, 8\)"):
        TranslationDataset(info, x, x, x, torch.zeros(4, 1, 4, 4))
    with pytest.raises(DataError, match=r"train_source must be finite and in \[0, 1\]"):
        TranslationDataset(info, x + 2, x, x, x)
    with pytest.raises(DataError, match="train_source_y must hold one label per image"):
        TranslationDataset(info, x, x, x, x, train_source_y=torch.zeros(3, dtype=torch.long))
    with pytest.raises(DataError, match="kind 'paired' or 'unpaired'"):
        TranslationDataset(data.load("digits").info, x, x, x, x)


# --------------------------------------------------------------------- folders
def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_paired_folder_keeps_pairs_through_the_split(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(10):
        a = rng.integers(0, 256, (6, 6), dtype=np.uint8)
        _save(tmp_path / "A" / f"im{i}.png", a)
        _save(tmp_path / "B" / f"im{i}.png", np.repeat(255 - a[:, :, None], 3, axis=2))  # RGB, inverted
    ds = data.load("paired-folder", path=str(tmp_path), test_fraction=0.3)
    assert ds.paired and ds.info.source_shape == (1, 6, 6) and ds.info.shape == (3, 6, 6)
    assert len(ds.train_source) == 7 and len(ds.test_source) == 3
    for s, t in ((ds.train_source, ds.train_target), (ds.test_source, ds.test_target)):
        assert torch.allclose(t[:, 0], 1 - s[:, 0], atol=1e-6)


def test_paired_folder_unmatched_names_are_named(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    for n in ("a", "b"):
        _save(tmp_path / "A" / f"{n}.png", img)
    _save(tmp_path / "B" / "a.png", img)
    _save(tmp_path / "B" / "c.png", img)
    with pytest.raises(DataError, match=r"A/b.png: no image named 'b' in .*B"):
        data.paired_folder(str(tmp_path))
    (tmp_path / "A" / "b.png").unlink()
    with pytest.raises(DataError, match=r"B/c.png: no image named 'c' in .*A"):
        data.paired_folder(str(tmp_path))


def test_folder_layout_errors(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        data.paired_folder(str(tmp_path / "missing"))
    with pytest.raises(DataError, match="expected folders A/ and B/"):
        data.unpaired_folder(str(tmp_path))
    _save(tmp_path / "A" / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="no B/ folder"):
        data.unpaired_folder(str(tmp_path))
    (tmp_path / "B").mkdir()
    with pytest.raises(DataError, match="B: no image files"):
        data.unpaired_folder(str(tmp_path))
    _save(tmp_path / "B" / "y.png", np.zeros((4, 4), np.uint8))
    _save(tmp_path / "B" / "z.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(DataError, match="z.png: image size.*differs"):
        data.unpaired_folder(str(tmp_path))


def test_unpaired_folder_any_names_and_counts(tmp_path):
    for i in range(5):
        _save(tmp_path / "A" / f"a{i}.png", np.full((4, 4), 10 * i, np.uint8))
    for i in range(8):
        _save(tmp_path / "B" / f"other{i}.jpg", np.full((4, 4, 3), 200, np.uint8))
    ds = data.unpaired_folder(str(tmp_path), test_fraction=0.25)
    assert not ds.paired and ds.test_truth is None
    assert len(ds.train_source) + len(ds.test_source) == 5 and len(ds.train_target) + len(ds.test_target) == 8
    assert ds.info.source_shape == (1, 4, 4) and ds.info.shape == (3, 4, 4)


def test_split_layout_fixes_the_split(tmp_path):
    for split, n in (("train", 4), ("test", 2)):
        for i in range(n):
            _save(tmp_path / f"{split}A" / f"{i}.png", np.full((4, 4), i, np.uint8))
            _save(tmp_path / f"{split}B" / f"{i}.png", np.full((4, 4), 100 + i, np.uint8))
    ds = data.paired_folder(str(tmp_path))
    assert len(ds.train_source) == 4 and len(ds.test_source) == 2
    assert torch.allclose(ds.test_target * 255 - ds.test_source * 255, torch.full((2, 1, 4, 4), 100.0), atol=1e-3)
    (tmp_path / "testB" / "1.png").unlink()
    with pytest.raises(DataError, match="testA/1.png: no image named '1'"):
        data.paired_folder(str(tmp_path))
    shutil.rmtree(tmp_path / "testB")
    with pytest.raises(DataError, match="missing testB/"):
        data.unpaired_folder(str(tmp_path))
