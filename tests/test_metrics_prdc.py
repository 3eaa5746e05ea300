"""Precision/recall, density/coverage: torch-fidelity parity, hand-counted sets, behaviour under mode dropping and noise."""

from __future__ import annotations

import math

import pytest
import torch

from metrics.prdc import density_coverage, knn_radii, prdc, precision_recall
from metrics.uncertainty import bootstrap_mean_interval


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small-op loops (KID subsets, k-NN blocks) crawl with several threads on a busy small machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _line(xs):
    return torch.tensor([[float(v), 0.0] for v in xs])


def test_prc_matches_torch_fidelity():
    from torch_fidelity.metric_prc import prc_features_to_metric

    g = torch.Generator().manual_seed(0)
    real = torch.randn(500, 10, generator=g)
    fake = torch.randn(400, 10, generator=g) * 1.4 + 0.2
    r = prdc(real, fake, k_prc=3, chunk=128)  # chunking must not change anything
    theirs = prc_features_to_metric(fake, real, prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    assert r.precision == pytest.approx(theirs["precision"], abs=1e-6)
    assert r.recall == pytest.approx(theirs["recall"], abs=1e-6)
    assert 0.05 < r.precision < 0.95 and 0.05 < r.recall < 0.999  # a non-trivial case


def test_hand_counted_density_coverage_precision_recall():
    # real on a line: 0 1 2 3 10; k = 1 radii: 1 1 1 1 7.  fakes: 0.5 2.9 20 (fake radii, k=1: 2.4 2.4 17.1)
    real, fake = _line([0, 1, 2, 3, 10]), _line([0.5, 2.9, 20])
    r = prdc(real, fake, k_prc=1, k_dc=1)
    # density: 0.5 lies in the balls of 0 and 1; 2.9 in those of 2 and 3; 20 in none -> (2 + 2 + 0) / (1 * 3)
    assert r.density == pytest.approx(4 / 3)
    # coverage: balls of 0, 1, 2, 3 hold a fake; the ball of 10 (radius 7) does not (nearest fake 7.1 away)
    assert r.coverage == pytest.approx(4 / 5)
    # precision: 0.5 and 2.9 inside a real ball, 20 is 10 > 7 from 10 -> 2/3
    assert r.precision == pytest.approx(2 / 3)
    # recall: every real point inside some fake ball (10 is within 17.1 of 20) -> 1
    assert r.recall == pytest.approx(1.0)
    assert torch.equal(r.coverage_ind, torch.tensor([1.0, 1, 1, 1, 0], dtype=torch.float64))


def test_knn_radii_exclude_self():
    x = _line([0, 1, 3, 7])
    rad = knn_radii(x, (1, 2))
    assert rad[1].tolist() == [1, 1, 2, 4]
    assert rad[2].tolist() == [3, 2, 3, 6]


def test_identical_sets_give_perfect_precision_recall():
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(1))
    p, r = precision_recall(x, x.clone())
    assert p == 1.0 and r == 1.0
    d, c = density_coverage(x, x.clone())
    assert c == 1.0 and d >= 1.0  # every fake is at least in its own twin's ball


def _ring(n: int, modes, seed: int, std: float = 0.05) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    idx = torch.as_tensor(modes)[torch.randint(0, len(modes), (n,), generator=g)]
    ang = 2 * math.pi * idx.double() / 8
    return (torch.stack([ang.cos(), ang.sin()], 1) + std * torch.randn(n, 2, generator=g, dtype=torch.float64)).float()


def test_dropping_half_the_modes_loses_recall_and_coverage_not_precision():
    real = _ring(1600, range(8), 0)
    full = prdc(real, _ring(800, range(8), 1))
    half = prdc(real, _ring(800, range(4), 2))
    assert half.recall < full.recall - 0.3
    assert half.coverage < full.coverage - 0.3
    assert half.precision == pytest.approx(full.precision, abs=0.05)
    assert half.precision > 0.8


def test_added_noise_lowers_precision():
    real = _ring(1600, range(8), 0)
    fake = _ring(800, range(8), 1)
    clean = prdc(real, fake)
    noisy = prdc(real, fake + 0.15 * torch.randn(fake.shape, generator=torch.Generator().manual_seed(3)))
    assert noisy.precision < clean.precision - 0.3
    assert noisy.density < clean.density


def test_too_few_samples_raise_naming_metric_and_k():
    with pytest.raises(ValueError, match=r"precision/recall with k=3 .* n_fake=3"):
        prdc(torch.randn(50, 2), torch.randn(3, 2))
    with pytest.raises(ValueError, match=r"density/coverage with k=5 .* n_real=5"):
        prdc(torch.randn(5, 2), torch.randn(50, 2), k_prc=3, k_dc=5)


def test_rejects_nan_and_dim_mismatch():
    x = torch.randn(20, 3)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        prdc(x, bad)
    with pytest.raises(ValueError, match="dimension"):
        prdc(x, torch.randn(20, 4))


def test_bootstrap_interval_brackets_value_and_shrinks_with_n():
    real = _ring(1600, range(8), 0)
    fake = _ring(800, range(8), 1) + 0.03 * torch.randn(800, 2, generator=torch.Generator().manual_seed(4))
    r = prdc(real, fake)
    lo, hi = bootstrap_mean_interval(r.precision_ind, 500, seed=0)
    assert lo <= r.precision <= hi and hi - lo > 0
    # binomial standard error sets the width: about 2 * 1.96 * sqrt(p (1 - p) / N)
    se = math.sqrt(r.precision * (1 - r.precision) / 800)
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.25)


def _brute_prdc(real, fake, k_prc=3, k_dc=5):
    """The four definitions on full float64 distance matrices, sum((a - b)^2) per pair (no expansion)."""
    real, fake = real.double(), fake.double()

    def d2(a, b):
        return ((a[:, None, :] - b[None]) ** 2).sum(-1)

    rr, ff, rf = d2(real, real), d2(fake, fake), d2(real, fake)
    r_prc = rr.sort(1).values[:, k_prc]  # column 0 is the point itself
    r_dc = rr.sort(1).values[:, k_dc]
    f_prc = ff.sort(1).values[:, k_prc]
    precision = (rf <= r_prc[:, None]).any(0).double().mean()
    recall = (rf <= f_prc[None]).any(1).double().mean()
    density = (rf < r_dc[:, None]).sum(0).double().mean() / k_dc
    coverage = (rf < r_dc[:, None]).any(1).double().mean()
    return [float(v) for v in (precision, recall, density, coverage)]


@pytest.mark.parametrize("case", ["spread", "collapsed"])
def test_float32_screen_then_exact_pairs_match_brute_force(monkeypatch, case):
    """The cross pass screens pairs in float32 and decides them in float64; tiny blocks force every code path."""
    import metrics.prdc as P

    g = torch.Generator().manual_seed(3)
    real = torch.randn(300, 12, generator=g) + 40.0  # a common offset: the float32 screen must not lose pairs
    if case == "spread":
        fake = torch.randn(250, 12, generator=g) * 1.2 + 40.1
    else:  # mode collapse plus copies of real points: many pairs inside balls, exact ties on the radii
        fake = torch.cat([real[:1].repeat(120, 1), real[10:90], torch.randn(50, 12, generator=g) * 0.1 + 40.0])
    monkeypatch.setattr(P, "_PAIR_BLOCK", 7)
    r = prdc(real, fake, k_prc=3, k_dc=5, chunk=64)
    assert [r.precision, r.recall, r.density, r.coverage] == pytest.approx(_brute_prdc(real, fake), abs=1e-12)


@pytest.mark.parametrize("shape", [(7, 13), (64, 128), (3, 1000), (1, 5)])
def test_sparse_nonzero_equals_nonzero(shape):
    from metrics.prdc import _sparse_nonzero

    g = torch.Generator().manual_seed(shape[0])
    for p in (0.0, 0.01, 0.5, 1.0):
        mask = torch.rand(shape, generator=g) < p
        assert torch.equal(_sparse_nonzero(mask).sort().values, mask.reshape(-1).nonzero().squeeze(1))
