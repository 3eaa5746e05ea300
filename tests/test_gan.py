"""GAN family (baselines/gan.py): protocol, ranges, determinism, state, WGAN-GP
penalty, PacGAN packing, class conditioning, EMA. Tiny budgets throughout."""

import io

import pytest
import torch
from torch import nn

from baselines import registry
from baselines.gan import GAN, gradient_penalty, pack_samples
from baselines.protocol import Budget, Conditional, Generator, Trainable, TrainData
from bench import data

TINY_2D = dict(hidden=(16, 16))
TINY_IMG = dict(width=8, z_dim=8)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny nets: one thread is faster (and kinder to a shared machine); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _build(name, ds, seed=0, **hp):
    torch.manual_seed(seed)
    return registry.build(name, ds.info, device="cpu", **hp)


def _fit(name, ds, steps=5, batch_size=32, seed=0, **hp):
    m = _build(name, ds, seed=seed, **hp)
    torch.manual_seed(seed)
    report = m.fit(TrainData(ds.train_x, ds.info, ds.train_y), Budget(steps=steps, batch_size=batch_size))
    return m, report


def _tiny(ds):
    return TINY_2D if ds.info.kind == "points" else TINY_IMG


def test_registered():
    names = registry.available()
    for name in ("gan", "wgan-gp", "pacgan", "cgan"):
        assert name in names and names[name].family == "gan"


@pytest.mark.parametrize("name", ["gan", "wgan-gp", "pacgan", "cgan"])
@pytest.mark.parametrize("dataset", ["ring8", "digits", "stacked-digits"])
def test_shapes_range_levels_and_losses(name, dataset):
    ds = data.load(dataset)
    if name == "cgan" and dataset == "stacked-digits":
        pytest.skip("cgan is exercised on digits and ring8")
    m, report = _fit(name, ds, **_tiny(ds))
    assert isinstance(m, Generator) and isinstance(m, Trainable)
    x = m.sample(37, generator=torch.Generator().manual_seed(3))
    assert x.dtype == torch.float32 and x.device.type == "cpu"
    assert x.shape == (37, *ds.info.shape)
    assert torch.isfinite(x).all()
    if ds.info.kind == "image":
        assert x.min() >= 0 and x.max() <= 1
        k = ds.info.levels - 1
        assert torch.equal(x * k, torch.round(x * k)), "image samples must lie on the K levels"
    assert set(report.losses) == {"d_loss", "g_loss"}
    assert len(report.losses["d_loss"]) == len(report.losses["g_loss"]) == report.steps == 5
    info = m.info
    assert info.name == name and info.family == "gan" and info.n_params > 0 and not info.iterative
    assert info.conditioning == ("class" if name == "cgan" else "none")
    assert m.sample(0).shape == (0, *ds.info.shape)


def test_loss_curves_are_subsampled_to_200_points():
    ds = data.load("ring8")
    _, report = _fit("gan", ds, steps=450, batch_size=16, hidden=(8,))
    assert report.steps == 450
    for curve in report.losses.values():
        assert len(curve) == 200 and all(isinstance(v, float) for v in curve)


@pytest.mark.parametrize("name", ["gan", "wgan-gp", "pacgan", "cgan"])
def test_deterministic_given_seed(name):
    ds = data.load("digits")
    a, ra = _fit(name, ds, seed=4, **TINY_IMG)
    b, rb = _fit(name, ds, seed=4, **TINY_IMG)
    c, _ = _fit(name, ds, seed=5, **TINY_IMG)
    assert ra.losses == rb.losses
    xa = a.sample(64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(xa, b.sample(64, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(xa, a.sample(64, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(xa, c.sample(64, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(xa, a.sample(64, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("name,dataset,hp", [("gan", "ring8", {}), ("pacgan", "digits", {"pack": 3}), ("cgan", "digits", {"ema": 0.9})])
def test_state_dict_round_trip_weights_only(name, dataset, hp):
    ds = data.load(dataset)
    m, _ = _fit(name, ds, **_tiny(ds), **hp)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = _build(name, ds, seed=123, **_tiny(ds), **hp)
    fresh.load_state_dict(state)
    g = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    assert torch.equal(m.sample(50, generator=g()), fresh.sample(50, generator=g()))
    other = _build(name, ds, **{**_tiny(ds), **hp, "z_dim": 3})
    with pytest.raises((ValueError, RuntimeError)):
        other.load_state_dict(state)


# ------------------------------------------------------------------ WGAN-GP penalty
def _linear_critic(w: torch.Tensor) -> nn.Module:
    lin = nn.Linear(w.numel(), 1, bias=True)
    with torch.no_grad():
        lin.weight.copy_(w.reshape(1, -1))
        lin.bias.fill_(0.3)
    return nn.Sequential(nn.Flatten(), lin)


def test_gradient_penalty_zero_for_unit_norm_linear_critic():
    torch.manual_seed(0)
    w = torch.randn(2 * 4 * 4)
    real, fake = torch.randn(32, 2, 4, 4), torch.randn(32, 2, 4, 4)
    unit = _linear_critic(w / w.norm())
    gp = gradient_penalty(unit, real, fake, torch.Generator().manual_seed(0))
    assert gp.item() == pytest.approx(0.0, abs=1e-10)
    # gradient norm 2 everywhere -> penalty (2 - 1)^2 = 1; norm 0.5 -> 0.25
    assert gradient_penalty(_linear_critic(2 * w / w.norm()), real, fake).item() == pytest.approx(1.0, rel=1e-5)
    assert gradient_penalty(_linear_critic(0.5 * w / w.norm()), real, fake).item() == pytest.approx(0.25, rel=1e-5)


def test_gradient_penalty_positive_for_nonlinear_critic_and_differentiable():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
    gp = gradient_penalty(critic, torch.randn(64, 2), torch.randn(64, 2))
    assert gp.item() > 0
    gp.backward()  # create_graph=True: the penalty trains the critic
    assert critic[0].weight.grad is not None and critic[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="shape"):
        gradient_penalty(critic, torch.randn(4, 2), torch.randn(5, 2))


def test_wgan_gp_recipe():
    ds = data.load("digits")
    m = _build("wgan-gp", ds, **TINY_IMG)
    assert m.n_critic == 5 and m.gp_weight == 10.0 and m.loss == "wgan-gp"
    assert not any(isinstance(mod, nn.modules.batchnorm._BatchNorm) for mod in m.D.modules()), "no BatchNorm in the critic"
    assert any(isinstance(mod, nn.BatchNorm2d) for mod in m.G.modules())
    _, report = _fit("wgan-gp", ds, steps=2, **TINY_IMG)
    assert report.extra["d_updates"] == 10 and report.extra["lr"] == 1e-4


def test_gan_recipe():
    ds = data.load("ring8")
    m, report = _fit("gan", ds, steps=1, **TINY_2D)
    assert report.extra["lr"] == 2e-4 and report.extra["betas"] == [0.5, 0.999]
    assert any(isinstance(mod, nn.LeakyReLU) and mod.negative_slope == 0.2 for mod in m.D.modules())
    assert any(isinstance(mod, nn.BatchNorm1d) for mod in m.G.modules())


# ------------------------------------------------------------------ PacGAN
def test_pack_samples():
    x = torch.arange(6 * 3 * 2 * 2, dtype=torch.float32).reshape(6, 3, 2, 2)
    p = pack_samples(x, 2)
    assert p.shape == (3, 6, 2, 2)
    assert torch.equal(p[1, :3], x[2]) and torch.equal(p[1, 3:], x[3])
    assert pack_samples(torch.randn(8, 2), 4).shape == (2, 8)
    with pytest.raises(ValueError):
        pack_samples(torch.randn(7, 2), 2)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_pacgan_discriminator_sees_m_samples(m):
    ring, digits = data.load("ring8"), data.load("stacked-digits")
    p2 = _build("pacgan", ring, pack=m, **TINY_2D)
    base2 = _build("gan", ring, **TINY_2D)
    first = lambda net: next(mod for mod in net.D.modules() if isinstance(mod, (nn.Linear, nn.Conv2d)))  # noqa: E731
    assert first(p2).in_features == m * 2 == m * first(base2).in_features
    pi = _build("pacgan", digits, pack=m, **TINY_IMG)
    assert first(pi).in_channels == m * 3 == m * first(_build("gan", digits, **TINY_IMG)).in_channels
    # 12 samples -> 12 / m discriminator outputs
    assert pi._d(torch.rand(12, 3, 8, 8), None).shape == (12 // m,)
    _, report = _fit("pacgan", ring, steps=2, batch_size=10, pack=m, **TINY_2D)
    assert report.extra["samples_per_step"] == 10 * m


def test_pacgan_rejects_bad_pack():
    ds = data.load("ring8")
    for bad in (1, 0, 2.5):
        with pytest.raises(ValueError, match="pack"):
            _build("pacgan", ds, pack=bad)


# ------------------------------------------------------------------ conditional
def test_cgan_honours_labels():
    ds = data.load("digits")
    m, _ = _fit("cgan", ds, steps=3, **TINY_IMG)
    assert isinstance(m, Conditional) and m.accepts == frozenset({"labels"})
    assert _build("gan", ds, **TINY_IMG).accepts == frozenset()  # as an unconditional DDPM: no labels accepted
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    x0 = m.sample(40, labels=torch.zeros(40, dtype=torch.long), generator=g())
    x7 = m.sample(40, labels=torch.full((40,), 7), generator=g())
    assert not torch.equal(x0, x7), "same noise, different labels -> different samples"
    assert torch.equal(x0, m.sample(40, labels=torch.zeros(40, dtype=torch.long), generator=g()))
    assert m.sample(40, generator=g()).shape == (40, 1, 8, 8)  # random labels
    with pytest.raises(ValueError, match="labels"):
        m.sample(3, labels=torch.tensor([0, 1, 10]))
    with pytest.raises(ValueError, match="labels"):
        m.sample(3, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        _build("gan", ds, **TINY_IMG).sample(2, labels=torch.tensor([0, 1]))


@pytest.mark.parametrize("dataset", ["digits", "ring8"])
def test_cgan_label_enters_both_networks_at_their_input(dataset):
    """Mirza & Osindero's input path: the one-hot label is concatenated to z and to the
    discriminator's input, so both networks depend on the label from the first step.
    Conditional BatchNorm alone starts as the identity (scale 1, shift 0), and with it
    and the projection term only the generator ignored its label on MNIST."""
    ds = data.load(dataset)
    m = _build("cgan", ds, **_tiny(ds))
    m.G.eval()
    m.D.eval()
    z = torch.randn(1, m.z_dim).repeat(2, 1)
    y = torch.tensor([0, 1])
    x = ds.train_x[:1].float().repeat(2, *([1] * (ds.train_x.ndim - 1)))
    x = x.reshape(2, *ds.info.shape) if ds.info.kind == "image" else x
    with torch.no_grad():
        g = m.G(z, y)
        first = next(mod for mod in m.D.modules() if isinstance(mod, (nn.Conv2d, nn.Linear)))
        d_in = ds.info.shape[0] if ds.info.kind == "image" else ds.info.dim
        assert first.weight.shape[1] == d_in + ds.info.num_classes
    assert not torch.allclose(g[0], g[1]), "the generator's output does not depend on the label at initialisation"


def test_cgan_label_controls_the_mode_on_ring8():
    """After a short training run, a sample conditioned on mode k lands nearest to mode k."""
    ds = data.load("ring8")
    m, _ = _fit("cgan", ds, steps=500, batch_size=128, hidden=(32, 32))
    lab = torch.arange(8).repeat_interleave(50)
    x = m.sample(400, labels=lab, generator=torch.Generator().manual_seed(0))
    nearest = torch.cdist(x, torch.tensor(ds.info.modes, dtype=torch.float32)).argmin(1)
    assert (nearest == lab).float().mean() > 0.5  # chance is 1/8


def test_cgan_needs_labels_and_classes():
    digits, swiss = data.load("digits"), data.load("swissroll")
    with pytest.raises(ValueError, match="class"):
        _build("cgan", swiss)
    m = _build("cgan", digits, **TINY_IMG)
    with pytest.raises(ValueError, match="labels"):
        m.fit(TrainData(digits.train_x, digits.info, None), Budget(steps=1, batch_size=8))


# ------------------------------------------------------------------ EMA
def test_ema_switch():
    ds = data.load("ring8")
    off, _ = _fit("gan", ds, steps=30, **TINY_2D)
    on, _ = _fit("gan", ds, steps=30, ema=0.9, **TINY_2D)
    assert off.G_ema is None and on.G_ema is not None
    # identical training trajectories: the raw generators agree, the EMA differs from them
    for p, q in zip(off.G.parameters(), on.G.parameters()):
        assert torch.equal(p, q)
    assert any(not torch.equal(p, q) for p, q in zip(on.G.parameters(), on.G_ema.parameters()))
    assert not any(p.requires_grad for p in on.G_ema.parameters())
    # sampling uses the EMA weights when on, the raw generator when off
    z = torch.randn(100, on.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        via_ema = on.G_ema.eval()(z) * on.scale + on.loc
        via_raw = off.G.eval()(z) * off.scale + off.loc
    assert torch.allclose(on.sample(100, generator=torch.Generator().manual_seed(0)), via_ema)
    assert torch.allclose(off.sample(100, generator=torch.Generator().manual_seed(0)), via_raw)
    assert not torch.allclose(via_ema, via_raw)
    # the sampler option picks the raw weights of the EMA run (one trained model, both rows)
    raw = on.sample(100, generator=torch.Generator().manual_seed(0), sampler=on.make_sampler(weights="raw"))
    from genbench.protocol import SamplerChoice

    assert isinstance(on, SamplerChoice) and on.last_nfe == 1  # what the pipeline asks before it passes sample_params
    assert torch.allclose(raw, via_raw)
    with pytest.raises(ValueError, match="ema"):
        off.make_sampler(weights="ema")
    with pytest.raises(ValueError, match="weights"):
        on.make_sampler(weights="best")
    with pytest.raises(ValueError, match="ema"):
        _build("gan", ds, ema=1.5)


def test_ema_is_an_average_of_generator_weights():
    """With decay d the EMA moves (1 - d) of the way to the new weights each update."""
    ds = data.load("ring8")
    m = _build("gan", ds, ema=0.5, **TINY_2D)
    before = [p.detach().clone() for p in m.G_ema.parameters()]
    with torch.no_grad():
        for p in m.G.parameters():
            p.add_(1.0)
    m.steps_done = 1000  # past the warm-up, decay = 0.5
    m._update_ema()
    for b, pe, p in zip(before, m.G_ema.parameters(), m.G.parameters()):
        assert torch.allclose(pe, 0.5 * b + 0.5 * p)


# ------------------------------------------------------------------ validation
def test_bad_inputs_raise_clear_errors():
    ds = data.load("digits")
    m = _build("gan", ds, **TINY_IMG)
    with pytest.raises(ValueError, match="shape"):
        m.fit(TrainData(torch.rand(10, 3, 8, 8), ds.info), Budget(steps=1, batch_size=4))
    with pytest.raises(ValueError, match="prompts"):
        m.sample(2, prompts=["a"])
    with pytest.raises(TypeError, match="unknown hyperparameters"):
        registry.build("gan", ds.info, packing=2)
    with pytest.raises(ValueError, match="loss"):
        GAN(ds.info, loss="hinge")


# ------------------------------------------------------------------ determinism across thread counts
def test_batchnorm1d_matches_torch_and_ignores_the_thread_count():
    from baselines.gan_nets import BatchNorm1d

    x0 = torch.randn(64, 128, generator=torch.Generator().manual_seed(0))

    def run(bn, threads):
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            x = x0.clone().requires_grad_(True)
            y = bn(x)
            y.pow(3).sum().backward()
            return y.detach(), x.grad, bn.running_mean.clone(), bn.running_var.clone()
        finally:
            torch.set_num_threads(old)

    ref = run(nn.BatchNorm1d(128), 1)
    one, two = run(BatchNorm1d(128), 1), run(BatchNorm1d(128), 2)
    for a, b in zip(one, two):
        assert torch.equal(a, b), "the statistics must not depend on the thread count"
    for a, b in zip(one, ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)  # the same batch norm as torch's
    cumulative = BatchNorm1d(4, momentum=None)  # the cumulative average used by the BatchNorm re-estimation
    xs = [torch.randn(16, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    for x in xs:
        cumulative(x)
    assert torch.allclose(cumulative.running_mean, torch.stack([x.mean(0) for x in xs]).mean(0), atol=1e-6)
    assert torch.allclose(cumulative.running_var, torch.stack([x.var(0) for x in xs]).mean(0), atol=1e-6)


def test_projection_term_starts_at_the_heads_scale():
    """The projection discriminator's class term (Miyato & Koyama 2018) is applied to the
    feature map summed over positions, with embeddings initialised so that at the start it
    is of the unconditional head's size; a unit-variance embedding on the flattened map made
    it ~50x larger on 28x28 images, and the cGAN trained far worse than the GAN (mnist FID 370 vs 121)."""
    from baselines.gan_nets import ConvDiscriminator, _with_onehot

    torch.manual_seed(0)
    d = ConvDiscriminator(1, (1, 28, 28), width=32, num_classes=10)
    x = torch.rand(256, 1, 28, 28)
    y = torch.arange(256) % 10
    with torch.no_grad():
        fmap = d.body(_with_onehot(x, y, 10))
        head = d.head(fmap.flatten(1)).squeeze(1)
        total = d(x, y)
    ratio = float((total - head).std() / head.std())
    assert 0.1 < ratio < 3.0, ratio
