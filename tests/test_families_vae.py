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
        vae.make_sampler(decoder="mode")
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
