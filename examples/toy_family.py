"""A new family in one module: a network, a loss and ``draw`` (sampling) (docs/architecture.md, "Adding a family").

A learned-mean Gaussian on 2-D points. :class:`baselines.base.Family` gives it
``fit`` (the one training loop), ``info``, input checks and the state; use it
with ``bench run --suite SUITE --import examples/toy_family.py``.
"""

import torch
from torch import nn

from baselines.base import Family
from baselines.registry import register


@register("toy", family="toy", kinds=("points",), description="a learned-mean, unit-variance Gaussian (the architecture's example)")
class ToyGaussian(Family):
    name = "toy"
    family = "toy"

    def __init__(self, info, lr: float = 0.05, device: str | None = None):  # keywords = the suite's params
        super().__init__(info, lr=lr, device=device)
        self.net = nn.ParameterDict({"mu": nn.Parameter(torch.full(info.shape, 3.0))})  # far from the data

    def loss(self, batch, generator=None):  # Gaussian NLL with unit variance, up to a constant (nats)
        return 0.5 * ((batch.x - self.net["mu"]) ** 2).sum(1).mean()

    def draw(self, n, labels, steps, generator, sampler):  # Family.sample checks its arguments, then calls this
        self.last_nfe = 1
        return self.net["mu"].detach().cpu() + torch.randn(n, *self.data_info.shape, generator=generator)
