"""pytest-benchmark: cost of iterative samplers (issue 6).

One network evaluation of each model (the ddpm U-Net, the flow-matching
U-Net, and the 2-D MLPs), and full sampling at a few step counts, with tiny
untrained models (weights do not change the cost), so it runs anywhere:
``pytest tests/benchmarks/test_sampling_speed.py --benchmark-only``.
The network size is the one the ``speed-quality`` suite uses (width 16);
the same quantities, for trained models and per sample, are the suite's
``latency`` / ``latency_b1`` records. Runs single-threaded (set
``GENBENCH_BENCH_THREADS`` to change): on a shared small CPU, intra-op threads
make these small convolutions slower and the timings erratic.
"""

from __future__ import annotations

import os

import pytest
import torch

from baselines import registry
from bench import data

WIDTH = 16  # as in bench/suites/speed-quality.toml


@pytest.fixture(autouse=True, scope="module")
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("GENBENCH_BENCH_THREADS", "1")))
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits_info():
    return data.load("digits").info


@pytest.fixture(scope="module")
def ring_info():
    return data.load("ring8").info


def _model(name: str, info, **kw):
    torch.manual_seed(0)
    return registry.build(name, info, device="cpu", **kw)


@pytest.mark.parametrize("batch", [1, 256])
@pytest.mark.parametrize("name", ["ddpm", "flow-matching"])
def test_one_network_evaluation_digits(benchmark, digits_info, name, batch):
    m = _model(name, digits_info, width=WIDTH)
    net = m.ema.module
    x = torch.randn(batch, *digits_info.shape)
    t = torch.full((batch,), 500) if name == "ddpm" else torch.full((batch,), 0.5)
    with torch.no_grad():
        out = benchmark(lambda: net(x, t))
    assert out.shape == x.shape


@pytest.mark.parametrize("name", ["ddpm", "flow-matching"])
def test_one_network_evaluation_2d(benchmark, ring_info, name):
    m = _model(name, ring_info)
    x = torch.randn(2500, 2)
    t = torch.full((2500,), 500) if name == "ddpm" else torch.full((2500,), 0.5)
    with torch.no_grad():
        out = benchmark(lambda: m.ema.module(x, t))
    assert out.shape == x.shape


@pytest.mark.parametrize(
    "name,sampler,steps",
    [("ddpm", "ddim", 1), ("ddpm", "ddim", 10), ("ddpm", "ddim", 100), ("ddpm", "ddpm", 100),
     ("flow-matching", None, 1), ("flow-matching", None, 10), ("flow-matching", None, 100)],
)  # fmt: skip
def test_full_sampling_digits_batch64(benchmark, digits_info, name, sampler, steps):
    m = _model(name, digits_info, width=WIDTH)
    s = m.make_sampler(sampler=sampler) if sampler else None
    g = torch.Generator().manual_seed(0)
    x = benchmark.pedantic(lambda: m.sample(64, steps=steps, generator=g, sampler=s), rounds=3, warmup_rounds=1)
    assert m.last_nfe == steps
    assert x.shape == (64, 1, 8, 8)


def test_guided_sampling_digits_batch64(benchmark, digits_info):
    """Classifier-free guidance doubles the batch through the network."""
    m = _model("ddpm", digits_info, width=WIDTH, conditional=True)
    s = m.make_sampler(sampler="ddim", guidance_scale=2.0)
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 10
    x = benchmark.pedantic(lambda: m.sample(64, labels=labels, steps=10, generator=g, sampler=s), rounds=3, warmup_rounds=1)
    assert m.last_nfe == 20
    assert x.shape == (64, 1, 8, 8)
