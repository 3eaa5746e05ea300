"""pytest-benchmark: sampling latency of the Gaussian family (issue: walking
skeleton, timing). The harness records the same quantity in its timing phase
(``bench/timing.py``: median and IQR per sample after warm-up, rows
interleaved); run with ``pytest tests/benchmarks --benchmark-only``."""

import pytest
import torch

from baselines import registry
from baselines.protocol import TrainData
from bench import data


@pytest.mark.parametrize("name", ["gaussian", "ppca", "gmm"])
def test_sample_digits_batch64(benchmark, name):
    ds = data.load("digits")
    m = registry.build(name, ds.info)
    m.fit(TrainData(ds.train_x, ds.info), None)
    g = torch.Generator().manual_seed(0)
    x = benchmark(lambda: m.sample(64, generator=g))
    assert x.shape == (64, 1, 8, 8)
