"""CLIP score: the formula, the derangement, and the registered metrics on real digits."""

from __future__ import annotations

import pytest
import torch

from metrics.clip_score import SCALE, clip_score, clip_score_images, derange_labels
from metrics.context import EvalContext
from metrics.extractors import get_extractor
from metrics.registry import available, get_metric


def test_formula_by_hand():
    img = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [1.0, 0.0]])
    txt = torch.tensor([[3.0, 0.0], [1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    scores, mean = clip_score(img, txt)
    # cos = 1, 0, 1/sqrt(2), -1 (clamped to 0)
    torch.testing.assert_close(scores, torch.tensor([100.0, 0.0, 100 / 2**0.5, 0.0]))
    assert mean == pytest.approx((100 + 100 / 2**0.5) / 4)
    with pytest.raises(ValueError, match="pair up"):
        clip_score(img, txt[:3])
    with pytest.raises(ValueError, match="zero samples"):
        clip_score(img[:0], txt[:0])


def test_derangement_keeps_the_labels_and_moves_every_one():
    g = torch.Generator().manual_seed(0)
    for y in (torch.arange(10).repeat(36), torch.tensor([0, 0, 1, 1]), torch.tensor([3, 1, 2, 2, 1, 3, 0, 0, 0])):
        d = derange_labels(y, g)
        assert sorted(d.tolist()) == sorted(y.tolist())
        assert not (d == y).any()
    with pytest.raises(ValueError, match="more than half"):
        derange_labels(torch.tensor([0, 0, 0, 1]), g)


def _ctx(d, fake, labels, **kw):
    return EvalContext(data_info=d.info, fake=fake, real=d.train_x, extractor=get_extractor("raw"), fake_labels=labels, seed=0, **kw)


def test_real_digits_score_high_and_shuffled_low():
    from bench.data import load

    d = load("digits")
    ctx = _ctx(d, d.test_x, d.test_y)
    assert "clip_score" in available() and "clip_score_shuffled" in available()
    spec, spec_s = get_metric("clip_score"), get_metric("clip_score_shuffled")
    assert spec.applies(ctx) and spec_s.applies(ctx)
    assert spec.outputs[0].label == "CLIPScore" and spec.outputs[0].direction == "max"
    assert spec_s.outputs[0].label == "CLIPScore (shuffled captions)"
    real = spec.fn(ctx)["clip_score"]
    shuf = spec_s.fn(ctx)["clip_score_shuffled"]
    assert real.value > shuf.value + 30, (real.value, shuf.value)
    assert real.interval[0] < real.value < real.interval[1]
    assert real.settings["scale"] == SCALE == "100*max(cos,0)"
    assert real.settings["clip_model"] == "digits-clip" and real.settings["n"] == 360
    assert "wrong label" in shuf.settings["prompt"]
    # the same images with captions drawn from a prompt list agree with the metric
    _, direct = clip_score_images(d.test_x, [d.info.captions[i] for i in d.test_y.tolist()])
    assert direct == pytest.approx(real.value, rel=1e-5)


def test_applies_only_with_labels_and_captions():
    from bench.data import load

    d = load("digits")
    spec = get_metric("clip_score")
    assert not spec.applies(_ctx(d, d.test_x, None))  # unconditional samples
    s = load("stacked-digits")  # no captions
    assert not spec.applies(
        EvalContext(data_info=s.info, fake=s.test_x[:4], real=s.train_x[:4], extractor=get_extractor("raw"), fake_labels=s.test_y[:4])
    )


def test_bad_labels_are_named():
    from bench.data import load

    d = load("digits")
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.9"):
        get_metric("clip_score").fn(_ctx(d, d.test_x[:4], torch.tensor([0, 1, 2, 12])))
    with pytest.raises(ValueError, match="3 labels for 4 samples"):
        get_metric("clip_score").fn(_ctx(d, d.test_x[:4], torch.tensor([0, 1, 2])))
