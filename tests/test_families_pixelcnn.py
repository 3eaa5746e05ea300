"""pixelcnn (baselines/autoregressive.py): sequential sampling cost and
correctness, validation. (Normalization and causality: test_families_likelihood.py.)"""

from __future__ import annotations

import pytest
import torch

from baselines import registry
from baselines.protocol import Budget, DataInfo, TrainData
from bench import data


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_sampling_takes_one_network_evaluation_per_pixel():
    ds = data.load("digits")
    m = registry.build("pixelcnn", ds.info, device="cpu", channels=8, n_layers=2)
    m.fit(TrainData(ds.train_x[:64], ds.info), Budget(steps=1, batch_size=32))
    calls = []
    handle = m.net.register_forward_hook(lambda *a: calls.append(1))
    try:
        m.sample(3, generator=torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    assert len(calls) == 8 * 8


def test_samples_follow_the_learned_conditionals():
    """Trained on two fixed images (a pattern and its negative), nearly every sample is one
    of them: the first pixel picks the image and the sampler must respect each conditional."""
    info = DataInfo(name="two", shape=(1, 4, 4), kind="image", levels=3)
    a = (torch.arange(16).reshape(1, 4, 4) % 3).float() / 2
    x = torch.stack([a, 1 - a]).repeat(64, 1, 1, 1)
    torch.manual_seed(0)
    m = registry.build("pixelcnn", info, device="cpu", channels=16, n_layers=3, lr=3e-3)
    m.fit(TrainData(x, info), Budget(steps=200, batch_size=64))
    s = m.sample(40, generator=torch.Generator().manual_seed(0))
    is_a = (s == a).flatten(1).all(1)
    is_b = (s == 1 - a).flatten(1).all(1)
    assert (is_a | is_b).float().mean() >= 0.9
    assert is_a.any() and is_b.any()


@pytest.mark.parametrize("hp,match", [({"kernel": 4}, "kernel"), ({"n_layers": 0}, "n_layers")])
def test_bad_hyperparameters_are_named(hp, match):
    with pytest.raises(ValueError, match=match):
        registry.build("pixelcnn", data.load("digits").info, **hp)


def test_rejects_points_directly():
    from baselines.autoregressive import PixelCNN

    with pytest.raises(ValueError, match="images"):
        PixelCNN(data.load("ring8").info)
