"""Inversion in a generator's latent space (:class:`~genbench.protocol.LatentPath` models): the latent spaces
(z; w and w+ of style-based GANs), the learned encoder, and the methods ``optimize``, ``encoder`` and ``hybrid``
(see :mod:`baselines.inversion`)."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .inversion_base import (
    InversionError,
    InversionMethod,
    InversionResult,
    _device,
    _finish,
    _is_conditional,
    _model_name,
    _per_item_mse,
    _shape,
)
from .nets import ConvEncoder, mlp
from .protocol import LatentPath
from .training import seeded_generator

__all__ = ["EncoderInversion", "HybridInversion", "LatentEncoder", "OptimizeInversion", "latent_spaces", "train_encoder"]


# ----------------------------------------------------------------------------- latent spaces of LatentPath models
@dataclass
class _LatentSpace:
    """A differentiable map from one latent space to data, and where random starts come from.

    ``decode(latent)`` (float32 on the model's device) -> data (images in [0, 1]); the generator's own noise
    (StyleGAN's per-layer noise) is drawn from a fresh generator seeded with ``noise_seed`` on every call, so
    it is the same at every optimization step. ``start(n, generator)``: n latents from the model's prior (z ~
    N(0, I), mapped to w for the w spaces), on the model's device.
    """

    name: str
    decode: Callable[[Tensor, int], Tensor]
    start: Callable[[int, torch.Generator], Tensor]
    latent_shape: tuple[int, ...]


def _unwrapped(model: Any, method: str) -> Callable[..., Tensor] | None:
    """``model.method`` without its ``torch.no_grad`` decorator (the undecorated function, bound), or None."""
    fn = getattr(type(model), method, None)
    if fn is None:
        return None
    return inspect.unwrap(fn).__get__(model, type(model))


def latent_spaces(model: Any) -> tuple[str, ...]:
    """The latent spaces in which ``optimize``, ``encoder`` and ``hybrid`` can search for ``model``: ``("z",)`` for
    an unconditional, non-iterative :class:`~genbench.protocol.LatentPath` model (GANs, VAE, RealNVP), plus
    ``"w"`` and ``"w+"`` for a style-based GAN; ``()`` for other models (iterative samplers such as diffusion
    run without gradients: use ``ddim``)."""
    if not isinstance(model, LatentPath) or _is_conditional(model):
        return ()
    if getattr(getattr(model, "info", None), "iterative", False):
        return ()
    spaces: tuple[str, ...] = ("z",)
    if getattr(model, "has_w_space", False):
        spaces += ("w", "w+")
    return spaces


def _latent_space(model: Any, space: str) -> _LatentSpace:
    valid = latent_spaces(model)
    if space not in valid:
        raise InversionError(f"{_model_name(model)}: latent space {space!r} is not available; valid: {', '.join(valid) or 'none'}")
    device = _device(model)
    z_dim = int(model.latent_dim)

    def random_z(n: int, generator: torch.Generator) -> Tensor:
        return torch.randn(n, z_dim, generator=generator).to(device)

    if space == "z":
        from_latent = _unwrapped(model, "from_latent")
        return _LatentSpace(
            "z", lambda z, seed: from_latent(z, generator=torch.Generator().manual_seed(seed)).to(device), random_z, (z_dim,)
        )
    net = model._style_net()  # the WSpace mixin's style-based sampling network (as stylegan.style_mixing_grid uses it)
    num_ws, w_dim = int(net.num_ws), int(net.w_avg.numel())

    def random_w(n: int, generator: torch.Generator) -> Tensor:
        return model.to_w(random_z(n, generator)).to(device)

    if space == "w":
        from_w = _unwrapped(model, "from_w")
        return _LatentSpace("w", lambda w, seed: from_w(w, generator=torch.Generator().manual_seed(seed)).to(device), random_w, (w_dim,))
    return _LatentSpace(
        "w+",
        lambda ws, seed: net.synthesis(ws, torch.Generator().manual_seed(seed)),
        lambda n, g: random_w(n, g)[:, None].expand(n, num_ws, w_dim).clone(),
        (num_ws, w_dim),
    )


def _target_latent(model: Any, space: _LatentSpace, z: Tensor) -> Tensor:
    """The latent in ``space`` of prior draws z (N, z_dim): z itself, w = mapping(z), or w repeated per layer."""
    if space.name == "z":
        return z
    w = model.to_w(z).to(z.device)
    return w if space.name == "w" else w[:, None].expand(len(w), *space.latent_shape).clone()


# ----------------------------------------------------------------------------- the learned encoder
class LatentEncoder(nn.Module):
    """Data -> a latent of one space of a generator (``space``, ``latent_shape``): a small conv net for images
    (:class:`baselines.nets.ConvEncoder`, two stride-2 convolutions), an MLP for 2-D data. Inputs follow the
    data conventions (images in [0, 1])."""

    def __init__(self, data_shape: tuple[int, ...], space: str, latent_shape: tuple[int, ...], width: int = 32) -> None:
        super().__init__()
        self.space, self.latent_shape = space, tuple(latent_shape)
        d_out = math.prod(self.latent_shape)
        if len(data_shape) == 3:
            self.body: nn.Module = ConvEncoder(data_shape, d_out, width=width, n_down=2)
        else:
            self.body = mlp(math.prod(data_shape), d_out, (4 * width, 4 * width))

    def forward(self, x: Tensor) -> Tensor:
        x = x if x.dim() == 4 else x.flatten(1)
        return self.body(x).reshape(len(x), *self.latent_shape)


def train_encoder(
    model: Any,
    *,
    space: str = "z",
    steps: int = 500,
    batch_size: int = 128,
    lr: float = 1e-3,
    width: int = 32,
    generator: torch.Generator | None = None,
) -> LatentEncoder:
    """Train a :class:`LatentEncoder` on generated pairs: each step draws ``batch_size`` latents z ~ N(0, I) (their
    w, or w per layer, for ``space`` "w" / "w+"), generates x = G(latent) with the model (fresh generator noise per
    step) and takes an Adam step (``lr``) on the mean squared error of E(x) against the latent. Returns the
    encoder in eval mode, on the model's device; randomness from ``generator``."""
    if steps < 1 or batch_size < 1:
        raise InversionError(f"{_model_name(model)}: encoder training needs steps >= 1 and batch_size >= 1, got {steps}, {batch_size}")
    sp = _latent_space(model, space)
    gen = generator if generator is not None else seeded_generator()
    enc = LatentEncoder(_shape(model), sp.name, sp.latent_shape, width).to(_device(model))
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    enc.train()
    for _ in range(int(steps)):
        with torch.no_grad():
            z = torch.randn(batch_size, int(model.latent_dim), generator=gen).to(_device(model))
            target = _target_latent(model, sp, z)
            x = sp.decode(target, int(torch.randint(0, 2**62, (1,), generator=gen)))
        with torch.enable_grad():  # also when the caller runs under no_grad
            loss = nn.functional.mse_loss(enc(x), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()
    return enc.eval()


# ----------------------------------------------------------------------------- the methods


def _optimize_latents(
    sp: _LatentSpace, x: Tensor, starts: Tensor, *, steps: int, lr: float, noise_seed: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Adam on latents ``starts`` (R, N, *latent_shape) towards images x (N, ...), the per-item pixel MSE as the
    loss; every start of every image is optimized independently (Adam is elementwise, so batching them is
    exact). The best iterate of each start is kept (the start itself included), then the best start per image.

    Returns (latent (N, ...), reconstruction (N, ...), loss (N,), loss of the first start's initial point (N,)),
    the latent and reconstruction on the CPU.
    """
    r, n = starts.shape[:2]
    target = x.to(starts.device).repeat(r, *([1] * (x.dim() - 1)))
    lat = starts.reshape(r * n, *starts.shape[2:]).detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([lat], lr=lr)
    best_loss = torch.full((r * n,), math.inf, device=starts.device)
    best_lat = lat.detach().clone()
    best_rec = torch.zeros_like(target)
    start_loss = None
    for it in range(steps + 1):
        with torch.enable_grad():
            rec = sp.decode(lat, noise_seed)
            loss = _per_item_mse(rec, target)
            better = loss.detach() < best_loss
            best_loss = torch.where(better, loss.detach(), best_loss)
            best_lat[better] = lat.detach()[better]
            best_rec[better] = rec.detach()[better]
            if start_loss is None:
                start_loss = loss.detach()[:n].clone()
            if it == steps:
                break
            (grad,) = torch.autograd.grad(loss.sum(), [lat])
        lat.grad = grad
        opt.step()
    pick = best_loss.reshape(r, n).argmin(0)
    idx = pick * n + torch.arange(n, device=pick.device)
    return best_lat[idx].cpu(), best_rec[idx].float().cpu(), best_loss[idx].cpu(), start_loss.cpu()


def _require_differentiable(model: Any, sp: _LatentSpace, generator: torch.Generator) -> None:
    """An :class:`InversionError` unless gradients flow from ``sp.decode``'s output to its latent."""
    lat = sp.start(1, generator).requires_grad_(True)
    with torch.enable_grad():
        out = sp.decode(lat, 0)
    if not out.requires_grad:
        raise InversionError(f"{_model_name(model)}: its latent path ({sp.name}) is not differentiable; use another inversion method")


class _LatentInversion(InversionMethod):
    """What ``optimize``, ``encoder`` and ``hybrid`` share: they apply to models with a latent space."""

    applies_to = "unconditional LatentPath models with a differentiable from_latent (GANs, VAE, RealNVP); StyleGAN also in w and w+"

    def applies(self, model: Any) -> bool:
        return bool(latent_spaces(model))


class OptimizeInversion(_LatentInversion):
    """Optimization of the latent by Adam from several random starts (best start per image)."""

    name = "optimize"

    def invert(
        self,
        model: Any,
        x: Tensor,
        *,
        generator: torch.Generator | None = None,
        space: str = "z",
        steps: int = 200,
        lr: float = 0.05,
        restarts: int = 4,
        batch_size: int = 256,
    ) -> InversionResult:
        """Invert x (N, *shape) by ``steps`` Adam steps (learning rate ``lr``) on the latent in ``space`` ("z", or
        "w" / "w+" for a style-based GAN) from ``restarts`` starts drawn from the model's prior, minimizing the
        per-image pixel MSE; the best iterate of the best start is kept. Images are processed ``batch_size`` at a
        time. Generator noise (StyleGAN) is fixed during the search: one seed, drawn from ``generator``, for every
        step (``extra["noise_seed"]``)."""
        if steps < 0 or restarts < 1 or lr <= 0 or batch_size < 1:
            raise InversionError(
                f"optimize: need steps >= 0, restarts >= 1, lr > 0, batch_size >= 1; got {steps}, {restarts}, {lr}, {batch_size}"
            )
        gen = generator if generator is not None else seeded_generator()
        sp = _latent_space(model, space)
        noise_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        _require_differentiable(model, sp, gen)
        t0 = time.perf_counter()
        parts = []
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size]
            starts = torch.stack([sp.start(len(xb), gen) for _ in range(restarts)])
            parts.append(_optimize_latents(sp, xb, starts, steps=steps, lr=lr, noise_seed=noise_seed))
        lat, rec, loss, start_loss = (torch.cat(p) for p in zip(*parts))
        seconds = (time.perf_counter() - t0) / len(x)
        options = {"space": space, "steps": steps, "lr": lr, "restarts": restarts, "batch_size": batch_size}
        return InversionResult(
            self.name,
            options,
            _finish(model, rec),
            lat,
            sp.name,
            seconds,
            {"loss": loss, "start_loss": start_loss, "noise_seed": noise_seed},
        )


def _encoder_for(
    model: Any, space: str, encoder: LatentEncoder | None, options: dict[str, Any], gen: torch.Generator
) -> tuple[LatentEncoder, float, dict[str, Any]]:
    """The given encoder (checked against ``space``) or a new one trained with ``options`` (steps, batch_size, lr,
    width); the training seconds; and the options to report (``encoder: "given"`` or ``encoder_<option>``)."""
    if encoder is not None:
        if encoder.space != space:
            raise InversionError(f"{_model_name(model)}: the encoder predicts latents in {encoder.space!r}, not {space!r}")
        return encoder, 0.0, {"encoder": "given"}
    t0 = time.perf_counter()
    enc = train_encoder(model, space=space, generator=gen, **options)
    return enc, time.perf_counter() - t0, {f"encoder_{k}": v for k, v in options.items()}


class EncoderInversion(_LatentInversion):
    """A learned encoder trained on generated pairs (latent, G(latent)); the reconstruction is G(E(x))."""

    name = "encoder"

    def invert(
        self,
        model: Any,
        x: Tensor,
        *,
        generator: torch.Generator | None = None,
        space: str = "z",
        encoder: LatentEncoder | None = None,
        encoder_steps: int = 500,
        encoder_batch_size: int = 128,
        encoder_lr: float = 1e-3,
        encoder_width: int = 32,
    ) -> InversionResult:
        """E(x) and G(E(x)) with ``encoder`` (a :class:`LatentEncoder` from :func:`train_encoder` or an earlier
        result's ``extra["encoder"]``), or with one trained here (``encoder_*`` options; the training time is
        ``extra["setup_seconds"]``, not part of ``seconds_per_image``). Generator noise from one seed drawn from
        ``generator`` after the encoder's training."""
        gen = generator if generator is not None else seeded_generator()
        sp = _latent_space(model, space)
        train_opts = {"steps": encoder_steps, "batch_size": encoder_batch_size, "lr": encoder_lr, "width": encoder_width}
        enc, setup, enc_options = _encoder_for(model, space, encoder, train_opts, gen)
        noise_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        t0 = time.perf_counter()
        with torch.no_grad():
            lat = enc(x.to(_device(model)))
            rec = sp.decode(lat, noise_seed)
        seconds = (time.perf_counter() - t0) / len(x)
        loss = _per_item_mse(rec.float().cpu(), x)
        options = {"space": space, **enc_options}
        extra = {"loss": loss, "noise_seed": noise_seed, "setup_seconds": setup, "encoder": enc}
        return InversionResult(self.name, options, _finish(model, rec), lat.cpu(), sp.name, seconds, extra)


class HybridInversion(_LatentInversion):
    """Optimization of the latent started from the learned encoder's output (Zhu et al. 2016's hybrid)."""

    name = "hybrid"

    def invert(
        self,
        model: Any,
        x: Tensor,
        *,
        generator: torch.Generator | None = None,
        space: str = "z",
        steps: int = 200,
        lr: float = 0.05,
        batch_size: int = 256,
        encoder: LatentEncoder | None = None,
        encoder_steps: int = 500,
        encoder_batch_size: int = 128,
        encoder_lr: float = 1e-3,
        encoder_width: int = 32,
    ) -> InversionResult:
        """``optimize`` with one start per image, E(x) (encoder options as for ``encoder``). The best iterate is
        kept and the start is an iterate, so the reconstruction's pixel MSE is never above the encoder's (with the
        same noise); ``extra["start_loss"]`` is the encoder start's loss. ``seconds_per_image`` includes E(x)."""
        if steps < 0 or lr <= 0 or batch_size < 1:
            raise InversionError(f"hybrid: need steps >= 0, lr > 0, batch_size >= 1; got {steps}, {lr}, {batch_size}")
        gen = generator if generator is not None else seeded_generator()
        sp = _latent_space(model, space)
        train_opts = {"steps": encoder_steps, "batch_size": encoder_batch_size, "lr": encoder_lr, "width": encoder_width}
        enc, setup, enc_options = _encoder_for(model, space, encoder, train_opts, gen)
        noise_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        _require_differentiable(model, sp, gen)
        t0 = time.perf_counter()
        parts = []
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size]
            with torch.no_grad():
                start = enc(xb.to(_device(model)))
            parts.append(_optimize_latents(sp, xb, start[None], steps=steps, lr=lr, noise_seed=noise_seed))
        lat, rec, loss, start_loss = (torch.cat(p) for p in zip(*parts))
        seconds = (time.perf_counter() - t0) / len(x)
        options = {"space": space, "steps": steps, "lr": lr, "batch_size": batch_size, **enc_options}
        extra = {"loss": loss, "start_loss": start_loss, "noise_seed": noise_seed, "setup_seconds": setup, "encoder": enc}
        return InversionResult(self.name, options, _finish(model, rec), lat, sp.name, seconds, extra)
