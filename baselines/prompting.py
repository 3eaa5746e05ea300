"""Text prompts for class-conditional generators.

:class:`PromptConditioned` wraps a generator that accepts class labels so
that ``sample(n, prompts=[...])`` works: the prompts are mapped to labels by an
injected function and the wrapped generator is called with ``labels=``.
The mapping is injected (``labels_from_prompts``), so this module needs no
text encoder: the harness passes e.g. a CLIP nearest-caption classifier
(``functools.partial(metrics.clip.prompts_to_labels, captions=..., clip=...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .protocol import Generator

__all__ = ["PromptConditioned"]

LabelsFromPrompts = Callable[[Sequence[str]], Tensor]


class PromptConditioned:
    """A class-conditional ``generator`` that also accepts ``prompts``.

    Args:
        generator: a generator whose ``sample`` accepts ``labels=``.
        labels_from_prompts: maps a sequence of N prompts to N long labels.

    ``accepts`` adds ``"prompts"``; ``last_labels`` holds the labels used by
    the last call. Every other attribute (``info``, ``make_sampler``,
    ``last_nfe`` ...) is the wrapped generator's.
    """

    def __init__(self, generator: Generator, labels_from_prompts: LabelsFromPrompts) -> None:
        if not callable(getattr(generator, "sample", None)):
            raise TypeError(f"PromptConditioned needs a generator with sample(), got {type(generator).__name__}")
        if not callable(labels_from_prompts):
            raise TypeError("PromptConditioned: labels_from_prompts must be callable (prompts -> labels)")
        self.generator = generator
        self.labels_from_prompts = labels_from_prompts
        self.last_labels: Tensor | None = None

    def __getattr__(self, name: str) -> Any:
        if name in ("generator", "labels_from_prompts"):  # not set yet (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.generator, name)

    @property
    def info(self) -> Any:
        return self.generator.info

    @property
    def accepts(self) -> frozenset[str]:
        return frozenset(getattr(self.generator, "accepts", frozenset({"labels"}))) | {"prompts"}

    def sample(self, n: int, *, labels: Tensor | None = None, prompts: Sequence[str] | None = None, **kwargs: Any) -> Tensor:
        """``n`` samples; ``prompts`` (exactly n strings) become labels, never passed through.
        The other keywords (``steps``, ``generator``, ``sampler``) go to the wrapped generator unchanged."""
        if prompts is not None:
            if labels is not None:
                raise ValueError("pass either labels= or prompts=, not both")
            if isinstance(prompts, str):
                raise TypeError("prompts must be a sequence of strings, not a single string")
            if len(prompts) != n:
                raise ValueError(f"got {len(prompts)} prompts for n={n} samples")
            labels = torch.as_tensor(self.labels_from_prompts(list(prompts))).long().reshape(-1)
            if labels.shape[0] != n:
                raise ValueError(f"labels_from_prompts returned {labels.shape[0]} labels for {n} prompts")
        self.last_labels = labels
        return self.generator.sample(n, labels=labels, **kwargs)
