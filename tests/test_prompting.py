"""baselines.prompting.PromptConditioned: prompts become labels through the injected mapping."""

import pytest
import torch

from baselines.prompting import PromptConditioned

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _word_labels(prompts):
    """A constructed mapping: the index of the first digit word in each prompt."""
    return torch.tensor([next(i for i, w in enumerate(WORDS) if w in p) for p in prompts])


class _Stub:
    accepts = frozenset({"labels"})
    last_nfe = 7

    def __init__(self) -> None:
        self.seen = None
        self.kwargs = None

    @property
    def info(self):
        return "stub-info"

    def sample(self, n, *, labels=None, prompts=None, steps=None, generator=None, **kwargs):
        assert prompts is None, "the wrapper must not pass prompts through"
        self.seen, self.kwargs = labels, kwargs
        return torch.zeros(n, 1, 8, 8)


def test_prompts_become_labels_and_everything_else_is_delegated():
    stub = _Stub()
    g = PromptConditioned(stub, _word_labels)
    out = g.sample(3, prompts=["a four", "zero", "the digit eight"], sampler="s")
    assert out.shape == (3, 1, 8, 8)
    assert stub.seen.tolist() == [4, 0, 8] and g.last_labels.tolist() == [4, 0, 8]
    assert stub.kwargs == {"sampler": "s"}
    assert g.info == "stub-info" and g.last_nfe == 7
    assert g.accepts == frozenset({"labels", "prompts"})
    g.sample(2, labels=torch.tensor([1, 2]))
    assert stub.seen.tolist() == [1, 2]


def test_bad_prompts_raise_clear_errors():
    g = PromptConditioned(_Stub(), _word_labels)
    with pytest.raises(ValueError, match="2 prompts for n=3"):
        g.sample(3, prompts=["one", "two"])
    with pytest.raises(ValueError, match="not both"):
        g.sample(1, prompts=["one"], labels=torch.tensor([1]))
    with pytest.raises(TypeError, match="single string"):
        g.sample(3, prompts="one")
    with pytest.raises(ValueError, match="returned 1 labels for 2"):
        PromptConditioned(_Stub(), lambda p: torch.tensor([0])).sample(2, prompts=["one", "two"])
    with pytest.raises(TypeError, match="callable"):
        PromptConditioned(_Stub(), None)
