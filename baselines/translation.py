"""Image-to-image translation: pix2pix, CycleGAN and their reference rows.

Every model here is :class:`~genbench.protocol.ImageConditioned`:
``translate(x_source, generator=g)`` maps a source batch (float32 NCHW in
[0, 1], ``info.source_shape``) to a target-domain batch (``info.shape``, in
[0, 1]). Training data arrive as :class:`~genbench.protocol.TrainData` with
``x`` the target domain and ``source`` the source domain (paired: row i to
row i; unpaired: unrelated rows).

* ``pix2pix`` (Isola et al. 2017): a U-Net generator with skip connections
  and dropout (p = 0.5 in the two innermost decoder stages, kept at test time
  as the paper's only noise source, masks drawn from ``generator``), a
  conditional PatchGAN discriminator on (source, output) pairs, the
  non-saturating GAN loss plus ``l1_weight`` (100) times the L1 distance to
  the target. Adam 2e-4, betas (0.5, 0.999).
* ``l1-regression``: the same U-Net trained with the L1 loss only (the blurry
  baseline the pix2pix paper contrasts).
* ``cyclegan`` (Zhu et al. 2017): two U-Net generators G: A -> B and
  F: B -> A (no dropout), two unconditional PatchGAN discriminators,
  least-squares GAN losses, cycle-consistency weight ``cycle_weight`` (10)
  and an optional identity loss (``identity_weight`` times the cycle weight,
  0 by default). Source and target shapes must match.
  :class:`~genbench.protocol.CycleConsistent`: ``translate_back`` is F.
* ``identity``: output = input, resized to the target shape (nearest
  neighbour up, average pooling down): what a model must beat.
* ``target``: the ground-truth target of each test source
  (:class:`~genbench.protocol.TranslationReference`): the floor of every
  distance to the target and the ceiling of class preservation.

Sources smaller than the targets (super-resolution) are upsampled to the
target size (nearest neighbour) before the U-Net.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .protocol import Budget, DataInfo, GeneratorInfo, TrainData, TrainReport, count_parameters
from .registry import register
from .training import Batch, seeded_generator, train

__all__ = ["UNetTranslator", "PatchDiscriminator", "Pix2Pix", "L1Regression", "CycleGAN", "IdentityTranslation", "TargetReference", "resize_to"]

KINDS_PAIRED = ("paired",)
KINDS_ALL = ("paired", "unpaired")


def resize_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Images ``x`` (N, C, H, W) in [0, 1] resized to ``shape`` (C', H', W'):
    nearest-neighbour upsampling or average pooling by integer factors; one
    channel is repeated to C' channels, C' = 1 takes the channel mean."""
    c, h, w = (int(s) for s in shape)
    if x.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[-2:] != (h, w):
        sh, sw = x.shape[-2], x.shape[-1]
        if h % sh == 0 and w % sw == 0:
            x = F.interpolate(x, size=(h, w), mode="nearest")
        elif sh % h == 0 and sw % w == 0:
            x = F.avg_pool2d(x, (sh // h, sw // w))
        else:
            raise ValueError(f"cannot resize {sh}x{sw} images to {h}x{w}: the sizes must divide one another")
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.expand(-1, c, -1, -1)
        elif c == 1:
            x = x.mean(1, keepdim=True)
        else:
            raise ValueError(f"cannot map {x.shape[1]} channels to {c}")
    return x.contiguous()


def _masked_dropout(h: Tensor, p: float, generator: torch.Generator | None) -> Tensor:
    """Dropout whose mask comes from ``generator`` (reproducible translations); identity when p = 0."""
    if p <= 0:
        return h
    keep = torch.rand(h.shape, generator=generator).to(h.device) >= p
    return h * keep / (1 - p)


def _n_down(h: int, w: int, most: int = 3) -> int:
    """Stride-2 stages for an H x W image: halve while both sides are even and >= 4 (8x8: 2 stages, 28x28: 2)."""
    n = 0
    while n < most and h % 2 == 0 and w % 2 == 0 and min(h, w) >= 4:
        h, w, n = h // 2, w // 2, n + 1
    return n


class UNetTranslator(nn.Module):
    """The pix2pix U-Net: stride-2 4x4 convolutions down, transposed convolutions up, skip connections between
    mirrored stages, BatchNorm + (Leaky)ReLU, dropout ``p`` in the two innermost decoder stages, sigmoid output in [0, 1]."""

    def __init__(self, in_ch: int, out_ch: int, hw: tuple[int, int], width: int = 32, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = float(dropout)
        n = _n_down(*hw)
        chans = [width * 2**i for i in range(n + 1)]  # stage i works at width * 2^i channels
        self.stem = nn.Sequential(nn.Conv2d(in_ch, chans[0], 3, padding=1), nn.LeakyReLU(0.2))
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 4, stride=2, padding=1), nn.BatchNorm2d(chans[i + 1]), nn.LeakyReLU(0.2)) for i in range(n)
        )
        self.mid = nn.Sequential(nn.Conv2d(chans[n], chans[n], 3, padding=1), nn.BatchNorm2d(chans[n]), nn.ReLU())
        self.up = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(2 * chans[i + 1], chans[i], 4, stride=2, padding=1), nn.BatchNorm2d(chans[i]), nn.ReLU())
            for i in reversed(range(n))
        )
        self.head = nn.Conv2d(2 * chans[0], out_ch, 3, padding=1)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        skips = [self.stem(x)]
        for d in self.down:
            skips.append(d(skips[-1]))
        h = _masked_dropout(self.mid(skips[-1]), self.dropout, generator)
        for i, u in enumerate(self.up):
            h = u(torch.cat([h, skips[-1 - i]], 1))
            if i == 0:
                h = _masked_dropout(h, self.dropout, generator)
        return torch.sigmoid(self.head(torch.cat([h, skips[0]], 1)))


class PatchDiscriminator(nn.Module):
    """PatchGAN: a fully convolutional critic with one logit per overlapping patch (stride-2 4x4 convolutions, then a 3x3 head)."""

    def __init__(self, in_ch: int, hw: tuple[int, int], width: int = 32) -> None:
        super().__init__()
        n = max(1, _n_down(*hw, most=2))
        layers: list[nn.Module] = [nn.Conv2d(in_ch, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(n - 1):
            layers += [nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        layers += [nn.Conv2d(c, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _check_translation_data(name: str, info: DataInfo, data: TrainData, paired: bool) -> None:
    if not info.is_translation or info.source_shape is None:
        raise ValueError(f"{name}: trains on a translation task (kind 'paired' or 'unpaired'), got {info.kind!r} data {info.name!r}")
    if data.source is None:
        raise ValueError(f"{name}: TrainData.source is None; a translation model needs the source images (TrainData(x=targets, source=sources))")
    if tuple(data.source.shape[1:]) != tuple(info.source_shape) or tuple(data.x.shape[1:]) != tuple(info.shape):
        raise ValueError(
            f"{name}: sources {tuple(data.source.shape[1:])} / targets {tuple(data.x.shape[1:])} per example, "
            f"DataInfo says {tuple(info.source_shape)} / {tuple(info.shape)}"
        )
    if paired and len(data.source) != len(data.x):
        raise ValueError(f"{name}: paired training needs one target per source, got {len(data.source)} sources and {len(data.x)} targets")


def _cpu_state(m: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu() for k, v in m.state_dict().items()}


class _Translator:
    """What the trained translators share: info, config check on load, translate in eval mode, no unconditional sampling."""

    name = "translator"
    family = "translation"
    paired: ClassVar[bool] = True  # trains on aligned (source, target) pairs; False: two unaligned sets

    def __init__(self, info: DataInfo, device: str | torch.device | None = None) -> None:
        if info.kind not in KINDS_ALL or info.source_shape is None or len(info.shape) != 3 or len(info.source_shape) != 3:
            raise ValueError(f"{self.name}: needs a translation task of images (kind 'paired'/'unpaired', source_shape set), got {info.kind!r} {info.name!r}")
        self.data_info = info
        self.device = torch.device(device or "cpu")
        self.steps_done = 0

    def _nets(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    def _optimizers(self, lr: float) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
        """The generator(s)' and the discriminator(s)' Adam (None: no discriminator)."""
        raise NotImplementedError

    def _report_extra(self) -> dict[str, Any]:
        """The hyperparameters the training report repeats."""
        return {}

    def fit(self, data: TrainData, budget: Budget) -> TrainReport:
        """``budget.steps`` training steps (:meth:`_step`; its docstring names the curves) on the one training loop,
        the networks in train mode, then in eval mode. Minibatch indices and dropout masks come from one seeded
        generator; ``budget.lr`` overrides the learning rate."""
        _check_translation_data(self.name, self.data_info, data, paired=self.paired)
        t0 = time.perf_counter()
        gen = seeded_generator(2**62)
        lr = budget.lr if budget.lr is not None else self.lr
        opt_g, opt_d = self._optimizers(lr)
        src_all, tgt_all = data.source.float(), data.x.float()
        for m in self._nets().values():
            m.train()
        report = train(
            self.name, budget, torch.arange(len(src_all)), step=lambda b, g: self._step(b, g, src_all, tgt_all, opt_g, opt_d),
            generator=gen, check_finite=True, started=t0,
        )  # fmt: skip
        for m in self._nets().values():
            m.eval()
        report.wall_time_s = time.perf_counter() - t0
        report.extra.update({"lr": lr, **self._report_extra()})
        return report

    @property
    def info(self) -> GeneratorInfo:
        total = sum(count_parameters(m)[0] for m in self._nets().values())
        return GeneratorInfo(name=self.name, family=self.family, shape=tuple(self.data_info.shape), conditioning="none", n_params=total, n_trainable=total)

    def sample(self, n: int, *, labels: Tensor | None = None, prompts: Sequence[str] | None = None, steps: int | None = None,
               generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
        raise TypeError(f"{self.name} is an image-to-image model: call translate(x_source) with a batch of source images, not sample(n)")

    def _source_in(self, x: Tensor, shape: Sequence[int], who: str) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{self.name}.{who}: expected images (N, {', '.join(map(str, shape))}) in [0, 1], got {got}")
        return x.float().to(self.device)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain python only (loads with ``torch.load(weights_only=True)``)."""
        return {"config": self._config(), "steps_done": self.steps_done, **{k: _cpu_state(m) for k, m in self._nets().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine, saved = self._config(), state.get("config", {})
        diff = {k: (saved[k], mine[k]) for k in mine if k in saved and saved[k] != mine[k]}
        if diff:
            raise ValueError(f"{self.name}: checkpoint was saved with a different configuration (saved, current): {diff}")
        for k, m in self._nets().items():
            if k not in state:
                raise KeyError(f"{self.name}: checkpoint has no {k!r} weights")
            m.load_state_dict(state[k])
            m.eval()
        self.steps_done = int(state.get("steps_done", 0))


class Pix2Pix(_Translator):
    """pix2pix: U-Net G and conditional PatchGAN D, non-saturating GAN loss + ``l1_weight`` * L1 (see the module docstring).

    ``l1_weight`` weighs the per-pixel L1 term (images in [0, 1]) against the GAN loss (nats, BCE);
    ``gan=False`` drops the discriminator (the ``l1-regression`` row).
    """

    name = "pix2pix"

    def __init__(self, info: DataInfo, width: int = 32, d_width: int = 32, dropout: float = 0.5, l1_weight: float = 100.0,
                 lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), gan: bool = True,
                 device: str | torch.device | None = None) -> None:  # fmt: skip
        super().__init__(info, device)
        if l1_weight < 0 or not 0 <= dropout < 1:
            raise ValueError(f"{self.name}: needs l1_weight >= 0 and dropout in [0, 1), got {l1_weight}, {dropout}")
        c_t, h, w = info.shape
        self.width, self.d_width, self.dropout, self.l1_weight, self.lr, self.betas, self.gan = width, d_width, float(dropout), float(l1_weight), lr, tuple(betas), gan
        self.G = UNetTranslator(c_t, c_t, (h, w), width, dropout).to(self.device).eval()
        self.D = PatchDiscriminator(2 * c_t, (h, w), d_width).to(self.device).eval() if gan else None

    def _nets(self) -> dict[str, nn.Module]:
        return {"G": self.G, **({"D": self.D} if self.D is not None else {})}

    def _config(self) -> dict[str, Any]:
        return {"width": self.width, "d_width": self.d_width, "dropout": self.dropout, "l1_weight": self.l1_weight, "gan": self.gan}

    def _up(self, src: Tensor) -> Tensor:
        return resize_to(src, self.data_info.shape)

    def _step(self, batches: Iterator[Batch], gen: torch.Generator, src_all: Tensor, tgt_all: Tensor,
              opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None) -> dict[str, Tensor]:  # fmt: skip
        """One update of G (after one D update) on a random minibatch of aligned pairs.

        Curves: ``l1`` (mean absolute error to the target, [0, 1] scale), ``g_loss``, and with the GAN ``d_loss``
        (BCE, nats, the mean of the real and fake terms) and ``g_adv``.
        """
        idx = next(batches).x
        src, tgt = self._up(src_all[idx]).to(self.device), tgt_all[idx].to(self.device)
        fake = self.G(src, gen)
        out: dict[str, Tensor] = {}
        if self.D is not None and opt_d is not None:
            d_real = self.D(torch.cat([src, tgt], 1))
            d_fake = self.D(torch.cat([src, fake.detach()], 1))
            d_loss = 0.5 * (F.softplus(-d_real).mean() + F.softplus(d_fake).mean())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            g_adv = F.softplus(-self.D(torch.cat([src, fake], 1))).mean()
            out |= {"d_loss": d_loss, "g_adv": g_adv}
        else:
            g_adv = torch.zeros((), device=self.device)
        l1 = (fake - tgt).abs().mean()
        g_loss = g_adv + self.l1_weight * l1
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        self.steps_done += 1
        return {**out, "l1": l1, "g_loss": g_loss}

    def _optimizers(self, lr: float) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
        opt_g = torch.optim.Adam(self.G.parameters(), lr=lr, betas=self.betas)
        return opt_g, (torch.optim.Adam(self.D.parameters(), lr=lr, betas=self.betas) if self.D is not None else None)

    def _report_extra(self) -> dict[str, Any]:
        return {"l1_weight": self.l1_weight, "gan": self.gan, "dropout": self.dropout}

    @torch.no_grad()
    def translate(self, x_source: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Target-domain images (N, *info.shape) in [0, 1]; dropout masks come from ``generator`` (stochastic unless dropout = 0)."""
        x = self._source_in(x_source, self.data_info.source_shape, "translate")
        self.G.eval()
        return self.G(self._up(x), generator).float().cpu()


class L1Regression(Pix2Pix):
    """The pix2pix U-Net trained with the L1 loss alone (no discriminator): the blurry baseline of the pix2pix paper."""

    name = "l1-regression"

    def __init__(self, info: DataInfo, width: int = 32, dropout: float = 0.5, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
                 device: str | torch.device | None = None) -> None:  # fmt: skip
        super().__init__(info, width=width, dropout=dropout, l1_weight=1.0, lr=lr, betas=betas, gan=False, device=device)


class CycleGAN(_Translator):
    """CycleGAN: G: A -> B, F: B -> A (U-Nets without dropout), PatchGAN D_A, D_B, least-squares GAN losses,
    ``cycle_weight`` * (|F(G(a)) - a| + |G(F(b)) - b|) and ``identity_weight * cycle_weight`` * (|G(b) - b| + |F(a) - a|)."""

    name = "cyclegan"
    paired = False

    def __init__(self, info: DataInfo, width: int = 32, d_width: int = 32, cycle_weight: float = 10.0, identity_weight: float = 0.0,
                 lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), device: str | torch.device | None = None) -> None:  # fmt: skip
        super().__init__(info, device)
        if tuple(info.source_shape) != tuple(info.shape):
            raise ValueError(f"{self.name}: source and target images must have the same shape, got {info.source_shape} and {info.shape}")
        if cycle_weight < 0 or identity_weight < 0:
            raise ValueError(f"{self.name}: cycle_weight and identity_weight must be >= 0, got {cycle_weight}, {identity_weight}")
        c, h, w = info.shape
        self.width, self.d_width, self.cycle_weight, self.identity_weight, self.lr, self.betas = width, d_width, float(cycle_weight), float(identity_weight), lr, tuple(betas)
        self.G_ab = UNetTranslator(c, c, (h, w), width, 0.0).to(self.device).eval()
        self.G_ba = UNetTranslator(c, c, (h, w), width, 0.0).to(self.device).eval()
        self.D_a = PatchDiscriminator(c, (h, w), d_width).to(self.device).eval()
        self.D_b = PatchDiscriminator(c, (h, w), d_width).to(self.device).eval()

    def _nets(self) -> dict[str, nn.Module]:
        return {"G_ab": self.G_ab, "G_ba": self.G_ba, "D_a": self.D_a, "D_b": self.D_b}

    def _config(self) -> dict[str, Any]:
        return {"width": self.width, "d_width": self.d_width, "cycle_weight": self.cycle_weight, "identity_weight": self.identity_weight}

    @property
    def info(self) -> GeneratorInfo:
        # cost of one translation: the A -> B generator (the discriminators and F are training-time only)
        base = super().info
        base.n_params = count_parameters(self.G_ab)[0] + count_parameters(self.G_ba)[0] + count_parameters(self.D_a)[0] + count_parameters(self.D_b)[0]
        return base

    def _step(self, batches: Iterator[Batch], gen: torch.Generator, a_all: Tensor, b_all: Tensor,
              opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer) -> dict[str, Tensor]:  # fmt: skip
        """One update of both generators then both discriminators; A minibatches in epochs, B drawn uniformly.

        Curves: ``g_loss``, ``cycle`` (sum of the two mean absolute cycle errors, [0, 1] scale) and ``d_loss`` (least squares).
        Labels are never used (unpaired tasks keep them for evaluation only).
        """
        ia = next(batches).x
        ib = torch.randint(0, len(b_all), (len(ia),), generator=gen)  # the domains are unaligned: B drawn independently
        a, b = a_all[ia].to(self.device), b_all[ib].to(self.device)
        fake_b, fake_a = self.G_ab(a), self.G_ba(b)
        adv = ((self.D_b(fake_b) - 1) ** 2).mean() + ((self.D_a(fake_a) - 1) ** 2).mean()
        cyc = (self.G_ba(fake_b) - a).abs().mean() + (self.G_ab(fake_a) - b).abs().mean()
        g_loss = adv + self.cycle_weight * cyc
        if self.identity_weight > 0:
            g_loss = g_loss + self.identity_weight * self.cycle_weight * ((self.G_ab(b) - b).abs().mean() + (self.G_ba(a) - a).abs().mean())
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        d_loss = 0.5 * (
            ((self.D_b(b) - 1) ** 2).mean() + (self.D_b(fake_b.detach()) ** 2).mean() + ((self.D_a(a) - 1) ** 2).mean() + (self.D_a(fake_a.detach()) ** 2).mean()
        )
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        self.steps_done += 1
        return {"g_loss": g_loss, "cycle": cyc, "d_loss": d_loss}

    def _optimizers(self, lr: float) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
        opt_g = torch.optim.Adam([*self.G_ab.parameters(), *self.G_ba.parameters()], lr=lr, betas=self.betas)
        return opt_g, torch.optim.Adam([*self.D_a.parameters(), *self.D_b.parameters()], lr=lr, betas=self.betas)

    def _report_extra(self) -> dict[str, Any]:
        return {"cycle_weight": self.cycle_weight, "identity_weight": self.identity_weight}

    @torch.no_grad()
    def translate(self, x_source: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """G(x_source): domain-B images in [0, 1] (deterministic; ``generator`` is accepted and unused)."""
        self.G_ab.eval()
        return self.G_ab(self._source_in(x_source, self.data_info.source_shape, "translate")).float().cpu()

    @torch.no_grad()
    def translate_back(self, x_target: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """F(x_target): domain-A images in [0, 1]."""
        self.G_ba.eval()
        return self.G_ba(self._source_in(x_target, self.data_info.shape, "translate_back")).float().cpu()


class IdentityTranslation:
    """Reference row: the source itself, resized to the target shape (nearest neighbour up, average pooling down)."""

    def __init__(self, info: DataInfo) -> None:
        if info.source_shape is None:
            raise ValueError(f"identity: needs a translation task (DataInfo.source_shape), got {info.kind!r} data {info.name!r}")
        self.data_info = info
        resize_to(torch.zeros(1, *info.source_shape), info.shape)  # fails now, with the shapes named, if they cannot map

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(name="identity", family="reference", shape=tuple(self.data_info.shape), conditioning="none")

    def sample(self, n: int, **kwargs: Any) -> Tensor:
        raise TypeError("identity is an image-to-image reference row: call translate(x_source)")

    def translate(self, x_source: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        return resize_to(x_source.float(), self.data_info.shape).clamp(0, 1).cpu()


class TargetReference:
    """Reference row: the true target of each source, looked up in the test pairs the harness hands over (``use_pairs``).

    A source that appears more than once with different targets maps to the first; a source not among the pairs is an error.
    """

    def __init__(self, info: DataInfo) -> None:
        self.data_info = info
        self._table: dict[bytes, int] = {}
        self._targets: Tensor | None = None
        self.n_ambiguous = 0

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(name="target", family="reference", shape=tuple(self.data_info.shape), conditioning="none")

    def use_pairs(self, source: Tensor, target: Tensor) -> None:
        if len(source) != len(target):
            raise ValueError(f"target: {len(source)} sources but {len(target)} targets; the pairs must be aligned")
        self._targets = target.float().cpu()
        self._table, self.n_ambiguous = {}, 0
        for i, row in enumerate(source.float().cpu().numpy()):
            key = row.tobytes()
            if key in self._table:
                self.n_ambiguous += int(not torch.equal(self._targets[self._table[key]], self._targets[i]))
                continue
            self._table[key] = i

    def sample(self, n: int, **kwargs: Any) -> Tensor:
        raise TypeError("target is an image-to-image reference row: call translate(x_source)")

    def translate(self, x_source: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        if self._targets is None:
            raise RuntimeError("target: no pairs given; call use_pairs(test_source, test_truth) first (the harness does)")
        idx = []
        for i, row in enumerate(x_source.float().cpu().numpy()):
            j = self._table.get(row.tobytes())
            if j is None:
                raise ValueError(f"target: source image {i} of the batch is not among the {len(self._targets)} pairs it was given")
            idx.append(j)
        return self._targets[torch.tensor(idx, dtype=torch.long)].clone()


# ------------------------------------------------------------------------------------------- registrations
register("pix2pix", family="translation", kinds=KINDS_PAIRED, description="pix2pix: U-Net G + conditional PatchGAN D, GAN + 100 L1 (paired)")(Pix2Pix)
register("l1-regression", family="translation", kinds=KINDS_PAIRED, description="the pix2pix U-Net trained with L1 only (paired)")(L1Regression)
register("cyclegan", family="translation", kinds=KINDS_ALL, description="CycleGAN: two U-Net G, two PatchGAN D, cycle weight 10 (unpaired)")(CycleGAN)
register("identity", family="reference", kinds=KINDS_ALL, description="translation reference: output = input (resized to the target shape)")(IdentityTranslation)
register("target", family="reference", kinds=KINDS_ALL, description="translation reference: the ground-truth target of each source")(TargetReference)

