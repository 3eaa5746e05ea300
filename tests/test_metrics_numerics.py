"""Exact numerics of the metric math (#11 item 5): each case failed on the float32 / unclipped code.

Reference values come from closed forms (identical sets), from the same metric
on an equivalent input (dead units removed, offset removed), or from the
reference implementations (prdc, torch-fidelity) on the same features.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from prdc import compute_prdc
from torch_fidelity.metric_fid import fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from metrics.clip_score import clip_score
from metrics.fid import feature_statistics, fid_from_features, frechet_distance, kid_from_features
from metrics.inception_score import inception_score
from metrics.likelihood import bits_per_dim
from metrics.memorization import memorization
from metrics.prdc import knn_radii, prdc


def _feats(n: int, d: int, seed: int, relu: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return (f.relu() if relu else f).float()  # float32, as extractors return them


@pytest.mark.parametrize("d", [64, 2048])
def test_identical_sets_are_exact(d):
    """#11: density 1.005-1.022 at large d (cross distances oriented unlike the radii); FID not exactly 0."""
    n = 600 if d == 64 else 300
    f = _feats(n, d, 0)
    r = prdc(f, f.clone(), k_prc=3, k_dc=5)
    assert (r.precision, r.recall, r.density, r.coverage) == (1.0, 1.0, 1.0, 1.0)
    assert fid_from_features(f, f.clone()).value == 0.0


def test_large_common_offset_matches_prdc_package():
    """|a|^2+|b|^2-2ab in float32 lost ~0.5 of 126 with a +100 offset; values must equal prdc's (float64 sklearn)."""
    f = _feats(800, 64, 1, relu=False).double()
    real, fake = f[:500] + 100, f[500:] * 1.02 + 100.01
    for k in (3, 5):
        ref = compute_prdc(real.numpy(), fake.numpy(), nearest_k=k)
        ours = prdc(real, fake, k_prc=k, k_dc=k)
        assert ours.values() == pytest.approx(ref, rel=1e-12), k
        assert 0.2 < ours.coverage < 0.99, "a case where the k-NN balls matter"
    # and the offset changes nothing
    assert prdc(real, fake).values() == prdc(real - 100, fake - 100).values()
    assert torch.allclose(knn_radii(real, 3)[3], knn_radii(real - 100, 3)[3], rtol=1e-9)


def test_features_beyond_float32_range():
    """Finite float64 features above float32's range overflowed to inf (P/R/D/C = 1,1,0,0 silently)."""
    real = _feats(300, 16, 3, relu=False).double()
    fake = _feats(300, 16, 4, relu=False).double() * 1.2
    big = 1e200
    assert prdc(real * big, fake * big).values() == prdc(real, fake).values()
    assert fid_from_features(real * 1e100, fake * 1e100).value == pytest.approx(fid_from_features(real, fake).value * 1e200, rel=1e-9)
    with pytest.raises(ValueError, match="too large"):
        fid_from_features(real * 1e200, fake * 1e200)  # the covariance itself overflows: said, not inf/NaN
    with pytest.raises(ValueError, match="overflow"):
        kid_from_features(real * 1e120, fake * 1e120, subsets=2, subset_size=100)


def test_kid_gram_in_float64_matches_exact_value():
    """KID's Gram matrix in float32 was off by ~1e-3 relative with a large offset; float64 reference on the same subsets."""
    real = _feats(300, 32, 5, relu=False).double() + 50
    fake = _feats(300, 32, 6, relu=False).double() * 1.05 + 50
    ours = kid_from_features(real, fake, subsets=5, subset_size=200, seed=3).value
    ref = kid_features_to_metric(fake, real, kid_subsets=5, kid_subset_size=200, kid_degree=3, kid_gamma=None, kid_coef0=1,
                                 rng_seed=3, verbose=False)["kernel_inception_distance_mean"]  # fmt: skip
    assert ours == pytest.approx(ref, rel=1e-9)


def test_fid_dead_units_are_exact():
    """Zero-variance (dead ReLU) units contribute exactly nothing: sqrt(rounding noise) used to add ~3e-6 relative."""
    a, b = _feats(800, 48, 7), _feats(800, 48, 8) * 1.3
    dead = torch.zeros(800, 80)
    perm = torch.randperm(128, generator=torch.Generator().manual_seed(0))  # dead units interleaved with live ones
    fa, fb = torch.cat([a, dead], 1)[:, perm], torch.cat([b, dead], 1)[:, perm]
    live = fid_from_features(a, b).value
    with_dead = fid_from_features(fa, fb).value
    assert with_dead == pytest.approx(live, rel=1e-10)
    s1, s2 = (dict(zip(("mu", "sigma"), feature_statistics(f))) for f in (fa, fb))
    assert with_dead == pytest.approx(fid_statistics_to_metric(s1, s2, verbose=False)["frechet_inception_distance"], rel=1e-10)


def test_fid_closed_form_and_non_psd_covariance():
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 2.0])
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 1.0])
    # |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2 for commuting covariances
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(9 + 1 + 1 + 4, abs=1e-12)
    bad = np.diag([1.0, -0.5, 2.0])
    with pytest.raises(ValueError, match="not positive semi-definite"):
        frechet_distance(mu1, bad, mu2, s2)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        frechet_distance(mu1, s1, mu2, bad)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(mu1, s1 * np.nan, mu2, s2)


def test_inception_score_rejects_probabilities():
    logits = torch.randn(100, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    v = inception_score(logits, splits=5).value
    assert inception_score(logits.softmax(1).log(), splits=5).value == pytest.approx(v, rel=1e-9)
    with pytest.raises(ValueError, match="probabilities"):
        inception_score(logits.softmax(1), splits=5)  # used to return ~1 silently


def test_clip_score_rejects_nan_embeddings():
    e = torch.randn(4, 8)
    bad = e.clone()
    bad[2, 3] = float("nan")
    with pytest.raises(ValueError, match="1 of 4 image embeddings"):
        clip_score(bad, e)
    with pytest.raises(ValueError, match="text embeddings"):
        clip_score(e, bad)


def test_bits_per_dim_and_memorization_empty_inputs():
    with pytest.raises(ValueError, match="empty"):
        bits_per_dim(torch.tensor([]), 64)
    with pytest.raises(ValueError, match="NaN"):
        bits_per_dim(torch.tensor([float("nan")]), 64)
    f = torch.randn(20, 4)
    with pytest.raises(ValueError, match=r"memorization: the samples \(fake\) set is empty"):
        memorization(torch.zeros(0, 4), f, f)
    with pytest.raises(ValueError, match="memorization: the test split set is empty"):
        memorization(f, f, torch.zeros(0, 4))
