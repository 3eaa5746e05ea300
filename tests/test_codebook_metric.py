"""The codebook-usage metric (metrics/codebook.py) on constructed code histograms."""

from __future__ import annotations

import math

import pytest
import torch

from metrics.codebook import codebook, codebook_usage
from metrics.registry import get_metric


def test_usage_and_perplexity_closed_form():
    s = codebook_usage(torch.tensor([[0, 1], [2, 3]]).repeat(5, 1), 8)  # 4 codes equally used out of 8
    assert s["usage"] == 0.5 and s["dead"] == 4 and s["n"] == 20 and s["perplexity"] == pytest.approx(4.0)
    s = codebook_usage(torch.tensor([5, 5, 5, 5]), 6)  # collapse onto one code
    assert s["perplexity"] == pytest.approx(1.0) and s["usage"] == pytest.approx(1 / 6)
    s = codebook_usage(torch.tensor([0, 0, 0, 1]), 2)  # p = (3/4, 1/4)
    assert s["perplexity"] == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))


def test_bad_codes_are_rejected():
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        codebook_usage(torch.tensor([0, 4]), 4)
    with pytest.raises(ValueError, match="no codes"):
        codebook_usage(torch.tensor([], dtype=torch.long), 4)


class _Coder:
    num_codes = 4

    def encode_codes(self, x):
        return (x.flatten(1)[:, :2] * 3).round().long()  # two positions per image


class _Ctx:
    def __init__(self, generator, test):
        self.generator, self.test = generator, test


def test_metric_reads_the_test_split_codes_and_applies_only_to_discrete_latents():
    spec = get_metric("codebook")
    test = torch.tensor([[0.0, 1 / 3], [1 / 3, 0.0]]).reshape(2, 1, 1, 2)  # codes 0, 1, 1, 0
    ctx = _Ctx(_Coder(), test)
    assert spec.applies(ctx) and not spec.applies(_Ctx(object(), test)) and not spec.applies(_Ctx(_Coder(), None))
    out = codebook(ctx)
    assert out["codebook_usage"].value == 0.5 and out["codebook_perplexity"].value == pytest.approx(2.0)
    assert out["codebook_usage"].extra["dead_codes"] == 2
    assert [o.name for o in spec.outputs] == ["codebook_usage", "codebook_perplexity"]
