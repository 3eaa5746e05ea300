"""Inversion: find the latent from which a generator reproduces a given input, by registered methods.

Each method is an object in :data:`INVERSIONS` (a :class:`genbench.registry.Registry`) with ``applies(model)``
and ``invert(model, x, *, generator=None, **options) -> InversionResult``; :func:`invert` looks a method up by
name, checks that it applies (the error names the model and the methods that do) and checks the input. The
methods ask what a model can do (its capabilities), never which family it is:

* ``optimize``: Adam on the latent from ``restarts`` random starts, keeping the best latent per image (pixel MSE).
  For :class:`~genbench.protocol.LatentPath` models whose ``from_latent`` is differentiable (the GANs, the VAE's
  decoder, RealNVP); style-based GANs also in ``space="w"`` (one w for every layer) and ``"w+"`` (one w per layer).
* ``encoder``: a small conv encoder (an MLP for 2-D data) trained on generated pairs (latent, G(latent)) to
  predict the latent; the reconstruction is G(E(x)). Same models and spaces as ``optimize``.
* ``hybrid``: ``optimize`` started from the encoder's output E(x) (one start).
* ``autoencoder``: the model's own ``decode(encode(x))`` (:class:`~genbench.protocol.Autoencoding`: autoencoder,
  VAE with its posterior mean and decoder mean, VQ-VAE through its nearest codes, latent diffusion's autoencoder).
* ``exact``: a normalizing flow's forward map x -> z and its inverse (RealNVP, or any :class:`Bijective` model).
* ``ddim``: for diffusion (epsilon prediction), the deterministic DDIM ODE run backwards from x_0 to the noise
  (Song et al. 2021; the DDIM inversion of Mokady et al. 2023), for flow matching (velocity prediction) the Euler
  ODE run backwards from t = 1 to t = 0; the reconstruction samples from that noise with the same steps.

Conventions. Inputs ``x`` follow the data conventions: images float32 (N, C, H, W) in [0, 1], 2-D data (N, D) in
data units. Reconstructions are in the same space, continuous (not quantized to the K levels), images clipped to
[0, 1]. ``seconds_per_image`` is the wall time of the inversion and the reconstruction divided by N; a method's
one-off set-up (training the encoder) is reported apart, as ``extra["setup_seconds"]``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from genbench.registry import UnknownNameError

from .inversion_base import INVERSIONS, Bijective, InversionError, InversionMethod, InversionResult, _check_x, _model_name
from .inversion_latent import EncoderInversion, HybridInversion, LatentEncoder, OptimizeInversion, latent_spaces, train_encoder
from .inversion_maps import AutoencoderInversion, DDIMInversion, ExactInversion

__all__ = [
    "INVERSIONS",
    "Bijective",
    "InversionError",
    "InversionMethod",
    "InversionResult",
    "LatentEncoder",
    "applicable_methods",
    "invert",
    "latent_spaces",
    "train_encoder",
]

for _method in (OptimizeInversion(), EncoderInversion(), HybridInversion(), AutoencoderInversion(), ExactInversion(), DDIMInversion()):
    INVERSIONS.register(_method.name, _method, applies_to=_method.applies_to)


def applicable_methods(model: Any) -> list[str]:
    """Names of the registered inversion methods that apply to ``model``, sorted."""
    return [name for name, e in INVERSIONS.entries().items() if e.load().applies(model)]


def invert(method: str, model: Any, x: Tensor, *, generator: torch.Generator | None = None, **options: Any) -> InversionResult:
    """Invert the batch ``x`` (N, *shape; images in [0, 1]) of ``model`` with the registered ``method``.

    Raises :class:`genbench.registry.UnknownNameError` (listing the methods) for an unknown name,
    :class:`InversionError` naming the model and the methods that apply when ``method`` does not, ``TypeError``
    for options the method does not take (listing those it takes), ``TypeError`` / ``ValueError`` for an input
    that is not a tensor of the model's shape, is empty, holds NaN/inf or images outside [0, 1].
    """
    try:
        impl = INVERSIONS.load(method)
    except UnknownNameError:
        raise UnknownNameError(f"unknown inversion method {method!r}; valid: {', '.join(INVERSIONS.names())}") from None
    if not impl.applies(model):
        valid = applicable_methods(model)
        family = getattr(getattr(model, "info", None), "family", None)
        raise InversionError(
            f"inversion method {method!r} does not apply to model {_model_name(model)!r}"
            + (f" (family {family})" if family else "")
            + f"; methods that apply: {', '.join(valid) or 'none'}"
        )
    accepted = [p for p in inspect.signature(impl.invert).parameters if p not in ("model", "x", "generator")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"inversion method {method!r} got unknown options {unknown}; valid: {accepted}")
    return impl.invert(model, _check_x(model, x), generator=generator, **options)
