"""vae (baselines/vae.py): discrete decoder, bounds' signs, sampler options,
encode/decode, and the latent-arithmetic figure (bench/figures.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from baselines import registry
from baselines.protocol import Budget, TrainData
from bench import data
from bench.figures import vae_latent_figure


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def vae():
    ds = data.load("digits")
    torch.manual_seed(0)
    m = registry.build("vae", ds.info, device="cpu", width=8, latent_dim=4)
    m.fit(TrainData(ds.train_x, ds.info), Budget(steps=60, batch_size=64))
    return m


def test_discrete_bounds_are_log_probabilities(vae):
    """A categorical decoder bounds log P(x_int) <= 0: ELBO <= IWAE <= 0 per example."""
    x = data.load("digits").test_x[:50]
    assert (vae.elbo(x) <= 0).all()
    assert (vae.iwae_bound(x, 8) <= 0).all()


def test_encode_decode(vae):
    x = data.load("digits").test_x[:5]
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (5, 4)
    img = vae.decode(mu)
    assert img.shape == (5, 1, 8, 8) and img.min() >= 0 and img.max() <= 1


def test_sampler_options(vae):
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    sampled = vae.sample(16, generator=g())
    mean = vae.sample(16, generator=g(), sampler=vae.make_sampler(decoder="mean"))
    assert torch.equal(sampled, vae.sample(16, generator=g()))  # options live in the sampler, not the model
    assert not torch.equal(sampled, mean)
    # the mean decoder is the rounded decoder mean of the same latents
    z = torch.randn(16, 4, generator=g())
    assert torch.allclose(mean, torch.round(vae.decode(z) * 16) / 16, atol=1e-6)
    with pytest.raises(ValueError, match="decoder"):
        vae.make_sampler(decoder="median")
    with pytest.raises(ValueError, match="temperature"):
        vae.make_sampler(temperature=0)


def test_points_decoder_is_gaussian_in_raw_units():
    ds = data.load("swissroll")
    torch.manual_seed(0)
    m = registry.build("vae", ds.info, device="cpu", hidden=(16, 16))
    m.fit(TrainData(ds.train_x, ds.info), Budget(steps=20, batch_size=128))
    x = ds.test_x[:200]
    # rescaling the data by c shifts every log-density by -D log c: the standardization Jacobian is in the bound
    m2 = registry.build("vae", ds.info, device="cpu", hidden=(16, 16))
    m2.load_state_dict(m.state_dict())
    m2.net.shift.mul_(10)
    m2.net.scale.mul_(10)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.allclose(m2.elbo(10 * x, generator=g()), m.elbo(x, generator=g()) - 2 * torch.log(torch.tensor(10.0)), atol=1e-3)


def test_latent_figure_written(vae, tmp_path):
    ds = data.load("digits")
    path = vae_latent_figure(vae, ds, tmp_path / "assets" / "vae_latent.png", n_steps=4)
    assert path.exists() and 1000 < path.stat().st_size < 200_000
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_latent_figure_validates_inputs(vae, tmp_path):
    ds = data.load("digits")
    with pytest.raises(ValueError, match="labels"):
        vae_latent_figure(vae, dataclasses.replace(ds, train_y=None), tmp_path / "x.png")
    with pytest.raises(ValueError, match="image data"):
        vae_latent_figure(vae, data.load("ring8"), tmp_path / "x.png")
    with pytest.raises(TypeError, match="encode"):
        vae_latent_figure(object(), ds, tmp_path / "x.png")


@pytest.mark.parametrize(
    "hp,match", [({"beta": 0}, "beta"), ({"latent_dim": 0}, "latent_dim"), ({"iwae_k": 300}, "k must be"), ({"kl_warmup": 2}, "kl_warmup")]
)
def test_bad_hyperparameters_are_named(hp, match):
    with pytest.raises(ValueError, match=match):
        registry.build("vae", data.load("digits").info, **hp)


def test_discretized_logistic_is_a_distribution_over_the_levels():
    """The logistic head's K probabilities sum to 1 (end bins take the tails, tiny
    scales use the density at the bin centre), its mean and its sampler agree
    with the probabilities, for broad, narrow and off-range means."""
    from baselines.vae import discretized_logistic_logp, discretized_logistic_mean, discretized_logistic_sample

    k = 256
    mu = torch.tensor([0.3, 0.0, 1.2, 0.5, -0.1])
    log_s = torch.tensor([-2.0, -4.0, -1.0, -7.0, -3.0])
    levels = (torch.arange(k, dtype=torch.float64) / (k - 1))[:, None]
    p = discretized_logistic_logp(levels, mu.double()[None], log_s.double()[None], k).exp()
    assert torch.allclose(p.sum(0), torch.ones(5, dtype=torch.float64), atol=1e-6)
    exact_mean = (p * levels).sum(0)
    assert torch.allclose(discretized_logistic_mean(mu.double(), log_s.double(), k), exact_mean, atol=1e-9)
    draws = discretized_logistic_sample(mu.expand(100_000, 5), log_s.expand(100_000, 5), k, torch.Generator().manual_seed(0))
    assert torch.allclose(draws.double().mean(0), exact_mean, atol=3e-3)
    assert torch.equal(torch.round(draws * (k - 1)), draws * (k - 1))  # on the K levels


def test_logistic_head_vae_trains_and_bounds_are_discrete():
    """A VAE with the logistic head: ELBO <= IWAE <= 0 (a discrete likelihood), and
    the decoder-mean samples lie on the data's levels."""
    ds = data.load("digits")
    torch.manual_seed(0)
    m = registry.build("vae", ds.info, device="cpu", width=8, latent_dim=4, likelihood="logistic")
    rep = m.fit(TrainData(ds.train_x, ds.info), Budget(steps=60, batch_size=64))
    assert rep.losses["neg_elbo"][-1] < rep.losses["neg_elbo"][0]
    x = ds.test_x[:50]
    assert (m.elbo(x) <= 0).all() and (m.iwae_bound(x, 8) <= 0).all()
    s = m.sample(20, sampler=m.make_sampler(decoder="mean"), generator=torch.Generator().manual_seed(0))
    k = ds.info.levels
    assert s.shape == (20, *ds.info.shape) and torch.equal(torch.round(s * (k - 1)), s * (k - 1))


def test_bernoulli_head_is_the_textbook_vae_and_reports_no_likelihood():
    """The Bernoulli head's reconstruction term is minus the summed binary cross-entropy
    against the intensities; its decoder mean is sigmoid(logit), the mode is binary, and
    the metric panel marks NLL n/a (the number is no likelihood of K-level pixels)."""
    import torch.nn.functional as F

    from metrics.panel import _has_likelihood

    ds = data.load("mnist5k")
    torch.manual_seed(0)
    m = registry.build("vae", ds.info, device="cpu", width=8, latent_dim=4, likelihood="bernoulli")
    x = ds.train_x[:8]
    z = torch.randn(8, 4)
    logits = m.net.decoder_params(z)
    assert logits.shape == (8, *ds.info.shape)
    expected = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    assert torch.allclose(m.net.log_px_given_z(x, z), expected, atol=1e-4)
    rep = m.fit(TrainData(ds.train_x[:512], ds.info), Budget(steps=40, batch_size=64))
    assert rep.losses["neg_elbo"][-1] < rep.losses["neg_elbo"][0]
    g = torch.Generator().manual_seed(0)
    mean = m.sample(16, sampler=m.make_sampler(decoder="mean"), generator=g)
    mode = m.sample(16, sampler=m.make_sampler(decoder="mode"), generator=g)
    assert mean.min() >= 0 and mean.max() <= 1 and len(torch.unique(mean)) > 2
    assert set(torch.unique(mode).tolist()) <= {0.0, 1.0}
    assert m.likelihood_na and m.info.likelihood is None
    assert not _has_likelihood(type("Ctx", (), {"generator": m})())
    logistic = registry.build("vae", ds.info, device="cpu", width=8, latent_dim=4, likelihood="logistic")
    assert _has_likelihood(type("Ctx", (), {"generator": logistic})())
