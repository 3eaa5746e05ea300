"""autoencoder / dae (baselines/autoencoder.py): latent priors, denoising, validation."""

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


def _fit(name, dataset, steps, batch_size=128, **hp):
    ds = data.load(dataset)
    torch.manual_seed(0)
    m = registry.build(name, ds.info, device="cpu", **hp)
    m.fit(TrainData(ds.train_x, ds.info), Budget(steps=steps, batch_size=batch_size))
    return m, ds


def test_gmm_prior_puts_samples_on_the_ring_gaussian_does_not():
    """With a 2-D code of ring8 a Gaussian on the codes fills the disc; an 8-component GMM finds the modes."""
    m, ds = _fit("autoencoder", "ring8", steps=300, batch_size=256, hidden=(32, 32), gmm_components=8)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    off = {}
    for prior in ("gaussian", "gmm"):
        x = m.sample(2000, generator=g(), sampler=m.make_sampler(latent_prior=prior))
        off[prior] = float((x.norm(dim=1) - 1).abs().median())
    assert off["gmm"] < 0.1 < off["gaussian"], off
    assert m.info.n_params > registry.build("autoencoder", ds.info, hidden=(32, 32)).info.n_params - 1


def test_reconstruction_improves_and_encode_decode_shapes():
    ds = data.load("digits")
    torch.manual_seed(0)
    m = registry.build("autoencoder", ds.info, device="cpu", width=8, latent_dim=4)
    x = ds.test_x[:64]

    def err():
        return float(((m.decode(m.encode(x)) - x) ** 2).mean())

    before = err()
    m.fit(TrainData(ds.train_x, ds.info), Budget(steps=150, batch_size=64))
    assert m.encode(x).shape == (64, 4)
    assert m.decode(m.encode(x)).shape == (64, 1, 8, 8)
    assert err() < 0.5 * before


def test_dae_trains_on_corrupted_inputs():
    m, _ = _fit("dae", "ring8", steps=5, batch_size=64, hidden=(8,))
    assert m.noise_std == pytest.approx(0.1) and m.info.name == "dae"
    assert registry.build("dae", data.load("digits").info).noise_std == pytest.approx(0.2)


@pytest.mark.parametrize(
    "name,hp,match",
    [
        ("autoencoder", {"latent_prior": "flow"}, "latent_prior"),
        ("autoencoder", {"latent_dim": 0}, "latent_dim"),
        ("dae", {"noise_std": 0.0}, "noise_std"),
        ("dae", {"gmm_components": 0}, "gmm_components"),
    ],
)
def test_bad_hyperparameters_are_named(name, hp, match):
    with pytest.raises(ValueError, match=match):
        registry.build(name, data.load("digits").info, **hp)


def test_make_sampler_rejects_unknown_prior():
    m = registry.build("autoencoder", data.load("ring8").info)
    with pytest.raises(ValueError, match="latent_prior"):
        m.make_sampler(latent_prior="uniform")
    with pytest.raises(TypeError):
        m.make_sampler(temperature=2.0)
    assert m.make_sampler().get("latent_prior") == m.latent_prior


def test_latent_figure_accepts_deterministic_codes(tmp_path):
    from bench.figures import vae_latent_figure

    m, ds = _fit("autoencoder", "digits", steps=10, batch_size=64, width=8)
    path = vae_latent_figure(m, ds, tmp_path / "ae.png", n_steps=3)
    assert path.stat().st_size > 1000


def test_bce_loss_learns_where_the_summed_mse_saturates():
    """On 28x28 MNIST the summed squared error through a sigmoid drives every
    logit negative and the decoder goes black (its reconstructions stay far from
    the data); the cross-entropy loss keeps its gradient there and reconstructs."""
    ds = data.load("mnist5k")
    x = ds.train_x[:512]
    errs = {}
    for loss in ("mse", "bce"):
        torch.manual_seed(0)
        m = registry.build("autoencoder", ds.info, device="cpu", recon_loss=loss)
        m.fit(TrainData(x, ds.info), Budget(steps=60, batch_size=64))
        recon = m.decode(m.encode(ds.test_x[:64]))
        errs[loss] = float(((recon - ds.test_x[:64]) ** 2).mean())
    black = float((ds.test_x[:64] ** 2).mean())  # the error of an all-black output
    assert errs["mse"] > 0.9 * black
    assert errs["bce"] < 0.8 * black


def test_recon_loss_is_checked():
    ds = data.load("digits")
    with pytest.raises(ValueError, match="recon_loss"):
        registry.build("autoencoder", ds.info, recon_loss="l1")
