"""baselines.samplers: the Denoiser (guidance, evaluation counting), the sampler registry and options."""

from __future__ import annotations

import pytest
import torch

from baselines.diffusion import NoiseSchedule
from baselines.samplers import (
    SAMPLERS,
    DDIMSampler,
    DDPMSampler,
    Denoiser,
    DPMSolverPP2MSampler,
    EulerSampler,
    HeunSampler,
    OnePassSampler,
    make_sampler,
    sampler_timesteps,
)
from genbench.protocol import Sampler


class LabelNet(torch.nn.Module):
    """out = x + label (as a float), so guided outputs have a closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = []

    def forward(self, x, t, y=None):
        self.calls.append(len(x))
        return x + (0.0 if y is None else y.float()[:, None])


def test_denoiser_guidance_closed_form_and_evaluation_count():
    net = LabelNet()
    d = Denoiser(net, num_classes=5)
    x = torch.zeros(3, 1)
    y = torch.tensor([0, 1, 2])
    assert torch.equal(d(x, 0.5, y, 1.0), y.float()[:, None])  # conditional
    assert torch.equal(d(x, 0.5, y, 0.0), torch.full((3, 1), 5.0))  # the null label
    # u + w (c - u) = 5 + 3 (y - 5)
    assert torch.allclose(d(x, 0.5, y, 3.0), (5 + 3 * (y.float() - 5))[:, None])
    assert torch.equal(d(x, 0.5, None, 3.0), torch.full((3, 1), 5.0))  # no labels: unconditional
    assert d.evals == 1 + 1 + 2 + 1 and net.calls == [3, 3, 6, 3]  # guidance: one batched pass of 2N
    d.reset()
    assert d.evals == 0
    u = Denoiser(LabelNet())
    assert torch.equal(u(x, 3, None, 7.0), x) and u.evals == 1
    assert Denoiser(net, time_dtype=torch.long).times(4, 2).dtype == torch.long


def test_registry_and_make_sampler():
    assert {"ddpm", "ddim", "euler", "heun"} <= set(SAMPLERS.names())
    assert SAMPLERS.get("ddim").meta["kind"] == "eps" and SAMPLERS.get("heun").meta["kind"] == "velocity"
    sch = NoiseSchedule("cosine", 100)
    s = make_sampler("eps", "ddim", {"eta": 0.5, "guidance_scale": 2.0}, {"schedule": sch}, "m")
    assert isinstance(s, DDIMSampler) and s.eta == 0.5 and s.guidance_scale == 2.0 and s.default_steps() == 50
    assert isinstance(s, Sampler)  # genbench.protocol.Sampler: name and nfe
    assert isinstance(make_sampler("eps", "ddpm", {}, {"schedule": sch}, "m"), DDPMSampler)
    assert make_sampler("velocity", "euler", {}, {"default_steps": 7}, "m").default_steps() == 7
    assert isinstance(make_sampler("eps", "dpm++2m", {"spacing": "leading"}, {"schedule": sch}, "m"), DPMSolverPP2MSampler)
    with pytest.raises(ValueError, match=r"m: unknown sampler 'euler'; valid: ddim, ddpm, dpm\+\+2m"):
        make_sampler("eps", "euler", {}, {"schedule": sch}, "m")
    with pytest.raises(TypeError, match=r"unknown options \['temperature'\]"):
        make_sampler("velocity", "heun", {"temperature": 1.0}, {}, "m")
    with pytest.raises(ValueError, match="guidance_scale"):
        EulerSampler(guidance_scale=-1)
    with pytest.raises(ValueError, match="eta"):
        DDIMSampler(sch, eta=1.5)


def test_timesteps_and_run_counts_nfe():
    assert sampler_timesteps(10, 4) == [9, 7, 4, 2]  # floor(10 - 2.5 k + 1/2) - 1
    e = EulerSampler()
    assert e.timesteps(4) == [0.0, 0.25, 0.5, 0.75]
    net = LabelNet()
    d = Denoiser(net, num_classes=3)
    x = torch.zeros(2, 1)
    s = HeunSampler(guidance_scale=2.0)
    s.run(d, x, 3, torch.tensor([0, 1]))
    assert s.nfe == 3 * 2 * 2  # two evaluations per step, doubled by guidance
    s = DDPMSampler(NoiseSchedule("linear", 20))
    s.run(Denoiser(LabelNet()), torch.zeros(2, 1), None, None, torch.Generator().manual_seed(0))
    assert s.nfe == 20  # ancestral default: all T steps
    assert "eta=0.0" in repr(DDIMSampler(NoiseSchedule("linear", 20)))


def test_timestep_spacing():
    # leading: floor(k T / steps), largest first (the DDIM paper's and improved-diffusion's respacing)
    assert sampler_timesteps(1000, 20, "leading") == list(range(950, -1, -50))
    assert sampler_timesteps(10, 4, "leading") == [7, 5, 2, 0]  # floor(2.5 k) for k = 3..0
    assert sampler_timesteps(10, 3, "leading") == [6, 3, 0]
    for T, n in ((10, 10), (1000, 1000), (7, 7)):  # every index once: all spacings agree
        every = list(range(T - 1, -1, -1))
        assert sampler_timesteps(T, n, "leading") == sampler_timesteps(T, n) == sampler_timesteps(T, n, "quadratic") == every
    for T, n in ((1000, 20), (1000, 3), (17, 5)):
        ts = sampler_timesteps(T, n, "leading")
        assert len(set(ts)) == n and ts == sorted(ts, reverse=True) and ts[-1] == 0 and ts[0] < T - 1
    # quadratic: floor((T - 1) k^2 / (steps - 1)^2), largest first; the DDIM paper's other selection
    assert sampler_timesteps(10, 4, "quadratic") == [9, 4, 1, 0]  # 9 k^2 / 9 for k = 3..0
    assert sampler_timesteps(1000, 20, "quadratic")[:3] == [999, 896, 799]  # 999 * 18^2 / 19^2 = 896.6
    assert sampler_timesteps(1000, 20, "quadratic")[-3:] == [11, 2, 0]  # 999 * 2^2 / 361 = 11.07, 999 / 361 = 2.77
    assert sampler_timesteps(1000, 2, "quadratic") == [999, 0] and sampler_timesteps(1000, 1, "quadratic") == [999]
    # where k^2 (T - 1) / (steps - 1)^2 < k the index is raised to k, keeping the indices distinct
    assert sampler_timesteps(1000, 100, "quadratic")[-6:] == [5, 4, 3, 2, 1, 0]
    for T, n in ((1000, 20), (1000, 40), (1000, 100), (1000, 999), (17, 5)):
        ts = sampler_timesteps(T, n, "quadratic")
        assert len(set(ts)) == n and ts == sorted(ts, reverse=True) and ts[-1] == 0 and ts[0] == T - 1
    with pytest.raises(ValueError, match="unknown timestep spacing 'middle'; valid: trailing, leading, quadratic"):
        sampler_timesteps(10, 2, "middle")
    sch = NoiseSchedule("cosine", 100)
    s = make_sampler("eps", "ddim", {"spacing": "leading"}, {"schedule": sch}, "m")
    assert s.timesteps(4) == [75, 50, 25, 0] and "spacing='leading'" in repr(s)
    assert make_sampler("eps", "ddpm", {"spacing": "leading"}, {"schedule": sch}, "m").timesteps(2) == [50, 0]
    assert DDPMSampler(sch).timesteps(4) == [99, 74, 49, 24]  # trailing stays the default
    with pytest.raises(ValueError, match="ddim sampler: unknown timestep spacing 'lead'"):
        DDIMSampler(sch, spacing="lead")


class GaussianEps(torch.nn.Module):
    """The exact eps-prediction for data x_0 ~ N(mu, s^2) per coordinate:
    E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar)."""

    def __init__(self, schedule: NoiseSchedule, mu: float, s: float) -> None:
        super().__init__()
        self.abar = torch.as_tensor(schedule.alphas_bar).to(torch.float64)
        self.mu, self.s = mu, s

    def forward(self, x, t):
        ab = self.abar[t][:, None]
        return (1 - ab).sqrt() * (x - ab.sqrt() * self.mu) / (ab * self.s**2 + 1 - ab)


def test_dpm_solver_is_a_second_order_ddim():
    """On Gaussian data the probability-flow ODE has a closed form: the
    standardized value z = (x_t - sqrt(abar) mu) / sqrt(abar s^2 + 1 - abar)
    is constant along it. So from x at the last index the exact result (the
    ODE to index 0, then the x_0 estimate there, as the samplers' last step)
    is known; DDIM's error halves when the steps double (first order) and
    DPM-Solver++(2M)'s is far below it."""
    sch = NoiseSchedule("cosine", 1000)
    mu, s = 0.3, 0.5
    d = Denoiser(GaussianEps(sch, mu, s), time_dtype=torch.long)
    z = torch.randn(64, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ab_T, ab_0 = sch.abar(999), sch.abar(0)
    x = ab_T**0.5 * mu + (ab_T * s**2 + 1 - ab_T) ** 0.5 * z
    exact = mu + s**2 * ab_0**0.5 * z / (ab_0 * s**2 + 1 - ab_0) ** 0.5

    def error(sampler, steps):
        return (sampler.run(d, x.clone(), steps) - exact).abs().max().item()

    ddim, dpm = DDIMSampler(sch, clip_denoised=False), DPMSolverPP2MSampler(sch, clip_denoised=False)
    e_ddim = [error(ddim, n) for n in (20, 40, 80)]
    e_dpm = [error(dpm, n) for n in (20, 40, 80)]
    assert all(1.8 < a / b < 2.1 for a, b in zip(e_ddim, e_ddim[1:]))  # 0.119, 0.061, 0.031
    assert all(p < a / 10 for p, a in zip(e_dpm, e_ddim))  # 4.6e-3, 2.8e-3, 9.3e-4
    assert e_dpm[2] < e_dpm[0] / 4
    assert dpm.nfe == 80 and dpm.default_steps() == 20
    # two steps: a DDIM step, then the x_0 estimate: the same as DDIM
    assert torch.allclose(dpm.run(d, x.clone(), 2), ddim.run(d, x.clone(), 2), rtol=0, atol=1e-12)
    # the multistep history does not leak from one run into the next
    assert torch.equal(dpm.run(d, x.clone(), 20), dpm.run(d, x.clone(), 20))


def test_one_pass_options():
    s = OnePassSampler("vae", {"temperature": 0.5})
    assert isinstance(s, Sampler) and s.nfe == 1 and s.get("temperature") == 0.5 and s.get("decoder", "sample") == "sample"
