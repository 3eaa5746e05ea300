"""Diffusion family: schedules, forward process, samplers, guidance, ELBO."""

from __future__ import annotations

import io
import math

import pytest
import torch

from baselines.diffusion import DDPM, NoiseSchedule, cosine_betas, discretized_gaussian_log_prob, linear_betas, sampler_timesteps
from baselines.protocol import Budget, DataInfo, LikelihoodBound, TrainData
from baselines.registry import build
from baselines.samplers import EulerSampler

IMG = DataInfo("tiny-img", (1, 8, 8), "image", levels=17, class_names=tuple(str(i) for i in range(3)))
PTS = DataInfo("pts", (2,), "points")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks: intra-op threads only add contention on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _randomize_output(model) -> None:
    """The U-Net's last conv is zero-initialised; give it weights so that
    predictions depend on the inputs (otherwise equality tests are vacuous)."""
    g = torch.Generator().manual_seed(0)
    for net in (model.net, model.ema.module):
        for p in net.parameters():
            p.data.add_(0.05 * torch.randn(p.shape, generator=g))


# ----------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("T", [1000, 100])
def test_alphas_bar_monotone_in_unit_interval(kind, T):
    s = NoiseSchedule(kind, T)
    ab = s.alphas_bar
    assert ab.shape == (T,)
    assert (ab > 0).all() and (ab < 1).all()
    assert (ab[1:] < ab[:-1]).all()
    assert (s.betas > 0).all() and (s.betas <= 0.999).all()


def test_linear_endpoints_scale_with_T():
    b = linear_betas(1000)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)
    b = linear_betas(500)
    assert b[0].item() == pytest.approx(2e-4) and b[-1].item() == pytest.approx(0.04)
    assert NoiseSchedule("linear", 1000).alphas_bar[-1] < 1e-4


def test_cosine_endpoints():
    T = 1000
    ab = NoiseSchedule("cosine", T).alphas_bar
    assert ab[0] > 0.9999  # abar(0) = 1 and the first step adds almost no noise
    assert ab[-1] < 1e-6  # abar(T) = 0 up to the beta clipping
    # abar(t) follows f(t)/f(0) with f(t) = cos^2(pi/2 (t/T + s)/(1+s)) away from the clipped end
    s = 0.008
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    assert ab[T // 2 - 1].item() == pytest.approx(f(T // 2) / f(0), rel=1e-9)
    assert cosine_betas(T).max() == pytest.approx(0.999)


def test_unknown_schedule_is_rejected():
    with pytest.raises(ValueError, match="unknown noise schedule 'quadratic'"):
        NoiseSchedule("quadratic", 10)


# ----------------------------------------------------------------------------- forward process
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_closed_form_matches_iterated_forward_process(kind):
    T = 200
    s = NoiseSchedule(kind, T)
    # analytic: iterate mean and variance of x_t = sqrt(1 - beta) x_{t-1} + sqrt(beta) eps
    mean, var = 1.0, 0.0
    for i in range(T):
        a, b, ab = float(s.alphas[i]), float(s.betas[i]), float(s.alphas_bar[i])
        mean = math.sqrt(a) * mean
        var = a * var + b
        assert mean == pytest.approx(math.sqrt(ab), rel=1e-9)
        assert var == pytest.approx(1 - ab, rel=1e-9, abs=1e-12)
    # statistical: simulate the chain and compare with q_sample's closed form
    g = torch.Generator().manual_seed(0)
    n = 20000
    x0 = torch.full((n, 1), 0.7)
    x = x0.clone()
    checks = {9: None, 99: None, 199: None}
    for i in range(T):
        x = math.sqrt(float(s.alphas[i])) * x + math.sqrt(float(s.betas[i])) * torch.randn(n, 1, generator=g)
        if i in checks:
            checks[i] = x.clone()
    for i, xi in checks.items():
        direct = s.q_sample(x0, torch.full((n,), i), torch.randn(n, 1, generator=g))
        se = math.sqrt(2 * (1 - s.alphas_bar[i].item()) / n) + 1e-4
        assert xi.mean().item() == pytest.approx(direct.mean().item(), abs=5 * se)
        assert xi.std().item() == pytest.approx(direct.std().item(), rel=0.03, abs=1e-3)
        assert direct.mean().item() == pytest.approx(0.7 * math.sqrt(s.alphas_bar[i].item()), abs=5 * se)


# ----------------------------------------------------------------------------- samplers
def test_sampler_timesteps():
    assert sampler_timesteps(1000, 1000) == list(range(999, -1, -1))
    assert sampler_timesteps(1000, 1) == [999]
    for steps in (2, 3, 7, 10, 333, 999):
        ts = sampler_timesteps(1000, steps)
        assert len(ts) == steps == len(set(ts))
        assert ts[0] == 999 and ts == sorted(ts, reverse=True) and ts[-1] >= 0
    with pytest.raises(ValueError, match="steps must be in"):
        sampler_timesteps(100, 101)


def test_ddim_eta0_is_deterministic_given_the_noise():
    torch.manual_seed(0)
    m = DDPM(IMG, T=50, width=8)
    _randomize_output(m)
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    s = m.make_sampler(sampler="ddim", eta=0.0)
    a = m.sample_internal(4, steps=10, noise=x_T, generator=torch.Generator().manual_seed(2), sampler=s)
    b = m.sample_internal(4, steps=10, noise=x_T, generator=torch.Generator().manual_seed(3), sampler=s)
    assert torch.equal(a, b)
    # the stochastic samplers do use the later noise
    s = m.make_sampler(sampler="ddpm")
    c = m.sample_internal(4, steps=10, noise=x_T, generator=torch.Generator().manual_seed(2), sampler=s)
    d = m.sample_internal(4, steps=10, noise=x_T, generator=torch.Generator().manual_seed(3), sampler=s)
    assert not torch.allclose(c, d)
    s = m.make_sampler(sampler="ddim", eta=1.0)
    e = m.sample_internal(4, steps=10, noise=x_T, generator=torch.Generator().manual_seed(2), sampler=s)
    f = m.sample_internal(4, steps=10, noise=x_T, generator=torch.Generator().manual_seed(3), sampler=s)
    assert not torch.allclose(e, f)


def test_samples_reproducible_and_on_levels():
    torch.manual_seed(0)
    m = DDPM(IMG, T=20, width=8)
    _randomize_output(m)
    for sampler in ("ddpm", "ddim"):
        s = m.make_sampler(sampler=sampler)
        a = m.sample(5, steps=20 if sampler == "ddpm" else 4, generator=torch.Generator().manual_seed(0), sampler=s)
        assert m.last_nfe == (20 if sampler == "ddpm" else 4)
        b = m.sample(5, steps=20 if sampler == "ddpm" else 4, generator=torch.Generator().manual_seed(0), sampler=s)
        assert torch.equal(a, b)
        assert a.shape == (5, 1, 8, 8) and a.dtype == torch.float32
        assert a.min() >= 0 and a.max() <= 1
        assert torch.allclose(a * 16, (a * 16).round(), atol=1e-5)
    assert m.info.iterative


def test_default_steps_follow_the_sampler():
    m = DDPM(IMG, T=100, width=8)
    assert m.info.default_steps == 100  # the default sampler is ancestral: T steps
    assert m.make_sampler().default_steps() == 100
    assert m.make_sampler(sampler="ddim").default_steps() == 50
    m.sample(2, generator=torch.Generator().manual_seed(0), sampler=m.make_sampler(sampler="ddim"))
    assert m.last_nfe == 50
    m.sample(2, generator=torch.Generator().manual_seed(0))
    assert m.last_nfe == 100


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_oracle_denoiser_recovers_point_mass(kind):
    """With the exact eps of a point mass at x*, every sampler returns x*."""
    m = DDPM(IMG, T=100, schedule=kind, width=8)
    x_star = (torch.arange(64).reshape(1, 1, 8, 8) % 17).float() / 16
    z = x_star * 2 - 1
    ab = m.schedule.alphas_bar.float()

    class Oracle(torch.nn.Module):
        def forward(self, x, t, y=None):
            a = ab[t].view(-1, 1, 1, 1)
            return (x - a.sqrt() * z) / (1 - a).sqrt()

    m.ema.module = Oracle()
    for sampler, steps in (("ddpm", 100), ("ddpm", 7), ("ddim", 1), ("ddim", 13)):
        out = m.sample(3, steps=steps, generator=torch.Generator().manual_seed(0), sampler=m.make_sampler(sampler=sampler))
        assert torch.equal(out, x_star.expand(3, -1, -1, -1)), (sampler, steps)


# ----------------------------------------------------------------------------- guidance, labels
def test_cfg_scale_0_and_1_reduce_to_uncond_and_cond():
    torch.manual_seed(0)
    m = DDPM(IMG, T=50, width=8, conditional=True)
    _randomize_output(m)
    net = m.ema.module
    x = torch.randn(6, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    t = torch.full((6,), 17)
    with torch.no_grad():
        e_c = net(x, t, y)
        e_u = net(x, t, torch.full((6,), 3))
        assert not torch.allclose(e_c, e_u)
        assert torch.allclose(m.predict_eps(net, x, 17, y, guidance_scale=0.0), e_u, atol=1e-6)
        assert torch.allclose(m.predict_eps(net, x, 17, y, guidance_scale=1.0), e_c, atol=1e-6)
        assert torch.allclose(m.predict_eps(net, x, 17, y, guidance_scale=3.0), e_u + 3 * (e_c - e_u), atol=1e-5)
    assert m.make_sampler(guidance_scale=2.5).guidance_scale == 2.5
    # classifier-free guidance costs two network evaluations per step, 0 and 1 cost one
    for w, nfe in ((2.5, 10), (0.0, 5), (1.0, 5)):
        m.sample(2, labels=torch.tensor([0, 1]), steps=5, sampler=m.make_sampler(sampler="ddim", guidance_scale=w))
        assert m.last_nfe == nfe, w


def test_labels_are_honoured_and_validated():
    torch.manual_seed(0)
    m = DDPM(IMG, T=10, width=8, conditional=True)
    _randomize_output(m)
    assert m.info.conditioning == "class"
    s = m.make_sampler(sampler="ddim")
    g = lambda: torch.Generator().manual_seed(0)
    a = m.sample(3, labels=torch.tensor([0, 0, 0]), steps=3, generator=g(), sampler=s)
    b = m.sample(3, labels=torch.tensor([2, 2, 2]), steps=3, generator=g(), sampler=s)
    assert not torch.equal(a, b)
    assert m.sample(4, steps=2, generator=g()).shape == (4, 1, 8, 8)  # random labels
    with pytest.raises(ValueError, match="labels must be in"):
        m.sample(2, labels=torch.tensor([0, 3]), steps=2)
    with pytest.raises(ValueError, match="got 1 labels for 2 samples"):
        m.sample(2, labels=torch.tensor([0]), steps=2)
    u = DDPM(IMG, T=10, width=8)
    with pytest.raises(ValueError, match="trained unconditionally"):
        u.sample(1, labels=torch.tensor([0]))
    with pytest.raises(ValueError, match="conditional=True"):
        u.make_sampler(guidance_scale=2.0)


def test_bad_options_are_rejected():
    m = DDPM(IMG, T=10, width=8)
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        m.make_sampler(sampler="euler")
    with pytest.raises(ValueError, match="eta"):
        m.make_sampler(sampler="ddim", eta=2.0)
    with pytest.raises(TypeError, match=r"unknown options \['eta'\]"):
        m.make_sampler(sampler="ddpm", eta=0.5)
    with pytest.raises(ValueError, match="velocity"):
        m.sample(1, sampler=EulerSampler())
    with pytest.raises(ValueError, match="steps must be in"):
        m.sample(1, steps=11)
    with pytest.raises(TypeError, match="unknown hyperparameters"):
        build("ddpm", IMG, channels=3)
    with pytest.raises(ValueError, match="no classes"):
        build("ddpm", PTS, conditional=True)
    with pytest.raises(ValueError, match="expected"):
        m.fit(TrainData(torch.zeros(4, 2), IMG), Budget(steps=1))


# ----------------------------------------------------------------------------- training, 2-D
@pytest.mark.parametrize("sampler,steps", [("ddpm", None), ("ddim", 20)])
def test_2d_single_point_is_learned(sampler, steps):
    torch.manual_seed(0)
    centre = torch.tensor([1.5, -0.5])
    x = centre + 0.05 * torch.randn(512, 2)
    m = build("ddpm", PTS, T=100, hidden=(64, 64))
    rep = m.fit(TrainData(x, PTS), Budget(steps=300, batch_size=128))
    assert rep.steps == 300 and len(rep.losses["loss"]) <= 200
    assert rep.losses["loss"][-1] < rep.losses["loss"][0]
    s = m.sample(500, steps=steps, generator=torch.Generator().manual_seed(0), sampler=m.make_sampler(sampler=sampler))
    assert s.shape == (500, 2)
    assert (s.mean(0) - centre).abs().max() < 0.1
    assert (s - centre).norm(dim=1).median() < 0.3
    # the 2-D bound is a density bound (nats/point): finite, and higher at the data than far from it
    near, far = m.elbo(x[:64], timesteps=20), m.elbo(x[:64] + 1.0, timesteps=20)
    assert torch.isfinite(near).all() and torch.isfinite(far).all()
    assert near.mean() > far.mean() + 10


# ----------------------------------------------------------------------------- ELBO
def test_discretized_gaussian_is_a_distribution_over_levels():
    levels = 5
    grid = torch.linspace(-1, 1, levels)
    for mean, log_std in ((0.1, math.log(0.3)), (-0.9, math.log(0.01)), (3.0, math.log(0.05)), (0.5, math.log(5.0))):
        lp = discretized_gaussian_log_prob(grid, torch.full((levels,), mean), log_std, levels)
        assert torch.isfinite(lp).all()
        assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_elbo_of_exact_denoiser_is_near_zero(kind):
    """For a point mass with the exact eps every L_{t-1} vanishes, L_T ~ 0 and the
    decoder puts almost all mass on the right level, so log P(x*) >= ~0;
    any other image is far less likely."""
    m = DDPM(IMG, T=1000, schedule=kind, width=8)
    x_star = (torch.arange(64).reshape(1, 1, 8, 8) % 17).float() / 16
    z = x_star * 2 - 1
    ab = m.schedule.alphas_bar.float()

    class Oracle(torch.nn.Module):
        def forward(self, x, t, y=None):
            a = ab[t].view(-1, 1, 1, 1)
            return (x - a.sqrt() * z) / (1 - a).sqrt()

    m.ema.module = Oracle()
    e = m.elbo(x_star, timesteps=None)
    assert e.shape == (1,)
    assert -0.01 < e.item() <= 0.0
    other = x_star.roll(1, dims=-1)
    assert m.elbo(other).item() < -100


def test_elbo_estimate_matches_full_sum_and_bpd_below_uniform():
    from bench.data import load

    ds = load("digits")
    torch.manual_seed(0)
    m = build("ddpm", ds.info, T=200, schedule="linear", width=8, lr=3e-3)
    m.fit(TrainData(ds.train_x, ds.info), Budget(steps=150, batch_size=64))
    x = ds.test_x[:48]
    full = m.elbo(x, timesteps=None)
    est = m.elbo(x, timesteps=30)
    assert torch.isfinite(full).all() and (full <= 0).all()
    assert isinstance(m, LikelihoodBound) and m.info.likelihood == "elbo"
    bpd_full = -full.mean().item() / (64 * math.log(2))
    bpd_est = -est.mean().item() / (64 * math.log(2))
    assert bpd_est == pytest.approx(bpd_full, rel=0.05)
    assert bpd_full < math.log2(17)  # better than the uniform distribution over the 17 levels
    assert torch.equal(m.elbo(x[:4], timesteps=30), m.elbo(x[:4], timesteps=30))  # seeded


def test_state_dict_roundtrip_weights_only():
    torch.manual_seed(0)
    m = DDPM(IMG, T=20, width=8, conditional=True)
    m.fit(TrainData(torch.rand(16, 1, 8, 8), IMG, torch.randint(0, 3, (16,))), Budget(steps=3, batch_size=8))
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    m2 = DDPM(IMG, T=20, width=8, conditional=True)
    m2.load_state_dict(torch.load(buf, weights_only=True))
    g = lambda: torch.Generator().manual_seed(0)
    assert torch.equal(m.sample(3, steps=5, generator=g()), m2.sample(3, steps=5, generator=g()))
