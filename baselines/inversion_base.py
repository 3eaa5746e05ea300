"""The pieces every inversion method shares: the result, the input checks, the method base class and the
registry :data:`INVERSIONS` (see :mod:`baselines.inversion` for the methods and the entry point)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

from genbench.registry import Registry

__all__ = ["INVERSIONS", "Bijective", "InversionError", "InversionMethod", "InversionResult"]


class InversionError(ValueError):
    """An inversion method that does not apply to a model, or options it cannot use."""


@runtime_checkable
class Bijective(Protocol):
    """Models with an exact inverse (a capability of this module; RealNVP is adapted to it): ``to_base(x)`` maps
    continuous inputs (data conventions) to base points z (N, *shape) and ``from_base(z)`` maps them back."""

    def to_base(self, x: Tensor) -> Tensor: ...

    def from_base(self, z: Tensor) -> Tensor: ...


@dataclass
class InversionResult:
    """What an inversion returns.

    Attributes:
        method: the registered method name.
        options: the options it ran with (defaults filled in).
        reconstruction: float32 (N, *shape) on the CPU: images in [0, 1] (continuous, clipped), 2-D data in data units.
        latent: the latent found, on the CPU; its meaning is ``space``: ``"z"`` (N, latent_dim), ``"w"``
            (N, w_dim), ``"w+"`` (N, num_ws, w_dim), ``"code"`` (the model's ``encode`` output), ``"base"``
            (the flow's base point, N x shape), ``"noise"`` (the sampler's initial noise, N x shape, the model's
            internal units: about N(0, I)).
        space: which latent space (see ``latent``).
        seconds_per_image: wall time of inversion + reconstruction / N, seconds.
        extra: method-specific numbers: ``loss`` (per-image pixel MSE of the reconstruction, in the data's units
            squared) for the optimizing methods, ``start_loss``, ``setup_seconds``, ``encoder``, NFE counts ...
    """

    method: str
    options: dict[str, Any]
    reconstruction: Tensor
    latent: Tensor
    space: str
    seconds_per_image: float
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.reconstruction.shape[0])


# ----------------------------------------------------------------------------- helpers
def _model_name(model: Any) -> str:
    info = getattr(model, "info", None)
    return str(getattr(info, "name", None) or getattr(model, "name", None) or type(model).__name__)


def _shape(model: Any) -> tuple[int, ...]:
    info = getattr(model, "info", None)
    shape = getattr(info, "shape", None)
    if shape is None:
        raise InversionError(f"{_model_name(model)}: the model has no info.shape; inversion needs the shape of one example")
    return tuple(int(s) for s in shape)


def _is_image(model: Any) -> bool:
    return len(_shape(model)) == 3


def _device(model: Any) -> torch.device:
    return torch.device(getattr(model, "device", "cpu"))


def _check_x(model: Any, x: Any) -> Tensor:
    """``x`` as float32 (N, *shape) on the CPU: a tensor of at least one example of the model's shape, finite,
    images in [0, 1]; otherwise a ``TypeError`` / ``ValueError`` naming the model."""
    who = _model_name(model)
    shape = _shape(model)
    if not isinstance(x, Tensor):
        raise TypeError(f"inversion of {who}: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or tuple(x.shape[1:]) != shape:
        raise ValueError(f"inversion of {who}: x has shape {tuple(x.shape)}; expected (N, {', '.join(map(str, shape))})")
    if len(x) == 0:
        raise ValueError(f"inversion of {who}: x is empty (N = 0)")
    x = x.detach().float().cpu()
    if not torch.isfinite(x).all():
        raise ValueError(f"inversion of {who}: x contains NaN/inf values")
    if len(shape) == 3 and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"inversion of {who}: x must be images in [0, 1]; got values in [{float(x.min()):.3g}, {float(x.max()):.3g}]")
    return x


def _is_conditional(model: Any) -> bool:
    return bool(getattr(model, "accepts", frozenset()))


def _per_item_mse(a: Tensor, b: Tensor) -> Tensor:
    return ((a - b) ** 2).flatten(1).mean(1)


def _finish(model: Any, rec: Tensor) -> Tensor:
    """Reconstructions as the result holds them: float32 on the CPU, images clipped to [0, 1]."""
    rec = rec.detach().float().cpu().reshape(len(rec), *_shape(model))
    return rec.clamp(0, 1) if _is_image(model) else rec


class InversionMethod:
    """Base class of the registered methods: ``applies(model)``, ``invert(model, x, *, generator, **options)``
    and a one-line ``applies_to`` for listings. Use :func:`invert`, which checks applicability and the input."""

    name: ClassVar[str] = ""
    applies_to: ClassVar[str] = ""

    def applies(self, model: Any) -> bool:
        raise NotImplementedError

    def invert(self, model: Any, x: Tensor, *, generator: torch.Generator | None = None, **options: Any) -> InversionResult:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


INVERSIONS: Registry[InversionMethod] = Registry("inversion method", meta={"applies_to": str})
"""Name -> inversion method object (``applies``, ``invert``), with ``applies_to``: which models, in words;
filled by :mod:`baselines.inversion`."""
