"""The metric-sanity suite's parts: registered wiring of the new metrics, the constructed sample sets, the section."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from baselines.corrupted import CONSTRUCTIONS, Pools, gaussian_blur
from baselines.registry import build
from bench.leaderboard import CellStats
from bench.sections import get_section
from bench.sections.metric_sanity import verdict
from bench.suite import load_suite, validate_names
from genbench.protocol import DataInfo, HeldOutReference, LabeledSampler, TrainReference
from metrics.context import EvalContext
from metrics.extractors import get_extractor
from metrics.registry import available

NEW = ("vendi", "authpct", "ct", "fls", "cmmd", "sw", "sfid")


def test_new_metrics_registered_with_directions():
    specs = available()
    assert set(NEW) <= set(specs)
    for name in NEW:
        assert all(o.direction in ("min", "max", "zero") for o in specs[name].outputs)


def test_new_metrics_on_points_through_the_registry():
    g = torch.Generator().manual_seed(0)
    train, test, fake = torch.randn(300, 2, generator=g), torch.randn(150, 2, generator=g), torch.randn(150, 2, generator=g)
    info = DataInfo(name="blob", shape=(2,), kind="points")
    ctx = EvalContext(
        data_info=info, fake=fake, real=train, extractor=get_extractor("raw"), train=train, test=test, settings={"ct_cells": 3}
    )
    specs = available()
    assert not specs["sfid"].applies(ctx) and not specs["cmmd"].applies(ctx)  # image-only metrics: n/a on points
    for name in ("vendi", "authpct", "ct", "fls", "sw"):
        assert specs[name].applies(ctx)
        out = specs[name].fn(ctx)
        for o in specs[name].outputs:
            if o.name in out:
                v = out[o.name]
                assert math.isfinite(v.value) and v.settings, (name, o.name)
    assert specs["sw"].fn(ctx)["sw"].settings["projections"] == 1000
    assert specs["ct"].fn(ctx)["ct"].settings["cells"] == 3


def test_image_metrics_on_digits(digits):
    ext = get_extractor("digits-cnn")
    fake = digits.test_x[:100]
    ctx = EvalContext(data_info=digits.info, fake=fake, real=digits.train_x, extractor=ext, train=digits.train_x, test=digits.test_x)
    specs = available()
    sfid = specs["sfid"].fn(ctx)["sfid"]
    assert sfid.settings["layer"] == "body.4" and sfid.settings["dim"] == 128 and sfid.value > 0
    cm = specs["cmmd"].fn(ctx)["cmmd"]
    assert cm.settings["clip_model"] == "digits-clip" and cm.settings["scale"] == 1000
    noisy = EvalContext(data_info=digits.info, fake=(fake + 0.3 * torch.randn_like(fake)).clamp(0, 1), real=digits.train_x, extractor=ext)
    assert specs["sfid"].fn(noisy)["sfid"].value > 2 * sfid.value
    assert specs["cmmd"].fn(noisy)["cmmd"].value > cm.value


# ------------------------------------------------------------------------------ constructed sets
def _set(digits, name, **params):
    m = build(name, digits.info, **params)
    m.use_pool(digits.test_x, digits.test_y)
    m.use_train(digits.train_x, digits.train_y)
    return m


def _rows(a: torch.Tensor) -> set:
    return {tuple(r.tolist()) for r in a.flatten(1)}


def test_constructed_sets_protocols_and_reproducibility(digits):
    m = _set(digits, "sanity-noise", std=0.2)
    assert isinstance(m, LabeledSampler) and isinstance(m, HeldOutReference) and isinstance(m, TrainReference)
    a, ya = m.sample_labeled(50, generator=torch.Generator().manual_seed(3))
    b, yb = m.sample_labeled(50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(ya, yb) and a.dtype == torch.float32 and a.min() >= 0 and a.max() <= 1
    with pytest.raises(RuntimeError, match="use_pool"):
        build("sanity-blur", digits.info).sample(4)
    with pytest.raises(RuntimeError, match="use_train"):
        bare = build("sanity-copy", digits.info)
        bare.use_pool(digits.test_x, digits.test_y)
        bare.sample(4)


def test_copy_fraction_is_exact(digits):
    x, _ = _set(digits, "sanity-copy", fraction=0.5).sample_labeled(100, generator=torch.Generator().manual_seed(0))
    train_rows, test_rows = _rows(digits.train_x), _rows(digits.test_x)
    in_train = sum(tuple(r.tolist()) in train_rows for r in x.flatten(1))
    in_test = sum(tuple(r.tolist()) in test_rows and tuple(r.tolist()) not in train_rows for r in x.flatten(1))
    assert in_train >= 50 and in_train + in_test == 100  # (a test image may also occur in train: digits has duplicates)


def test_drop_and_collapse(digits):
    _, y = _set(digits, "sanity-drop", classes=3).sample_labeled(120, generator=torch.Generator().manual_seed(0))
    assert int(y.min()) == 3
    x, y = _set(digits, "sanity-collapse").sample_labeled(120, generator=torch.Generator().manual_seed(0))
    for c in y.unique():
        assert len(_rows(x[y == c])) == 1  # one image per class
    assert len(y.unique()) == 10


def test_blur_truncate_noise(digits):
    const = torch.full((2, 1, 8, 8), 0.4)
    assert torch.allclose(gaussian_blur(const, 1.0), const)  # a normalised kernel keeps constants
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[..., 4, 4] = 1
    out = gaussian_blur(impulse, 1.0)
    assert out.sum() == pytest.approx(1.0, abs=1e-6) and torch.allclose(out, out.flip(-1)) and torch.allclose(out, out.transpose(-1, -2))
    x, y = _set(digits, "sanity-truncate", scale=0.0).sample_labeled(30, generator=torch.Generator().manual_seed(0))
    for c in y.unique():
        assert torch.allclose(x[y == c][0], digits.train_x[digits.train_y == c].mean(0))
    pools = Pools(digits.test_x, digits.test_y)
    xn, _ = CONSTRUCTIONS.load("noise")(pools, 360, torch.Generator().manual_seed(0), std=0.05)
    x0, _ = pools.heldout(360, torch.Generator().manual_seed(0))  # the same draw of held-out images, without the noise
    inner = (x0 > 0.25) & (x0 < 0.75)  # pixels the clipping cannot reach at 5 std
    assert float((xn - x0)[inner].std()) == pytest.approx(0.05, rel=0.05)


def test_mixture_parts_and_errors(digits):
    x, y = _set(digits, "sanity-mixture", parts=["copy", "collapse"]).sample_labeled(41, generator=torch.Generator().manual_seed(0))
    assert x.shape == (41, 1, 8, 8) and len(y) == 41
    with pytest.raises(ValueError, match="other constructions"):
        _set(digits, "sanity-mixture", parts=["mixture"]).sample(4)
    with pytest.raises(ValueError, match="fraction"):
        _set(digits, "sanity-copy", fraction=2).sample(4)
    assert {"copy", "drop", "collapse", "noise", "blur", "truncate", "mixture"} <= set(CONSTRUCTIONS.names())


# ------------------------------------------------------------------------------ suite and section
def test_suite_is_valid():
    s = load_suite("metric-sanity")
    validate_names(s)
    assert s.sections == ("metric_sanity",)
    assert set(NEW) <= set(s.datasets[0].metrics)


def test_verdict():
    base = CellStats(1.0, 0.1, 5, se=0.1 / math.sqrt(5), df=4.0)
    worse = CellStats(2.0, 0.1, 5, se=0.1 / math.sqrt(5), df=4.0)
    close = CellStats(1.05, 0.1, 5, se=0.1 / math.sqrt(5), df=4.0)
    assert verdict(worse, base, "min") == "✓"
    assert verdict(worse, base, "max") == "✗⁺"
    assert verdict(close, base, "min") == "✗"
    assert verdict(CellStats(-2.0, 0.1, 5, se=0.04, df=4.0), base, "zero") == "✓"
    assert verdict(worse, base, None) == verdict(worse, base, float("nan")) == "–"


def test_section_marks_and_lists_detections(tmp_path):
    recs = []
    for gen, model, shift in (("data", "data", 0.0), ("copy-100", "sanity-copy", 5.0), ("noise-0.1", "sanity-noise", 0.0)):
        for seed in range(4):
            recs.append({"dataset": "digits", "generator": gen, "model": model, "seed": seed, "metric": "ct", "value": -shift + 0.1 * seed,
                         "lo": None, "hi": None, "settings": {}, "label": "C_T", "direction": "zero"})  # fmt: skip
    md = get_section("metric_sanity")(pd.DataFrame(recs), {}, tmp_path)
    assert "| copy-100 " in md and "-4.85 ✓" in md
    assert "- `copy-100` — copies of the train split (memorisation): C_T →0" in md
    assert "- `noise-0.1` — Gaussian noise: _no metric_" in md
