import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture

from baselines import registry
from baselines.protocol import ExactLikelihood, Generator, HeldOutReference, LabeledSampler, Trainable, TrainData
from bench import data


def _fit(name, ds, **hp):
    torch.manual_seed(0)
    m = registry.build(name, ds.info, **hp)
    m.fit(TrainData(ds.train_x, ds.info, ds.train_y), None)
    return m


@pytest.mark.parametrize("name", ["gaussian", "ppca", "gmm"])
def test_protocols(name):
    ds = data.load("ring8")
    m = _fit(name, ds)
    assert isinstance(m, Generator) and isinstance(m, Trainable) and isinstance(m, ExactLikelihood)
    x = m.sample(100, generator=torch.Generator().manual_seed(1))
    assert x.shape == (100, 2) and x.dtype == torch.float32
    assert torch.equal(x, m.sample(100, generator=torch.Generator().manual_seed(1)))
    info = m.info
    assert info.name == name and info.n_params > 0 and info.likelihood == "exact"


def test_gaussian_matches_scipy():
    ds = data.load("grid25")
    m = _fit("gaussian", ds, reg=0.0)
    x = ds.train_x.double().numpy()
    mu, cov = x.mean(0), np.cov(x, rowvar=False, bias=True)
    ref = multivariate_normal(mu, cov).logpdf(ds.test_x.double().numpy())
    assert np.allclose(m.log_prob(ds.test_x).numpy(), ref, rtol=1e-5)


def test_ppca_closed_form(digits):
    m = _fit("ppca", digits, k=5)
    # PPCA covariance: top-k eigenvalues preserved, the rest replaced by their mean
    torch.manual_seed(0)
    from baselines.protocol import dequantize

    y = dequantize(digits.train_x.reshape(len(digits.train_x), -1), 17).double()
    ev = torch.linalg.eigvalsh(torch.cov(y.T, correction=0)).flip(0)
    ev_model = torch.linalg.eigvalsh(m.cov).flip(0)
    assert torch.allclose(ev_model[:5], ev[:5], rtol=1e-6)
    assert torch.allclose(ev_model[5:], ev[5:].mean().expand(59), rtol=1e-6)


def test_gmm_matches_sklearn_and_samples_are_shuffled():
    ds = data.load("ring8")
    m = _fit("gmm", ds, n_components=8)
    gm = GaussianMixture(8, covariance_type="full", reg_covar=1e-6)
    gm.weights_, gm.means_, gm.covariances_ = m.weights.numpy(), m.means.numpy(), m.covs.numpy()
    gm.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(gm.covariances_))
    assert np.allclose(m.log_prob(ds.test_x).numpy(), gm.score_samples(ds.test_x.double().numpy()), rtol=1e-6, atol=1e-6)
    # any prefix covers all modes (sklearn's own sample() would group by component)
    x = m.sample(80, generator=torch.Generator().manual_seed(0))
    nearest = torch.cdist(x, torch.tensor(ds.info.modes)).argmin(1)
    assert len(torch.unique(nearest)) == 8


def test_gaussian_2d_density_integrates_to_one():
    ds = data.load("swissroll")
    m = _fit("gaussian", ds)
    g = torch.linspace(-8, 8, 401)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    mass = m.log_prob(pts).double().exp().sum() * (g[1] - g[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=0.01)


def test_image_bits_per_dim_below_uniform(digits):
    for name in ("gaussian", "ppca", "gmm"):
        m = _fit(name, digits)
        bpd = -m.log_prob(digits.test_x).double().mean() / (64 * math.log(2))
        assert bpd < math.log2(17), name
        x = m.sample(50, generator=torch.Generator().manual_seed(0))
        assert x.min() >= 0 and x.max() <= 1
        assert torch.allclose(x * 16, (x * 16).round(), atol=1e-5)  # on the K = 17 levels


def test_state_dict_roundtrip(tmp_path, digits):
    m = _fit("ppca", digits)
    torch.save(m.state_dict(), tmp_path / "m.pt")
    m2 = registry.build("ppca", digits.info)
    m2.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(m.sample(10, generator=g()), m2.sample(10, generator=g()))


def test_registry_errors():
    info = data.load("digits").info
    with pytest.raises(KeyError, match="valid: .*gaussian"):
        registry.build("nope", info)
    with pytest.raises(TypeError, match="unknown hyperparameters.*bogus"):
        registry.build("gaussian", info, bogus=1)
    with pytest.raises(ValueError, match="k must be"):
        registry.build("ppca", info, k=64)
    with pytest.raises(RuntimeError, match="fit"):
        registry.build("gaussian", info).sample(2)


def test_data_reference_draws_heldout(digits):
    m = registry.build("data", digits.info)
    assert isinstance(m, HeldOutReference) and isinstance(m, LabeledSampler)
    with pytest.raises(RuntimeError, match="use_pool"):
        m.sample(2)
    with pytest.raises(TypeError, match="unknown hyperparameters"):
        registry.build("data", digits.info, pool=digits.test_x)
    m.use_pool(digits.test_x, digits.test_y)
    x, y = m.sample_labeled(360, generator=torch.Generator().manual_seed(0))
    # the labels are the drawn examples' own labels
    pairs = {(tuple(a.flatten().tolist()), int(b)) for a, b in zip(digits.test_x, digits.test_y)}
    assert all((tuple(a.flatten().tolist()), int(b)) in pairs for a, b in zip(x, y))
    assert sorted(x.reshape(360, -1).sum(1).tolist()) == sorted(digits.test_x.reshape(360, -1).sum(1).tolist())
    u = registry.build("uniform", digits.info)
    assert (-u.log_prob(digits.test_x) / (64 * math.log(2))).allclose(torch.tensor(math.log2(17)))
