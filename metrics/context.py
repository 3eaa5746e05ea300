"""What a metric sees: one evaluation of one set of samples.

The harness (or ``bench eval``) fills an :class:`EvalContext` with the fake
samples, the real splits and the extractor. Features and logits are computed
lazily, once, and shared by every metric; a ``feature_cache`` callable lets
the harness persist them (keyed by extractor weights hash, N, seed, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from .extractors import Extractor

FeatureCache = Callable[[str, str, Callable[[], Tensor]], Tensor]  # (which, kind, compute) -> tensor


def _no_cache(which: str, kind: str, compute: Callable[[], Tensor]) -> Tensor:
    return compute()


@dataclass
class EvalContext:
    """Inputs of the metric panel.

    Attributes:
        data_info: ``baselines.protocol.DataInfo``-like metadata (shape, kind, levels, modes...).
        fake: generated samples (float32, images in [0, 1] or (N, 2)).
        real: the *reference* real set of the distribution metrics (FID, KID,
            PRDC, IS of data): the train split by default (DESIGN: the ``data``
            row is the test split scored against the train-split reference).
        train: the train split (memorization: nearest train neighbours); may be None.
        test: the held-out test split (likelihood; memorization's baseline
            distance of unseen real data to the train set); may be None.
        real_labels, train_labels, test_labels: class labels of those sets, if any.
        fake_labels: labels the samples were conditioned on, if any.
        extractor: feature extractor for this data set.
        source, truth, source_labels: translation tasks only (else None): the
            source images ``fake`` was translated from (row i of ``fake`` is
            the output for row i of ``source``), the true target of each
            source when the task knows it, and the sources' class labels.
        generator: the generator object (for likelihood, latency), or None.
        steps: sampler steps used for ``fake`` (iterative samplers), or None.
        settings: per-suite metric settings (k, subsets, bootstrap, batch...;
            ``feature_batch``: samples per extractor forward pass).
        seed: seed of the job (for subsets and bootstrap).
    """

    data_info: Any
    fake: Tensor
    real: Tensor
    extractor: Extractor
    train: Tensor | None = None
    test: Tensor | None = None
    real_labels: Tensor | None = None
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    fake_labels: Tensor | None = None
    source: Tensor | None = None
    truth: Tensor | None = None
    source_labels: Tensor | None = None
    generator: Any = None
    steps: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    feature_cache: FeatureCache = _no_cache
    _memo: dict[tuple[str, str], Tensor] = field(default_factory=dict, repr=False)

    def _get(self, which: str, kind: str) -> Tensor:
        key = (which, kind)
        if key not in self._memo:
            x = {"fake": self.fake, "real": self.real, "train": self.train, "test": self.test}[which]
            if x is None:
                raise ValueError(f"no {which} samples in this evaluation")
            fn = self.extractor.features if kind == "features" else self.extractor.logits
            bs = self.settings.get("feature_batch")  # samples per extractor forward pass (bench eval --batch-size)
            kw = {"batch_size": int(bs)} if bs else {}
            self._memo[key] = self.feature_cache(which, kind, lambda: fn(x, **kw))
        return self._memo[key]

    def features(self, which: str = "fake") -> Tensor:
        """Extractor features of ``fake``, ``real``, ``train`` or ``test`` (computed once)."""
        return self._get(which, "features")

    def logits(self, which: str = "fake") -> Tensor:
        """Classifier logits of ``fake``, ``real``, ``train`` or ``test`` (computed once)."""
        return self._get(which, "logits")

    def setting(self, name: str, default: Any) -> Any:
        return self.settings.get(name, default)

    @property
    def n_fake(self) -> int:
        return int(self.fake.shape[0])

    @property
    def n_real(self) -> int:
        return int(self.real.shape[0])
