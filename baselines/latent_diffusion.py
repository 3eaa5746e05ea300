"""Latent diffusion (Rombach et al. 2022): diffusion in the latent space of a KL-regularised autoencoder.

Stage 1, the autoencoder: a conv encoder maps an image to the mean and
log-variance of a Gaussian posterior over a latent grid (``latent_channels``
x H/f x W/f, f = 2**``n_down``); the decoder maps a latent to a categorical
distribution over the data's K intensity levels per pixel (as
``baselines/vae.py``). Loss: ``-log p(x | z) + kl_weight KL(q(z|x) || N(0, I))``
(nats per example), with a *small* KL weight (default 1e-3) so that the
latent stays informative and only mildly regularised, as in Rombach et al.

Stage 2, the denoiser: the shared U-Net of ``baselines/nets.py`` trained on
latents ``z ~ q(z | x)`` scaled to unit standard deviation (the scale factor
is ``1 / std`` of the training posterior means, Rombach et al.'s
``scale_factor``). Two objectives:

* ``objective="velocity"`` (default): flow matching (straight path from
  noise at t = 0 to data at t = 1, velocity target ``z_1 - z_0``); sampled
  with the pixel models' ``EulerSampler`` or ``HeunSampler`` from
  ``baselines/samplers.py``, unchanged.
* ``objective="eps"``: epsilon prediction on a cosine noise schedule (T
  steps, Nichol & Dhariwal); sampled with ``DDPMSampler`` or ``DDIMSampler``.
  Its x_0 estimates are clipped to 1.5x the largest scaled training latent,
  as in pixel space: without the clip, errors at the first (noisiest)
  sampling steps blow up and the samples degrade.

The samplers see only a :class:`~baselines.samplers.Denoiser` around the
latent network; this module draws the initial latent noise and decodes the
result (most likely level per pixel by default). Class conditioning with label
dropout gives classifier-free guidance exactly as in pixel space
(``guidance_scale``).

The compression is reported in ``TrainReport.extra`` and :attr:`latent_shape`:
``latent_shape`` (C_z, H/f, W/f), ``downsampling`` f and ``compression``
D_x / D_z (data dimensions per latent dimension).

``ldm-recon`` is the reconstruction floor: decode(encode(x)) of held-out
images through the same autoencoder, the best any sampler in this latent
space can reach.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Family
from .nets import UNet, conv_codec
from .protocol import Budget, DataInfo, GeneratorInfo, TrainData, TrainReport, class_labels, count_parameters, from_levels, to_levels
from .registry import register
from .samplers import Denoiser, Sampler, make_sampler
from .schedules import NoiseSchedule
from .training import EMA, Batch, default_warmup, train

__all__ = ["KLAutoencoder", "LatentDiffusion", "LatentReconstruction"]

_OBJECTIVES = {"eps": "ddim", "velocity": "euler"}  # objective -> default sampler
_DECODERS = ("mode", "sample", "mean")


class KLAutoencoder(nn.Module):
    """Conv encoder -> Gaussian posterior over a latent grid -> conv decoder with K logits per pixel."""

    def __init__(self, info: DataInfo, latent_channels: int, width: int, n_down: int) -> None:
        super().__init__()
        c, h, w = info.shape
        self.shape = (c, h, w)
        self.levels = int(info.levels)
        self.encoder, self.decoder = conv_codec(c, width, n_down, 2 * latent_channels, latent_channels, self.levels)
        self.latent_shape = (int(latent_channels), h // 2**n_down, w // 2**n_down)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images in [0, 1] -> (mean, logvar) of q(z | x), each (N, C_z, h, w)."""
        mu, logvar = self.encoder(x * 2 - 1).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def log_probs(self, z: Tensor) -> Tensor:
        """Latents -> log-probabilities over the K levels, (N, C, H, W, K)."""
        c, h, w = self.shape
        out = self.decoder(z)[:, :, :h, :w]
        return F.log_softmax(out.reshape(-1, c, self.levels, h, w).movedim(2, -1), dim=-1)

    def log_px(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) in nats per example, (N,)."""
        return self.log_probs(z).gather(-1, to_levels(x, self.levels).unsqueeze(-1)).squeeze(-1).flatten(1).sum(1)


def _decode_levels(logp: Tensor, mode: str, generator: torch.Generator | None) -> Tensor:
    """(N, C, H, W, K) log-probabilities -> images in [0, 1]: most likely level, a draw, or the mean."""
    k = logp.shape[-1]
    if mode == "mode":
        return from_levels(logp.argmax(-1), k)
    if mode == "mean":
        return (logp.exp() * (torch.arange(k, device=logp.device, dtype=logp.dtype) / (k - 1))).sum(-1)
    u = torch.rand(logp.shape[:-1], generator=generator).to(logp.device)
    return from_levels((logp.exp().cumsum(-1) < u.unsqueeze(-1)).sum(-1).clamp(max=k - 1), k)


class LatentDiffusion(Family):
    """Latent diffusion: KL autoencoder + latent U-Net denoiser sampled with the shared samplers.

    Args:
        info: image data description (needs ``levels``).
        latent_channels: C_z of the latent grid.
        n_down: downsampling factor f = 2**n_down of the autoencoder.
        ae_width: base channels of the autoencoder.
        kl_weight: weight of the KL term in the autoencoder loss (small).
        ae_fraction: fraction of ``budget.steps`` spent on the autoencoder; the rest trains the denoiser.
        objective: ``"eps"`` (diffusion, DDPM/DDIM samplers) or ``"velocity"`` (flow matching, Euler/Heun).
        T: diffusion steps of the ``eps`` objective's cosine schedule.
        width, mults, blocks: the latent U-Net (``mults`` levels must divide the latent size).
        conditional, p_uncond: class conditioning with label dropout (classifier-free guidance).
        lr, ae_lr: Adam learning rates of the denoiser and of the autoencoder (``Budget.lr`` sets the denoiser's).
        ema_decay: EMA of the denoiser weights (sampling uses the average).
        sampler, steps: default sampler name and steps (``make_sampler``/``sample`` override them).
        decoder: ``"mode"`` (most likely level per pixel), ``"sample"`` or ``"mean"``.
        device: ``"cpu"``, ``"cuda"`` or None (auto).
    """

    name = "latent-diffusion"
    family = "latent-diffusion"

    def __init__(
        self,
        info: DataInfo,
        *,
        latent_channels: int = 2,
        n_down: int = 1,
        ae_width: int = 32,
        kl_weight: float = 1e-3,
        ae_fraction: float = 0.3,
        objective: str = "velocity",
        T: int = 1000,
        width: int = 32,
        mults: Sequence[int] = (1, 2),
        blocks: int = 1,
        conditional: bool = False,
        p_uncond: float = 0.1,
        lr: float = 2e-3,
        ae_lr: float = 2e-3,
        ema_decay: float = 0.999,
        sampler: str | None = None,
        steps: int = 50,
        decoder: str = "mode",
        device: str | None = None,
    ) -> None:
        who = self.name
        if not info.is_image or not info.levels:
            raise ValueError(f"{who}: needs image data with intensity levels (info.levels); {info.name} is {info.kind}")
        if n_down < 0 or info.shape[1] % 2**n_down or info.shape[2] % 2**n_down:
            raise ValueError(f"{who}: image size {tuple(info.shape[1:])} must be divisible by 2**n_down = {2**max(n_down, 0)}")
        if latent_channels < 1:
            raise ValueError(f"{who}: latent_channels must be >= 1, got {latent_channels}")
        if objective not in _OBJECTIVES:
            raise ValueError(f"{who}: objective must be one of {sorted(_OBJECTIVES)}, got {objective!r}")
        if kl_weight < 0:
            raise ValueError(f"{who}: kl_weight must be >= 0, got {kl_weight}")
        if not 0.0 < ae_fraction < 1.0:
            raise ValueError(f"{who}: ae_fraction must be in (0, 1), got {ae_fraction}")
        if conditional and info.num_classes < 1:
            raise ValueError(f"{who}: conditional=True needs a labelled data set; {info.name} has no classes")
        if not 0.0 <= p_uncond < 1.0:
            raise ValueError(f"{who}: p_uncond must be in [0, 1), got {p_uncond}")
        if decoder not in _DECODERS:
            raise ValueError(f"{who}: decoder must be one of {_DECODERS}, got {decoder!r}")
        super().__init__(info, lr=float(lr), device=device)
        self.kl_weight = float(kl_weight)
        self.ae_fraction = float(ae_fraction)
        self.objective = objective
        self.conditional = bool(conditional)
        self.p_uncond = float(p_uncond)
        self.num_classes = info.num_classes if self.conditional else 0
        self.ae_lr = float(ae_lr)
        self.decoder_mode = decoder
        self.ae = KLAutoencoder(info, latent_channels, ae_width, n_down).to(self.device)
        self.latent_shape: tuple[int, int, int] = self.ae.latent_shape
        f = 2 ** (len(tuple(mults)) - 1)
        if self.latent_shape[1] % f or self.latent_shape[2] % f:
            raise ValueError(f"{who}: latent size {self.latent_shape[1:]} must be divisible by 2**(len(mults) - 1) = {f}; use fewer mults")
        t_scale = 1000.0 if objective == "velocity" else 1.0
        self.net = UNet(latent_channels, width=width, mults=tuple(mults), blocks=blocks, num_classes=self.num_classes, t_scale=t_scale).to(self.device)
        self.ema = EMA(self.net, ema_decay)
        if objective == "eps" and int(T) < 2:
            raise ValueError(f"latent-diffusion: the number of diffusion steps T must be >= 2, got {T}")
        self.schedule = NoiseSchedule("cosine", int(T)) if objective == "eps" else None
        self.set_latent_scale(1.0, None)
        self.default_steps = int(steps)
        self._sampler_params: dict[str, Any] = {"sampler": sampler or _OBJECTIVES[objective]}
        self._sampler = self.make_sampler(**self._sampler_params)

    def set_latent_scale(self, value: float, x0_bound: float | None = None) -> None:
        """Latent scale factor (the denoiser sees ``z * scale``, unit std on the training set) and the bound
        on |x_0| predictions of the eps samplers (1.5 x the largest scaled training latent; None = no clipping).

        Clipping matters in latent space as in pixel space: at the first steps of a cosine schedule
        abar is ~0 and the x_0 estimate ``(x - sqrt(1 - abar) eps) / sqrt(abar)`` amplifies every error."""
        self.scale = float(value)
        self.x0_bound = None if x0_bound is None else float(x0_bound)

    # -- protocol ---------------------------------------------------------------------
    def info_fields(self) -> dict[str, Any]:
        """The autoencoder's and the denoiser's parameters together; iterative sampling."""
        (n1, t1), (n2, t2) = count_parameters(self.ae), count_parameters(self.net)
        return {"conditioning": "class" if self.conditional else "none", "n_params": n1 + n2, "n_trainable": t1 + t2, "iterative": True, "default_steps": self.default_steps}

    @property
    def accepts(self) -> frozenset[str]:
        return frozenset({"labels"}) if self.conditional else frozenset()

    @property
    def compression(self) -> dict[str, Any]:
        """Latent shape, downsampling factor f and compression D_x / D_z."""
        c, h, _ = self.latent_shape
        d_z = c * h * self.latent_shape[2]
        return {"latent_shape": list(self.latent_shape), "downsampling": self.data_info.shape[1] // h, "compression": self.data_info.dim / d_z}

    def make_sampler(self, **params: Any) -> Sampler:
        """A sampler from ``baselines/samplers.py``: ``sampler`` = ddpm | ddim | dpm++2m (eps objective) or euler | heun
        (velocity objective), plus its options (``guidance_scale``, ``eta`` ...)."""
        params = dict(params)
        name = params.pop("sampler", None) or _OBJECTIVES[self.objective]
        if "guidance_scale" in params and not self.conditional and float(params["guidance_scale"]) != 1.0:
            raise ValueError(f"{self.name}: guidance_scale needs a model trained with conditional=True")
        kind = "eps" if self.objective == "eps" else "velocity"
        context = {"schedule": self.schedule, "default_steps": self.default_steps}
        return make_sampler(kind, name, params, context, self.name)

    # -- training ---------------------------------------------------------------------
    def _fit_autoencoder(self, x: Tensor, budget: Budget, t0: float) -> TrainReport:
        dim_x = self.data_info.dim

        def ae_loss(batch: Batch, generator: torch.Generator | None) -> dict[str, Tensor]:
            xb = batch.x.to(self.device)
            mu, logvar = self.ae.encode(xb)
            eps = torch.randn(mu.shape, generator=generator).to(self.device)
            z = mu + (0.5 * logvar).exp() * eps
            rec = -self.ae.log_px(xb, z).mean()
            kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()
            return {"loss": (rec + self.kl_weight * kl) / dim_x, "rec_nats": rec, "kl_nats": kl}

        self.ae.train()
        opt = torch.optim.Adam(self.ae.parameters(), lr=self.ae_lr)
        rep = train(
            f"{self.name} autoencoder", budget, x, loss=ae_loss, optimizer=opt, params=list(self.ae.parameters()),
            warmup=default_warmup(budget.steps), clip_grad=1.0, curves=("rec_nats", "kl_nats"), check_finite=True, started=t0,
        )  # fmt: skip
        self.ae.eval()
        return rep

    @torch.no_grad()
    def _posteriors(self, x: Tensor) -> Tensor:
        """(mean, logvar) of q(z | x) for every image, concatenated on channels, on CPU."""
        out = [torch.cat(self.ae.encode(x[i : i + 512].to(self.device)), 1).cpu() for i in range(0, len(x), 512)]
        return torch.cat(out)

    def _fit_denoiser(self, post: Tensor, y: Tensor | None, budget: Budget, lr: float, t0: float) -> TrainReport:
        c = self.latent_shape[0]

        def loss(batch: Batch, generator: torch.Generator | None) -> dict[str, Tensor]:
            mu, logvar = batch.x[:, :c], batch.x[:, c:]
            n = len(mu)
            z0 = (mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator)) * self.scale
            noise = torch.randn(z0.shape, generator=generator)
            yb = None
            if self.conditional:
                drop = torch.rand(n, generator=generator) < self.p_uncond
                yb = torch.where(drop, torch.full_like(batch.y, self.num_classes), batch.y.long()).to(self.device)
            if self.objective == "eps":
                i = torch.randint(0, self.schedule.T, (n,), generator=generator)
                ab = self.schedule.alphas_bar[i].float().view(-1, 1, 1, 1)
                zt = ab.sqrt() * z0 + (1 - ab).sqrt() * noise
                pred = self.net(zt.to(self.device), i.to(self.device), yb) if self.conditional else self.net(zt.to(self.device), i.to(self.device))
                target = noise
            else:
                t = torch.rand(n, generator=generator)
                tt = t.view(-1, 1, 1, 1)
                zt = (1 - tt) * noise + tt * z0
                pred = self.net(zt.to(self.device), t.to(self.device), yb) if self.conditional else self.net(zt.to(self.device), t.to(self.device))
                target = z0 - noise
            mse = F.mse_loss(pred, target.to(self.device))
            return {"loss": mse, "denoiser_mse": mse.detach()}

        self.net.train()
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        rep = train(
            f"{self.name} denoiser", budget, post, y if self.conditional else None, loss=loss, optimizer=opt, params=list(self.net.parameters()),
            warmup=default_warmup(budget.steps), clip_grad=1.0, ema=self.ema, curves=("denoiser_mse",), check_finite=True, started=t0,
        )  # fmt: skip
        self.net.eval()
        return rep

    def fit(self, data: TrainData, budget: Budget) -> TrainReport:
        """Stage 1: the autoencoder for ``ae_fraction`` of ``budget.steps``; stage 2: the latent denoiser for the rest."""
        if budget.steps < 2:
            raise ValueError(f"{self.name}: budget.steps must be >= 2 (autoencoder then denoiser), got {budget.steps}")
        if self.conditional and data.y is None:
            raise ValueError(f"{self.name}: conditional=True needs training labels (TrainData.y)")
        t0 = time.perf_counter()
        x = self.check_x(data.x)
        ae_steps = min(budget.steps - 1, max(1, round(self.ae_fraction * budget.steps)))
        ae_rep = self._fit_autoencoder(x, Budget(steps=ae_steps, batch_size=budget.batch_size, max_seconds=budget.max_seconds), t0)
        post = self._posteriors(x)
        c = self.latent_shape[0]
        scale = 1.0 / float(post[:, :c].std().clamp_min(1e-6))
        self.set_latent_scale(scale, 1.5 * scale * float(post[:, :c].abs().max()))
        self._sampler = self.make_sampler(**self._sampler_params)
        rest = budget.steps - ae_rep.steps
        if budget.max_seconds is not None and time.perf_counter() - t0 > budget.max_seconds:
            rest = 1
        y = data.y.long() if data.y is not None else None
        dn_rep = self._fit_denoiser(post, y, Budget(steps=rest, batch_size=budget.batch_size, max_seconds=budget.max_seconds), budget.lr or self.lr, t0)
        self._fitted = True
        extra = {**self.compression, "scale_factor": self.scale, **self._reconstruction_error(x), "ae_steps": ae_rep.steps, "denoiser_steps": dn_rep.steps}
        return TrainReport(steps=ae_rep.steps + dn_rep.steps, wall_time_s=time.perf_counter() - t0, losses={**ae_rep.losses, **dn_rep.losses}, extra=extra)

    @torch.no_grad()
    def _reconstruction_error(self, x: Tensor) -> dict[str, float]:
        nll, mae = [], []
        for i in range(0, len(x), 512):
            xb = x[i : i + 512].to(self.device)
            mu, _ = self.ae.encode(xb)
            nll.append(-self.ae.log_px(xb, mu))
            mae.append((_decode_levels(self.ae.log_probs(mu), "mode", None) - xb).abs().flatten(1).mean(1))
        nll_t, mae_t = torch.cat(nll), torch.cat(mae)
        return {"recon_nats": float(nll_t.mean()), "recon_nats_per_dim": float(nll_t.mean()) / self.data_info.dim, "recon_mae": float(mae_t.mean())}

    # -- latent space -----------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Images (N, C, H, W) in [0, 1] -> scaled posterior means (the denoiser's latent space), flattened to (N, C_z * h * w), on CPU."""
        self.ae.eval()
        x = self.check_x(x).to(self.device)
        return torch.cat([self.ae.encode(x[i : i + 512])[0] for i in range(0, len(x), 512)]).flatten(1).cpu() * self.scale

    @torch.no_grad()
    def decode(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Scaled latents, (N, C_z * h * w) or (N, C_z, h, w) -> images (N, C, H, W) in [0, 1] (``decoder`` mode), on CPU."""
        self.ae.eval()
        z = z.float().to(self.device).reshape(len(z), *self.latent_shape) / self.scale
        return _decode_levels(self.ae.log_probs(z), self.decoder_mode, generator).float().cpu()

    # -- sampling ---------------------------------------------------------------------
    @torch.no_grad()
    def draw(self, n: int, labels: Tensor | None, steps: int | None, generator: torch.Generator | None, sampler: Any) -> Tensor:
        """n images in [0, 1]: latent noise -> the sampler's ``steps`` updates with the EMA denoiser -> decoder."""
        y = class_labels(self.name, n, labels, self.data_info.num_classes, self.conditional, generator)
        sampler = sampler if sampler is not None else self._sampler
        z = torch.randn((n, *self.latent_shape), generator=generator).to(self.device)
        time_dtype = torch.long if self.objective == "eps" else torch.float32
        # the eps samplers clip their x_0 estimate to the denoiser's x0_clip (samplers.py); without it the first
        # steps of the cosine schedule (abar ~ 0) blow every prediction error up
        denoiser = Denoiser(self.ema.module, self.num_classes, self.device, time_dtype, x0_clip=self.x0_bound)
        z = sampler.run(denoiser, z, steps if steps is not None else self.default_steps, y.to(self.device) if y is not None else None, generator)
        self.last_nfe = sampler.nfe
        return self.decode(z, generator)

    def state_dict(self) -> dict[str, Any]:
        return {"ae": self.ae.state_dict(), "net": self.net.state_dict(), "ema": self.ema.module.state_dict(), "scale": self.scale, "x0_bound": self.x0_bound}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ae.load_state_dict(state["ae"])
        self.net.load_state_dict(state["net"])
        self.ema.module.load_state_dict(state["ema"])
        self.set_latent_scale(float(state["scale"]), state.get("x0_bound"))
        self._sampler = self.make_sampler(**self._sampler_params)
        self.ae.eval()
        self.net.eval()
        self._fitted = True


class LatentReconstruction:
    """Reconstruction floor of latent diffusion: decode(encode(x)) of held-out images through the KL autoencoder.

    A reference row: it trains only the autoencoder (the whole budget) and
    reconstructs held-out images (posterior mean, most likely level per pixel),
    the best any sampler in this latent space could reach. The harness hands
    it the pool (``use_pool``); ``sample`` draws pool images without
    replacement (with replacement beyond the pool size).
    """

    name = "ldm-recon"
    family = "reference"

    def __init__(
        self, info: DataInfo, *, pool: Tensor | None = None, pool_labels: Tensor | None = None, latent_channels: int = 2, n_down: int = 1,
        ae_width: int = 32, kl_weight: float = 1e-3, ae_lr: float = 2e-3, device: str | None = None,
    ) -> None:  # fmt: skip
        self.model = LatentDiffusion(
            info, latent_channels=latent_channels, n_down=n_down, ae_width=ae_width, kl_weight=kl_weight, ae_lr=ae_lr, width=8, mults=(1,), device=device
        )  # fmt: skip
        self.model.name = self.name
        self.data_info = info
        self.pool: Tensor | None = None
        self.pool_labels: Tensor | None = None
        self._fitted = False
        if pool is not None:
            self.use_pool(pool, pool_labels)

    @property
    def info(self) -> GeneratorInfo:
        n, t = count_parameters(self.model.ae)
        return GeneratorInfo(name=self.name, family=self.family, shape=tuple(self.data_info.shape), n_params=n, n_trainable=t)

    def use_pool(self, x: Tensor, labels: Tensor | None = None) -> None:
        """The held-out images (N, C, H, W) in [0, 1] to reconstruct, with optional labels."""
        x = self.model.check_x(x)
        if len(x) == 0:
            raise ValueError(f"{self.name}: the pool of held-out images is empty")
        self.pool, self.pool_labels = x, (labels.clone() if labels is not None else None)

    def fit(self, data: TrainData, budget: Budget) -> TrainReport:
        """Train the autoencoder alone for ``budget.steps``."""
        t0 = time.perf_counter()
        rep = self.model._fit_autoencoder(self.model.check_x(data.x), budget, t0)
        self._fitted = self.model._fitted = True
        rep.extra.update(self.model.compression)
        rep.extra.update(self.model._reconstruction_error(self.model.check_x(data.x)))
        rep.wall_time_s = time.perf_counter() - t0
        return rep

    def sample_labeled(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """n reconstructed pool images and the labels of their originals."""
        if not self._fitted:
            raise RuntimeError(f"{self.name}: call fit() (or load_state_dict) first")
        if self.pool is None:
            raise RuntimeError(f"{self.name}: no held-out pool; call use_pool(x) first")
        m = len(self.pool)
        idx = torch.randperm(m, generator=generator)[:n] if n <= m else torch.randint(0, m, (n,), generator=generator)
        with torch.no_grad():
            mu, _ = self.model.ae.encode(self.pool[idx].to(self.model.device))
            x = _decode_levels(self.model.ae.log_probs(mu), "mode", None).float().cpu()
        return x, (self.pool_labels[idx].clone() if self.pool_labels is not None else None)

    def sample(self, n: int, *, labels=None, prompts=None, steps=None, generator=None) -> Tensor:  # noqa: D102
        return self.sample_labeled(n, generator=generator)[0]

    def state_dict(self) -> dict[str, Any]:
        return {"ae": self.model.ae.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.ae.load_state_dict(state["ae"])
        self.model.ae.eval()
        self._fitted = self.model._fitted = True


register("latent-diffusion", family="latent-diffusion", kinds=("image",), description="Latent diffusion: KL autoencoder (f = 2) + U-Net denoiser, flow matching with the shared Euler/Heun samplers (or eps + DDPM/DDIM); CFG.")(LatentDiffusion)


register("ldm-recon", family="reference", kinds=("image",), description="Reconstruction floor of latent diffusion: decode(encode(held-out images)) through its KL autoencoder.")(LatentReconstruction)
