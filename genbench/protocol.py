"""The Generator protocol and its capability protocols.

Every model family in :mod:`baselines` and every user model plugged into the
harness satisfies :class:`Generator`. Optional abilities are small
``typing.Protocol`` classes checked with ``isinstance`` so that the harness asks
*what a model can do*, never *which family it is*.

Conventions (see DESIGN.md, "Data conventions"):

* Images are float32 NCHW in [0, 1]; an image with K intensity levels stores
  ``x_int / (K - 1)``. 2-D data are float32 (N, 2).
* Likelihoods are natural-log (nats) per example. For images they are of the
  *discrete* data x_int; a continuous model reports the dequantization bound
  ``log p(y) - D log K`` with ``y = (x_int + u) / K`` (a lower bound on log P).
  :attr:`GeneratorInfo.likelihood` names which kind of number it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "DataInfo",
    "TrainData",
    "Budget",
    "TrainReport",
    "Distilled",
    "GeneratorInfo",
    "Generator",
    "Trainable",
    "ExactLikelihood",
    "LikelihoodBound",
    "Conditional",
    "Adaptable",
    "ImportanceBound",
    "Autoencoding",
    "LabeledSampler",
    "HeldOutReference",
    "TrainReference",
    "Sampler",
    "SamplerChoice",
    "ImageConditioned",
    "CycleConsistent",
    "TranslationReference",
    "DiscreteLatent",
    "LatentPath",
    "count_parameters",
    "to_levels",
    "from_levels",
]


@dataclass(frozen=True)
class DataInfo:
    """Metadata of a data set, shared by the harness and the families.

    Attributes:
        name: data set name (``digits``, ``ring8`` ...).
        shape: shape of one example, e.g. ``(1, 8, 8)`` or ``(2,)``; for
            translation tasks the shape of one *target* image.
        kind: ``"image"``, ``"points"``, or for image-to-image translation
            tasks ``"paired"`` / ``"unpaired"`` (see ``bench.data.TranslationDataset``).
        levels: number of intensity levels K for images (17 for sklearn
            digits, 256 for 8-bit images); ``None`` for continuous 2-D data.
        class_names: names of the classes, empty when unlabelled.
        captions: one caption per class (used for text conditioning).
        modes: mode centres of a 2-D mixture, (M, 2), else ``None``.
        mode_std: standard deviation of each mixture component.
        source_shape: translation tasks only: shape of one *source* image
            (e.g. ``(1, 4, 4)`` for 4x4 -> 8x8 super-resolution); else ``None``.
        channel_classes: each image channel carries its own class (stacked
            digits: three digits as channels, 1000 modes); mode counting then
            classifies every channel separately.
    """

    name: str
    shape: tuple[int, ...]
    kind: str
    levels: int | None = None
    class_names: tuple[str, ...] = ()
    captions: tuple[str, ...] = ()
    modes: tuple[tuple[float, float], ...] | None = None
    mode_std: float | None = None
    source_shape: tuple[int, ...] | None = None
    channel_classes: bool = False

    @property
    def dim(self) -> int:
        """Number of dimensions D of one example."""
        d = 1
        for s in self.shape:
            d *= s
        return d

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        """Examples are images (plain image data sets and both translation kinds)."""
        return self.kind in ("image", "paired", "unpaired")

    @property
    def is_translation(self) -> bool:
        """An image-to-image translation task (kind ``paired`` or ``unpaired``)."""
        return self.kind in ("paired", "unpaired")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainData:
    """What ``fit`` receives: training examples, optional labels, metadata.

    Translation tasks (``info.is_translation``): ``x`` is the *target* domain
    and ``source`` the source domain (float32 (N, *info.source_shape) in
    [0, 1]); for ``paired`` tasks row i of ``source`` maps to row i of ``x``,
    for ``unpaired`` tasks the rows are unrelated (and ``y`` is None: labels
    are for evaluation only). ``source`` is None for every other data kind.
    """

    x: Tensor
    info: DataInfo
    y: Tensor | None = None
    source: Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Budget:
    """A training budget. ``steps`` optimizer steps of ``batch_size`` examples.

    ``max_seconds`` (optional) stops training early on wall time; ``lr`` is a
    hint that families may override with their own hyperparameter.
    ``progress``: whether ``fit`` draws a progress bar on stderr (False never;
    None when stderr is a terminal, see :func:`baselines.training.progress_enabled`);
    how a run is shown, not part of its configuration (a suite cannot set it).
    """

    steps: int = 1000
    batch_size: int = 128
    lr: float | None = None
    max_seconds: float | None = None
    progress: bool | None = None


@dataclass
class TrainReport:
    """What ``fit`` returns: losses per named curve, wall time (s), steps."""

    steps: int = 0
    wall_time_s: float = 0.0
    losses: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GeneratorInfo:
    """Identity and cost of a generator.

    Attributes:
        name: registry name (``gaussian``, ``ddpm`` ...).
        family: model family (``gaussian``, ``gan``, ``diffusion`` ...).
        shape: shape of one sample.
        conditioning: ``"none"``, ``"class"`` or ``"text"``.
        n_params: total number of parameters (floats) of the model.
        n_trainable: parameters updated by training (== n_params unless adapted).
        likelihood: kind of likelihood number it reports, if any:
            ``"exact"`` (discrete or 2-D density), ``"dequantized"`` (bound from
            a continuous density on dequantized images), ``"elbo"``.
        iterative: whether ``steps`` changes the sampler (diffusion, flow
            matching, MaskGIT, Langevin); others ignore ``steps``.
    """

    name: str
    family: str
    shape: tuple[int, ...]
    conditioning: str = "none"
    n_params: int = 0
    n_trainable: int = 0
    likelihood: str | None = None
    iterative: bool = False
    default_steps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Generator(Protocol):
    """Anything that draws samples.

    ``sample`` returns float32; images NCHW in [0, 1], 2-D data (N, 2).
    ``steps`` is the number of network evaluations for iterative samplers and
    is ignored by others. ``generator`` makes sampling reproducible.
    """

    @property
    def info(self) -> GeneratorInfo: ...

    def sample(
        self,
        n: int,
        *,
        labels: Tensor | None = None,
        prompts: Sequence[str] | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor: ...


@runtime_checkable
class Trainable(Protocol):
    def fit(self, data: TrainData, budget: Budget) -> TrainReport: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@runtime_checkable
class Distilled(Protocol):
    """A student that learns from a trained teacher (a suite row's ``teacher = "ROW"``): the pipeline loads or
    trains that row's network and hands it over before ``fit``; ``train_s`` is the teacher's own training time (s)."""

    def set_teacher(self, teacher: Any, train_s: float | None = None) -> None: ...

    def teacher_params(self) -> dict[str, Any]:
        """Hyperparameters of a compatible ``ddpm`` teacher (network size, schedule) for tools that make one."""
        ...


@runtime_checkable
class ExactLikelihood(Protocol):
    def log_prob(self, x: Tensor) -> Tensor:
        """Log-likelihood in nats per example (see module docstring)."""
        ...


@runtime_checkable
class LikelihoodBound(Protocol):
    def elbo(self, x: Tensor) -> Tensor:
        """A lower bound on the log-likelihood, nats per example."""
        ...


@runtime_checkable
class Conditional(Protocol):
    @property
    def accepts(self) -> frozenset[str]:
        """Subset of {"labels", "prompts"} accepted by ``sample``."""
        ...


@runtime_checkable
class Adaptable(Protocol):
    def adapt(self, data: TrainData, budget: Budget, *, method: str, **kwargs: Any) -> TrainReport: ...


@runtime_checkable
class ImportanceBound(Protocol):
    def iwae_bound(self, x: Tensor, k: int) -> Tensor:
        """The importance-weighted bound log (1/k) sum_i p(x, z_i)/q(z_i|x), nats per example (Burda et al. 2016)."""
        ...


@runtime_checkable
class Autoencoding(Protocol):
    """Models with a latent space: ``encode`` images to codes, ``decode`` codes to images in [0, 1]."""

    def encode(self, x: Tensor) -> Tensor: ...

    def decode(self, z: Tensor) -> Tensor: ...


@runtime_checkable
class LabeledSampler(Protocol):
    """Reference rows that return real examples with their real labels."""

    def sample_labeled(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]: ...


@runtime_checkable
class HeldOutReference(Protocol):
    """Reference rows (e.g. ``data``) that draw from a held-out split the harness hands them."""

    def use_pool(self, x: Tensor, labels: Tensor | None = None) -> None: ...


@runtime_checkable
class TrainReference(Protocol):
    """Constructed reference rows (metric-sanity: copies of the training set) that also need the train split the harness hands them."""

    def use_train(self, x: Tensor, labels: Tensor | None = None) -> None: ...


@runtime_checkable
class Sampler(Protocol):
    """A sampling algorithm, separate from the network (DDPM, DDIM, Euler, MaskGIT ...).

    ``nfe`` is the number of network evaluations per sample made by the last
    run (classifier-free guidance counts two per step).
    """

    name: str
    nfe: int


@runtime_checkable
class SamplerChoice(Protocol):
    """Iterative generators whose sampling algorithm is chosen per call.

    ``make_sampler(**params)`` builds a :class:`Sampler` from a suite's
    ``sample_params`` (e.g. ``{"sampler": "ddim", "eta": 0.0}``); the
    :class:`Generator`'s ``sample`` takes it as one more keyword,
    ``sample(n, ..., sampler=obj)`` (None: the model's default); ``last_nfe``
    is the network evaluations per sample of the last ``sample`` call.
    """

    last_nfe: int

    def make_sampler(self, **params: Any) -> Sampler: ...


@runtime_checkable
class LatentPath(Protocol):
    """Generators whose sample is a function of a Gaussian latent z ~ N(0, I) (and of noise drawn from
    ``generator``): ``latent_dim`` and ``from_latent(z (N, latent_dim), generator=None)`` -> float32 samples on
    the CPU, images in [0, 1] *before* quantization to the data's levels (paths through the latent space, e.g.
    the perceptual path length, need the continuous output). Equal seeds give equal noise."""

    latent_dim: int

    def from_latent(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor: ...


@runtime_checkable
class DiscreteLatent(Protocol):
    """Models with a discrete latent code (VQ-VAE): ``num_codes`` K and
    ``encode_codes(x)`` mapping images to long codes in [0, K) (any trailing grid shape)."""

    num_codes: int

    def encode_codes(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class ImageConditioned(Protocol):
    """Image-to-image models (pix2pix, CycleGAN): a source batch in, a target-domain batch out (image conventions)."""

    def translate(self, x_source: Tensor, *, generator: torch.Generator | None = None) -> Tensor: ...


@runtime_checkable
class CycleConsistent(Protocol):
    """Unpaired translators with an inverse mapping (CycleGAN): ``translate_back`` maps target-domain images to the source domain."""

    def translate_back(self, x_target: Tensor, *, generator: torch.Generator | None = None) -> Tensor: ...


@runtime_checkable
class TranslationReference(Protocol):
    """Reference rows of paired translation tasks (``target``: the ground truth) that are handed the test pairs to look up."""

    def use_pairs(self, source: Tensor, target: Tensor) -> None: ...


def count_parameters(module: torch.nn.Module) -> tuple[int, int]:
    """(all, trainable) parameter counts of a module."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return total, trainable


def to_levels(x: Tensor, levels: int) -> Tensor:
    """[0, 1] floats -> integer levels 0..K-1 (long)."""
    return torch.round(x.clamp(0, 1) * (levels - 1)).long()


def from_levels(x_int: Tensor, levels: int) -> Tensor:
    """Integer levels 0..K-1 -> [0, 1] float32."""
    return x_int.float() / (levels - 1)


def dequantize(x: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantization: [0, 1] levels -> y = (x_int + u) / K, u ~ U[0, 1).

    ``y`` lies in [0, 1); a continuous density p on y gives the bound
    ``log P(x_int) >= E_u log p(y) - D log K`` (nats).
    """
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    return (to_levels(x, levels).float() + u) / levels


def quantize(y: Tensor, levels: int) -> Tensor:
    """Inverse of :func:`dequantize`: continuous y in [0, 1) -> [0, 1] levels."""
    x_int = torch.clamp(torch.floor(y * levels), 0, levels - 1)
    return x_int / (levels - 1)


def class_labels(who: str, n: int, labels: Tensor | None, num_classes: int, conditional: bool, generator: torch.Generator | None = None) -> Tensor | None:
    """Validated conditioning labels for ``sample``: random ones when ``labels``
    is None, an error naming ``who`` for labels given to an unconditional model,
    a wrong count or a class outside [0, num_classes)."""
    if not conditional:
        if labels is not None:
            raise ValueError(f"{who}: labels given but the model was trained unconditionally (conditional=False)")
        return None
    if labels is None:
        labels = torch.randint(0, num_classes, (n,), generator=generator)
    labels = torch.as_tensor(labels).long().reshape(-1)
    if labels.shape[0] != n:
        raise ValueError(f"{who}: got {labels.shape[0]} labels for {n} samples")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{who}: labels must be in [0, {num_classes - 1}]")
    return labels
