import gzip
import hashlib
import io
import math
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from bench import data
from bench.data import DataError
from genbench.registry import UnknownNameError


def test_unknown_dataset_lists_valid():
    with pytest.raises(KeyError, match="valid: .*digits"):
        data.load("nope")
    with pytest.raises(UnknownNameError, match="unknown dataset 'nope'"):
        data.describe("nope")


def test_registry_is_the_shared_type_and_describes_every_dataset():
    from genbench.registry import Registry

    assert isinstance(data.DATASETS, Registry)
    names = data.available()
    for n in ("ring8", "grid25", "swissroll", "digits", "stacked-digits", "mnist5k", "mnist", "cifar10", "folder", "npz"):
        assert n in names
    for n in names:
        d = data.describe(n)
        assert d.description and "\n" not in d.description, n
        assert d.kind in ("points", "image", "paired", "unpaired", "any") and d.source in ("embedded", "file")
        assert d.line().startswith(n)
    assert data.describe("ring8").kind == "points" and data.describe("cifar10").source == "file"
    assert "path" in data.describe("folder").params


def test_bench_list_datasets_prints_descriptions(capsys):
    from bench.cli import main

    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert "mnist5k" in out and "1797 8x8 images" in out


def test_register_a_user_dataset():
    @data.register_dataset("my-toy", kind="points", description="three points")
    def toy(scale: float = 1.0) -> data.Dataset:
        x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]) * scale
        return data.Dataset(data.load("ring8").info, x[:2], x[2:])

    try:
        assert data.describe("my-toy").description == "three points"
        assert data.load("my-toy", scale=2.0).test_x[0, 1] == 2.0
        with pytest.raises(DataError, match=r"unknown parameter\(s\) sclae; accepted: scale"):
            data.load("my-toy", sclae=2.0)
        with pytest.raises(ValueError, match="invalid dataset name"):
            data.register_dataset("../escape")(toy)
    finally:
        data.DATASETS.unregister("my-toy")
    assert "my-toy" not in data.available()


def test_dataset_container_validates_what_a_factory_returns():
    info = data.load("digits").info
    x = torch.zeros(4, 1, 8, 8)
    assert len(data.Dataset(info, x, x, torch.zeros(4, dtype=torch.long), None).train_x) == 4
    with pytest.raises(DataError, match=r"'digits': train_y must be integer labels, one per example \(4\)"):
        data.Dataset(info, x, x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(DataError, match=r"test_x has examples of shape \(1, 4, 4\), DataInfo.shape says \(1, 8, 8\)"):
        data.Dataset(info, x, torch.zeros(2, 1, 4, 4))
    with pytest.raises(DataError, match=r"train_x images must be in \[0, 1\]"):
        data.Dataset(info, x + 2, x)
    with pytest.raises(DataError, match="test_x must be a non-empty floating-point tensor"):
        data.Dataset(info, x, x[:0])
    with pytest.raises(DataError, match="NaN"):
        data.Dataset(data.load("ring8").info, torch.full((2, 2), float("nan")), torch.zeros(2, 2))


def test_missing_required_parameter_is_a_data_error():
    with pytest.raises(DataError, match="missing required parameter.*path"):
        data.load("folder")


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
    assert digits.info.captions == data.digit_captions()


def _fingerprint(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def test_digits_split_is_the_one_the_extractor_was_trained_on():
    # fingerprint of metrics.features.digits_split() (x_train, x_test, y_train, y_test) before the split moved here:
    # the digits-cnn recipe (shipped weights 244bf800a4a63d8c) was trained on exactly these arrays in this order
    split = data.digits_split()
    assert [a.shape for a in split] == [(1437, 8, 8), (360, 8, 8), (1437,), (360,)]
    assert split[0].dtype == np.float32 and split[2].dtype == np.int64
    assert _fingerprint(*split) == "19c98e157163fe32"
    d = data.load("digits")
    assert torch.equal(d.train_x[:, 0], torch.as_tensor(split[0])) and torch.equal(d.test_y, torch.as_tensor(split[3]))


def test_extractor_training_data_is_registered_by_bench_data():
    from metrics.extractors import training_data

    td = training_data("digits")
    assert np.array_equal(td.x_train, data.digits_split()[0]) and np.array_equal(td.y_test, data.digits_split()[3])


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


def test_npz_with_several_arrays_lists_keys_and_says_how_to_choose(tmp_path):
    p = tmp_path / "two.npz"
    np.savez(p, fake=np.zeros((2, 8, 8), np.uint8), labels=np.zeros((2,), np.int64))
    with pytest.raises(DataError, match=r"2 arrays \(fake \(2, 8, 8\), labels \(2,\)\).*key=NAME.*--npz-key NAME"):
        data.load_npz(p)
    assert data.load_npz(p, key="fake").shape == (2, 1, 8, 8)
    with pytest.raises(DataError, match="no array 'nope'; it holds fake"):
        data.load_npz(p, key="nope")
    assert data.load("npz", path=str(p), key="fake").train_x.shape[1:] == (1, 8, 8)


def _npz_with_header_only(path, shape, dtype="<f4"):
    """A .npz whose array header declares ``shape`` but holds no data (a hostile or truncated file)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", buf.getvalue())


def test_npz_hazards(tmp_path):
    huge = tmp_path / "huge.npz"
    _npz_with_header_only(huge, (10**6, 1000, 1000))
    with pytest.raises(DataError, match=r"huge.npz\[x\].*GiB.*GENBENCH_MAX_DATA_BYTES"):
        data.load_npz(huge)
    short = tmp_path / "short.npz"
    _npz_with_header_only(short, (4, 8, 8))
    with pytest.raises(DataError, match="short.npz"):
        data.load_npz(short)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.npz: not a readable .npz"):
        data.load_npz(empty)
    none = tmp_path / "none.npz"
    np.savez(none)
    with pytest.raises(DataError, match="holds no arrays"):
        data.load_npz(none)
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DataError, match="obj.npz"):
        data.load_npz(obj)
    pts = tmp_path / "pts.npz"
    np.savez(pts, x=np.zeros((0, 2), np.float32))
    with pytest.raises(DataError, match="pts.npz.*(empty|no points)"):
        data.load_npz(pts)
    scalar = tmp_path / "scalar.npz"
    np.savez(scalar, x=np.float32(0.5))
    with pytest.raises(DataError, match="scalar.npz.*empty array of shape \\(\\)"):
        data.load_npz(scalar)


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


def test_mnist_idx_hazards(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)))
    # one label too few: silently misaligned labels before
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, (5,)))
    with pytest.raises(DataError, match="5 labels for 6 images"):
        data.mnist(root=str(tmp_path))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 4, 12]))
    with pytest.raises(DataError, match=r"labels must be in 0..9"):
        data.mnist(root=str(tmp_path))
    p = tmp_path / "bad.idx"
    p.write_bytes(b"")
    with pytest.raises(DataError, match="bad magic empty file"):
        data.read_idx(p)
    # a header declaring 2^32 x 2^32 x 2^32 bytes (the product overflows int64) is refused from the header
    p.write_bytes(bytes([0, 0, 8, 3]) + (2**32 - 1).to_bytes(4, "big") * 3)
    with pytest.raises(DataError, match="GiB"):
        data.read_idx(p)
    p.write_bytes(bytes([0, 0, 8, 2]) + (2).to_bytes(4, "big") * 2 + b"\x00" * 5)
    with pytest.raises(DataError, match="holds more bytes"):
        data.read_idx(p)
    p.write_bytes(bytes([0, 0, 8, 2]) + (0).to_bytes(4, "big") * 2)
    with pytest.raises(DataError, match="empty array"):
        data.read_idx(p)


def test_cifar_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": [0, 1, 2]}, f)
    d = data.cifar10(root=str(tmp_path))
    assert d.train_x.shape == (15, 3, 32, 32) and d.test_x.shape == (3, 3, 32, 32)
    assert d.info.class_names[0] == "airplane"


def test_cifar_label_count_and_shape_checked(tmp_path):
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match="data_batch_1: 2 labels for 3 images"):
        data.read_cifar_batch(tmp_path / "data_batch_1")
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((3, 1000), np.uint8), b"labels": [0, 1, 2]}, f)
    with pytest.raises(DataError, match=r"shape \(N, 3072\)"):
        data.read_cifar_batch(tmp_path / "data_batch_1")


# --------------------------------------------------------------------- more than 8 bits
def _png16(path, arr):
    Image.fromarray(arr.astype(np.uint16)).save(path)  # mode I;16
    with Image.open(path) as im:
        assert im.mode.startswith("I")


def test_16bit_png_is_scaled_by_its_bit_depth_not_clipped(tmp_path):
    # the case: real digits saved as 16-bit PNGs were clipped to 8 bits (ink saturated: FID 179 vs 2.79)
    x = data.load("digits").test_x[:20, 0].numpy()  # [0, 1], 17 levels
    for i, a in enumerate(x):
        _png16(tmp_path / f"{i:02d}.png", np.round(a * 65535))
    got, levels = data.read_image_folder(tmp_path)
    assert levels == 65536
    assert got.shape == (20, 1, 8, 8)
    np.testing.assert_allclose(got[:, 0].numpy(), x, atol=1 / 65535)
    ds = data.load("folder", path=str(tmp_path))
    assert ds.info.levels == 65536


def test_8bit_data_in_a_16bit_png_is_rejected(tmp_path):
    _png16(tmp_path / "a.png", np.array([[0, 255], [128, 7]]))
    with pytest.raises(DataError, match="a.png: 16-bit image.*never exceed 255.*8-bit PNG"):
        data.load_image_folder(tmp_path)


def test_32bit_and_float_images_are_rejected_with_a_message(tmp_path):
    Image.fromarray(np.full((4, 4), 0.5, np.float32), mode="F").save(tmp_path / "f.tiff")
    with pytest.raises(DataError, match="f.tiff: 32-bit float images.*no defined intensity range"):
        data.read_image(tmp_path / "f.tiff")
    Image.fromarray(np.full((4, 4), 70000, np.int32), mode="I").save(tmp_path / "i.tiff")
    with pytest.raises(DataError, match="i.tiff: 32-bit integer images"):
        data.read_image(tmp_path / "i.tiff")


def test_8bit_rgb_png_and_mixed_folder(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    x = data.load_image_folder(tmp_path)
    assert x.shape == (1, 3, 6, 5)
    assert torch.equal((x[0] * 255).round().byte(), torch.as_tensor(rgb).permute(2, 0, 1))


def test_empty_and_corrupt_image_files(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="a.png: cannot read image"):
        data.load_image_folder(tmp_path)
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="a.png: cannot read image"):
        data.load_image_folder(tmp_path)


def test_points_and_splits_hazards():
    with pytest.raises(DataError, match="no points"):
        data.validate_points(np.zeros((0, 2)), "pts")
    with pytest.raises(DataError, match="pts: points must be numbers"):
        data.validate_points([["a", "b"]], "pts")
    with pytest.raises(DataError, match="at least 2 examples"):
        data.random_split(torch.zeros(1, 2), None, 0.2, 0)
    with pytest.raises(DataError, match=r"test_fraction must be in \(0, 1\)"):
        data.random_split(torch.zeros(5, 2), None, 1.5, 0)
    tr, te, _, _ = data.random_split(torch.arange(10.0)[:, None], None, 0.2, 0)
    assert len(tr) == 8 and len(te) == 2 and sorted((torch.cat([tr, te])[:, 0]).tolist()) == list(map(float, range(10)))


def test_dim_and_kinds():
    assert data.load("ring8").info.dim == 2 and data.load("digits").info.dim == 64
    assert math.isclose(data.load("digits").info.levels, 17)


def test_bench_eval_npz_key(tmp_path, capsys):
    from bench.cli import main
    from bench.evaluate import load_samples

    p = tmp_path / "two.npz"
    np.savez(p, fake=np.zeros((3, 8, 8), np.uint8), labels=np.zeros((3,), np.int64))
    assert main(["eval", "--samples", str(p), "--dataset", "digits"]) != 0
    assert "--npz-key NAME" in capsys.readouterr().err
    assert main(["eval", "--samples", str(p), "--dataset", "digits", "--npz-key", "nope"]) != 0
    assert "no array 'nope'" in capsys.readouterr().err
    assert load_samples(p, npz_key="fake").shape == (3, 1, 8, 8)


def test_names_from_user_paths_are_safe_in_file_names(tmp_path):
    from genbench.registry import check_name

    assert data.safe_data_name("/x/my data") == "my_data"
    assert data.safe_data_name("..") == "data" and data.safe_data_name("/") == "data"
    assert data.safe_data_name("/x/.hidden") == "hidden"
    d = tmp_path / "we ird;rm -rf"
    d.mkdir()
    for i in range(2):
        _png(d / f"{i}.png", np.zeros((4, 4), np.uint8))
    name = data.load("folder", path=str(d)).info.name
    assert check_name(name) == name and "/" not in name and " " not in name


def _png16_raw(path, arr):
    """A 16-bit PNG written byte by byte (Pillow cannot write 16-bit RGB): arr uint16 (H, W) grey or (H, W, 3) RGB."""
    import struct
    import zlib

    h, w = arr.shape[:2]
    color = 2 if arr.ndim == 3 else 0
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16bit_rgb_png_keeps_its_scale_and_8bit_content_is_rejected(tmp_path):
    a = np.zeros((2, 2, 3), np.uint16)
    a[0, 0] = (65535, 32768, 0)
    _png16_raw(tmp_path / "a.png", a)
    x = data.load_image_folder(tmp_path)
    assert x.shape == (1, 3, 2, 2)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), [1.0, 128 / 255, 0.0], atol=1e-6)
    _png16_raw(tmp_path / "a.png", np.full((2, 2, 3), 200, np.uint16))  # 8-bit values in a 16-bit RGB file
    with pytest.raises(DataError, match="a.png: 16-bit image.*never exceed 255"):
        data.load_image_folder(tmp_path)
    g = tmp_path / "g"
    g.mkdir()
    _png16_raw(g / "g.png", np.array([[0, 65535], [300, 40000]], np.uint16))
    np.testing.assert_allclose(data.load_image_folder(g)[0, 0].numpy(), np.array([[0, 65535], [300, 40000]]) / 65535, atol=1e-7)


def test_huge_image_dimensions_are_refused_from_the_header(tmp_path):
    import struct
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # 10^10 pixels declared, a few bytes of data
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))
    with pytest.raises(DataError, match="bomb.png: (image is 100000x100000 pixels|image too large)"):
        data.load_image_folder(tmp_path)
