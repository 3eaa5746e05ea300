"""Flow matching (rectified flow): Euler sampler, guidance, training on 2-D."""

from __future__ import annotations

import io

import pytest
import torch

from baselines.flow_matching import FlowMatching
from baselines.protocol import Budget, DataInfo, TrainData
from baselines.registry import build

IMG = DataInfo("tiny-img", (1, 8, 8), "image", levels=17, class_names=tuple(str(i) for i in range(3)))
PTS = DataInfo("pts", (2,), "points")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _randomize(model) -> None:
    g = torch.Generator().manual_seed(0)
    for net in (model.net, model.ema.module):
        for p in net.parameters():
            p.data.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("info", [IMG, PTS], ids=["image", "points"])
def test_one_euler_step_is_x0_plus_velocity(info):
    torch.manual_seed(0)
    m = FlowMatching(info, width=8, hidden=(32, 32))
    _randomize(m)
    shape = (5, *info.shape)
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        v = m.ema.module(x0, torch.zeros(5))
    out = m.sample_internal(5, steps=1, noise=x0)
    assert v.abs().max() > 1e-3  # the check below is not vacuous
    assert torch.allclose(out, x0 + v, atol=1e-6)


def test_euler_steps_follow_the_velocity_field():
    """k Euler steps of a network that returns a constant velocity c move x0 by exactly c."""
    m = FlowMatching(PTS, hidden=(8,))
    c = torch.tensor([0.3, -1.2])

    class Const(torch.nn.Module):
        def forward(self, x, t, y=None):
            return c.expand_as(x)

    m.ema.module = Const()
    x0 = torch.randn(4, 2)
    for steps in (1, 3, 10):
        assert torch.allclose(m.sample_internal(4, steps=steps, noise=x0), x0 + c, atol=1e-5)
        assert m.last_nfe == steps
        # Heun integrates a constant field exactly too, with two evaluations per step
        assert torch.allclose(m.sample_internal(4, steps=steps, noise=x0, sampler=m.make_sampler(sampler="heun")), x0 + c, atol=1e-5)
        assert m.last_nfe == 2 * steps


def test_heun_is_exact_for_a_velocity_linear_in_time_where_euler_is_not():
    """v(x, t) = 2 t: x(1) = x(0) + 1. Heun (trapezoid) is exact; Euler with k steps adds 1 - 1/k."""
    m = FlowMatching(PTS, hidden=(8,))

    class Ramp(torch.nn.Module):
        def forward(self, x, t, y=None):
            return (2 * t)[:, None].expand_as(x)

    m.ema.module = Ramp()
    x0 = torch.randn(3, 2)
    for k in (1, 2, 5):
        heun = m.sample_internal(3, steps=k, noise=x0, sampler=m.make_sampler(sampler="heun"))
        euler = m.sample_internal(3, steps=k, noise=x0)
        assert torch.allclose(heun, x0 + 1, atol=1e-6)
        assert torch.allclose(euler, x0 + (1 - 1 / k), atol=1e-6)


def test_cfg_scale_0_and_1_reduce_to_uncond_and_cond():
    torch.manual_seed(0)
    m = FlowMatching(IMG, width=8, conditional=True)
    _randomize(m)
    net = m.ema.module
    x = torch.randn(6, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        v_c = net(x, torch.full((6,), 0.3), y)
        v_u = net(x, torch.full((6,), 0.3), torch.full((6,), 3))
        assert not torch.allclose(v_c, v_u)
        assert torch.allclose(m.velocity(net, x, 0.3, y, guidance_scale=0.0), v_u, atol=1e-6)
        assert torch.allclose(m.velocity(net, x, 0.3, y, guidance_scale=1.0), v_c, atol=1e-6)
        assert torch.allclose(m.velocity(net, x, 0.3, y, guidance_scale=2.0), v_u + 2 * (v_c - v_u), atol=1e-5)
    m.sample(2, labels=torch.tensor([0, 1]), steps=4, sampler=m.make_sampler(guidance_scale=2.0))
    assert m.last_nfe == 8  # guidance: two evaluations per step
    assert m.info.conditioning == "class"
    with pytest.raises(ValueError, match="labels must be in"):
        m.sample(2, labels=torch.tensor([0, 5]), steps=1)


def test_2d_single_point_is_learned():
    torch.manual_seed(0)
    centre = torch.tensor([1.5, -0.5])
    x = centre + 0.05 * torch.randn(512, 2)
    m = build("flow-matching", PTS, hidden=(64, 64))
    rep = m.fit(TrainData(x, PTS), Budget(steps=300, batch_size=128))
    assert rep.steps == 300 and len(rep.losses["loss"]) <= 200
    for steps in (1, 20):
        s = m.sample(500, steps=steps, generator=torch.Generator().manual_seed(0))
        assert s.shape == (500, 2)
        assert (s.mean(0) - centre).abs().max() < 0.1, steps
        assert (s - centre).norm(dim=1).median() < 0.3, steps


def test_image_samples_on_levels_reproducible_and_state_roundtrip():
    torch.manual_seed(0)
    m = build("flow-matching", IMG, width=8)
    m.fit(TrainData(torch.rand(16, 1, 8, 8), IMG), Budget(steps=3, batch_size=8))
    g = lambda: torch.Generator().manual_seed(0)
    a = m.sample(4, steps=3, generator=g())
    assert a.shape == (4, 1, 8, 8) and a.min() >= 0 and a.max() <= 1
    assert torch.allclose(a * 16, (a * 16).round(), atol=1e-5)
    assert m.info.iterative and m.info.default_steps == 50 and m.info.likelihood is None
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    m2 = build("flow-matching", IMG, width=8)
    m2.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(a, m2.sample(4, steps=3, generator=g()))


def test_bad_input_is_rejected():
    m = FlowMatching(IMG, width=8)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        m.sample(1, steps=0)
    with pytest.raises(ValueError, match="unknown sampler 'ddim'; valid: euler, heun"):
        m.make_sampler(sampler="ddim")
    with pytest.raises(ValueError, match="conditional=True"):
        m.make_sampler(guidance_scale=2.0)
    with pytest.raises(TypeError, match=r"unknown options \['eta'\]"):
        m.make_sampler(eta=1.0)
    with pytest.raises(ValueError, match="trained unconditionally"):
        m.sample(1, labels=torch.tensor([0]))
    with pytest.raises(ValueError, match="expected"):
        m.fit(TrainData(torch.zeros(3, 2), IMG), Budget(steps=1))
