"""realnvp (baselines/flows.py): invertibility, log-determinants against autograd,
dequantization bound, conv conditioners and the multi-scale layout, sampler temperature, validation."""

from __future__ import annotations

import math

import pytest
import torch

from baselines import registry
from baselines.protocol import Budget, DataInfo, TrainData, dequantize
from bench import data


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _randomize(m):
    """Non-trivial couplings (the untrained flow is the identity by construction)."""
    with torch.no_grad():
        for p in m.net.layers.parameters():
            p.normal_(0, 0.3)


@pytest.mark.parametrize(
    "dataset,hp", [("swissroll", {"hidden": (16,)}), ("digits", {"hidden": (32,)}), ("digits", {"conditioner": "conv", "width": 8}),
     ("digits", {"conditioner": "conv", "width": 4, "squeeze": 1})],  # 8x8 then 4x4 with channel masks
)
def test_inverse_and_log_det(dataset, hp):
    ds = data.load(dataset)
    torch.manual_seed(0)
    m = registry.build("realnvp", ds.info, device="cpu", **{"n_couplings": 4, **hp})
    m.fit(TrainData(ds.train_x, ds.info), Budget(steps=2, batch_size=32))
    _randomize(m)
    m.net.eval()
    x = ds.test_x[:3].double() if ds.info.kind == "points" else dequantize(ds.test_x[:3], ds.info.levels).double()
    net = m.net.double()
    z, logdet = net.to_base(x)
    assert z.shape == x.shape  # the base point has the data's shape (squeezes undone)
    assert torch.allclose(net.invert(z), x, atol=1e-6)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda v: net.to_base(v[None])[0].flatten(), x[i])
        jac = jac.reshape(ds.info.dim, ds.info.dim)
        assert float(torch.linalg.slogdet(jac).logabsdet) == pytest.approx(float(logdet[i].detach()), rel=1e-7, abs=1e-6)


def test_image_log_prob_is_the_dequantization_bound():
    ds = data.load("digits")
    torch.manual_seed(0)
    m = registry.build("realnvp", ds.info, device="cpu", hidden=(16,), n_couplings=2)
    m.fit(TrainData(ds.train_x, ds.info), Budget(steps=2, batch_size=32))
    x = ds.test_x[:4]
    y = dequantize(x, 17, torch.Generator().manual_seed(7))
    expected = m.net.log_density(y) - 64 * math.log(17)
    assert torch.allclose(m.log_prob(x, generator=torch.Generator().manual_seed(7)), expected, atol=1e-4)
    # default: a fixed-seed dequantization, so the number is reproducible
    assert torch.equal(m.log_prob(x), m.log_prob(x))
    assert m.info.likelihood == "dequantized"


def test_temperature_shrinks_2d_samples():
    ds = data.load("swissroll")
    torch.manual_seed(0)
    m = registry.build("realnvp", ds.info, device="cpu", hidden=(16,))
    m.fit(TrainData(ds.train_x, ds.info), Budget(steps=5, batch_size=128))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    wide = m.sample(500, generator=g())
    narrow = m.sample(500, generator=g(), sampler=m.make_sampler(temperature=0.3))
    assert narrow.std(0).sum() < wide.std(0).sum()
    # z = T eps: the base noise of the same generator, scaled (the flow is applied after)
    assert torch.equal(m.sample(500, generator=g(), sampler=m.make_sampler(temperature=1.0)), wide)
    with pytest.raises(ValueError, match="temperature"):
        m.make_sampler(temperature=-1)


@pytest.mark.parametrize(
    "hp,match",
    [
        ({"n_couplings": 1}, "n_couplings"),
        ({"conditioner": "attention"}, "conditioner"),
        ({"alpha": 0.5}, "alpha"),
        ({"dropout": 1.0}, "dropout"),
        ({"squeeze": 1}, "squeeze"),  # the MLP conditioner has no multi-scale layout
        ({"conditioner": "conv", "squeeze": -1}, "squeeze"),
        ({"conditioner": "conv", "squeeze": 4}, "divisible"),  # 8 -> 4 -> 2 -> 1: no fourth squeeze
    ],
)
def test_bad_hyperparameters_are_named(hp, match):
    with pytest.raises(ValueError, match=match):
        registry.build("realnvp", data.load("digits").info, **hp)


def test_squeeze_needs_images():
    with pytest.raises(ValueError, match="squeeze"):
        registry.build("realnvp", data.load("swissroll").info, conditioner="conv", squeeze=1)


def test_image_needs_levels():
    with pytest.raises(ValueError, match="levels"):
        registry.build("realnvp", DataInfo(name="x", shape=(1, 4, 4), kind="image"))
