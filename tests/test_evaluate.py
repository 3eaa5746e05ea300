"""bench eval: a user's samples (PNG folder / .npz) against a data set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import DataError
from bench.evaluate import format_eval, run_eval
from bench.measure import feature_key, reference_key
from genbench.cache import Cache
from metrics.extractors import get_extractor
from metrics.fid import fid_from_features


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small-op loops (KID subsets, k-NN blocks) crawl with several threads on a busy small machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _write_pngs(x: torch.Tensor, folder):
    folder.mkdir()
    for i, im in enumerate(x):
        Image.fromarray((im[0].numpy() * 255).round().astype(np.uint8), mode="L").save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def test_pngs(tmp_path_factory, digits):
    return _write_pngs(digits.test_x, tmp_path_factory.mktemp("eval") / "digits_test")


def test_png_folder_of_test_split_scores_like_the_data_row(test_pngs, digits, tmp_path):
    cache = tmp_path / "cache"
    res = run_eval(str(test_pngs), "digits", metrics=["fid", "kid", "prdc", "memorization", "class_kl"], cache_dir=cache)
    # the data row: test split against the train-split reference, same extractor
    e = get_extractor("digits-cnn")
    data_row = fid_from_features(e.features(digits.train_x), e.features(digits.test_x)).value
    assert res["fid"].value == pytest.approx(data_row, rel=0.05, abs=0.05)  # PNGs hold 8-bit versions of the 17 levels
    assert res["fid"].settings["n_fake"] == 360 and res["fid"].settings["n_real"] == 1437
    assert res["dist_ratio"].value == pytest.approx(1.0, abs=0.02)
    assert res["precision"].value > 0.8 and res["class_kl"].value < 0.01
    # reference features were cached under (dataset, split, N; kind, extractor, weights hash) as checksummed artifacts
    store = Cache(cache)
    blob = store.get("features", feature_key(reference_key("digits", {}, "train", 1437), "features", e))
    assert blob["mu"].shape == (128,) and blob["sigma"].shape == (128, 128)
    assert torch.allclose(blob["values"], e.features(digits.train_x))
    assert store.get("features", feature_key(reference_key("digits", {}, "test", 360), "features", e))["n"] == 360
    again = run_eval(str(test_pngs), "digits", metrics=["fid"], cache_dir=cache)
    assert again["fid"].value == pytest.approx(res["fid"].value, rel=1e-9)
    table = format_eval(res)
    assert "FID[digits-cnn]" in table and "n_fake=360" in table and "Precision[digits-cnn]" in table and "digits-cnn (weights" in table


def test_test_reference_and_train_copies(digits, tmp_path):
    # the train split itself scored against the test split: FID small, but memorization flags the copies
    x = (digits.train_x[:400] * 255).round().to(torch.uint8).numpy()
    p = tmp_path / "train_copies.npz"
    np.savez(p, x=x)
    res = run_eval(str(p), "digits", metrics=["fid", "memorization"], reference="test", cache_dir=tmp_path / "c")
    assert res["copy_rate"].value > 0.95 and res["dist_ratio"].value < 0.2
    assert res["fid"].settings["reference"] == "test split"


def test_full_default_panel_and_na(digits, tmp_path):
    res = run_eval(digits.test_x[:100], "digits", cache_dir=tmp_path, settings={"kid_subsets": 5})
    assert {"fid", "kid", "is", "precision", "recall", "density", "coverage", "class_kl", "copy_rate", "dist_ratio"} <= set(res)
    assert "nll" not in res and "modes" not in res
    res2 = run_eval(digits.test_x[:100], "digits", metrics=["mode_collapse", "fid"], cache_dir=tmp_path)
    assert math.isnan(res2["modes"].value) and "does not apply" in res2["modes"].settings["na"]
    assert "n/a" in format_eval(res2)


def test_bad_inputs(digits, tmp_path):
    bad = digits.test_x[:50].clone()
    bad[3, 0, 2, 2] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        run_eval(bad.numpy(), "digits", cache_dir=tmp_path)
    with pytest.raises(DataError, match=r"range \[0, 2"):
        run_eval((digits.test_x[:50] * 2).numpy(), "digits", cache_dir=tmp_path)
    with pytest.raises(DataError, match=r"shape \(1, 16, 16\).*digits has images of shape \(1, 8, 8\)"):
        run_eval(np.zeros((20, 16, 16), np.uint8), "digits", cache_dir=tmp_path)
    # too few samples for one metric: that metric is n/a with the reason, the others are computed (each fails alone)
    few = run_eval(digits.test_x[:3].numpy(), "digits", metrics=["prdc", "fid"], cache_dir=tmp_path)
    assert np.isnan(few["precision"].value) and "3 samples is too few for prdc" in few["precision"].settings["na"]
    assert "k + 1" in few["coverage"].settings["na"] and few.requested_na == ["prdc"] and np.isfinite(few["fid"].value)
    with pytest.raises(DataError, match="not found"):
        run_eval(str(tmp_path / "missing.npz"), "digits", cache_dir=tmp_path)
    with pytest.raises(KeyError, match="unknown metric"):
        run_eval(digits.test_x[:50].numpy(), "digits", metrics=["fdi"], cache_dir=tmp_path)


def test_points_dataset(tmp_path):
    from bench import data

    ds = data.load("ring8")
    p = tmp_path / "pts.npz"
    np.savez(p, x=ds.test_x.numpy())
    res = run_eval(str(p), "ring8", metrics=["mode_collapse", "prdc"], cache_dir=tmp_path, dataset_params=None)
    assert res["modes"].value == 8 and res["precision"].value > 0.9
    with pytest.raises(DataError, match="shape"):
        run_eval(np.zeros((30, 3), np.float32), "ring8", cache_dir=tmp_path)
