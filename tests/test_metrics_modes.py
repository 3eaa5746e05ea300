"""Mode collapse, class histogram KL, Inception Score and memorization on constructed inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metrics.inception_score import inception_score
from metrics.memorization import copy_rate, memorization
from metrics.mode_collapse import class_histogram_kl, mixture_mode_stats, stacked_mode_stats, stacked_modes_from_labels


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small-op loops (KID subsets, k-NN blocks) crawl with several threads on a busy small machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


GRID = [(float(a), float(b)) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)]


def test_mixture_counts_on_constructed_samples():
    std = 0.05
    pts = (
        [GRID[0]] * 10  # 10 HQ at mode 0
        + [(GRID[7][0] + 0.1, GRID[7][1])] * 5  # 5 HQ at mode 7 (0.1 = 2 std away)
        + [(GRID[3][0] + 0.2, GRID[3][1])] * 3  # 4 std from mode 3: not HQ, mode 3 not captured
        + [(1.0, 1.0)] * 2  # far from every mode
    )
    r = mixture_mode_stats(torch.tensor(pts), GRID, std)
    assert r.modes == 2
    assert r.hq_pct == pytest.approx(100 * 15 / 20)
    p = np.array([10, 5]) / 15
    assert r.reverse_kl == pytest.approx(float(np.sum(p * np.log(p * 25))))
    assert r.counts[0] == 10 and r.counts[7] == 5 and sum(r.counts) == 15


def test_mixture_perfect_and_collapsed_generators():
    rng = np.random.default_rng(0)
    c = np.array(GRID)
    good = c[rng.integers(0, 25, 2500)] + 0.05 * rng.standard_normal((2500, 2))
    r = mixture_mode_stats(good, GRID, 0.05)
    assert r.modes == 25 and r.hq_pct > 97 and r.reverse_kl < 0.02
    collapsed = c[rng.integers(0, 5, 2500)] + 0.05 * rng.standard_normal((2500, 2))
    rc = mixture_mode_stats(collapsed, GRID, 0.05)
    assert rc.modes == 5 and rc.reverse_kl == pytest.approx(math.log(5), abs=0.02)


def test_mixture_without_hq_samples_is_worst_case():
    r = mixture_mode_stats(torch.full((30, 2), 1.0), GRID, 0.05)
    assert r.modes == 0 and r.hq_pct == 0 and r.no_hq and r.reverse_kl == pytest.approx(math.log(25))


def test_stacked_modes_from_labels_and_logits():
    lab = torch.tensor([[1, 2, 3], [1, 2, 3], [0, 0, 0], [9, 9, 9]])
    r = stacked_modes_from_labels(lab)
    assert r.modes == 3 and r.n_modes == 1000
    assert r.counts[123] == 2 and r.counts[0] == 1 and r.counts[999] == 1
    p = np.array([0.5, 0.25, 0.25])
    assert r.kl_uniform == pytest.approx(float(np.sum(p * np.log(p * 1000))))
    logits = torch.nn.functional.one_hot(lab, 10).float() * 5
    assert stacked_mode_stats(logits).modes == 3
    every = torch.tensor([[i // 100, i // 10 % 10, i % 10] for i in range(1000)])
    full = stacked_modes_from_labels(every)
    assert full.modes == 1000 and full.kl_uniform == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        stacked_modes_from_labels(torch.tensor([[1, 2, 10]]))  # used to land in mode 130 silently
    with pytest.raises(ValueError, match=r"0\.\.9"):
        stacked_modes_from_labels(torch.tensor([[-1, 2, 3]]))


def test_class_histogram_kl():
    data = torch.arange(100) % 10
    assert class_histogram_kl(data, data, 10) == pytest.approx(0.0, abs=1e-9)
    only_zero = torch.zeros(100, dtype=torch.long)
    q = (np.array([100] + [0] * 9) + 0.5) / (100 + 5)
    assert class_histogram_kl(data, only_zero, 10) == pytest.approx(float(np.sum(0.1 * np.log(0.1 / q))))
    with pytest.raises(ValueError, match="outside"):
        class_histogram_kl(data, torch.tensor([10]), 10)


def test_inception_score_matches_torch_fidelity_and_bounds():
    from torch_fidelity.metric_isc import isc_features_to_metric

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1000, 10, generator=g) * 3
    ours = inception_score(logits, 10, seed=5)
    theirs = isc_features_to_metric(logits, 10, True, 5)
    assert ours.value == pytest.approx(theirs["inception_score_mean"], rel=1e-10)
    assert ours.std == pytest.approx(theirs["inception_score_std"], rel=1e-8)
    # confident and balanced over 10 classes -> 10; constant prediction -> 1
    sharp = torch.nn.functional.one_hot(torch.arange(1000) % 10, 10).float() * 50
    assert inception_score(sharp, shuffle=False).value == pytest.approx(10.0, rel=1e-6)  # each split balanced
    assert inception_score(torch.zeros(100, 10) + torch.tensor([5.0] + [0] * 9)).value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="10 splits"):
        inception_score(torch.randn(5, 10))


def test_memorization_detects_copies():
    g = torch.Generator().manual_seed(0)
    train = torch.randn(400, 8, generator=g)
    test = torch.randn(200, 8, generator=g)
    fresh = torch.randn(200, 8, generator=g)
    copies = torch.cat([train[:150], torch.randn(50, 8, generator=g)])
    good = memorization(fresh, train, test)
    bad = memorization(copies, train, test)
    assert bad.copy_rate >= 0.75 and good.copy_rate < 0.2
    assert good.dist_ratio == pytest.approx(1.0, abs=0.15)
    assert bad.dist_ratio < 0.4
    assert memorization(test, train, test).dist_ratio == pytest.approx(1.0)
    # near copies (tiny perturbation) count too; ratio rule d1 < d2 / 3
    near = train[:100] + 1e-3 * torch.randn(100, 8, generator=g)
    assert copy_rate(near, train) == 1.0


def test_memorization_needs_two_train_samples():
    with pytest.raises(ValueError, match="k=1 needs at least k\\+1=2"):
        memorization(torch.randn(5, 2), torch.randn(1, 2), torch.randn(5, 2))
