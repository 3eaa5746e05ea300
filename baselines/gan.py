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
name is a preset of :func:`make_gan` (:data:`VARIANTS`), so a suite may also
combine them (e.g. ``gan`` with ``loss = "wgan-gp"``).

Networks. 2-D data (``info.kind == "points"``): MLPs (generator: Linear ->
BatchNorm -> ReLU per hidden layer, linear output; discriminator: Linear ->
LeakyReLU(0.2)). Images: DCGAN-style conv nets: the generator maps z to a 2x2
(or so) map and doubles the resolution with 4x4 stride-2 transposed
convolutions (BatchNorm + ReLU) down to a 3x3 conv and a sigmoid; the
discriminator mirrors it with 4x4 stride-2 convolutions and LeakyReLU(0.2)
(BatchNorm in its inner layers for ``gan``/``pacgan``/``cgan``, none for the
WGAN-GP critic).

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

Determinism: every random draw in ``fit`` comes from a CPU ``torch.Generator``
seeded from the global torch RNG, so ``torch.manual_seed`` before building and
before ``fit`` fixes the result (on CPU). ``sample`` draws its noise (and
random labels) on the CPU from its ``generator`` argument.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .nets import mlp, pick_device
from .protocol import Budget, DataInfo, GeneratorInfo, TrainData, TrainReport, class_labels, count_parameters, dequantize, quantize
from .registry import register
from .samplers import OnePassSampler
from .training import EMA, Batch, seeded_generator, train

__all__ = ["GAN", "ConditionalGAN", "VARIANTS", "Preset", "gradient_penalty", "pack_samples", "make_gan"]

_SAMPLE_CHUNK = 4096


# ============================================================================ helpers
def gradient_penalty(critic, real: Tensor, fake: Tensor, generator: torch.Generator | None = None, **critic_kwargs: Any) -> Tensor:
    """WGAN-GP penalty ``E (||grad_x f(x_hat)||_2 - 1)^2`` (a scalar, not yet weighted).

    ``x_hat = a real + (1 - a) fake`` with one ``a ~ U[0, 1]`` per example,
    drawn on the CPU from ``generator``. The gradient is taken per example over
    all its features; ``critic(x_hat, **critic_kwargs)`` must return (N,) or (N, 1).
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {tuple(real.shape)} and fake {tuple(fake.shape)} differ in shape")
    a = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), generator=generator).to(real.device, real.dtype)
    x_hat = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    out = critic(x_hat, **critic_kwargs)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norm = grad.reshape(grad.shape[0], -1).norm(2, dim=1)
    return ((norm - 1) ** 2).mean()


def pack_samples(x: Tensor, m: int) -> Tensor:
    """PacGAN packing: (N, C, ...) -> (N // m, m C, ...), m consecutive samples per pack.

    ``N`` must be a multiple of ``m``; 2-D points (N, 2) become (N // m, 2 m).
    """
    if m < 1:
        raise ValueError(f"pack must be >= 1, got {m}")
    if x.shape[0] % m:
        raise ValueError(f"cannot pack {x.shape[0]} samples into groups of {m}")
    if m == 1:
        return x
    n = x.shape[0] // m
    return x.reshape(n, m * x.shape[1], *x.shape[2:])


def _leaky() -> nn.Module:
    return nn.LeakyReLU(0.2)


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose training-mode statistics of (N, C) batches are
    computed with plain reductions over the batch, so the result does not depend
    on the number of CPU threads (torch's fused CPU kernel splits the batch
    across threads and sums in a thread-dependent order). Same parameters,
    buffers and state-dict keys; evaluation mode is torch's."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or x.dim() != 2:
            return super().forward(x)
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"BatchNorm1d needs more than one example per batch in training, got {n}")
        mean = x.mean(0)
        var = (x - mean).pow(2).mean(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(f * mean.detach())
                self.running_var.mul_(1 - f).add_(f * var.detach() * n / (n - 1))
        y = (x - mean) * torch.rsqrt(var + self.eps)
        return y * self.weight + self.bias if self.affine else y


class CondBatchNorm(nn.Module):
    """Conditional BatchNorm: BatchNorm without affine, then per-class scale/shift.

    ``spatial``: (N, C, H, W) maps (BatchNorm2d), else (N, C) (BatchNorm1d). Scales start at 1, shifts at 0.
    """

    def __init__(self, channels: int, num_classes: int, spatial: bool = True) -> None:
        super().__init__()
        self.bn = (nn.BatchNorm2d if spatial else BatchNorm1d)(channels, affine=False)
        self.gamma = nn.Embedding(num_classes, channels)
        self.beta = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, h: Tensor, y: Tensor) -> Tensor:
        out = self.bn(h)
        if h.ndim == 2:
            return self.gamma(y) * out + self.beta(y)
        return self.gamma(y)[:, :, None, None] * out + self.beta(y)[:, :, None, None]


# ============================================================================ networks
def _with_onehot(x: Tensor, y: Tensor | None, num_classes: int) -> Tensor:
    """``x`` (N, D) or (N, C, H, W) with the one-hot code of ``y`` appended: as
    ``num_classes`` features, or as that many constant planes for images.
    Returns ``x`` unchanged when ``num_classes`` is 0 (unconditional)."""
    if not num_classes:
        return x
    code = F.one_hot(y, num_classes).to(x.dtype)
    if x.ndim == 4:
        code = code[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
    return torch.cat([x, code], 1)


def _n_up(h: int, w: int) -> int:
    """Number of 2x upsamplings from the start map to (h, w).

    The side is halved while it is even and larger than 2, so a power of two
    starts from 2x2 (8 -> 4 -> 2) and 28x28 from 7x7 (28 -> 14 -> 7, the
    DCGAN layout for MNIST), with no upsampling past the image that would be
    cropped. An odd side still gets one upsampling."""
    n, s = 0, min(h, w)
    while s > 2 and s % 2 == 0:
        s //= 2
        n += 1
    return max(n, 1)


class MLPGenerator(nn.Module):
    """z (N, z_dim) [+ labels] -> points (N, D). BatchNorm (conditional if labelled) + ReLU.

    With labels, their one-hot code is also concatenated to ``z``."""

    def __init__(self, z_dim: int, d_out: int, hidden: Sequence[int], num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        d = z_dim + num_classes
        for h in hidden:
            self.linears.append(nn.Linear(d, h))
            self.norms.append(CondBatchNorm(h, num_classes, spatial=False) if num_classes else BatchNorm1d(h))
            d = h
        self.out = nn.Linear(d, d_out)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = _with_onehot(z, y, self.num_classes)
        for lin, norm in zip(self.linears, self.norms):
            h = lin(h)
            h = norm(h, y) if self.num_classes else norm(h)
            h = F.relu(h)
        return self.out(h)


class MLPDiscriminator(nn.Module):
    """Points (N, D) (packed: (N, m D)) [+ labels] -> logits (N,). LeakyReLU(0.2), no norm.

    With labels, their one-hot code is concatenated to the input and a
    projection term is added: ``w . phi(x, y) + embed(y) . phi(x, y)``.
    """

    def __init__(self, d_in: int, hidden: Sequence[int], num_classes: int = 0) -> None:
        super().__init__()
        self.d_in = d_in
        self.num_classes = num_classes
        self.body = mlp(d_in + num_classes, hidden[-1], hidden[:-1], act=_leaky)
        self.body.append(_leaky())
        self.head = nn.Linear(hidden[-1], 1)
        self.embed = nn.Embedding(num_classes, hidden[-1]) if num_classes else None

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        phi = self.body(_with_onehot(x, y, self.num_classes))
        out = self.head(phi).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * phi).sum(1)
        return out


class ConvGenerator(nn.Module):
    """DCGAN-style: z (N, z_dim) [+ labels] -> images (N, C, H, W) in (0, 1) (sigmoid).

    Linear to a (c0, s, s) map (s ~ 2), then 4x4 stride-2 transposed convs with
    BatchNorm (conditional when labelled) + ReLU, a 3x3 conv and a sigmoid;
    the output is cropped to (H, W). With labels, their one-hot code is also
    concatenated to ``z``.
    """

    def __init__(self, z_dim: int, shape: Sequence[int], width: int, num_classes: int = 0) -> None:
        super().__init__()
        c, h, w = shape
        self.shape = (c, h, w)
        self.num_classes = num_classes
        n = _n_up(h, w)
        self.start = (width * 2 ** min(n - 1, 3), math.ceil(h / 2**n), math.ceil(w / 2**n))
        ch = self.start[0]
        self.fc = nn.Linear(z_dim + num_classes, ch * self.start[1] * self.start[2], bias=False)
        norm = (lambda k: CondBatchNorm(k, num_classes)) if num_classes else nn.BatchNorm2d
        self.norms = nn.ModuleList([norm(ch)])
        self.ups = nn.ModuleList()
        for i in range(n):
            out = max(width, ch // 2) if i < n - 1 else width
            self.ups.append(nn.ConvTranspose2d(ch, out, 4, stride=2, padding=1, bias=False))
            self.norms.append(norm(out))
            ch = out
        self.to_img = nn.Conv2d(ch, c, 3, padding=1)

    def _norm(self, i: int, h: Tensor, y: Tensor | None) -> Tensor:
        return F.relu(self.norms[i](h, y) if self.num_classes else self.norms[i](h))

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self._norm(0, self.fc(_with_onehot(z, y, self.num_classes)).view(-1, *self.start), y)
        for i, up in enumerate(self.ups):
            h = self._norm(i + 1, up(h), y)
        x = torch.sigmoid(self.to_img(h))
        return x[:, :, : self.shape[1], : self.shape[2]]


class ConvDiscriminator(nn.Module):
    """DCGAN-style: images (N, in_ch, H, W) [+ labels] -> logits (N,).

    4x4 stride-2 convs with LeakyReLU(0.2); BatchNorm after every conv but the
    first when ``batchnorm`` (never in a WGAN-GP critic). The unconditional
    head is a linear layer on the flattened feature map. With labels, their
    one-hot code enters as constant input planes, and the
    projection term of Miyato & Koyama (2018) is added: ``embed(y) . phi``
    where ``phi`` is the feature map summed over its positions (one value per
    channel) and the class embeddings start small (the head's scale), so the
    conditional term does not drown the unconditional one at initialisation.
    """

    def __init__(self, in_channels: int, shape: Sequence[int], width: int, batchnorm: bool = True, num_classes: int = 0) -> None:
        super().__init__()
        _, h, w = shape
        n = _n_up(h, w)
        layers: list[nn.Module] = []
        self.num_classes = num_classes
        ch_in, ch = in_channels + num_classes, width
        for i in range(n):
            layers.append(nn.Conv2d(ch_in, ch, 4, stride=2, padding=1, bias=not (batchnorm and i > 0)))
            if batchnorm and i > 0:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(_leaky())
            ch_in, ch = ch, min(ch * 2, width * 8)
        self.body = nn.Sequential(*layers)
        with torch.no_grad():  # feature map size (k=4, s=2, p=1 gives floor(h / 2))
            fmap = self.body.eval()(torch.zeros(1, in_channels + num_classes, h, w))
        self.body.train()
        self.d_feat = int(fmap.numel())
        self.in_channels = in_channels
        self.head = nn.Linear(self.d_feat, 1)
        self.embed = None
        if num_classes:
            self.embed = nn.Embedding(num_classes, fmap.shape[1])
            bound = 1.0 / (math.sqrt(fmap.shape[1]) * fmap.shape[2] * fmap.shape[3])  # term of the head's size at init
            nn.init.uniform_(self.embed.weight, -bound, bound)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        fmap = self.body(_with_onehot(x, y, self.num_classes))
        out = self.head(fmap.flatten(1)).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * fmap.sum((2, 3))).sum(1)
        return out


# ============================================================================ the model
class GAN:
    """A GAN on images or 2-D points; see the module docstring for the variants.

    Args:
        info: the data set's metadata.
        name: registry name reported in ``info``.
        loss: ``"ns"`` (non-saturating) or ``"wgan-gp"``.
        pack: PacGAN packing degree m (1 = no packing).
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
    BN_BATCHES = 32  # noise batches used to re-estimate BatchNorm statistics after fit

    def __init__(
        self,
        info: DataInfo,
        *,
        name: str = "gan",
        loss: str = "ns",
        pack: int = 1,
        conditional: bool = False,
        z_dim: int | None = None,
        hidden: Sequence[int] = (128, 128, 128),
        width: int = 32,
        lr: float | None = None,
        betas: Sequence[float] = (0.5, 0.999),
        n_critic: int = 1,
        gp_weight: float = 10.0,
        ema: float | None = None,
        device: str | None = None,
    ) -> None:
        if info.kind not in ("image", "points"):
            raise ValueError(f"{name}: unsupported data kind {info.kind!r} (expected 'image' or 'points')")
        if loss not in ("ns", "wgan-gp"):
            raise ValueError(f"{name}: loss must be 'ns' or 'wgan-gp', got {loss!r}")
        if not isinstance(pack, int) or isinstance(pack, bool) or not 1 <= pack <= 8:
            raise ValueError(f"{name}: pack must be an integer in [1, 8] (the PacGAN paper uses 2, 3, 4), got {pack!r}")
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
            self.G = ConvGenerator(self.z_dim, info.shape, self.width, k)
            self.D = ConvDiscriminator(c * self.pack, info.shape, self.width, batchnorm=self.loss != "wgan-gp", num_classes=k)
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
        return GeneratorInfo(
            name=self.name,
            family=self.family,
            shape=tuple(self.data_info.shape),
            conditioning="class" if self.num_classes else "none",
            n_params=g_all,
            n_trainable=g_tr,
        )

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

    def _g(self, z: Tensor, y: Tensor | None) -> Tensor:
        return self.G(z, y) if self.num_classes else self.G(z)

    # -- training ----------------------------------------------------------------------
    def _check_data(self, data: TrainData) -> None:
        shape = tuple(data.x.shape[1:])
        if shape != tuple(self.data_info.shape):
            raise ValueError(f"{self.name}: training data has shape {shape}, model was built for {tuple(self.data_info.shape)}")
        if len(data) < self.pack:
            raise ValueError(f"{self.name}: need at least pack={self.pack} training examples, got {len(data)}")
        if not torch.isfinite(data.x).all():
            raise ValueError(f"{self.name}: training data contain NaN/inf values")

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
                fake = self._g(z, yb)
            d_real, d_fake = self._d(real, yb), self._d(fake, yb)
            if self.loss == "ns":
                d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
            else:
                critic = functools.partial(self._d, y=yb)
                gp = gradient_penalty(critic, real, fake, gen)
                d_loss = d_fake.mean() - d_real.mean() + self.gp_weight * gp
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        z = torch.randn(n_use, self.z_dim, generator=gen).to(self.device)
        d_out = self._d(self._g(z, yb), yb)
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
        self._check_data(data)
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
            x64 = data.x.double()
            self.loc = x64.mean(0).float()
            self.scale = x64.std(0).clamp_min(1e-8).float()
        self.G.train()
        self.D.train()
        report = train(
            self.name, budget, data.x, data.y if self.num_classes else None,
            step=lambda batches, g: self._step(batches, g, n_use, opt_g, opt_d),
            batch_size=bs, ema=self._ema, curves=("d_loss", "g_loss"), generator=gen, check_finite=True, started=t0,
        )  # fmt: skip
        if report.steps:
            n_bn = min(budget.batch_size, len(data))
            self._recalibrate_bn(self.G, gen, n_bn, data.y if self.num_classes else None)
            if self.G_ema is not None:
                self._recalibrate_bn(self.G_ema, gen, n_bn, data.y if self.num_classes else None)
        self.G.eval()
        self.D.eval()
        report.wall_time_s = time.perf_counter() - t0
        report.extra.update(
            {
                "lr": lr,
                "betas": list(self.betas),
                "n_critic": self.n_critic,
                "pack": self.pack,
                "samples_per_step": n_use,
                "ema": self.ema,
                "loss": self.loss,
                "d_params": self.n_params_discriminator,
                "d_updates": report.steps * self.n_critic,
            }
        )
        return report

    @torch.no_grad()
    def _recalibrate_bn(self, net: nn.Module, gen: torch.Generator, batch_size: int, y_all: Tensor | None) -> None:
        """Re-estimate the generator's BatchNorm statistics at its final weights.

        Running averages (momentum 0.1) lag behind the weights, and an EMA
        generator has no statistics of its own; in eval mode either shifts the
        samples (measurably off the 0.01-std modes of ring8). So after training
        the statistics are recomputed as exact averages over ``BN_BATCHES``
        noise batches in train mode (no weight changes).
        """
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
        net.train()
        for _ in range(self.BN_BATCHES):
            z = torch.randn(batch_size, self.z_dim, generator=gen).to(self.device)
            if self.num_classes:
                idx = torch.randint(0, len(y_all), (batch_size,), generator=gen)
                net(z, y_all[idx].long().to(self.device))
            else:
                net(z)
        for m, mom in zip(norms, saved):
            m.momentum = mom
        net.eval()

    def _update_ema(self) -> None:
        """One EMA update towards the current generator (the training loop calls it after every step)."""
        if self._ema is not None:
            self._ema.n = self.steps_done - 1  # the decay's warm-up follows the generator step count
            self._ema.update()

    # -- sampling ----------------------------------------------------------------------
    def make_sampler(self, weights: str | None = None) -> OnePassSampler:
        """Sampling option for :meth:`sample`: ``weights=None`` (the default: the EMA
        generator when ``ema`` > 0, else the raw one), ``"ema"`` (the EMA generator;
        an error without one) or ``"raw"`` (the trained generator's own weights, for
        the EMA-against-raw comparison on one run)."""
        if weights not in (None, "ema", "raw"):
            raise ValueError(f"{self.name}: weights must be 'ema' or 'raw', got {weights!r}")
        if weights == "ema" and self.G_ema is None:
            raise ValueError(f"{self.name}: weights='ema' needs a model built with ema > 0")
        return OnePassSampler(self.name, {"weights": weights})

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
    def sample(
        self,
        n: int,
        *,
        labels: Tensor | None = None,
        prompts: Sequence[str] | None = None,
        steps: int | None = None,
        generator=None,
        sampler: OnePassSampler | None = None,
    ) -> Tensor:
        """Draw ``n`` samples (``steps`` is ignored: one generator pass; ``sampler`` from :meth:`make_sampler`).

        Images: float32 (n, C, H, W) on the K levels in [0, 1]; points: (n, D).
        BatchNorm uses its running statistics (eval mode), so each sample does
        not depend on the others in its batch.
        """
        if prompts is not None:
            raise ValueError(f"{self.name} does not accept text prompts")
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{self.name}: n must be a non-negative int, got {n!r}")
        y = self._sample_labels(n, labels, generator)
        net = self._sampling_net(sampler)
        was_training = net.training
        net.eval()
        out = []
        try:
            for i in range(0, n, _SAMPLE_CHUNK):
                m = min(_SAMPLE_CHUNK, n - i)
                z = torch.randn(m, self.z_dim, generator=generator).to(self.device)
                yb = y[i : i + m].to(self.device) if y is not None else None
                out.append(self._to_output(net(z, yb) if self.num_classes else net(z)))
        finally:
            net.train(was_training)
        if not out:
            return torch.zeros(0, *self.data_info.shape)
        return torch.cat(out)

    # -- state -------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "loss": self.loss,
            "pack": self.pack,
            "z_dim": self.z_dim,
            "hidden": list(self.hidden),
            "width": self.width,
            "ema": self.ema,
            "num_classes": self.num_classes,
        }

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


class ConditionalGAN(GAN):
    """A :class:`GAN` with ``conditional=True`` (what :func:`make_gan` builds then):
    the same model, plus the :class:`~genbench.protocol.Conditional` capability.
    ``sample(n, labels=...)`` uses the given labels (ints in [0, num_classes));
    with ``labels=None`` labels are drawn uniformly from ``generator``; fakes in
    a training step take the labels of the real minibatch."""

    def __init__(self, info: DataInfo, **kwargs: Any) -> None:
        super().__init__(info, **{**kwargs, "conditional": True})

    @property
    def accepts(self) -> frozenset[str]:
        return frozenset({"labels"})


# ============================================================================ presets
@dataclass(frozen=True)
class Preset:
    """A registered GAN: overrides of :func:`make_gan`'s defaults, a one-line
    description and the smallest packing degree it allows (PacGAN is defined by packing)."""

    overrides: dict[str, Any]
    description: str
    min_pack: int = 1


VARIANTS: dict[str, Preset] = {
    "gan": Preset({"loss": "ns"}, "Non-saturating GAN (MLP for 2-D, DCGAN for images), Adam 2e-4, betas (0.5, 0.999)."),
    "wgan-gp": Preset(
        {"loss": "wgan-gp", "lr": 1e-4, "betas": (0.5, 0.9), "n_critic": 5},
        "WGAN-GP: gradient penalty 10, 5 critic steps per generator step, no BatchNorm in the critic, Adam 1e-4 (0.5, 0.9).",
    ),
    "pacgan": Preset({"loss": "ns", "pack": 2}, "PacGAN: non-saturating GAN whose discriminator sees ``pack`` (2-4) samples concatenated.", min_pack=2),
    "cgan": Preset({"loss": "ns", "conditional": True}, "Class-conditional GAN: conditional BatchNorm generator, projection discriminator (needs labels)."),
}
"""The registered GANs, each a preset of the one configuration of :func:`make_gan`."""


def make_gan(
    info: DataInfo,
    *,
    name: str = "gan",
    loss: str = "ns",
    pack: int = 1,
    conditional: bool = False,
    z_dim: int | None = None,
    hidden: Sequence[int] = (128, 128, 128),
    width: int = 32,
    lr: float | None = None,
    betas: Sequence[float] = (0.5, 0.999),
    n_critic: int = 1,
    gp_weight: float = 10.0,
    ema: float | None = None,
    device: str | None = None,
) -> GAN:
    """A GAN from one configuration (see :class:`GAN`); the registered names are presets of it."""
    preset = VARIANTS.get(name)
    if preset is not None and preset.min_pack > 1 and (not isinstance(pack, int) or not preset.min_pack <= pack <= 8):
        raise ValueError(f"{name}: pack must be an integer in [{preset.min_pack}, 8] (the paper uses 2, 3, 4), got {pack!r}")
    return (ConditionalGAN if conditional else GAN)(
        info, name=name, loss=loss, pack=pack, conditional=conditional, z_dim=z_dim, hidden=hidden, width=width, lr=lr,
        betas=betas, n_critic=n_critic, gp_weight=gp_weight, ema=ema, device=device,
    )  # fmt: skip


for _name, _preset in VARIANTS.items():
    register(_name, family="gan", description=_preset.description)(functools.partial(make_gan, name=_name, **_preset.overrides))
