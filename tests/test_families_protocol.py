"""Protocol checks shared by the autoencoder, VAE, flow, autoregressive and EBM
families: registration, fit report, sample shape/range/levels, reproducibility
given a generator, and the state_dict round trip through
torch.save / torch.load(weights_only=True). Tiny nets and budgets."""

from __future__ import annotations

import io

import pytest
import torch

from baselines import registry
from baselines.protocol import Budget, ExactLikelihood, Generator, LikelihoodBound, Trainable, TrainData
from bench import data

TINY = {
    "autoencoder": ({"width": 8}, {"hidden": (16, 16)}),
    "dae": ({"width": 8}, {"hidden": (16, 16)}),
    "vae": ({"width": 8}, {"hidden": (16, 16)}),
    "realnvp": ({"hidden": (32,), "n_couplings": 4}, {"hidden": (16,), "n_couplings": 4}),
    "pixelcnn": ({"channels": 8, "n_layers": 2}, None),
    "ebm": (
        {"hidden": (32,), "train_steps": 3, "buffer_size": 256, "default_steps": 5},
        {"hidden": (16,), "train_steps": 3, "default_steps": 5},
    ),
}
LIKELIHOOD = {"vae": "elbo", "realnvp": ("dequantized", "exact"), "pixelcnn": ("exact", None)}
CASES = [(n, d) for n in TINY for d in ("digits", "ring8") if not (n == "pixelcnn" and d == "ring8")]
CASES += [(n, "stacked-digits") for n in ("vae", "realnvp", "pixelcnn")]  # C = 3 channels


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _hp(name, ds):
    img, pts = TINY[name]
    return dict(img if ds.info.kind == "image" else pts)


def _fit(name, ds, steps=25, seed=0):
    torch.manual_seed(seed)
    m = registry.build(name, ds.info, device="cpu", **_hp(name, ds))
    torch.manual_seed(seed)
    rep = m.fit(TrainData(ds.train_x[:512], ds.info), Budget(steps=steps, batch_size=32))
    return m, rep


def test_registered_with_module_listed():
    entries = registry.available()
    fam = {"autoencoder": "autoencoder", "dae": "autoencoder", "vae": "vae", "realnvp": "flow", "pixelcnn": "autoregressive", "ebm": "ebm"}
    for name, family in fam.items():
        assert entries[name].family == family
        assert entries[name].factory.__module__ in registry._OPTIONAL_MODULES
    assert entries["pixelcnn"].kinds == ("image",)
    with pytest.raises(ValueError, match="does not support points"):
        registry.build("pixelcnn", data.load("ring8").info)


@pytest.mark.parametrize("name,dataset", CASES)
def test_fit_sample_shape_range_reproducible(name, dataset):
    ds = data.load(dataset)
    m, rep = _fit(name, ds)
    assert isinstance(m, Generator) and isinstance(m, Trainable)
    assert rep.steps == 25 and rep.wall_time_s > 0 and rep.losses
    assert all(0 < len(v) <= 200 for v in rep.losses.values())
    info = m.info
    assert info.n_params > 0 and info.shape == tuple(ds.info.shape)
    x = m.sample(6, generator=torch.Generator().manual_seed(1))
    assert x.dtype == torch.float32 and x.device.type == "cpu"
    assert x.shape == (6, *ds.info.shape)
    assert torch.isfinite(x).all()
    if ds.info.kind == "image":
        k = ds.info.levels
        assert x.min() >= 0 and x.max() <= 1
        assert torch.allclose(x * (k - 1), torch.round(x * (k - 1)), atol=1e-5), "samples must lie on the K levels"
    y = m.sample(6, generator=torch.Generator().manual_seed(1))
    z = m.sample(6, generator=torch.Generator().manual_seed(2))
    assert torch.equal(x, y)
    assert not torch.equal(x, z)
    # likelihood capability and its kind
    kind = LIKELIHOOD.get(name)
    if name == "vae":
        assert isinstance(m, LikelihoodBound) and not hasattr(m, "log_prob") and info.likelihood == "elbo"
    elif kind is not None:
        assert isinstance(m, ExactLikelihood) and not hasattr(m, "elbo")
        assert info.likelihood == kind[0 if ds.info.kind == "image" else 1]
        lp = m.log_prob(ds.test_x[:5])
        assert lp.shape == (5,) and torch.isfinite(lp).all()
    else:
        assert not hasattr(m, "log_prob") and not hasattr(m, "elbo") and info.likelihood is None


@pytest.mark.parametrize("name,dataset", [c for c in CASES if c[1] != "stacked-digits"])
def test_state_dict_round_trip(name, dataset):
    ds = data.load(dataset)
    m, _ = _fit(name, ds)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    torch.manual_seed(123)  # a different init: everything must come from the state
    fresh = registry.build(name, ds.info, device="cpu", **_hp(name, ds))
    with pytest.raises(RuntimeError, match="fit"):
        fresh.sample(2)
    fresh.load_state_dict(state)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(m.sample(4, generator=g()), fresh.sample(4, generator=g()))
    if hasattr(m, "log_prob"):
        assert torch.allclose(m.log_prob(ds.test_x[:4]), fresh.log_prob(ds.test_x[:4]))
    if hasattr(m, "elbo"):
        assert torch.allclose(m.elbo(ds.test_x[:4], generator=g()), fresh.elbo(ds.test_x[:4], generator=g()))


@pytest.mark.parametrize("name", list(TINY))
def test_max_seconds_stops_training(name):
    ds = data.load("digits" if name == "pixelcnn" else "ring8")
    m = registry.build(name, ds.info, device="cpu", **_hp(name, ds))
    rep = m.fit(TrainData(ds.train_x[:256], ds.info), Budget(steps=10_000, batch_size=16, max_seconds=0.2))
    assert 1 <= rep.steps < 10_000
