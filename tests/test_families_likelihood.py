"""Likelihoods of the density families are proper where they should be.

* 2-D densities (realnvp, gaussian) integrate to about 1 on a grid.
* PixelCNN: the joint over every 2x2 image with K = 3 sums to 1 by enumeration
  (which fails if any conditional peeks at its own or a later pixel), and
  the per-pixel conditionals over the K levels sum to 1.
* VAE: the IWAE bound is >= the ELBO and does not decrease with k; IWAE-1 and
  the closed-form-KL ELBO estimate the same quantity.
* Every likelihood model beats the uniform model's log2(K) bits/dim on the
  digits test split after a short training.
Tiny budgets throughout; trained digits models are shared per module.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from baselines import registry
from baselines.protocol import Budget, DataInfo, TrainData
from bench import data
from metrics.likelihood import likelihood_summary

POINTS = DataInfo(name="toy", shape=(2,), kind="points")
MINE = {"autoencoder", "dae", "vae", "realnvp", "pixelcnn", "ebm"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny nets: one thread is faster than two fighting on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _fit(name, info, x, steps, batch_size=128, seed=0, **hp):
    torch.manual_seed(seed)
    m = registry.build(name, info, **({"device": "cpu"} if name in MINE else {}), **hp)
    torch.manual_seed(seed)
    m.fit(TrainData(x, info), Budget(steps=steps, batch_size=batch_size))
    return m


def _grid_mass(log_prob, lo, hi, n=401):
    """Riemann sum of exp(log_prob) on an n x n grid over [lo, hi]^2."""
    t = torch.linspace(lo, hi, n)
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    with torch.no_grad():
        lp = torch.cat([log_prob(pts[i : i + 20000]) for i in range(0, len(pts), 20000)]).double()
    cell = ((hi - lo) / (n - 1)) ** 2
    return float(lp.exp().sum() * cell)


def _two_blobs(n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-1.0, 0.5], [1.0, -0.5]])
    return centres[torch.randint(0, 2, (n,), generator=g)] + 0.3 * torch.randn(n, 2, generator=g)


def test_realnvp_2d_density_integrates_to_one():
    x = _two_blobs()
    m = _fit("realnvp", POINTS, x, steps=300, batch_size=256, hidden=(32, 32), n_couplings=6)
    # trained enough to be far from its N(0, I)-like start: a bimodal density
    assert m.log_prob(x[:500]).mean() > -2.0
    mass = _grid_mass(m.log_prob, -5.0, 5.0)
    assert mass == pytest.approx(1.0, abs=0.02)


def test_gaussian_2d_density_integrates_to_one():
    x = data.load("ring8").train_x
    m = _fit("gaussian", data.load("ring8").info, x, steps=1)
    assert _grid_mass(m.log_prob, -6.0, 6.0) == pytest.approx(1.0, abs=0.01)


def _enumerate_images(c, h, w, k):
    levels = torch.tensor(list(itertools.product(range(k), repeat=c * h * w)), dtype=torch.float32)
    return (levels / (k - 1)).reshape(-1, c, h, w)


@pytest.mark.parametrize("shape,k", [((1, 2, 2), 3), ((2, 2, 2), 2)])
def test_pixelcnn_joint_sums_to_one_by_enumeration(shape, k):
    info = DataInfo(name="tiny", shape=shape, kind="image", levels=k)
    torch.manual_seed(0)
    m = registry.build("pixelcnn", info, device="cpu", channels=8, n_layers=3)
    with torch.no_grad():  # random, far-from-uniform conditionals
        for p in m.net.parameters():
            p.normal_(0, 0.5)
    x = _enumerate_images(*shape, k)
    lp = m.log_prob(x).double()
    assert lp.std() > 0.1  # not the uniform distribution
    assert float(torch.logsumexp(lp, 0).exp()) == pytest.approx(1.0, abs=1e-5)


def test_pixelcnn_is_causal_in_raster_order():
    info = DataInfo(name="tiny", shape=(1, 5, 6), kind="image", levels=4)
    m = registry.build("pixelcnn", info, device="cpu", channels=8, n_layers=3)
    x = torch.rand(1, 1, 5, 6, requires_grad=True)
    logits = m.net(x)
    for i in range(5):
        for j in range(6):
            (g,) = torch.autograd.grad(logits[0, :, i, j].sum(), x, retain_graph=True)
            dep = (g[0, 0] != 0).flatten().nonzero().flatten()
            assert (dep < i * 6 + j).all(), f"pixel ({i},{j}) depends on a later or the same pixel"
    # and the last pixel does see its left neighbour and the row above (no blind spot there)
    (g,) = torch.autograd.grad(logits[0, :, 4, 5].sum(), x)
    assert g[0, 0, 4, 4] != 0 and g[0, 0, 3, 5] != 0 and g[0, 0, 3, 5 - 1] != 0


# ----------------------------------------------------------------- digits models
BUDGETS = {
    "vae": (dict(), Budget(steps=250, batch_size=128)),
    "realnvp": (dict(), Budget(steps=250, batch_size=128)),
    "pixelcnn": (dict(channels=16), Budget(steps=150, batch_size=64)),
}


@pytest.fixture(scope="module")
def trained():
    ds = data.load("digits")
    return {name: _fit(name, ds.info, ds.train_x, b.steps, b.batch_size, **hp) for name, (hp, b) in BUDGETS.items()}


def test_pixelcnn_conditionals_sum_to_one(trained):
    ds = data.load("digits")
    p = trained["pixelcnn"].conditionals(ds.test_x[:16])
    assert p.shape == (16, 1, 8, 8, 17)
    assert torch.allclose(p.sum(-1), torch.ones(16, 1, 8, 8), atol=1e-5)
    # the conditionals of the real pixels are the model's log-likelihood
    lp = torch.log(p.gather(-1, torch.round(ds.test_x[:16] * 16).long().unsqueeze(-1))).flatten(1).sum(1)
    assert torch.allclose(lp, trained["pixelcnn"].log_prob(ds.test_x[:16]), atol=1e-3)


@pytest.mark.parametrize("name", ["uniform", "gaussian", "ppca", "gmm", "vae", "realnvp", "pixelcnn"])
def test_bits_per_dim_beat_uniform(name, trained):
    ds = data.load("digits")
    ref = math.log2(ds.info.levels)
    if name in trained:
        m = trained[name]
    else:
        m = _fit(name, ds.info, ds.train_x, steps=1) if name != "uniform" else registry.build("uniform", ds.info)
    res = likelihood_summary(m, ds.test_x, is_image=True, dim=ds.info.dim)
    print(f"{name}: {res['value']:.3f} bits/dim ({res['kind']})")
    assert res["kind"] == m.info.likelihood
    if name == "uniform":
        assert res["value"] == pytest.approx(ref, abs=1e-6)  # float32 log_prob
    else:
        assert res["value"] < ref, f"{name}: {res['value']:.3f} bits/dim"
        if name in trained:  # the neural models are well clear of it even after a short training
            assert res["value"] < ref - 1.0, f"{name}: {res['value']:.3f} bits/dim"


def _diff_ok(a, b):
    """mean(a - b) >= -3 standard errors (a is not below b beyond noise)."""
    d = (a - b).double()
    return float(d.mean()) >= -3 * float(d.std() / math.sqrt(len(d))), float(d.mean())


@pytest.mark.parametrize("dataset", ["digits", "points"])
def test_iwae_bound_above_elbo_and_nondecreasing_in_k(trained, dataset):
    if dataset == "digits":
        m, x = trained["vae"], data.load("digits").test_x[:120]
    else:
        xt = _two_blobs()
        m, x = _fit("vae", POINTS, xt, steps=300, batch_size=256, hidden=(32, 32)), _two_blobs(200, seed=1)
    elbo = m.elbo(x, generator=torch.Generator().manual_seed(0))
    bounds = {k: m.iwae_bound(x, k, generator=torch.Generator().manual_seed(1)) for k in (1, 4, 16, 64)}
    ok, gap = _diff_ok(bounds[64], elbo)
    assert ok and gap > 0, f"IWAE-64 - ELBO = {gap:.3f} nats"
    for k1, k2 in [(1, 4), (4, 16), (16, 64)]:
        ok, diff = _diff_ok(bounds[k2], bounds[k1])
        assert ok, f"IWAE-{k2} < IWAE-{k1} by {-diff:.3f} nats"
    # IWAE-1 (Monte Carlo KL) and the ELBO (closed-form KL) have the same expectation
    iw1 = torch.stack([m.iwae_bound(x, 1, generator=torch.Generator().manual_seed(s)) for s in range(8)]).mean(0)
    d = (iw1 - elbo).double()
    assert abs(float(d.mean())) < 4 * float(d.std() / math.sqrt(len(d))) + 0.05


def test_iwae_k_is_validated(trained):
    x = data.load("digits").test_x[:2]
    for bad in (0, 257):
        with pytest.raises(ValueError, match="k must be in"):
            trained["vae"].iwae_bound(x, bad)
