"""Inversion through a model's own deterministic maps: ``autoencoder`` (decode(encode(x))), ``exact`` (a
normalizing flow's bijection) and ``ddim`` (the deterministic sampling ODE run backwards); see
:mod:`baselines.inversion`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .denoising import DenoisingModel
from .flows import RealNVP
from .inversion_base import (
    Bijective,
    InversionError,
    InversionMethod,
    InversionResult,
    _device,
    _finish,
    _is_image,
    _model_name,
    _per_item_mse,
)
from .protocol import Autoencoding, class_labels, quantize, to_levels
from .protocol import dequantize as uniform_dequantize
from .samplers import SPACINGS
from .training import seeded_generator

__all__ = ["AutoencoderInversion", "DDIMInversion", "ExactInversion"]


class AutoencoderInversion(InversionMethod):
    """The model's own encoder and decoder: decode(encode(x))."""

    name = "autoencoder"
    applies_to = "Autoencoding models (autoencoder, VAE: posterior mean and decoder mean, VQ-VAE, latent diffusion's autoencoder)"

    def applies(self, model: Any) -> bool:
        return isinstance(model, Autoencoding)

    def invert(self, model: Any, x: Tensor, *, generator: torch.Generator | None = None) -> InversionResult:
        """``code = encode(x)`` (a VAE's ``(mu, logvar)``: its mean mu) and ``decode(code)``; ``generator`` unused."""
        t0 = time.perf_counter()
        with torch.no_grad():
            code = model.encode(x)
            if isinstance(code, tuple):
                code = code[0]
            rec = _finish(model, model.decode(code))
        seconds = (time.perf_counter() - t0) / len(x)
        return InversionResult(self.name, {}, rec, code.detach().cpu(), "code", seconds, {"loss": _per_item_mse(rec, x)})


def _flow_maps(model: Any) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]] | None:
    """(forward x -> z, inverse z -> x) of a :class:`Bijective` model or of RealNVP's flow network (the logit
    preprocessing, the per-dimension affine and the couplings, all invertible), else None."""
    if isinstance(model, Bijective):
        return model.to_base, model.from_base
    if isinstance(model, RealNVP):
        net = model.net
        return (lambda y: net.to_base(y)[0]), net.invert
    return None


class ExactInversion(InversionMethod):
    """A normalizing flow's exact inverse: z = f(x), reconstruction f^-1(z)."""

    name = "exact"
    applies_to = "normalizing flows (RealNVP) and Bijective models"

    def applies(self, model: Any) -> bool:
        return _flow_maps(model) is not None

    def invert(self, model: Any, x: Tensor, *, generator: torch.Generator | None = None, dequantize: str = "none") -> InversionResult:
        """z = f(y) and f^-1(z) in float32, the flow in eval mode (no dropout).

        ``dequantize`` says which continuous point y of the input is mapped (images; 2-D data take "none"):

        * ``"none"`` (default): y = x itself. The flow's logit preprocessing ``logit(a + (1 - 2a) y)`` is finite
          on all of [0, 1], so the round trip f^-1(f(x)) returns x to float precision (2e-7 measured on digits; its maximum
          is ``extra["roundtrip_max_abs"]``); the reconstruction is that continuous f^-1(z), clipped to [0, 1].
        * ``"center"``: y = (x_int + 1/2) / K, the centre of x's dequantization bin (where the flow's training
          data lived); ``"uniform"``: y = (x_int + u) / K with u ~ U[0, 1) from ``generator``, the training
          dequantization. The reconstruction is f^-1(z) quantized back to the K levels, which is x exactly.
        """
        maps = _flow_maps(model)
        if dequantize not in ("none", "center", "uniform"):
            raise InversionError(f"exact: dequantize must be 'none', 'center' or 'uniform', got {dequantize!r}")
        levels = getattr(getattr(model, "data_info", None), "levels", None)
        if dequantize != "none" and (not _is_image(model) or not levels):
            raise InversionError(f"exact: dequantize={dequantize!r} needs image data with K levels; {_model_name(model)} has none")
        forward, inverse = maps
        gen = generator if generator is not None else seeded_generator()
        net = getattr(model, "net", None)
        was_training = bool(getattr(net, "training", False))
        if isinstance(net, nn.Module):
            net.eval()
        t0 = time.perf_counter()
        try:
            if dequantize == "center":
                y = (to_levels(x, levels).float() + 0.5) / levels
            elif dequantize == "uniform":
                y = uniform_dequantize(x, levels, gen)
            else:
                y = x
            with torch.no_grad():
                z = forward(y.to(_device(model)))
                y_back = inverse(z).float().cpu().reshape(y.shape)
        finally:
            if isinstance(net, nn.Module):
                net.train(was_training)
        rec = y_back if dequantize == "none" else quantize(y_back.clamp(0, 1 - 1e-6), levels)
        seconds = (time.perf_counter() - t0) / len(x)
        extra = {"roundtrip_max_abs": float((y_back - y).abs().max())}
        return InversionResult(self.name, {"dequantize": dequantize}, _finish(model, rec), z.cpu(), "base", seconds, extra)


# ----------------------------------------------------------------------------- DDIM / ODE inversion
class DDIMInversion(InversionMethod):
    """The deterministic sampler run backwards: DDIM for diffusion, Euler for flow matching; then sampled forward."""

    name = "ddim"
    applies_to = "denoising models: diffusion (epsilon prediction, DDIM) and flow matching (velocity, Euler)"

    def applies(self, model: Any) -> bool:
        return isinstance(model, DenoisingModel) and model.prediction in ("eps", "velocity")

    def invert(
        self,
        model: Any,
        x: Tensor,
        *,
        generator: torch.Generator | None = None,
        steps: int = 100,
        spacing: str = "leading",
        fixed_point_iters: int = 20,
        fixed_point_tol: float = 1e-5,
        clip_denoised: bool = False,
        labels: Tensor | None = None,
        batch_size: int = 512,
    ) -> InversionResult:
        """Invert x by running the deterministic ODE sampler backwards in ``steps`` steps, then reconstruct by
        sampling forward from the noise found with the same sampler and steps.

        Each backward step from the less noisy state x_s to x_t solves the step's own equation, so that the
        forward sampler step from x_t returns x_s. For DDIM (eta = 0): ``x_s = sqrt(abar_s) x0(x_t) +
        sqrt(1 - abar_s) eps(x_t)`` with ``x0(x_t) = (x_t - sqrt(1 - abar_t) eps(x_t)) / sqrt(abar_t)``; for
        Euler: ``x_s = x_t + dt v(x_t, t)``. The first guess uses the network at the known state x_s (Mokady et
        al.'s DDIM inversion, ``fixed_point_iters=0``); up to ``fixed_point_iters`` fixed-point iterations then
        re-evaluate it at the current x_t (the implicit step of Pan et al. 2023), stopping early once x_t moves
        by less than ``fixed_point_tol`` (max abs, internal units). Each iteration is one network evaluation.

        Args:
            steps: sampler steps S (1 <= S <= T for diffusion).
            spacing: diffusion timesteps (:func:`baselines.samplers.sampler_timesteps`). Default ``"leading"``
                (T - T/S down to 0): ``"trailing"`` starts at index T - 1, the zero-SNR end of the cosine schedule
                (abar about 2e-9), where x0 = (x - sqrt(1 - abar) eps) / sqrt(abar) divides the network's error by
                about 5e-5 and the step into it cannot be inverted (the round trip's error was measured at 6e3).
            clip_denoised: clip the x_0 estimate while sampling back (the sampler's default is to clip; the
                default here is not to: clipping is not invertible, and an inversion's reconstruction would then
                differ from its input wherever a clipped step was taken).
            labels: class labels (N,) of a conditional model (its conditional network, guidance scale 1).

        Data enter the model's space as the samplers see it: images as 2x - 1 in [-1, 1] (not rounded to the K
        levels, so continuous inputs are inverted as given), 2-D data standardized. The latent is the initial
        noise (N, *shape); the reconstruction is mapped back (images clipped to [0, 1], not quantized).
        ``extra``: ``nfe_inversion`` and ``nfe_reconstruction`` (network evaluations per image), ``loss``.
        """
        if fixed_point_iters < 0 or fixed_point_tol < 0 or batch_size < 1:
            raise InversionError(
                f"ddim: need fixed_point_iters >= 0, fixed_point_tol >= 0, batch_size >= 1; got {fixed_point_iters}, {fixed_point_tol}, {batch_size}"
            )
        eps_model = model.prediction == "eps"
        if eps_model:
            if spacing not in SPACINGS:
                raise InversionError(f"ddim: unknown spacing {spacing!r}; valid: {', '.join(SPACINGS)}")
            sampler = model.make_sampler("ddim", eta=0.0, clip_denoised=bool(clip_denoised), spacing=spacing)
        else:
            sampler = model.make_sampler("euler")
        ts = sampler.timesteps(int(steps))  # validates steps
        if model.conditional and labels is None:
            raise InversionError(f"ddim: {_model_name(model)} is class-conditional; pass labels (N,)")
        if labels is not None and not model.conditional:
            raise InversionError(f"ddim: {_model_name(model)} is unconditional; it takes no labels")
        y_all = class_labels(_model_name(model), len(x), labels, model.num_classes, True) if model.conditional else None
        den = model.denoiser()  # the EMA network, as the samplers use it
        den.net.eval()
        t0 = time.perf_counter()
        noises, recs, nfe_inv = [], [], 0
        for i in range(0, len(x), batch_size):
            xb = self._to_internal(model, x[i : i + batch_size]).to(_device(model))
            yb = None if y_all is None else y_all[i : i + batch_size]
            den.reset()
            with torch.no_grad():
                z = self._backward(den, sampler, ts, xb, yb, eps_model, fixed_point_iters, fixed_point_tol)
            nfe_inv = max(nfe_inv, den.evals)
            noises.append(z.cpu())
            recs.append(model.sample_internal(len(xb), labels=yb, steps=int(steps), noise=z.cpu(), sampler=sampler).float().cpu())
        seconds = (time.perf_counter() - t0) / len(x)
        rec = _finish(model, self._from_internal(model, torch.cat(recs)))
        options = {
            "steps": int(steps), "spacing": spacing if eps_model else None, "sampler": sampler.name, "fixed_point_iters": fixed_point_iters,
            "fixed_point_tol": fixed_point_tol, "clip_denoised": bool(clip_denoised) if eps_model else False, "batch_size": batch_size,
        }  # fmt: skip
        extra = {"nfe_inversion": nfe_inv, "nfe_reconstruction": sampler.nfe, "loss": _per_item_mse(rec, x)}
        return InversionResult(self.name, options, rec, torch.cat(noises), "noise", seconds, extra)

    @staticmethod
    def _to_internal(model: DenoisingModel, x: Tensor) -> Tensor:
        return x * 2 - 1 if model.data_info.is_image else model.to_internal(x)

    @staticmethod
    def _from_internal(model: DenoisingModel, z: Tensor) -> Tensor:
        return (z + 1) / 2 if model.data_info.is_image else z * model.scale + model.shift

    @staticmethod
    def _backward(den: Any, sampler: Any, ts: list, x: Tensor, y: Tensor | None, eps_model: bool, iters: int, tol: float) -> Tensor:
        """The states the forward sampler visits, solved for from the last (the data x, internal units) back to
        the first (the initial noise). A forward step maps x_t to ``x_s = (x_t - c * f(x_t)) / a`` with f the
        network's output at time t, so its inverse is ``x_t = a * x_s + c * f(x_t)``: DDIM (eta = 0)
        ``a = sqrt(abar_t / abar_s)``, ``c = sqrt(1 - abar_t) - sqrt(abar_t (1 - abar_s) / abar_s)``; Euler
        ``a = 1``, ``c = -dt``. Solved by fixed-point iteration from f evaluated at x_s."""
        gs = getattr(sampler, "guidance_scale", 1.0)
        for k in range(len(ts) - 1, -1, -1):
            t = ts[k]
            if eps_model:
                ab_t = sampler.schedule.abar(t)
                ab_s = sampler.schedule.abar(ts[k + 1] if k + 1 < len(ts) else -1)  # index -1: clean data, abar = 1
                a, c = math.sqrt(ab_t / ab_s), math.sqrt(1 - ab_t) - math.sqrt(ab_t * (1 - ab_s) / ab_s)
            else:
                a, c = 1.0, -sampler.dt
            xt = a * x + c * den(x, t, y, gs)
            for _ in range(iters):
                nxt = a * x + c * den(xt, t, y, gs)
                moved = float((nxt - xt).abs().max())
                xt = nxt
                if moved < tol:
                    break
            x = xt
        return x
