"""bench compare: two runs of a suite agree on every non-timing record, or the report names what differs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.cli import main
from bench.compare import compare_runs
from bench.store import ResultStore


def _rec(job: str, metric: str, value, lo=None, hi=None) -> dict:
    return {"suite": "smoke", "job": job, "generator": job.split("/")[1], "metric": metric, "value": value, "lo": lo, "hi": hi}


BASE = [
    _rec("ring8/gmm/seed0", "fid", 0.125, 0.1, 0.15),
    _rec("ring8/gmm/seed0", "nll", 2.9131),
    _rec("ring8/gmm/seed0", "latency_ms", 1.5, 1.4, 1.6),  # wall clock: never compared
    _rec("ring8/gmm/seed0", "train_s", 3.0),
    _rec("digits/gan/seed0", "fid", 9.87e-3),
    _rec("digits/gan/seed0", "precision", 0.5, 0.4, 0.6),
]


def _write(root, records) -> None:
    store = ResultStore(root / "smoke")
    for r in records:
        store.append(r)


def test_identical_runs_reproduce_bit_for_bit(tmp_path):
    _write(tmp_path / "a", BASE)
    _write(tmp_path / "b", [{**r, "value": r["value"] * 2} if r["metric"] in ("latency_ms", "train_s") else r for r in BASE])
    c = compare_runs(tmp_path / "a", tmp_path / "b", "smoke")
    assert c.ok and sum(d.n for d in c.metrics.values()) == 4 and sum(d.identical for d in c.metrics.values()) == 4
    assert "latency_ms" not in c.metrics and "train_s" not in c.metrics
    assert main(["compare", "--suite", "smoke", str(tmp_path / "a"), str(tmp_path / "b")]) == 0


def test_differences_are_measured_and_judged_against_the_tolerance(tmp_path, capsys):
    _write(tmp_path / "a", BASE)
    b = [dict(r) for r in BASE]
    b[4]["value"] = 7.35e-3  # the GAN's FID on another machine: relative difference (9.87 - 7.35) / 9.87
    b[0]["hi"] = 0.15 * (1 + 1e-9)  # a last-bits difference in an interval bound
    _write(tmp_path / "b", b)
    c = compare_runs(tmp_path / "a", tmp_path / "b", "smoke")
    assert not c.ok and c.metrics["fid"].identical == 0 and c.metrics["fid"].n == 2
    assert c.metrics["fid"].max_rel == pytest.approx((9.87e-3 - 7.35e-3) / 9.87e-3)
    assert c.metrics["fid"].max_abs == pytest.approx(9.87e-3 - 7.35e-3)
    assert len(c.metrics["fid"].outside) == 2  # bit-for-bit asked: both differ
    loose = compare_runs(tmp_path / "a", tmp_path / "b", "smoke", rtol=1e-6)
    assert [o[0][0] for o in loose.metrics["fid"].outside] == ["digits/gan/seed0"]  # the 1e-9 bound passes, the GAN does not
    assert compare_runs(tmp_path / "a", tmp_path / "b", "smoke", rtol=0.3).ok
    assert main(["compare", "--suite", "smoke", "--rtol", "1e-6", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out
    assert "outside tolerance: digits/gan/seed0 gan fid.value: 0.00987 vs 0.00735" in out and out.rstrip().endswith("NOT reproduced")
    assert out.startswith("suite smoke: "), out[:200]  # the CLI passes a loaded Suite: its name, not its repr


def test_missing_records_and_missing_values_are_mismatches_whatever_the_tolerance(tmp_path, capsys):
    _write(tmp_path / "a", BASE)
    b = [dict(r) for r in BASE if r["metric"] != "nll"]
    b[-1]["lo"] = None  # an interval bound lost (NaN is stored as None)
    _write(tmp_path / "b", b)
    c = compare_runs(tmp_path / "a", tmp_path / "b", "smoke", rtol=1.0, atol=1.0)
    assert not c.ok and c.only_a == [("ring8/gmm/seed0", "gmm", "nll")] and not c.only_b
    assert [(o[0][2], o[1]) for o in c.metrics["precision"].outside] == [("precision", "lo")]
    main(["compare", "--suite", "smoke", str(tmp_path / "a"), str(tmp_path / "b")])
    assert "only in the first run: ring8/gmm/seed0 gmm nll" in capsys.readouterr().out


def test_bad_usage_is_named(tmp_path, capsys):
    _write(tmp_path / "a", BASE)
    assert main(["compare", "--suite", "smoke", str(tmp_path / "a"), str(tmp_path / "nowhere")]) == 1
    assert "nowhere/smoke/records.jsonl does not exist" in capsys.readouterr().err
    assert main(["compare", "--suite", "no-such-suite", str(tmp_path / "a"), str(tmp_path / "a")]) == 2
    assert main(["compare", "--suite", "smoke", "--rtol", "-1", str(tmp_path / "a"), str(tmp_path / "a")]) == 2
    assert "rtol and atol must be >= 0" in capsys.readouterr().err


REPRO_SUITE = """
name = "repro"
seeds = [0]
[[datasets]]
name = "ring8"
extractor = "raw"
n_fake = 500
metrics = ["fid", "nll"]
[[datasets]]
name = "digits"
extractor = "digits-cnn"
metrics = ["fid", "kid"]
[[generators]]
name = "gmm"
params = { n_components = 8 }
[[generators]]
name = "vae"
datasets = ["ring8"]
budget = { steps = 60, batch_size = 128 }
[[generators]]
name = "ddpm"
datasets = ["ring8"]
budget = { steps = 60, batch_size = 128 }
sample_params = { sampler = "ddim" }
steps = [10]
"""
# an older CPU as far as torch's kernels can tell: scalar ATen kernels, SSE4.1 oneDNN, SSE4.2 MKL, and two threads
OTHER_CPU = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OMP_NUM_THREADS": "2"}
CROSS_CPU_RTOL = 1e-5  # the tolerance the README states for continuous metrics of the deterministic families


def test_other_cpu_kernels_reproduce_within_the_stated_tolerance(tmp_path):
    """Train, sample and measure a small suite twice, the second time on other CPU kernels: every record agrees within
    CROSS_CPU_RTOL, though not bit for bit (the last bits of convolutions, matmuls and reductions differ)."""
    suite = tmp_path / "repro.toml"
    suite.write_text(REPRO_SUITE)
    base = {k: v for k, v in os.environ.items() if k not in OTHER_CPU}
    for name, extra in (("a", {"OMP_NUM_THREADS": "1"}), ("b", OTHER_CPU)):
        cmd = [sys.executable, "-m", "bench", "run", "--suite", str(suite), "--results", str(tmp_path / name), "--no-leaderboard", "--no-progress"]
        subprocess.run(cmd, env={**base, **extra, "GENBENCH_PROGRESS": "0"}, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    exact = compare_runs(tmp_path / "a", tmp_path / "b", "repro")
    n = sum(d.n for d in exact.metrics.values())
    assert n == 8 and not exact.only_a and not exact.only_b  # two metrics each: gmm on both data sets, vae and ddpm on ring8
    if exact.ok:
        pytest.skip("the restricted kernels gave bit-identical results on this CPU: nothing to measure")
    c = compare_runs(tmp_path / "a", tmp_path / "b", "repro", rtol=CROSS_CPU_RTOL)
    print(exact.format())  # the measured differences, for -s
    assert c.ok, c.format()
