"""baselines.training: the one training loop, EMA, curve thinning, batches, progress switch."""

from __future__ import annotations

import io
import math
import sys

import pytest
import torch
from torch import nn

from baselines.protocol import Budget
from baselines.training import EMA, Batch, minibatches, progress_enabled, thin_curve, train


# ------------------------------------------------------------------ thinning
def test_thin_curve_short_curves_are_kept_as_floats():
    assert thin_curve([1, 2, 3]) == [1.0, 2.0, 3.0]
    assert thin_curve([]) == []


def test_thin_curve_averages_equal_chunks():
    vals = list(range(400))
    out = thin_curve(vals, 200)
    assert out == [2 * i + 0.5 for i in range(200)]  # pairs (2i, 2i + 1)
    assert len(thin_curve(list(range(450)), 200)) == 200
    # near-equal chunks of 2 or 3: the overall mean is kept to within the chunk imbalance
    out = thin_curve([1.0] * 451, 200)
    assert out == [1.0] * 200
    with pytest.raises(ValueError, match="n must be >= 1"):
        thin_curve([1.0, 2.0], 0)


# ------------------------------------------------------------------ batches
def test_minibatches_cover_an_epoch_and_sample_with_replacement():
    x = torch.arange(10).float()[:, None]
    it = minibatches(x, 5, generator=torch.Generator().manual_seed(0))
    a, _ = next(it)
    b, _ = next(it)
    assert sorted(torch.cat([a, b]).flatten().tolist()) == list(range(10))
    xb, yb = next(minibatches(x, 32, torch.arange(10), replacement=True, generator=torch.Generator().manual_seed(0)))
    assert xb.shape == (32, 1) and torch.equal(xb[:, 0].long(), yb)  # labels follow their examples
    assert next(minibatches(x, 32))[0].shape == (10, 1)  # capped without replacement
    with pytest.raises(ValueError, match="no training examples"):
        next(minibatches(x[:0], 4))


# ------------------------------------------------------------------ the loop
def _regression(seed: int, steps: int = 50, **kw):
    """Fit w in y = 3 x by Adam through the loop; returns (w, report)."""
    torch.manual_seed(seed)
    x = torch.randn(256, 1)
    w = nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([w], lr=0.1)

    def loss(batch: Batch, g):
        noise = 0.01 * torch.randn(batch.x.shape, generator=g)
        return {"loss": ((w * batch.x - 3 * batch.x - noise) ** 2).mean(), "w": w.detach().clone()}

    torch.manual_seed(seed)
    rep = train("toy", Budget(steps=steps, batch_size=32), x, loss=loss, optimizer=opt, params=[w], **kw)
    return w, rep


def test_loop_trains_reports_and_is_reproducible():
    w, rep = _regression(0, steps=300)
    assert rep.steps == 300 and rep.wall_time_s > 0
    assert set(rep.losses) == {"loss", "w"} and len(rep.losses["loss"]) == 200
    assert abs(float(w.detach()) - 3) < 0.05
    assert rep.losses["loss"][-1] < rep.losses["loss"][0]
    w2, rep2 = _regression(0, steps=300)
    assert torch.equal(w, w2) and rep.losses == rep2.losses
    w3, _ = _regression(1, steps=300)
    assert not torch.equal(w, w3)
    _, rep4 = _regression(0, steps=10, curves=("w",))
    assert set(rep4.losses) == {"w"}


def test_loop_warmup_is_linear():
    w = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)
    seen = []

    def loss(batch, g):
        seen.append(opt.param_groups[0]["lr"])
        return (w * 0).sum()

    train("toy", Budget(steps=6, batch_size=2), torch.zeros(4, 1), loss=loss, optimizer=opt, warmup=4)
    assert seen == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_loop_clips_the_gradient_norm():
    w = nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([w], lr=1.0)
    train("toy", Budget(steps=1, batch_size=2), torch.zeros(4, 1), loss=lambda b, g: (w * torch.tensor([1e3, 2e3, 2e3])).sum(),
          optimizer=opt, params=[w], clip_grad=0.5)  # fmt: skip
    assert float(w.detach().norm()) == pytest.approx(0.5, rel=1e-5)  # one SGD step of lr 1 moves by the clipped gradient


def test_loop_step_hook_ema_finite_check_and_time_limit():
    net = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(net.weight)
    ema = EMA(net, 0.5)
    calls = []

    def step(batches, g):
        b = next(batches)
        calls.append(b.step)
        with torch.no_grad():
            net.weight.add_(1.0)
        return {"w": net.weight.sum()}

    rep = train("hook", Budget(steps=3, batch_size=2), torch.zeros(4, 1), step=step, ema=ema)
    assert calls == [0, 1, 2] and rep.losses["w"] == [1.0, 2.0, 3.0]
    assert ema.n == 3
    bad = {"v": 0.0}

    def diverge(batches, g):
        next(batches)
        bad["v"] = math.inf
        return {"loss": bad["v"]}

    with pytest.raises(FloatingPointError, match="non-finite at step 1"):
        train("hook", Budget(steps=3, batch_size=2), torch.zeros(4, 1), step=diverge, check_finite=True)
    rep = train("slow", Budget(steps=10**6, batch_size=2, max_seconds=0.05), torch.zeros(4, 1), step=lambda b, g: {"loss": float(next(b).step)})
    assert 1 <= rep.steps < 10**6


def test_loop_rejects_bad_calls():
    x = torch.zeros(4, 1)
    w = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)
    with pytest.raises(TypeError, match="exactly one"):
        train("t", Budget(steps=1), x)
    with pytest.raises(TypeError, match="needs optimizer"):
        train("t", Budget(steps=1), x, loss=lambda b, g: w.sum())
    with pytest.raises(KeyError, match="no 'loss' entry"):
        train("t", Budget(steps=1, batch_size=2), x, loss=lambda b, g: {"nll": w.sum()}, optimizer=opt)
    with pytest.raises(TypeError, match="clip_grad needs params"):
        train("t", Budget(steps=1), x, loss=lambda b, g: w.sum(), optimizer=opt, clip_grad=1.0)
    with pytest.raises(ValueError, match="rng"):
        train("t", Budget(steps=1), x, loss=lambda b, g: w.sum(), optimizer=opt, rng="numpy")


def test_global_rng_mode_hands_no_generator():
    seen = []
    train("g", Budget(steps=2, batch_size=2), torch.zeros(4, 1), step=lambda b, g: (seen.append(g), next(b), {"loss": 0.0})[-1], rng="global")
    assert seen == [None, None]


# ------------------------------------------------------------------ EMA
def test_ema_warmup_decay_and_offset():
    net = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(net.weight)
    e0, e1 = EMA(net, 0.999), EMA(net, 0.999, offset=1)
    with torch.no_grad():
        net.weight.fill_(1.0)
    e0.update()
    e1.update()
    # first update: decay min(0.999, (1 + t) / (10 + t)) with t = 0 (resp. 1)
    assert float(e0.module.weight) == pytest.approx(1 - 1 / 10)
    assert float(e1.module.weight) == pytest.approx(1 - 2 / 11)
    assert not e0.module.weight.requires_grad and not e0.module.training
    with pytest.raises(ValueError, match="decay"):
        EMA(net, 1.0)


# ------------------------------------------------------------------ progress
def test_progress_is_silent_unless_asked_on_a_terminal(monkeypatch):
    class TTY(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", TTY())
    monkeypatch.delenv("GENBENCH_PROGRESS", raising=False)
    assert progress_enabled() is True
    assert progress_enabled(False) is False
    monkeypatch.setenv("GENBENCH_PROGRESS", "0")
    assert progress_enabled() is False
    monkeypatch.delenv("GENBENCH_PROGRESS")
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    assert progress_enabled() is False
