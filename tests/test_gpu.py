"""The GPU path (#16): ``--device cuda`` end to end, fp16/bf16 autocast on CUDA, ``[settings.cuda]`` overrides.

Every test needs a CUDA device and is skipped cleanly without one (marker
``gpu``). The CPU side of the same plumbing is tested in ``tests/test_scale.py``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.runner import run_suite
from bench.store import ResultStore
from bench.suite import load_suite
from genbench.precision import autocast, current_scaler
from metrics.latency import measure_latency

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _suite(tmp_path: Path, precision: str, metrics: str = '"fid", "kid", "nll"') -> Path:
    p = tmp_path / f"gpu-{precision}.toml"
    p.write_text(
        textwrap.dedent(f"""
        name = "gpu-{precision}"
        seeds = [0]
        [settings]
        precision = "fp32"
        sample_batch = 50
        [settings.cuda]
        precision = "{precision}"
        sample_batch = 200
        budgets = {{ vae = {{ steps = 40, batch_size = 64 }} }}
        [[datasets]]
        name = "digits"
        extractor = "digits-cnn"
        n_fake = 360
        metrics = [{metrics}]
        [[generators]]
        name = "data"
        [[generators]]
        name = "vae"
        budget = {{ steps = 5, batch_size = 16 }}
        [[generators]]
        name = "ddpm"
        params = {{ width = 16, T = 100 }}
        budget = {{ steps = 30, batch_size = 64 }}
        steps = [10]
        """)
    )
    return p


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_suite_on_cuda_with_precision(tmp_path, precision):
    """Training and sampling on the GPU under autocast, [settings.cuda] budgets used, finite metrics, CUDA in the provenance."""
    s = run_suite(load_suite(str(_suite(tmp_path, precision))), results_dir=tmp_path / "r", device="cuda", progress=False)
    assert not s.failed, s.failed
    recs = ResultStore(tmp_path / "r" / f"gpu-{precision}").records()
    assert all(r["device"].startswith("cuda:") for r in recs)
    train = next(r for r in recs if r["metric"] == "train_s" and r["generator"] == "vae")
    assert train["settings"]["budget"] == {"steps": 40, "batch_size": 64}
    for r in recs:
        if r["metric"] in ("fid", "kid", "nll") and not r.get("na"):
            assert np.isfinite(r["value"]), r


def test_fp16_training_uses_a_grad_scaler_on_cuda():
    lin = nn.Linear(4, 1).cuda()
    with autocast("cuda", "fp16"):
        assert lin(torch.randn(2, 4, device="cuda")).dtype == torch.float16
        assert isinstance(current_scaler(), torch.amp.GradScaler)
    with autocast("cuda", "bf16"):
        assert current_scaler() is None
    assert current_scaler() is None


def test_latency_synchronizes_on_cuda():
    """A CUDA kernel queue that takes measurable time is counted in the latency (synchronize before reading the clock)."""
    a = torch.randn(4096, 4096, device="cuda")
    lat = measure_latency(lambda: a @ a, batch_size=1, warmup=1, repeats=3, device="cuda")
    assert lat.median_s * 1000 > 0.5  # ~137 GFLOP per call: well above 0.5 ms on any GPU, ~0 ms if unsynchronized
