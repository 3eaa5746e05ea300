"""The classifier two-sample test (metrics/c2st.py), each check against a value derived independently:
chance (0.5) for two samples of one distribution, the Bayes accuracy Phi(delta / 2) for two Gaussians,
closed-form Wilson bounds and binomial tail sums, clear failures on constructed image sets."""

from __future__ import annotations

import math

import pytest
import torch

from baselines.corrupted import gaussian_blur
from genbench.protocol import DataInfo
from metrics import registry as mreg
from metrics.c2st import MIN_SAMPLES, balanced_halves, c2st_features, c2st_images, wilson_interval
from metrics.context import EvalContext
from metrics.extractors import get_extractor

Z95 = 1.959963984540054  # standard normal 97.5% quantile


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _gauss(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    x[:, 0] += shift
    return x


# ------------------------------------------------------------------------------ interval and p-value
def test_wilson_interval_closed_forms():
    # k = 0: lower 0, upper z^2 / (n + z^2); k = n mirrors it; k = n/2 is symmetric about 1/2
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and hi == pytest.approx(Z95**2 / (10 + Z95**2), rel=1e-9)
    assert wilson_interval(10, 10) == pytest.approx((1 - hi, 1.0), rel=1e-9)
    lo, hi = wilson_interval(50, 100)
    assert lo + hi == pytest.approx(1.0) and hi - 0.5 == pytest.approx(Z95 * 0.5 / math.sqrt(100 + Z95**2), rel=1e-9)
    with pytest.raises(ValueError, match="correct"):
        wilson_interval(11, 10)


def test_p_value_is_the_binomial_tail():
    """A perfectly separable pair with 5 + 5 held out: P(Bin(10, 1/2) >= 10) = 1/1024."""
    r = c2st_features(_gauss(10, 2, 0), _gauss(10, 2, 1, shift=50.0), classifier="linear")
    assert (r.n_test, r.correct, r.accuracy) == (10, 10, 1.0)
    assert r.p_value == pytest.approx(1 / 1024, rel=1e-9)


# ------------------------------------------------------------------------------ (a) same distribution
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_same_distribution_interval_contains_half(seed):
    real, fake = _gauss(400, 8, 2 * seed), _gauss(400, 8, 2 * seed + 1)
    for clf in ("mlp", "linear"):
        r = c2st_features(real, fake, classifier=clf, seed=seed)
        assert r.interval[0] <= 0.5 <= r.interval[1], (clf, r.accuracy, r.interval)
        assert r.p_value > 0.05 and r.n_test == 400 and r.n_train == 400


# ------------------------------------------------------------------------------ (b) Bayes accuracy of two Gaussians
@pytest.mark.parametrize("delta", [1.0, 2.0])
def test_gaussian_mean_shift_reaches_bayes_accuracy(delta):
    """N(0, I) vs N(delta e_1, I) with equal priors: the Bayes classifier thresholds x_1 at delta / 2 and is right
    with probability Phi(delta / 2). A linear classifier on 2,000 + 2,000 training points in 4-D gets within
    O(d / n) of it, so the 95% interval of its held-out accuracy contains Phi(delta / 2); the MLP is within 0.03."""
    bayes = _phi(delta / 2)
    real, fake = _gauss(4000, 4, 10), _gauss(4000, 4, 11, shift=delta)
    lin = c2st_features(real, fake, classifier="linear")
    assert lin.interval[0] <= bayes <= lin.interval[1], (lin.accuracy, lin.interval, bayes)
    mlp = c2st_features(real, fake)
    assert mlp.accuracy == pytest.approx(bayes, abs=0.03)
    assert lin.p_value < 1e-20 and mlp.p_value < 1e-20


def test_scale_difference_needs_the_mlp():
    """Same mean, std 1 vs 2 in every dimension: no hyperplane separates them (logistic regression stays near
    chance), the MLP sees the radius and is clearly above chance."""
    real, fake = _gauss(1000, 4, 20), 2 * _gauss(1000, 4, 21)
    assert c2st_features(real, fake, classifier="linear").accuracy < 0.6
    assert c2st_features(real, fake).accuracy > 0.75


# ------------------------------------------------------------------------------ protocol
def test_balancing_and_halves():
    rtr, rte, ftr, fte = balanced_halves(101, 40, seed=3)
    assert len(rtr) == len(rte) == len(ftr) == len(fte) == 20
    assert not set(rtr.tolist()) & set(rte.tolist()) and not set(ftr.tolist()) & set(fte.tolist())
    assert max(ftr.max(), fte.max()) < 40 and max(rtr.max(), rte.max()) < 101
    again = balanced_halves(101, 40, seed=3)
    assert all(torch.equal(a, b) for a, b in zip((rtr, rte, ftr, fte), again))
    r = c2st_features(_gauss(101, 3, 0), _gauss(40, 3, 1))
    assert r.n_used == 40 and r.n_train == 40 and r.n_test == 40


def test_deterministic_and_leaves_global_rng_alone():
    real, fake = _gauss(200, 5, 0), _gauss(200, 5, 1, shift=0.5)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = c2st_features(real, fake, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    torch.rand(4)
    b = c2st_features(real, fake, seed=7)
    assert (a.correct, a.train_accuracy) == (b.correct, b.train_accuracy)
    imgs = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    p = c2st_images(imgs[:20], imgs[20:], steps=20, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    torch.rand(4)
    q = c2st_images(imgs[:20], imgs[20:], steps=20, seed=1)
    assert (p.correct, p.train_accuracy) == (q.correct, q.train_accuracy)


# ------------------------------------------------------------------------------ (c) images
@pytest.fixture(scope="module")
def digit_sets(digits):
    """Real: the digits train split. Held-out images: the test split (360), and constructed failures from them."""
    test_x = digits.test_x
    g = torch.Generator().manual_seed(0)
    return {
        "data": test_x,
        "noise": (test_x + 0.3 * torch.randn(test_x.shape, generator=g)).clamp(0, 1),
        "blur": gaussian_blur(test_x, 1.0),
    }


def test_pixels_detect_constructed_failures(digits, digit_sets):
    for failure in ("noise", "blur"):
        r = c2st_images(digits.train_x, digit_sets[failure], seed=0)
        assert r.accuracy > 0.65 and r.interval[0] > 0.55 and r.p_value < 1e-4, (failure, r.accuracy, r.interval)


def test_pixels_detect_dropped_classes(digits):
    """Classes 0-4 dropped: the fake half of the train split keeps only digits 5-9. Real images of classes 0-4
    (half the real mass) are recognisable, the rest are not: Bayes accuracy (1/2)(1/2) + (1/2)(1) = 0.75."""
    x, y = digits.train_x, digits.train_y
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(2))
    real, rest = perm[: len(x) // 2], perm[len(x) // 2 :]
    fake = x[rest[y[rest] >= 5]]
    r = c2st_images(x[real], fake, seed=0)
    assert 0.6 < r.accuracy < 0.85 and r.interval[0] > 0.55 and r.p_value < 1e-4, (len(fake), r.accuracy, r.interval)


def test_pixels_held_out_data_and_split_halves_are_chance(digits, digit_sets):
    r = c2st_images(digits.train_x, digit_sets["data"], seed=0)
    assert r.interval[0] <= 0.5 <= r.interval[1], r
    perm = torch.randperm(len(digits.train_x), generator=torch.Generator().manual_seed(1))
    half = len(perm) // 2
    r = c2st_images(digits.train_x[perm[:half]], digits.train_x[perm[half:]], seed=0)
    assert r.interval[0] <= 0.5 <= r.interval[1], r


def test_features_detect_blur_on_digits_cnn(digits, digit_sets):
    ext = get_extractor("digits-cnn")
    real = ext.features(digits.train_x)
    assert c2st_features(real, ext.features(digit_sets["blur"])).accuracy > 0.8
    r = c2st_features(real, ext.features(digit_sets["data"]))
    assert r.interval[0] <= 0.5 <= r.interval[1], r


def test_large_images_are_downsampled():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(20, 3, 64, 48, generator=g), torch.rand(20, 3, 64, 48, generator=g)
    r = c2st_images(real, fake, steps=5)
    assert "(3, 32, 24)" in r.classifier and r.n_test == 20


# ------------------------------------------------------------------------------ (d) bad input
def test_bad_input_is_named():
    ok = torch.zeros(20, 4)
    with pytest.raises(ValueError, match=f"at least {MIN_SAMPLES} fake"):
        c2st_features(ok, torch.zeros(MIN_SAMPLES - 1, 4))
    with pytest.raises(ValueError, match="differ in dimension: 4 vs 5"):
        c2st_features(ok, torch.zeros(20, 5))
    bad = ok.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="real samples contain NaN"):
        c2st_features(bad, ok)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        c2st_features(torch.zeros(20, 1, 2, 2), ok)
    with pytest.raises(ValueError, match="classifier must be"):
        c2st_features(ok, ok, classifier="svm")
    imgs = torch.zeros(20, 1, 8, 8)
    with pytest.raises(ValueError, match=r"images must be \(N, C, H, W\)"):
        c2st_images(imgs, ok)
    with pytest.raises(ValueError, match="differ in shape"):
        c2st_images(imgs, torch.zeros(20, 1, 8, 9))
    with pytest.raises(ValueError, match="c2st_pixels: needs at least"):
        c2st_images(imgs[:3], imgs)
    with pytest.raises(ValueError, match="fake samples contain NaN or inf"):
        c2st_images(imgs, torch.full((20, 1, 8, 8), float("inf")))


# ------------------------------------------------------------------------------ (e) registry
def test_registered_with_direction_zero():
    outs = mreg.all_outputs()
    assert {"c2st", "c2st_pixels"} <= set(mreg.available())
    assert outs["c2st"].direction == "zero" and outs["c2st"].per_extractor
    assert outs["c2st_pixels"].direction == "zero" and not outs["c2st_pixels"].per_extractor
    assert outs["c2st"].unit == outs["c2st_pixels"].unit == "accuracy - 0.5"
    assert mreg.get_metric("c2st").phase == "measure"


def test_runs_through_the_registry(digits, digit_sets):
    ext = get_extractor("digits-cnn")
    ctx = EvalContext(data_info=digits.info, fake=digit_sets["blur"], real=digits.train_x, extractor=ext, seed=0)
    values = {}
    for name in ("c2st", "c2st_pixels"):
        spec = mreg.get_metric(name)
        assert spec.applies(ctx)
        v = values[name] = spec.fn(ctx)[name]
        acc = v.extra["accuracy"]
        assert v.value == pytest.approx(acc - 0.5) and acc > 0.8
        assert v.interval == pytest.approx(tuple(a - 0.5 for a in v.extra["accuracy_interval"]))
        assert v.settings["n_real"] == len(digits.train_x) and v.settings["n_fake"] == 360
        assert v.settings["n_used"] == 360 and v.settings["n_test"] == 360
        assert "Wilson" in v.settings["interval"]
    assert values["c2st"].settings["weights_hash"] == ext.settings()["weights_hash"]


def test_pixels_do_not_apply_to_points():
    info = DataInfo(name="toy", shape=(2,), kind="points")
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    ctx = EvalContext(data_info=info, fake=x, real=x + 1, extractor=get_extractor("raw"), seed=0)
    assert not mreg.get_metric("c2st_pixels").applies(ctx)
    v = mreg.get_metric("c2st").fn(ctx)["c2st"]
    assert v.extra["accuracy"] > 0.7  # means 1 apart in both coordinates: Bayes Phi(sqrt(2) / 2) = 0.76
