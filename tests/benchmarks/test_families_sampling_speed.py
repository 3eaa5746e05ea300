"""pytest-benchmark: sampling cost of the issue-4 families on digits (8x8, K = 17).

One-shot decoders (autoencoder, VAE, RealNVP) need one network evaluation per
batch; PixelCNN needs one per pixel (H * W = 64 sequential evaluations), and the
EBM one gradient evaluation per Langevin step. Models are built at the sizes of
the digits suite and fitted for one step (weights do not change the cost).
Single-threaded (``GENBENCH_BENCH_THREADS`` to change), like the other
benchmarks. Run with ``pytest tests/benchmarks/test_families_sampling_speed.py --benchmark-only``.
"""

from __future__ import annotations

import os

import pytest
import torch

from baselines import registry
from baselines.protocol import Budget, TrainData
from bench import data

SIZES = {"autoencoder": {}, "vae": {}, "realnvp": {}, "pixelcnn": {"channels": 16}, "ebm": {}}


@pytest.fixture(autouse=True, scope="module")
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("GENBENCH_BENCH_THREADS", "1")))
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("name", list(SIZES))
def test_sample_digits(benchmark, name, batch):
    ds = data.load("digits")
    torch.manual_seed(0)
    m = registry.build(name, ds.info, device="cpu", **SIZES[name])
    m.fit(TrainData(ds.train_x[:256], ds.info), Budget(steps=1, batch_size=64))
    g = torch.Generator().manual_seed(0)
    x = benchmark(lambda: m.sample(batch, generator=g))
    assert x.shape == (batch, 1, 8, 8)
