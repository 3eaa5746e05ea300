"""Tests of the metrics added after FID (#15): vendi, authpct, ct, fls, cmmd, sw, sfid.

Each is checked against a closed form or a hand-computed case, a reference
package on the same input where one installs (vendi-score, scipy), and
invariances (permutation of samples, identical sets).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu, wasserstein_distance

from metrics.authpct import authenticity
from metrics.cmmd import SCALE, SIGMA, cmmd, rbf_mmd2
from metrics.ct import ct_statistic, zu_statistic
from metrics.extractors.digits_cnn import DigitsCNNExtractor
from metrics.fid import fid_from_features
from metrics.fls import fit_log_variances, fls, mixture_nll
from metrics.sfid import spatial_features
from metrics.sw import random_directions, sliced_wasserstein, wasserstein_1d
from metrics.vendi import vendi_per_class, vendi_score


def _gauss(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


# ------------------------------------------------------------------------------ vendi
def test_vendi_closed_forms():
    assert vendi_score(torch.ones(7, 3)) == pytest.approx(1.0)  # all identical: one effective sample
    assert vendi_score(torch.eye(5)) == pytest.approx(5.0)  # mutually orthogonal: n
    two = torch.cat([torch.tensor([[1.0, 0.0]]).repeat(4, 1), torch.tensor([[0.0, 3.0]]).repeat(4, 1)])
    assert vendi_score(two) == pytest.approx(2.0)  # two orthogonal groups of equal size (cosine ignores the norm)


def test_vendi_matches_vendi_score_package():
    vs = pytest.importorskip("vendi_score.vendi")
    for n, d in ((50, 8), (20, 64)):  # D < n (dual) and D > n (Gram) paths
        x = _gauss(n, d, seed=n).abs()
        assert vendi_score(x) == pytest.approx(float(vs.score_dual(x.numpy(), normalize=True)), rel=1e-8)
        assert vendi_score(x) == pytest.approx(float(vs.score_X(x.numpy(), normalize=True)), rel=1e-8)
        assert vendi_score(x, q=2) == pytest.approx(float(vs.score_dual(x.numpy(), q=2, normalize=True)), rel=1e-8)


def test_vendi_permutation_and_per_class():
    x = _gauss(40, 6, 1)
    assert vendi_score(x[torch.randperm(40)]) == pytest.approx(vendi_score(x))
    labels = torch.arange(40) % 2
    per = vendi_per_class(x, labels)
    assert per[0] == pytest.approx(vendi_score(x[labels == 0])) and set(per) == {0, 1}


def test_vendi_validation():
    with pytest.raises(ValueError, match="NaN"):
        vendi_score(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="zero norm"):
        vendi_score(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        vendi_score(torch.ones(3))


# ------------------------------------------------------------------------------ authpct
def test_authpct_hand_computed():
    train = torch.tensor([[0.0], [1.0], [3.0]])  # NN distances within train: 1, 1, 2
    fake = torch.tensor([[0.4], [5.0], [6.0], [-2.0]])
    # 0.4 -> t=0, d1 .4 < d2 1: copy; 5 -> t=3, d1 2 = d2 2: not strictly farther; 6 -> d1 3 > 2: authentic; -2 -> d1 2 > 1: authentic
    pct, auth = authenticity(train, fake)
    assert pct == pytest.approx(50.0)
    assert auth.tolist() == [False, False, True, True]


def test_authpct_copies_and_permutation():
    train = _gauss(200, 5, 0)
    assert authenticity(train, train[:50])[0] == 0.0  # exact copies are never authentic
    fake = _gauss(100, 5, 1)
    perm = torch.randperm(100)
    assert authenticity(train, fake[perm])[0] == pytest.approx(authenticity(train, fake)[0])
    with pytest.raises(ValueError, match="dimension"):
        authenticity(train, _gauss(5, 4, 2))


# ------------------------------------------------------------------------------ ct
def test_zu_statistic_against_pair_count():
    rng = np.random.default_rng(0)
    lq, lp = rng.random(13), rng.random(17)
    u = sum((q > p) + 0.5 * (q == p) for q in lq for p in lp)  # pairs where the generated distance is larger
    expect = (u - (13 * 17 / 2 - 0.5)) / math.sqrt(13 * 17 * (13 + 17 + 1) / 12)
    assert zu_statistic(lq, lp) == pytest.approx(expect)
    assert mannwhitneyu(lq, lp).statistic == pytest.approx(u)


def test_ct_copy_fresh_and_far():
    train, test = _gauss(600, 4, 0), _gauss(300, 4, 1)
    copies = ct_statistic(train, test, train[:300], cells=3).value
    fresh = [ct_statistic(train, test, _gauss(300, 4, s), cells=3).value for s in (2, 3, 4)]
    far = ct_statistic(train, test, _gauss(300, 4, 5) * 1.5, cells=3).value
    assert copies < -5  # samples much closer to train than held-out data: copying
    assert all(abs(v) < 2.5 for v in fresh)  # a z-score: about N(0, 1) for fresh samples
    assert far > 3  # farther than held-out data: underfitting
    perm = torch.randperm(300)
    assert ct_statistic(train, test, train[:300][perm], cells=3).value == pytest.approx(copies)


def test_ct_validation():
    t = _gauss(10, 2, 0)
    with pytest.raises(ValueError, match="cells"):
        ct_statistic(t[:3], t, t, cells=5)
    with pytest.raises(ValueError, match="NaN"):
        ct_statistic(t, t, torch.full((4, 2), float("nan")))


# ------------------------------------------------------------------------------ fls
def test_mixture_nll_hand_computed():
    d2 = torch.tensor([[0.0, 4.0]], dtype=torch.float64)  # a point at 0, centres at 0 and 2 (1-D), unit variances
    expect = -math.log(0.5 * (1 + math.exp(-2.0)))
    assert float(mixture_nll(d2, torch.zeros(2, dtype=torch.float64), 1)[0]) == pytest.approx(expect)


def test_bandwidth_fit_is_the_ml_variance():
    # one centre at 0: the maximum-likelihood variance of N(0, s) is the mean squared distance
    x = 1.7 * _gauss(2000, 1, 0)
    log_s = fit_log_variances(x, torch.zeros(1, 1, dtype=torch.float64), steps=300, lr=0.1)
    assert float(log_s.exp()) == pytest.approx(float((x**2).mean()), rel=1e-3)


def test_fls_fresh_copies_and_duplicates():
    train, test = _gauss(800, 4, 0), _gauss(300, 4, 1)
    fresh = fls(train, test, _gauss(300, 4, 2))
    assert 70 < fresh.fls < 140 and abs(fresh.gap) < 12  # as good as real data, no train-test gap
    copies = fls(train, test, train[:300])
    assert copies.gap > 18  # centres on fitting train points favour them (those on held-out baseline points cannot)
    bad = fls(train, test, _gauss(300, 4, 3) * 3)
    assert bad.fls < fresh.fls / 2
    with_dups = fls(train, test, torch.cat([test[:100], _gauss(200, 4, 4)]))
    assert with_dups.n_test_excluded == 100 and with_dups.n_test == 200


# ------------------------------------------------------------------------------ cmmd
def test_cmmd_hand_computed():
    x = [[0.0, 0.0], [1.0, 0.0]]
    y = [[0.0, 1.0], [0.0, 2.0], [1.0, 1.0]]

    def k(a, b):
        return math.exp(-((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) / (2 * SIGMA**2))

    kxx = sum(k(a, b) for i, a in enumerate(x) for j, b in enumerate(x) if i != j) / 2
    kyy = sum(k(a, b) for i, a in enumerate(y) for j, b in enumerate(y) if i != j) / 6
    kxy = sum(k(a, b) for a in x for b in y) / 6
    assert rbf_mmd2(x, y) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-12)
    assert cmmd(x, y) == pytest.approx(SCALE * (kxx + kyy - 2 * kxy), rel=1e-12)
    assert (SIGMA, SCALE) == (10.0, 1000.0)


def test_cmmd_identical_and_permutation():
    x = torch.nn.functional.normalize(_gauss(60, 16, 0), dim=1)
    assert rbf_mmd2(x, x, unbiased=False) == pytest.approx(0.0, abs=1e-15)  # V-statistic of identical sets
    y = torch.nn.functional.normalize(_gauss(80, 16, 1), dim=1)
    assert cmmd(x[torch.randperm(60)], y[torch.randperm(80)]) == pytest.approx(cmmd(x, y))
    z = torch.nn.functional.normalize(_gauss(80, 16, 2) + 2.0, dim=1)
    assert cmmd(x, z) > 10 * abs(cmmd(x, y))  # a shifted distribution stands out of the noise


# ------------------------------------------------------------------------------ sw
def test_wasserstein_1d_matches_scipy():
    rng = np.random.default_rng(0)
    for n, m in ((10, 10), (7, 13), (100, 31)):
        a, b = rng.normal(size=(n, 3)), rng.normal(1.0, 2.0, size=(m, 3))
        ours = wasserstein_1d(torch.from_numpy(a), torch.from_numpy(b))
        for j in range(3):
            assert float(ours[j]) == pytest.approx(wasserstein_distance(a[:, j], b[:, j]), rel=1e-10)


def test_sw_analytic_shift_identical_and_permutation():
    x, v = _gauss(300, 6, 0), torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, 1.0], dtype=torch.float64)
    th = random_directions(6, 200, seed=7)
    # a translation moves every projection by theta.v: SW_1 = mean |theta.v| over the same directions, exactly
    assert sliced_wasserstein(x, x + v, 200, seed=7) == pytest.approx(float((v @ th).abs().mean()), rel=1e-10)
    # SW_2 of a shift -> ||v|| / sqrt(d) for many directions (E (theta.v)^2 = ||v||^2 / d)
    assert sliced_wasserstein(x, x + v, 20000, seed=1, p=2) == pytest.approx(float(v.norm()) / math.sqrt(6), rel=0.03)
    assert sliced_wasserstein(x, x, 50) == 0.0
    assert sliced_wasserstein(x[torch.randperm(300)], x + v, 200, seed=7) == pytest.approx(sliced_wasserstein(x, x + v, 200, seed=7))


# ------------------------------------------------------------------------------ sfid
def test_spatial_features_are_the_hooked_layer():
    torch.manual_seed(0)
    net = DigitsCNNExtractor.make_net().eval()
    x = torch.rand(5, 1, 8, 8)
    f = spatial_features(net, x, "body.4", 8)
    with torch.no_grad():
        manual = net.body[:5](x)[:, :8].flatten(1)
    assert f.shape == (5, 8 * 4 * 4) and torch.allclose(f, manual)
    x3 = torch.rand(4, 3, 8, 8)  # stacked digits: channel by channel, concatenated
    f3 = spatial_features(net, x3, "body.4", 8)
    with torch.no_grad():
        parts = [net.body[:5](x3[:, c : c + 1])[:, :8].flatten(1) for c in range(3)]
    assert torch.allclose(f3, torch.cat(parts, dim=1))
    with pytest.raises(ValueError, match="no layer"):
        spatial_features(net, x, "body.99", 8)


def test_sfid_identical_sets_zero():
    torch.manual_seed(0)
    net = DigitsCNNExtractor.make_net().eval()
    f = spatial_features(net, torch.rand(300, 1, 8, 8), "body.4", 4)
    assert fid_from_features(f, f).value == pytest.approx(0.0, abs=1e-6)
