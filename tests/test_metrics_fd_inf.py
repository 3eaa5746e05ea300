"""FD∞ (Chong & Forsyth 2020): FID extrapolated to N = ∞ removes the 1/N bias; checked on Gaussians with a closed-form FD."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genbench.protocol import DataInfo
from metrics import registry as mreg
from metrics.context import EvalContext
from metrics.extractors import get_extractor
from metrics.fd_inf import fd_inf_from_features, n_grid
from metrics.fid import fid_from_features, frechet_distance


def _case(seed: int, d: int = 32, n: int = 1500):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) / np.sqrt(d)
    s2 = a @ a.T + 0.5 * np.eye(d)
    true = frechet_distance(np.zeros(d), np.eye(d), np.zeros(d), s2)  # closed form of the two Gaussians
    real = rng.normal(size=(100000, d))  # reference ~ N(0, I), large: its own bias is small
    fake = rng.multivariate_normal(np.zeros(d), s2, size=n)
    return real, fake, true


def test_fd_inf_is_closer_to_the_true_distance_than_fid_at_small_n():
    fid_err, inf_err = [], []
    for seed in range(6):
        real, fake, true = _case(seed)
        fid_err.append(fid_from_features(real, fake).value - true)
        inf_err.append(fd_inf_from_features(real, fake, seed=seed).value - true)
    fid_err, inf_err = np.array(fid_err), np.array(inf_err)
    assert fid_err.mean() > 0.15  # FID at N = 1500 is biased upwards ...
    assert abs(inf_err.mean()) < 0.4 * fid_err.mean()  # ... FD∞ much less
    assert np.abs(inf_err).mean() < 0.6 * np.abs(fid_err).mean()


def test_fd_inf_exact_on_a_constructed_line():
    """If FID_N were exactly a + b/N the fit returns a and b: check the regression on the grid itself."""
    ns = np.array(n_grid(1000))
    assert len(ns) == 15 and ns[0] == 200 and ns[-1] == 1000
    a = np.stack([np.ones(len(ns)), 1.0 / ns], 1)
    coef, *_ = np.linalg.lstsq(a, 3.0 + 250.0 / ns, rcond=None)
    assert coef == pytest.approx([3.0, 250.0], rel=1e-10)


def test_fd_inf_metric_registration_and_settings():
    out = mreg.all_outputs()["fd_inf"]
    assert (out.label, out.direction, out.per_extractor) == ("FD∞", "min", True)
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(2000, 2, generator=g), torch.randn(300, 2, generator=g) * 1.2 + 0.3
    ctx = EvalContext(data_info=DataInfo(name="toy", shape=(2,), kind="points"), fake=fake, real=real, extractor=get_extractor("raw"), seed=3)
    v = mreg.get_metric("fd_inf").fn(ctx)["fd_inf"]
    s = v.settings
    assert s["n_real"] == 2000 and s["n_fake"] == 300 and s["draws"] == 3 and "60..300" in s["n_grid"]
    assert "slope" in s and "reference" in s and s["fit"].startswith("least squares")
    assert v.interval[0] < v.value < v.interval[1]
    assert v.value == mreg.get_metric("fd_inf").fn(ctx)["fd_inf"].value  # seeded: reproducible
    # the largest N of the fit is the plain FID
    assert v.extra["fids"][-1] == pytest.approx(fid_from_features(real, fake).value, rel=1e-9)


def test_fd_inf_needs_enough_samples():
    with pytest.raises(ValueError, match="at least 3 distinct subset sizes"):
        fd_inf_from_features(np.random.randn(100, 2), np.random.randn(2, 2))
