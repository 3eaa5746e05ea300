"""The Python API (bench.api, reachable as genbench.*): evaluate, run_suite, load_results."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.linalg

import genbench
from bench import api
from bench import data as dreg
from bench.cli import main
from bench.data import DataError
from bench.store import ResultStore

RING = {"n_train": 1000, "n_test": 400}


def _fid_closed_form(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussian fits (float64, scipy sqrtm): the independent reference."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_genbench_exposes_the_api_lazily():
    code = (
        "import sys, genbench.registry, genbench.protocol, genbench\n"
        "bad = [m for m in sys.modules if m == 'bench' or m.startswith('bench.') or m == 'pandas']\n"
        "assert not bad, bad\n"
        "f = genbench.evaluate\n"
        "import bench.api\n"
        "assert f is bench.api.evaluate and genbench.load_results is bench.api.load_results\n"
        "assert genbench.check_generator is __import__('bench.check').check.check_generator\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="no attribute 'nope'.*evaluate"):
        genbench.nope  # noqa: B018
    assert {"evaluate", "run_suite", "load_results"} <= set(dir(genbench))


def test_evaluate_points_matches_closed_form_fid():
    ds = dreg.load("ring8", **RING)
    rng = np.random.default_rng(0)
    fake = (ds.test_x.numpy() * 1.1 + rng.normal(0, 0.05, ds.test_x.shape)).astype(np.float32)
    res = genbench.evaluate(fake, dataset="ring8", dataset_params=RING, metrics=["fid"])
    assert res["fid"] == pytest.approx(_fid_closed_form(fake.astype(np.float64), ds.train_x.numpy().astype(np.float64)), rel=1e-6, abs=1e-9)
    (rec,) = res.records
    assert rec["metric"] == "fid" and rec["dataset"] == "ring8" and rec["extractor"] == "raw"
    assert rec["n_fake"] == len(fake) and rec["n_real"] == RING["n_train"]
    assert rec["label"] == "FID" and rec["direction"] == "min"
    assert rec["git_commit"] and rec["versions"] and rec["config_hash"]


def test_evaluate_real_data_against_itself_is_the_floor(digits):
    """Constructed case: the reference split scored against itself: FID 0, precision = recall = 1."""
    res = api.evaluate(digits.train_x, dataset="digits", metrics=["fid", "prdc"])
    assert abs(res["fid"]) < 1e-3
    assert res["precision"] == 1.0 and res["recall"] == 1.0
    assert dict(res) == {k: res[k] for k in res} and set(res) == {"fid", "precision", "recall", "density", "coverage"}
    df = res.frame
    assert list(df.columns[: len(api.RECORD_COLUMNS)]) == list(api.RECORD_COLUMNS)
    assert df.set_index("metric").loc["fid", "value"] == res["fid"]
    assert "FID[digits-cnn]" in str(res)
    assert "<table" in res._repr_html_()


def test_evaluate_uint8_npz_and_na_metric(tmp_path, digits):
    p = tmp_path / "s.npz"
    np.savez(p, x=np.round(digits.test_x.numpy() * 255).astype(np.uint8))
    res = api.evaluate(p, dataset="digits", metrics=["fid", "mode_collapse"])
    assert res["fid"] > 0 and math.isnan(res["modes"] if "modes" in res else math.nan)
    na = [r for r in res.records if r["na"]]
    assert na and all(r["value"] is None and "does not apply" in r["settings"]["na"] for r in na)


def test_evaluate_errors_name_the_problem(digits):
    with pytest.raises(DataError, match=r"shape \(1, 4, 4\).*\(1, 8, 8\)"):
        api.evaluate(np.zeros((20, 1, 4, 4), np.float32), dataset="digits", metrics=["fid"])
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        api.evaluate(digits.test_x * 3 - 1, dataset="digits", metrics=["fid"])
    with pytest.raises(KeyError, match="unknown dataset"):
        api.evaluate(digits.test_x, dataset="nope")
    with pytest.raises(KeyError, match="fdi"):
        api.evaluate(digits.test_x, dataset="digits", metrics=["fdi"])
    with pytest.raises(KeyError, match="have: fid"):
        api.evaluate(digits.test_x, dataset="digits", metrics=["fid"])["kid"]


# ----------------------------------------------------------------------------- load_results
def _rec(suite, gen, metric, value):
    return {"suite": suite, "job": f"digits/{gen}/seed0", "dataset": "digits", "generator": gen, "metric": metric, "value": value}


def test_load_results_all_suites_one_suite_and_errors(tmp_path):
    ResultStore(tmp_path / "a").append(_rec("a", "gmm", "fid", 3.0))
    ResultStore(tmp_path / "a").append(_rec("a", "gmm", "_job_done", None))
    ResultStore(tmp_path / "b").append(_rec("b", "vae", "fid", 5.0))
    ResultStore(tmp_path / "b").append(_rec("b", "vae", "kid", 0.5))
    df = api.load_results(tmp_path)
    assert sorted(zip(df["suite"], df["metric"], df["value"])) == [("a", "fid", 3.0), ("b", "fid", 5.0), ("b", "kid", 0.5)]
    assert set(api.RECORD_COLUMNS) <= set(df.columns)
    assert len(api.load_results(tmp_path, suite="b")) == 2
    assert "_job_done" in set(api.load_results(tmp_path, "a", include_internal=True)["metric"])
    with pytest.raises(FileNotFoundError, match="suites with records: a, b"):
        api.load_results(tmp_path, suite="c")
    empty = api.load_results(tmp_path / "nothing")
    assert len(empty) == 0 and "value" in empty.columns


# ----------------------------------------------------------------------------- run_suite
SUITE = """
name = "api-tiny"
seeds = [0]
[[datasets]]
name = "ring8"
extractor = "raw"
n_fake = 200
params = {params}
metrics = ["fid", "nll"]
[[generators]]
name = "gmm"
params = { n_components = 8 }
[[generators]]
name = "gaussian"
"""


def test_run_suite_records_and_resume(tmp_path):
    p = tmp_path / "api-tiny.toml"
    p.write_text(SUITE.replace("{params}", "{ n_train = 1000, n_test = 400 }"))
    run = genbench.run_suite(p, results_dir=tmp_path / "res", device="cpu")
    assert run.ok and run.summary.ran == 2 and run.leaderboard is None
    df = run.frame
    fid = df[df.metric == "fid"].set_index("generator")["value"]
    assert set(fid.index) == {"gmm", "gaussian"} and all(math.isfinite(v) and v >= 0 for v in fid)
    nll = df[df.metric == "nll"].set_index("generator")
    assert nll.loc["gmm", "value"] < nll.loc["gaussian", "value"]  # NLL, nats/point: 8 components fit the ring far better than 1
    again = api.run_suite(str(p), results_dir=tmp_path / "res", device="cpu")
    assert again.summary.ran == 0 and again.summary.skipped == 2
    assert len(again.frame) == len(df)
    with pytest.raises(TypeError, match="unknown option"):
        api.run_suite(p, results_dir=tmp_path / "res", no_such_option=1)
    json.dumps(df.drop(columns=["settings", "extra", "versions"]).to_dict("records"), default=str)


def test_leaderboard_exports_the_same_numbers(tmp_path):
    """bench leaderboard --format csv|json: the tables as tidy rows, equal to the stored records (one seed: mean = value)."""
    p = tmp_path / "api-tiny.toml"
    p.write_text(SUITE.replace("{params}", "{ n_train = 1000, n_test = 400 }"))
    run = api.run_suite(p, results_dir=tmp_path / "res", device="cpu")
    fid = run.frame[run.frame.metric == "fid"].set_index("generator")["value"]
    args = ["leaderboard", "--suite", str(p), "--results", str(tmp_path / "res"), "--out", str(tmp_path / "lb")]
    assert main([*args, "--format", "csv"]) == 0
    t = pd.read_csv(tmp_path / "lb" / "api-tiny.csv")
    got = t[t.metric == "fid"].set_index("generator")["mean"]
    assert sorted(got.index) == sorted(fid.index) and all(got[g] == pytest.approx(fid[g]) for g in fid.index)
    assert main([*args, "--format", "json"]) == 0
    rows = json.loads((tmp_path / "lb" / "api-tiny.json").read_text())
    rows = rows if isinstance(rows, list) else rows.get("rows", rows.get("tables", []))
    assert {r["generator"] for r in rows if r["metric"] == "fid"} == set(fid.index)
    assert main([*args, "--format", "md"]) == 0 and (tmp_path / "lb" / "api-tiny.md").is_file()
