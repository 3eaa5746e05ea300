"""FID and KID against independently derived values: closed forms and torch-fidelity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metrics.fid import SampleSizeWarning, feature_statistics, fid_from_features, frechet_distance, kid_from_features


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small-op loops (KID subsets, k-NN blocks) crawl with several threads on a busy small machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rot(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def test_frechet_closed_form_commuting_covariances():
    # same eigenvectors: tr((S1 S2)^1/2) = sum sqrt(a_i b_i), so FID = |dmu|^2 + sum (sqrt a - sqrt b)^2
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    expected = float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    got = frechet_distance(mu1, (q * a) @ q.T, mu2, (q * b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_frechet_closed_form_2d_non_commuting():
    # for 2x2 M with positive eigenvalues: tr(M^1/2) = sqrt(tr M + 2 sqrt(det M))
    s1 = _rot(0.3) @ np.diag([2.0, 0.5]) @ _rot(0.3).T
    s2 = _rot(1.1) @ np.diag([0.7, 3.0]) @ _rot(1.1).T
    assert not np.allclose(s1 @ s2, s2 @ s1)
    m = s1 @ s2
    tr_sqrt = math.sqrt(np.trace(m) + 2 * math.sqrt(np.linalg.det(m)))
    mu1, mu2 = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    expected = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)


def test_fid_matches_torch_fidelity_and_is_zero_for_identical_sets():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 12, generator=g)
    fake = torch.randn(300, 12, generator=g) @ torch.randn(12, 12, generator=g) * 0.3 + 0.2
    theirs = fid_statistics_to_metric(fid_features_to_statistics(real.double()), fid_features_to_statistics(fake.double()), False)
    ours = fid_from_features(real, fake)
    assert ours.value == pytest.approx(theirs["frechet_inception_distance"], rel=1e-8)
    assert ours.max_imag < 1e-6
    assert fid_from_features(real, real).value == pytest.approx(0.0, abs=1e-8)


def test_fid_warns_when_n_below_dim():
    g = torch.Generator().manual_seed(1)
    with pytest.warns(SampleSizeWarning):
        r = fid_from_features(torch.randn(20, 32, generator=g), torch.randn(20, 32, generator=g))
    assert r.n_below_dim


def test_feature_statistics_rejects_nan():
    x = torch.randn(10, 3)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        feature_statistics(x)


@pytest.mark.parametrize("n_fake,n_real,size", [(300, 250, 100), (120, 120, 120)])
def test_kid_matches_torch_fidelity(n_fake, n_real, size):
    from torch_fidelity.metric_kid import kid_features_to_metric

    g = torch.Generator().manual_seed(2)
    real = torch.randn(n_real, 16, generator=g).relu()
    fake = (torch.randn(n_fake, 16, generator=g) * 1.3).relu()
    ours = kid_from_features(real, fake, subsets=15, subset_size=size, seed=7)
    theirs = kid_features_to_metric(fake, real, kid_subsets=15, kid_subset_size=size, rng_seed=7, verbose=False)
    assert ours.value == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4, abs=1e-7)
    assert ours.std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-3, abs=1e-6)
    assert ours.value > 0.01  # the sets differ


def test_kid_identical_distribution_near_zero_and_subset_size_capped():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(200, 8, generator=g), torch.randn(150, 8, generator=g)
    r = kid_from_features(a, b, subsets=10, subset_size=1000)
    assert r.subset_size == 150
    assert abs(r.value) < 0.05
    far = kid_from_features(a, b + 2.0, subsets=10, subset_size=1000)
    assert far.value > 20 * abs(r.value) + 0.1


def test_kid_rejects_mismatched_dims():
    with pytest.raises(ValueError, match="equal D"):
        kid_from_features(torch.randn(10, 3), torch.randn(10, 4))


def test_bootstrap_fid_interval_is_centred_on_the_estimate_with_the_sampling_spread():
    """The interval contains the FID it describes, and its width matches FID's spread over independent draws.

    Constructed case: real ~ N(0, I_8), fake ~ N(0.3, I_8), N = 300. The
    percentile interval of resampled FIDs failed the first check for sets of
    one distribution (resampling duplicates points and inflates FID), and the
    second is the reason to trust a width at all: the std over 150
    independent draws is measured here, not assumed.
    """
    from metrics.uncertainty import bootstrap_fid

    rng = np.random.default_rng(0)
    d, n = 8, 300
    for shift in (0.0, 0.3):
        real, fake = rng.normal(size=(n, d)), rng.normal(size=(n, d)) + shift
        value = fid_from_features(torch.from_numpy(real), torch.from_numpy(fake)).value
        lo, hi = bootstrap_fid(real, fake, b=200, seed=1)
        assert 0.0 <= lo <= value <= hi
        assert hi - value == pytest.approx(value - lo) or lo == 0.0
        if shift:
            draws = [fid_from_features(torch.from_numpy(rng.normal(size=(n, d))), torch.from_numpy(rng.normal(size=(n, d)) + shift)).value for _ in range(150)]
            assert (hi - lo) / 3.92 == pytest.approx(float(np.std(draws, ddof=1)), rel=0.35)
    with pytest.raises(ValueError, match="b >= 2"):
        bootstrap_fid(real, fake, b=1)
