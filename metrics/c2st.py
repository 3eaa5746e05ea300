"""Classifier two-sample test (C2ST; Lopez-Paz & Oquab 2017): can a small classifier tell samples from data?

Protocol, the same for both variants:

1. Balance: both sets are cut to ``n = min(n_real, n_fake)`` samples; the larger
   set is subsampled at random (seeded), so chance accuracy is exactly 0.5.
2. Split: each set is shuffled (seeded; real and fake with independent
   permutations) and cut into a training half of ``n // 2`` samples and a
   held-out half of ``n // 2`` samples (one sample is left out when ``n`` is odd).
3. Train a small classifier (label 1 = real, 0 = fake) on the two training
   halves, deterministic given ``seed`` (its own RNG; the global torch RNG is
   left as it was).
4. Report its accuracy on the two held-out halves (``2 * (n // 2)`` samples,
   half of each kind): a number in [0, 1]. 0.5 means the classifier cannot tell
   the sets apart; 1 means it always can. For independent samples the expected
   held-out accuracy is 0.5 under the null; a value significantly *below* 0.5
   says the two sets are not independent draws (the classifier learnt points
   whose copies sit in the other set's held-out half), which exact copies of
   the reference can cause when the classifier memorises them.

Uncertainty: the 95% interval is the Wilson score interval of a binomial
proportion for ``correct`` successes out of ``2 * (n // 2)`` held-out trials. It
covers the noise of the held-out evaluation of this one trained classifier, not
the spread over other splits or training seeds. ``p_value`` is the exact
one-sided binomial test of accuracy > 0.5 (``P(Binomial(m, 1/2) >= correct)``,
``m`` the held-out count); under the null the held-out count has mean ``m / 2`` and
variance at most ``m / 4``, so the test is valid, if conservative.

Variants:

* :func:`c2st_features` — on extractor features (N, D): features standardised
  with the mean and std of the training halves, then a one-hidden-layer MLP
  (default; sees mean, scale and shape differences) or logistic regression
  (``classifier="linear"``; sees mean differences only), full-batch Adam with an
  L2 penalty for a fixed number of steps.
* :func:`c2st_images` — on pixels (NCHW in [0, 1]): a small convnet (two 3x3
  convolutions, 4x4 average pooling, two linear layers), minibatch Adam for a
  fixed number of steps; pixels standardised per channel with the training
  halves' statistics. Images larger than ``max_side`` pixels on a side are first
  area-downsampled so that the longer side is ``max_side`` (default 32), which
  bounds the cost for a user's large images; 8x8 digits and 28x28 MNIST are
  used as they are.

Registered metrics (direction): ``c2st`` (on the extractor's features) and
``c2st_pixels`` (on the images). The registry has no "closest to 0.5"
direction, so the recorded *value* is the excess accuracy ``accuracy - 0.5`` in
[-0.5, 0.5] with direction ``"zero"`` (closest to 0 is best; a move either way
is a failure, see step 4); the accuracy itself, its interval and the p-value are
in ``extra`` and the value's interval is the accuracy interval minus 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import binomtest, norm
from torch import Tensor, nn

from .context import EvalContext
from .registry import MetricValue, Output, register_metric

__all__ = ["C2STResult", "wilson_interval", "balanced_halves", "c2st_features", "c2st_images", "MIN_SAMPLES"]

MIN_SAMPLES = 10
"""Fewest samples per set: at least 5 per half."""

EXCESS = "accuracy - 0.5"
"""Unit of the registered values (column header: ``C2ST[digits-cnn] (accuracy - 0.5) →0``)."""


@dataclass
class C2STResult:
    """Outcome of one classifier two-sample test.

    Attributes:
        accuracy: held-out accuracy in [0, 1]; 0.5 = indistinguishable.
        interval: Wilson score interval of ``accuracy`` at ``level``.
        p_value: exact one-sided binomial p-value of accuracy > 0.5.
        correct: held-out samples classified correctly.
        n_test: held-out samples (half real, half fake).
        n_train: training samples (half real, half fake).
        n_used: samples used per set after balancing (``min(n_real, n_fake)``).
        train_accuracy: accuracy on the training halves (overfitting diagnostic).
        classifier: what was trained.
        level: confidence level of ``interval``.
    """

    accuracy: float
    interval: tuple[float, float]
    p_value: float
    correct: int
    n_test: int
    n_train: int
    n_used: int
    train_accuracy: float
    classifier: str
    level: float = 0.95


def wilson_interval(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``correct / n`` (both ends in [0, 1])."""
    if n <= 0 or not 0 <= correct <= n:
        raise ValueError(f"c2st: need 0 <= correct <= n and n > 0, got correct={correct}, n={n}")
    if not 0 < level < 1:
        raise ValueError(f"c2st: level must be in (0, 1), got {level}")
    z = float(norm.ppf(0.5 + level / 2))
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _as_tensor(metric: str, name: str, x) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().to("cpu", torch.float32)
    n = t.shape[0] if t.ndim else 0
    if n < MIN_SAMPLES:
        raise ValueError(f"{metric}: needs at least {MIN_SAMPLES} {name} samples (5 per half), got {n}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{metric}: {name} samples contain NaN or inf")
    return t


def balanced_halves(n_real: int, n_fake: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Indices (real_train, real_test, fake_train, fake_test), each of length ``min(n_real, n_fake) // 2``.

    Real and fake get independent seeded permutations; the first ``n // 2`` of
    each permutation train, the next ``n // 2`` are held out (what lies beyond
    is left out: the surplus of the larger set and one sample when ``n`` is odd).
    """
    half = min(n_real, n_fake) // 2
    g = torch.Generator().manual_seed(int(seed))
    pr, pf = torch.randperm(n_real, generator=g), torch.randperm(n_fake, generator=g)
    return pr[:half], pr[half : 2 * half], pf[:half], pf[half : 2 * half]


def _labels(half: int) -> Tensor:
    """Labels of ``half`` real then ``half`` fake samples: 1 = real, 0 = fake."""
    return torch.cat([torch.ones(half), torch.zeros(half)])


def _result(pred_test: Tensor, pred_train: Tensor, n_used: int, classifier: str, level: float) -> C2STResult:
    """``pred_*``: predicted labels (1 = real) for [real half, fake half] in that order."""
    m = len(pred_test)
    correct = int((pred_test == _labels(m // 2)).sum())
    p = float(binomtest(correct, m, 0.5, alternative="greater").pvalue)
    return C2STResult(
        accuracy=correct / m,
        interval=wilson_interval(correct, m, level),
        p_value=p,
        correct=correct,
        n_test=m,
        n_train=len(pred_train),
        n_used=n_used,
        train_accuracy=float((pred_train == _labels(len(pred_train) // 2)).float().mean()),
        classifier=classifier,
        level=level,
    )


def c2st_features(
    real,
    fake,
    *,
    classifier: str = "mlp",
    hidden: int = 64,
    steps: int = 300,
    lr: float = 0.01,
    l2: float = 1e-2,
    seed: int = 0,
    level: float = 0.95,
) -> C2STResult:
    """C2ST on (N, D) feature sets ``real`` and ``fake`` (see the module docstring for the protocol).

    ``classifier``: ``"mlp"`` (one hidden layer of ``hidden`` ReLU units) or
    ``"linear"`` (logistic regression). Trained full-batch with Adam (``lr``) for
    ``steps`` steps on the cross-entropy plus ``l2`` times the squared weights.
    Returns a :class:`C2STResult` (accuracy in [0, 1], Wilson interval).
    """
    r, f = _as_tensor("c2st", "real", real), _as_tensor("c2st", "fake", fake)
    if r.ndim != 2 or f.ndim != 2:
        raise ValueError(f"c2st: features must be (N, D) arrays, got real {tuple(r.shape)} and fake {tuple(f.shape)}")
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"c2st: real and fake features differ in dimension: {r.shape[1]} vs {f.shape[1]}")
    if classifier not in ("mlp", "linear"):
        raise ValueError(f"c2st: classifier must be 'mlp' or 'linear', got {classifier!r}")
    if steps < 1 or hidden < 1:
        raise ValueError(f"c2st: steps and hidden must be >= 1, got steps={steps}, hidden={hidden}")
    rtr, rte, ftr, fte = balanced_halves(len(r), len(f), seed)
    x_train, x_test = torch.cat([r[rtr], f[ftr]]), torch.cat([r[rte], f[fte]])
    mu, sd = x_train.mean(0), x_train.std(0)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))  # a constant feature stays constant (0)
    x_train, x_test = (x_train - mu) / sd, (x_test - mu) / sd
    y = _labels(len(rtr))
    d = r.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = nn.Linear(d, 1) if classifier == "linear" else nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    weights = [p for n_, p in net.named_parameters() if n_.endswith("weight")]
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(net(x_train).squeeze(1), y) + l2 * sum((w * w).sum() for w in weights)
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred_test, pred_train = (net(x_test).squeeze(1) > 0).float(), (net(x_train).squeeze(1) > 0).float()
    name = "logistic regression" if classifier == "linear" else f"MLP {d}-{hidden}-1 ReLU"
    desc = f"{name} on standardised features, Adam lr={lr}, {steps} full-batch steps, L2={l2}"
    return _result(pred_test, pred_train, min(len(r), len(f)), desc, level)


class _SmallConvNet(nn.Module):
    """Two 3x3 convolutions (16, 32 channels; the second stride 2), 4x4 average pooling, 512-64-1 head."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 1),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).squeeze(1)


def _downsample(x: Tensor, max_side: int) -> Tensor:
    h, w = x.shape[-2:]
    if max(h, w) <= max_side:
        return x
    s = max_side / max(h, w)
    return F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="area")


def c2st_images(
    real,
    fake,
    *,
    steps: int = 400,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    max_side: int = 32,
    seed: int = 0,
    level: float = 0.95,
    device: str | torch.device = "cpu",
) -> C2STResult:
    """C2ST on images ``real`` and ``fake`` (N, C, H, W) in [0, 1] (see the module docstring for the protocol).

    A small convnet trained with Adam (``lr``, ``weight_decay``) for ``steps``
    seeded minibatches of ``batch_size`` (passes over the training halves in
    fresh orders; a count of steps, not of epochs, so that small N still
    trains). Images with a side above ``max_side`` are area-downsampled first.
    Returns a :class:`C2STResult`.
    """
    r, f = _as_tensor("c2st_pixels", "real", real), _as_tensor("c2st_pixels", "fake", fake)
    if r.ndim != 4 or f.ndim != 4:
        raise ValueError(f"c2st_pixels: images must be (N, C, H, W), got real {tuple(r.shape)} and fake {tuple(f.shape)}")
    if r.shape[1:] != f.shape[1:]:
        raise ValueError(f"c2st_pixels: real and fake images differ in shape: {tuple(r.shape[1:])} vs {tuple(f.shape[1:])}")
    if steps < 1 or batch_size < 1 or max_side < 1:
        raise ValueError(f"c2st_pixels: steps, batch_size and max_side must be >= 1, got {steps}, {batch_size}, {max_side}")
    rtr, rte, ftr, fte = balanced_halves(len(r), len(f), seed)
    x_train = _downsample(torch.cat([r[rtr], f[ftr]]), max_side)
    x_test = _downsample(torch.cat([r[rte], f[fte]]), max_side)
    mu, sd = x_train.mean((0, 2, 3), keepdim=True), x_train.std((0, 2, 3), keepdim=True)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    x_train, x_test = ((x_train - mu) / sd).to(device), ((x_test - mu) / sd).to(device)
    y = _labels(len(rtr)).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = _SmallConvNet(r.shape[1]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(int(seed) + 1)
    n, done = len(x_train), 0
    while done < steps:  # passes over the training halves in seeded orders, cut at ``steps`` minibatches
        order = torch.randperm(n, generator=g).to(device)
        for i in range(0, n, batch_size):
            if done == steps:
                break
            idx = order[i : i + batch_size]
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(net(x_train[idx]), y[idx]).backward()
            opt.step()
            done += 1

    def predict(x: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([(net(x[i : i + 512]) > 0).float() for i in range(0, len(x), 512)]).cpu()

    size = tuple(x_train.shape[1:])
    desc = f"convnet (3x3 conv 16, 3x3/2 conv 32, pool 4x4, 512-64-1) on {size} standardised pixels, Adam lr={lr} wd={weight_decay}, {steps} steps of batch {batch_size}"
    return _result(predict(x_test), predict(x_train), min(len(r), len(f)), desc, level)


def _value(res: C2STResult, settings: dict) -> MetricValue:
    lo, hi = res.interval
    extra = {"accuracy": res.accuracy, "accuracy_interval": [lo, hi], "p_value": res.p_value, "correct": res.correct,
             "n_test": res.n_test, "train_accuracy": res.train_accuracy}  # fmt: skip
    settings = {**settings, "n_used": res.n_used, "n_train": res.n_train, "n_test": res.n_test, "classifier": res.classifier,
                "split": "real and fake each balanced to min(N) and halved (seeded): train on first halves, test on second",
                "value": "held-out accuracy - 0.5 (0 = indistinguishable)",
                "interval": f"Wilson score {int(res.level * 100)}% interval of the held-out accuracy, minus 0.5",
                "p_value": "exact one-sided binomial test of accuracy > 0.5", "method": "Lopez-Paz & Oquab 2017"}  # fmt: skip
    return MetricValue(res.accuracy - 0.5, (lo - 0.5, hi - 0.5), settings, extra)


def _is_image(ctx: EvalContext) -> bool:
    return bool(getattr(ctx.data_info, "is_image", False)) and ctx.fake.ndim == 4 and ctx.real.ndim == 4


@register_metric(
    "c2st",
    [Output("c2st", "C2ST", "zero", per_extractor=True, unit=EXCESS)],
    description="Classifier two-sample test (Lopez-Paz & Oquab 2017) on extractor features: held-out accuracy - 0.5 of an MLP",
)
def c2st_metric(ctx: EvalContext) -> dict[str, MetricValue]:
    """Held-out accuracy of an MLP telling reference from sample features, minus 0.5 (metrics/c2st.py)."""
    real, fake = ctx.features("real"), ctx.features("fake")
    seed = int(ctx.setting("c2st_seed", ctx.seed))
    res = c2st_features(real, fake, seed=seed, classifier=str(ctx.setting("c2st_classifier", "mlp")))
    settings = {**ctx.extractor.settings(), "n_real": int(len(real)), "n_fake": int(len(fake)),
                "reference": ctx.setting("reference", "train") + " split", "seed": seed}  # fmt: skip
    return {"c2st": _value(res, settings)}


@register_metric(
    "c2st_pixels",
    [Output("c2st_pixels", "C2ST[pixels]", "zero", unit=EXCESS)],
    applies=_is_image,
    description="Classifier two-sample test (Lopez-Paz & Oquab 2017) on pixels: held-out accuracy - 0.5 of a small convnet",
)
def c2st_pixels_metric(ctx: EvalContext) -> dict[str, MetricValue]:
    """Held-out accuracy of a small convnet telling reference from sample images, minus 0.5 (metrics/c2st.py)."""
    seed = int(ctx.setting("c2st_seed", ctx.seed))
    res = c2st_images(ctx.real, ctx.fake, seed=seed, steps=int(ctx.setting("c2st_pixel_steps", 400)), device=ctx.device)
    settings = {"n_real": int(ctx.n_real), "n_fake": int(ctx.n_fake), "reference": ctx.setting("reference", "train") + " split",
                "seed": seed, "space": "pixels"}  # fmt: skip
    return {"c2st_pixels": _value(res, settings)}
