"""Generative adversarial networks: non-saturating GAN, WGAN-GP, PacGAN and a
class-conditional GAN, in one module.

* ``gan``: the non-saturating GAN (Goodfellow et al. 2014). The discriminator
  minimises the binary cross-entropy of real vs fake; the generator minimises
  ``-log D(G(z))`` (the non-saturating loss) instead of ``log(1 - D(G(z)))``.
  Recipe of DCGAN (Radford et al. 2016): BatchNorm in the
  generator, LeakyReLU(0.2) in the discriminator, Adam lr 2e-4, betas (0.5, 0.999).
* ``wgan-gp``: Wasserstein GAN with gradient penalty (Gulrajani et al. 2017):
  critic loss ``E f(fake) - E f(real) + 10 E (||grad f(x_hat)|| - 1)^2`` on
  random interpolates, 5 critic steps per generator step, no BatchNorm in the
  critic, Adam lr 1e-4, betas (0.5, 0.9).
* ``pacgan``: the non-saturating GAN whose discriminator judges ``pack`` = m
  samples at once (Lin et al. 2018): m real (or m fake) samples are
  concatenated along the feature / channel axis, so its first layer takes m
  times the features or channels. A remedy for mode collapse.
* ``cgan``: class-conditional non-saturating GAN. The label enters both
  networks at their input, as in Mirza & Osindero (2014): its one-hot code is
  concatenated to ``z`` and, as constant planes (one-hot features for
  points), to the discriminator's input. On top, conditional BatchNorm in the
  generator (per-class scale and shift) and a projection term in the
  discriminator (Miyato & Koyama 2018): ``D(x, y) = w . phi(x, y) + embed(y) . phi(x, y)``.

The four are one model, :class:`GAN`, configured by loss kind (``ns`` or
``wgan-gp``), packing degree, ``conditional`` and ``ema``; each registered
name is a preset of it (:data:`VARIANTS`), so a suite may also
combine them (e.g. ``gan`` with ``loss = "wgan-gp"``).

Networks (:mod:`baselines.gan_nets`): MLPs for 2-D data, DCGAN-style conv
nets for images, BatchNorm in the discriminator's inner layers except in the
WGAN-GP critic. ``arch="style"`` swaps in the style-based generator of
:mod:`baselines.stylegan_nets` (the ``stylegan`` preset, :mod:`baselines.stylegan`),
trained by the same loop, with R1 on the discriminator (``r1_gamma``).

2-D data are standardized per coordinate (train mean and std, kept in the
state) before the networks see them; samples are mapped back.

Images. The discriminator sees uniformly dequantized real images
``y = (x_int + u) / K`` in [0, 1); the generator's sigmoid output is a
continuous y in (0, 1) and ``sample`` quantizes it back to the K levels
(``floor(y K) / (K - 1)``), so samples are exactly on the data's levels.

Training (``fit``): ``budget.steps`` is the number of *generator* updates; each
is preceded by ``n_critic`` discriminator updates (1 for the non-saturating
GANs, 5 for WGAN-GP), each on a fresh real minibatch of ``budget.batch_size``
samples and as many fresh fakes. With packing, as in the PacGAN paper's code,
a step uses ``batch_size`` packs, i.e. ``m * batch_size`` real and as many
fake samples (so a step costs more as m grows).
Losses per generator step are recorded as ``d_loss`` (last critic step) and
``g_loss``, averaged into at most 200 points. The loop itself is
:func:`baselines.training.train` with a two-optimizer step.

EMA: with ``ema`` set (e.g. 0.999) an exponential moving average of the
generator weights is kept (decay ``min(ema, (1 + t) / (10 + t))`` at update t,
so early weights do not dominate short runs; BatchNorm statistics are copied)
and ``sample`` uses it. ``ema=None`` samples the raw generator. After
training, the sampling generator's BatchNorm statistics are re-estimated at
its final weights (32 noise batches), and ``sample`` runs it in eval mode.

Determinism: every random draw in ``fit`` comes from a CPU generator seeded from
the global torch RNG (``torch.manual_seed`` fixes it, on CPU); ``sample`` draws its
noise (and random labels) on the CPU from its ``generator`` argument.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Sampling, check_images
from .gan_nets import (
    ConvDiscriminator,
    ConvGenerator,
    MLPDiscriminator,
    MLPGenerator,
    gradient_penalty,
    pack_samples,
    r1_penalty,
    recalibrate_batchnorm,
)
from .nets import pick_device
from .protocol import Budget, DataInfo, GeneratorInfo, TrainData, TrainReport, class_labels, count_parameters, dequantize, quantize
from .registry import preset
from .samplers import OnePassSampler
from .stylegan_nets import StyleGenerator, WSpace
from .training import EMA, Batch, seeded_generator, train

__all__ = ["GAN", "VARIANTS", "gradient_penalty", "pack_samples"]

_SAMPLE_CHUNK = 4096


# ============================================================================ the model
class GAN(Sampling, WSpace):
    """A GAN on images or 2-D points; see the module docstring for the variants.

    Args:
        info: the data set's metadata.
        name: registry name reported in ``info``.
        loss: ``"ns"`` (non-saturating) or ``"wgan-gp"``.
        pack: PacGAN packing degree m (1 = no packing).
        min_pack: the smallest ``pack`` the variant allows (PacGAN, defined by packing: 2).
        conditional: class-conditional (one-hot label concatenated to both
            networks' inputs, conditional BatchNorm generator, projection
            discriminator; needs a labelled data set; no packing).
        z_dim: latent dimension (default 2 for points, as in the PacGAN
            protocol, and 64 for images).
        hidden: MLP hidden widths for points (generator and discriminator).
        width: base channel count of the conv nets for images.
        lr: Adam learning rate of both nets (default 2e-4 for ``ns``, 1e-4 for
            ``wgan-gp``; ``budget.lr`` is used when this is None and it is set).
        betas: Adam betas.
        n_critic: discriminator updates per generator update.
        gp_weight: gradient penalty weight (``wgan-gp`` only).
        ema: EMA decay of the generator weights used for sampling, or None.
        device: ``"cpu"``, ``"cuda"`` or None (auto).
    """

    family = "gan"
    sample_needs_fit = False  # an untrained generator may be sampled (its initial weights)
    BN_BATCHES = 32  # noise batches used to re-estimate BatchNorm statistics after fit

    def __init__(
        self,
        info: DataInfo,
        *,
        name: str = "gan",
        loss: str = "ns",
        pack: int = 1,
        min_pack: int = 1,
        conditional: bool = False,
        z_dim: int | None = None,
        hidden: Sequence[int] = (128, 128, 128),
        width: int = 32,
        lr: float | None = None,
        betas: Sequence[float] = (0.5, 0.999),
        n_critic: int = 1,
        gp_weight: float = 10.0,
        ema: float | None = None,
        arch: str = "dcgan",
        r1_gamma: float = 0.0,
        style_mixing: float = 0.9,
        mapping_layers: int = 4,
        device: str | None = None,
    ) -> None:
        if info.kind not in ("image", "points"):
            raise ValueError(f"{name}: unsupported data kind {info.kind!r} (expected 'image' or 'points')")
        if loss not in ("ns", "wgan-gp"):
            raise ValueError(f"{name}: loss must be 'ns' or 'wgan-gp', got {loss!r}")
        if not isinstance(pack, int) or isinstance(pack, bool) or not min_pack <= pack <= 8:
            raise ValueError(f"{name}: pack must be an integer in [{min_pack}, 8] (the PacGAN paper uses 2, 3, 4), got {pack!r}")
        if conditional and info.num_classes < 2:
            raise ValueError(f"{name}: class conditioning needs a data set with class names; {info.name} has {info.num_classes}")
        if conditional and pack != 1:
            raise ValueError(f"{name}: a conditional GAN does not support packing (pack={pack})")
        if n_critic < 1:
            raise ValueError(f"{name}: n_critic must be >= 1, got {n_critic}")
        if ema is not None and not 0.0 <= float(ema) < 1.0:
            raise ValueError(f"{name}: ema must be in [0, 1) or None, got {ema}")
        if info.kind == "image" and len(info.shape) != 3:
            raise ValueError(f"{name}: images must have shape (C, H, W), got {info.shape}")
        if len(tuple(betas)) != 2:
            raise ValueError(f"{name}: betas must have two values, got {betas}")
        if arch not in ("dcgan", "style"):
            raise ValueError(f"{name}: arch must be 'dcgan' or 'style', got {arch!r}")
        if arch == "style" and (info.kind != "image" or conditional):
            raise ValueError(f"{name}: the style-based generator is for unconditional images")
        if r1_gamma < 0:
            raise ValueError(f"{name}: r1_gamma must be >= 0, got {r1_gamma}")
        self.data_info = info
        self.name = name
        self.loss = loss
        self.pack = pack
        self.num_classes = info.num_classes if conditional else 0
        self.z_dim = int(z_dim if z_dim is not None else (2 if info.kind == "points" else 64))
        self.hidden = tuple(int(h) for h in hidden)
        self.width = int(width)
        self.lr = lr
        self.betas = (float(betas[0]), float(betas[1]))
        self.n_critic = int(n_critic)
        self.gp_weight = float(gp_weight)
        self.ema = None if ema is None else float(ema)
        self.arch, self.r1_gamma = arch, float(r1_gamma)
        self.style_mixing, self.mapping_layers = float(style_mixing), int(mapping_layers)
        self.device = pick_device(device)
        self._build()

    # -- construction ---------------------------------------------------------------
    def _build(self) -> None:
        info, k = self.data_info, self.num_classes
        if info.kind == "points":
            d = info.dim
            self.G = MLPGenerator(self.z_dim, d, self.hidden, k)
            self.D = MLPDiscriminator(d * self.pack, self.hidden, k)
        else:
            c = info.shape[0]
            if self.arch == "style":
                self.G = StyleGenerator(self.z_dim, info.shape, self.width, self.mapping_layers, self.style_mixing)
            else:
                self.G = ConvGenerator(self.z_dim, info.shape, self.width, k)
            batchnorm = self.loss != "wgan-gp"  # no BatchNorm in a WGAN-GP critic
            self.D = ConvDiscriminator(c * self.pack, info.shape, self.width, batchnorm=batchnorm, num_classes=k)
        self.G.to(self.device)
        self.D.to(self.device)
        # EMA of the generator: warm-up decay min(ema, (1 + t) / (10 + t)) with t = steps_done after the step
        self._ema = EMA(self.G, self.ema, offset=1) if self.ema is not None else None
        self.steps_done = 0
        self.last_nfe = 1  # network evaluations per sample of the last sample() call (one generator pass)
        # 2-D data are standardized per coordinate for the networks (set by fit)
        self.loc = torch.zeros(info.dim if info.kind == "points" else 0)
        self.scale = torch.ones(info.dim if info.kind == "points" else 0)

    @property
    def info(self) -> GeneratorInfo:
        g_all, g_tr = count_parameters(self.G)
        cond = "class" if self.num_classes else "none"
        return GeneratorInfo(name=self.name, family=self.family, shape=tuple(self.data_info.shape), conditioning=cond, n_params=g_all, n_trainable=g_tr)

    @property
    def accepts(self) -> frozenset[str]:
        """``{"labels"}`` for a conditional GAN (ints in [0, num_classes); ``labels=None`` draws them uniformly
        from ``generator``; fakes in a training step take the real minibatch's labels)."""
        return frozenset({"labels"}) if self.num_classes else frozenset()

    @property
    def G_ema(self) -> nn.Module | None:
        """The averaged generator used for sampling (None when ``ema`` is None)."""
        return self._ema.module if self._ema is not None else None

    @property
    def n_params_discriminator(self) -> int:
        """Parameters of the discriminator / critic (not counted in ``info.n_params``)."""
        return count_parameters(self.D)[0]

    # -- data representation ----------------------------------------------------------
    def _prepare_real(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """Real batch -> discriminator space (dequantized images in [0, 1))."""
        x = x.float()
        if self.data_info.is_image:
            if self.data_info.levels:
                x = dequantize(x, self.data_info.levels, gen)
        else:
            x = (x - self.loc) / self.scale
        return x.to(self.device)

    def _to_output(self, y: Tensor) -> Tensor:
        y = y.float().cpu()
        if self.data_info.is_image:
            if self.data_info.levels:
                return quantize(y.clamp(0, 1 - 1e-6), self.data_info.levels)
            return y.clamp(0, 1)
        return y * self.scale + self.loc

    # -- discriminator calls -----------------------------------------------------------
    def _d(self, x: Tensor, y: Tensor | None) -> Tensor:
        """Discriminator logits of a batch of samples (packed in groups of ``pack``)."""
        if self.pack > 1:
            x = pack_samples(x, self.pack)
            y = None  # packing is for unconditional models only
        return self.D(x, y) if self.num_classes else self.D(x)

    def _g(self, z: Tensor, y: Tensor | None, gen: torch.Generator | None = None) -> Tensor:
        if getattr(self.G, "stochastic", False):  # the style generator draws noise (and mixing) from ``gen``
            return self.G(z, generator=gen)
        return self.G(z, y) if self.num_classes else self.G(z)

    # -- training ----------------------------------------------------------------------
    def _check_data(self, data: TrainData) -> Tensor:
        x = check_images(self.name, data.x, self.data_info, "training data")
        if len(x) < self.pack:
            raise ValueError(f"{self.name}: need at least pack={self.pack} training examples, got {len(x)}")
        return x

    def _check_labels(self, data: TrainData) -> None:
        if not self.num_classes:
            return
        if data.y is None:
            raise ValueError(f"{self.name}: class-conditional training needs labels (TrainData.y)")
        y = data.y
        if y.shape != (len(data),) or y.dtype.is_floating_point or int(y.min()) < 0 or int(y.max()) >= self.num_classes:
            raise ValueError(f"{self.name}: labels must be ints in [0, {self.num_classes}) of shape ({len(data)},)")

    def _step(self, batches, gen: torch.Generator, n_use: int, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer) -> dict[str, Tensor]:
        """One generator update after ``n_critic`` discriminator updates (each on a fresh real batch)."""
        for _ in range(self.n_critic):
            batch: Batch = next(batches)
            xb = batch.x[:n_use]
            yb = batch.y[:n_use].long().to(self.device) if self.num_classes else None
            real = self._prepare_real(xb, gen)
            z = torch.randn(n_use, self.z_dim, generator=gen).to(self.device)
            with torch.no_grad():
                fake = self._g(z, yb, gen)
            if self.r1_gamma > 0:
                real.requires_grad_(True)
            d_real, d_fake = self._d(real, yb), self._d(fake, yb)
            if self.loss == "ns":
                d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
                if self.r1_gamma > 0:  # R1 (Mescheder et al. 2018): gamma / 2 E ||grad_x D(x_real)||^2
                    d_loss = d_loss + self.r1_gamma / 2 * r1_penalty(d_real, real)
            else:
                critic = functools.partial(self._d, y=yb)
                gp = gradient_penalty(critic, real, fake, gen)
                d_loss = d_fake.mean() - d_real.mean() + self.gp_weight * gp
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        z = torch.randn(n_use, self.z_dim, generator=gen).to(self.device)
        d_out = self._d(self._g(z, yb, gen), yb)
        g_loss = F.softplus(-d_out).mean() if self.loss == "ns" else -d_out.mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        self.steps_done += 1
        return {"d_loss": d_loss, "g_loss": g_loss}

    def fit(self, data: TrainData, budget: Budget) -> TrainReport:
        """Train for ``budget.steps`` generator updates (see the module docstring).

        Returns losses ``d_loss`` (discriminator BCE, or critic loss incl. the
        penalty for WGAN-GP) and ``g_loss`` per generator step, averaged to
        <= 200 points.
        """
        x = self._check_data(data)
        self._check_labels(data)
        if budget.steps < 0 or budget.batch_size < 1:
            raise ValueError(f"{self.name}: budget needs steps >= 0 and batch_size >= 1, got {budget}")
        t0 = time.perf_counter()
        gen = seeded_generator(2**62)
        bs = min(budget.batch_size * self.pack, len(data))
        n_use = (bs // self.pack) * self.pack  # samples per step: batch_size packs of m (capped by the data size)
        default_lr = 2e-4 if self.loss == "ns" else 1e-4
        lr = self.lr if self.lr is not None else (budget.lr if budget.lr is not None else default_lr)
        opt_g = torch.optim.Adam(self.G.parameters(), lr=lr, betas=self.betas, foreach=True)
        opt_d = torch.optim.Adam(self.D.parameters(), lr=lr, betas=self.betas, foreach=True)
        if not self.data_info.is_image:
            x64 = x.double()
            self.loc = x64.mean(0).float()
            self.scale = x64.std(0).clamp_min(1e-8).float()
        self.G.train()
        self.D.train()
        report = train(
            self.name, budget, x, data.y if self.num_classes else None,
            step=lambda batches, g: self._step(batches, g, n_use, opt_g, opt_d),
            batch_size=bs, ema=self._ema, curves=("d_loss", "g_loss"), generator=gen, check_finite=True, started=t0,
        )  # fmt: skip
        if report.steps:
            n_bn = min(budget.batch_size, len(data))
            y_all = data.y if self.num_classes else None
            for net in (self.G, self.G_ema) if self.G_ema is not None else (self.G,):
                recalibrate_batchnorm(net, self.z_dim, gen, n_bn, self.BN_BATCHES, y_all, self.device)
        for net in (self.G, self.D, self.G_ema):
            if net is not None:
                net.eval()
        report.wall_time_s = time.perf_counter() - t0
        report.extra.update({
            "lr": lr, "betas": list(self.betas), "n_critic": self.n_critic, "pack": self.pack, "samples_per_step": n_use, "ema": self.ema,
            "loss": self.loss, "d_params": self.n_params_discriminator, "d_updates": report.steps * self.n_critic,
            **({"arch": self.arch, "r1_gamma": self.r1_gamma, "style_mixing": self.style_mixing} if self.arch != "dcgan" else {}),
        })  # fmt: skip
        return report

    def _update_ema(self) -> None:
        """One EMA update towards the current generator (the training loop calls it after every step)."""
        if self._ema is not None:
            self._ema.n = self.steps_done - 1  # the decay's warm-up follows the generator step count
            self._ema.update()

    # -- sampling ----------------------------------------------------------------------
    def make_sampler(self, weights: str | None = None, psi: float = 1.0) -> OnePassSampler:
        """Sampling options: ``weights`` None (the EMA generator when ``ema`` > 0, else the raw one), ``"ema"`` or
        ``"raw"`` (the trained weights, for the EMA-against-raw comparison); ``psi`` in (0, 1], the truncation: the
        style generator moves every w towards the tracked mean (``w̄ + psi (w - w̄)``), the DCGAN-type ones scale z."""
        if weights not in (None, "ema", "raw"):
            raise ValueError(f"{self.name}: weights must be 'ema' or 'raw', got {weights!r}")
        if weights == "ema" and self.G_ema is None:
            raise ValueError(f"{self.name}: weights='ema' needs a model built with ema > 0")
        if not 0.0 < float(psi) <= 1.0:
            raise ValueError(f"{self.name}: truncation psi must be in (0, 1], got {psi}")
        return OnePassSampler(self.name, {"weights": weights, **({"psi": float(psi)} if psi != 1.0 else {})})

    def _generate(self, net: nn.Module, z: Tensor, y: Tensor | None, generator: torch.Generator | None, psi: float) -> Tensor:
        """One pass of the sampling generator ``net`` at truncation ``psi`` (see :meth:`make_sampler`)."""
        if getattr(net, "stochastic", False):
            return net(z, generator=generator, psi=psi)
        z = z if psi == 1.0 else psi * z
        return net(z, y) if self.num_classes else net(z)

    @property
    def latent_dim(self) -> int:
        """Size of z (:class:`~genbench.protocol.LatentPath`)."""
        return self.z_dim

    @torch.no_grad()
    def from_latent(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The sampling generator's continuous output for latents ``z`` (images in (0, 1), not quantized; 2-D data
        in data units); the style generator's noise from ``generator``. Unconditional models only."""
        if self.num_classes:
            raise ValueError(f"{self.name}: a conditional generator has no latent path without labels")
        net = self._sampling_net().eval()
        y = self._generate(net, torch.as_tensor(z).float().to(self.device), None, generator, 1.0).float().cpu()
        return y if self.data_info.is_image else y * self.scale + self.loc

    def _sampling_net(self, sampler: OnePassSampler | None = None) -> nn.Module:
        if sampler is not None and sampler.get("weights") == "raw":
            return self.G
        return self.G_ema if self.G_ema is not None else self.G

    def _sample_labels(self, n: int, labels: Tensor | None, generator: torch.Generator | None) -> Tensor | None:
        if labels is not None and not self.num_classes:
            raise ValueError(f"{self.name} is unconditional; it does not accept labels")
        if labels is not None and torch.as_tensor(labels).dtype.is_floating_point:
            raise ValueError(f"{self.name}: labels must be integers in [0, {self.num_classes})")
        return class_labels(self.name, n, labels, self.num_classes, bool(self.num_classes), generator)

    @torch.no_grad()
    def draw(self, n: int, labels: Tensor | None, steps: int | None, generator: torch.Generator | None, sampler: Any) -> Tensor:
        """``n`` samples (``steps`` is ignored: one generator pass; ``sampler`` from :meth:`make_sampler`).

        Images: float32 (n, C, H, W) on the K levels in [0, 1]; points: (n, D).
        BatchNorm uses its running statistics (eval mode), so each sample does
        not depend on the others in its batch.
        """
        y = self._sample_labels(n, labels, generator)
        net = self._sampling_net(sampler)
        psi = 1.0 if sampler is None else float(sampler.get("psi", 1.0))
        was_training = net.training
        net.eval()
        out = []
        try:
            for i in range(0, n, _SAMPLE_CHUNK):
                m = min(_SAMPLE_CHUNK, n - i)
                z = torch.randn(m, self.z_dim, generator=generator).to(self.device)
                yb = y[i : i + m].to(self.device) if y is not None else None
                out.append(self._to_output(self._generate(net, z, yb, generator, psi)))
        finally:
            net.train(was_training)
        if not out:
            return torch.zeros(0, *self.data_info.shape)
        return torch.cat(out)

    # -- state -------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "name": self.name, "loss": self.loss, "pack": self.pack, "z_dim": self.z_dim, "hidden": list(self.hidden), "width": self.width,
            "ema": self.ema, "num_classes": self.num_classes,
            **({"arch": self.arch, "mapping_layers": self.mapping_layers} if self.arch != "dcgan" else {}),
        }  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain python only (loads with ``torch.load(weights_only=True)``)."""
        state: dict[str, Any] = {
            "config": self._config(),
            "steps_done": self.steps_done,
            "loc": self.loc.clone(),
            "scale": self.scale.clone(),
            "G": {k: v.detach().cpu() for k, v in self.G.state_dict().items()},
            "D": {k: v.detach().cpu() for k, v in self.D.state_dict().items()},
        }
        if self.G_ema is not None:
            state["G_ema"] = {k: v.detach().cpu() for k, v in self.G_ema.state_dict().items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        cfg = state.get("config", {})
        mine = self._config()
        diff = {k: (cfg[k], mine[k]) for k in mine if k in cfg and cfg[k] != mine[k]}
        if diff:
            raise ValueError(f"{self.name}: checkpoint was saved with a different configuration (saved, current): {diff}")
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.steps_done = int(state.get("steps_done", 0))
        if self._ema is not None:
            self._ema.module.load_state_dict(state.get("G_ema", state["G"]))
            self._ema.n = self.steps_done
        self.loc = state["loc"].float().clone()
        self.scale = state["scale"].float().clone()
        self.G.eval()
        self.D.eval()


# ============================================================================ presets
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "gan": ("Non-saturating GAN (MLP for 2-D, DCGAN for images), Adam 2e-4, betas (0.5, 0.999).", {"loss": "ns"}),
    "wgan-gp": (
        "WGAN-GP: gradient penalty 10, 5 critic steps per generator step, no BatchNorm in the critic, Adam 1e-4 (0.5, 0.9).",
        {"loss": "wgan-gp", "lr": 1e-4, "betas": (0.5, 0.9), "n_critic": 5},
    ),
    "pacgan": ("PacGAN: non-saturating GAN whose discriminator sees ``pack`` (2-4) samples concatenated.", {"loss": "ns", "pack": 2, "min_pack": 2}),
    "cgan": ("Class-conditional GAN: conditional BatchNorm generator, projection discriminator (needs labels).", {"loss": "ns", "conditional": True}),
}
"""The registered GANs: each a preset (description, new defaults) of the one :class:`GAN`."""

for _name, (_description, _settings) in VARIANTS.items():
    preset(_name, GAN, family="gan", description=_description, **_settings)
