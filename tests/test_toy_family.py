"""docs/architecture.md's example: a new family is a network, a loss and a `sample`.

The toy family below (a learned-mean Gaussian on 2-D points) registers itself,
trains through the one loop in baselines/training.py and runs through a suite
like any built-in family. If this test needs more than ~30 lines of family
code, the architecture has regressed.
"""

import torch
from torch import nn

from baselines.protocol import Budget, GeneratorInfo, TrainData, TrainReport
from baselines.registry import GENERATORS, register
from baselines.training import train
from bench.runner import run_suite
from bench.store import ResultStore
from bench.suite import load_suite


class ToyGaussian(nn.Module):
    def __init__(self, data_info, lr: float = 0.05):
        super().__init__()
        self.mu, self.lr = nn.Parameter(torch.full(data_info.shape, 3.0)), lr  # starts far from the data
        self.info = GeneratorInfo("toy", "toy", data_info.shape, n_params=self.mu.numel(), n_trainable=self.mu.numel())

    def loss(self, batch, generator):  # Gaussian NLL with unit variance, up to a constant (nats)
        return 0.5 * ((batch.x - self.mu) ** 2).sum(1).mean()

    def fit(self, data: TrainData, budget: Budget) -> TrainReport:
        return train("toy", budget, data.x, loss=self.loss, optimizer=torch.optim.Adam(self.parameters(), lr=self.lr))

    def sample(self, n, *, labels=None, prompts=None, steps=None, generator=None):
        return self.mu.detach() + torch.randn(n, *self.mu.shape, generator=generator)


SUITE = """
name = "toy"
seeds = [0]
[[datasets]]
name = "ring8"
extractor = "raw"
n_fake = 500
metrics = ["fid"]
[[generators]]
name = "toy"
budget = { steps = 200, batch_size = 256 }
"""


def test_a_toy_family_runs_through_a_suite(tmp_path):
    register("toy", family="toy", kinds=("points",))(ToyGaussian)
    try:
        (tmp_path / "toy.toml").write_text(SUITE)
        summary = run_suite(load_suite(str(tmp_path / "toy.toml")), results_dir=tmp_path / "res", progress=False)
        assert summary.ran == 1 and not summary.failed
        records = ResultStore(tmp_path / "res" / "toy").records()
        fid = [r for r in records if r["metric"] == "fid"][0]
        # ring8: mean 0, covariance ~0.5 I. N(0, I) has FID 2 (1.5 - 2 sqrt(0.5)) = 0.17; the untrained mu = (3, 3)
        # adds |mu|^2 = 18. Training must have moved mu to the data mean.
        assert 0.0 < fid["value"] < 0.6, fid["value"]
        assert fid["label"] == "FID" and fid["direction"] == "min"
        assert any(r["metric"] == "train_s" for r in records)
    finally:
        GENERATORS.unregister("toy")
