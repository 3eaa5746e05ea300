"""ebm (baselines/ebm.py): iterative sampler, energies after PCD, validation."""

from __future__ import annotations

import pytest
import torch

from baselines import registry
from baselines.protocol import Budget, TrainData
from bench import data


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def ring_ebm():
    ds = data.load("ring8")
    torch.manual_seed(0)
    m = registry.build("ebm", ds.info, device="cpu", hidden=(32, 32), train_steps=10, buffer_size=1000)
    m.fit(TrainData(ds.train_x, ds.info), Budget(steps=300, batch_size=128))
    return m


def test_info_is_iterative_without_likelihood(ring_ebm):
    info = ring_ebm.info
    assert info.iterative and info.default_steps == 100 and info.likelihood is None
    assert not hasattr(ring_ebm, "log_prob") and not hasattr(ring_ebm, "elbo")


def test_pcd_lowers_the_energy_of_data_against_noise(ring_ebm):
    ds = data.load("ring8")
    noise = (torch.rand(1000, 2) * 2 - 1) * 2.5
    assert ring_ebm.energy(ds.test_x[:1000]).mean() < ring_ebm.energy(noise).mean()


def test_langevin_steps_move_samples_towards_the_data(ring_ebm):
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    start = ring_ebm.sample(1000, steps=0, generator=g())
    end = ring_ebm.sample(1000, steps=100, generator=g())
    off = lambda x: float((x.norm(dim=1) - 1).abs().mean())  # noqa: E731
    assert off(end) < 0.25 * off(start)
    assert ring_ebm.sample(5, generator=g()).shape == (5, 2)


def test_image_steps_zero_is_quantized_uniform_noise():
    ds = data.load("digits")
    m = registry.build("ebm", ds.info, device="cpu", hidden=(16,), train_steps=1, buffer_size=64)
    m.fit(TrainData(ds.train_x[:64], ds.info), Budget(steps=1, batch_size=16))
    x = m.sample(200, steps=0, generator=torch.Generator().manual_seed(0))
    assert x.mean() == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="steps"):
        m.sample(2, steps=-1)


def test_grad_clamp_bounds_every_langevin_move():
    """Without noise, one update moves each pixel by at most step_size * grad_clamp
    (network units, [-1, 1] images), and an unclamped update moves further."""
    ds = data.load("digits")
    moves = {}
    for clamp in (None, 1e-3):
        torch.manual_seed(0)
        m = registry.build("ebm", ds.info, device="cpu", hidden=(16,), step_size=10.0, noise=0.0, grad_clamp=clamp, train_steps=1, buffer_size=64)
        m.fit(TrainData(ds.train_x[:64], ds.info), Budget(steps=1, batch_size=16))
        h0 = torch.rand(32, *ds.info.shape) * 1.6 - 0.8  # away from the [-1, 1] clamp
        moves[clamp] = (m._langevin(h0, 1) - h0).abs().max().item()
    assert moves[1e-3] <= 10.0 * 1e-3 + 1e-6
    assert moves[None] > 10.0 * 1e-3


@pytest.mark.parametrize(
    "hp,match",
    [({"arch": "resnet"}, "arch"), ({"train_steps": 0}, "train_steps"), ({"reinit": 1.5}, "reinit"), ({"buffer_size": 0}, "buffer_size"), ({"grad_clamp": 0.0}, "grad_clamp")],
)
def test_bad_hyperparameters_are_named(hp, match):
    with pytest.raises(ValueError, match=match):
        registry.build("ebm", data.load("digits").info, **hp)


@pytest.mark.parametrize("ctx", [torch.no_grad, torch.inference_mode])
def test_sampling_works_under_no_grad(ring_ebm, ctx):
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    with ctx():
        x = ring_ebm.sample(10, steps=5, generator=g())
    assert torch.equal(x, ring_ebm.sample(10, steps=5, generator=g()))


def test_flop_count_of_langevin_sampling_is_forward_plus_input_gradient(ring_ebm):
    """Closed form: MLP 2 -> 32 -> 32 -> 1; each Langevin step runs the forward (2 FLOPs per multiply-add)
    and the backward to the input only (the energy's weights are frozen while sampling): the same matmul
    sizes again. FlopCounterMode itself failed here inside autograd.grad (its module tracker)."""
    from metrics.flops import count_flops

    fwd = 2 * (2 * 32 + 32 * 32 + 32 * 1)
    for steps in (1, 4):
        g = torch.Generator().manual_seed(0)
        assert count_flops(lambda s=steps, g=g: ring_ebm.sample(3, steps=s, generator=g)) == 3 * steps * 2 * fwd
