"""The style-based generator of ``stylegan`` (Karras et al. 2019; the synthesis layers of StyleGAN2, Karras et al.
2020), sized for 8x8 digits and 28x28 MNIST. The GAN class (``baselines/gan.py``) trains it with its shared loop.

* **Mapping**: z (pixel-normalized) -> w through ``mapping_layers`` Linear + LeakyReLU(0.2) layers; the mean
  w̄ is tracked by an EMA (decay 0.995) of the training batches' mean w.
* **Synthesis**: a learned constant at the start resolution (4x4 for 8x8 images, 7x7 for 28x28), then per
  resolution a 2x bilinear upsampling and two style layers. A style layer is StyleGAN2's *modulated and
  demodulated* 3x3 convolution (the weights scaled per input channel by an affine map of w, then normalized
  to unit output variance), per-pixel noise with a learned strength, a bias and LeakyReLU(0.2). StyleGAN2's
  demodulation instead of StyleGAN1's AdaIN: it removes AdaIN's droplet artefacts, and it needs no
  normalization statistics of the activations, so a sample never depends on the others in its batch.
* **Output**: StyleGAN2's skip architecture (a modulated 1x1 "to image" convolution per resolution, summed over
  the upsampled resolutions), then a sigmoid: images in (0, 1), the harness's GAN convention.
* **Styles per layer**: every style layer and every "to image" layer reads its own w (``num_ws`` of them, coarse
  to fine). Style mixing regularization: in training, with probability ``mixing``, the layers from a random
  crossover index on read the w of a second z. Truncation (``psi`` < 1): every w moves towards w̄,
  ``w̄ + psi (w - w̄)``.

Simplifications against the papers, for CPU-sized models: no equalized learning rate and no mapping-network
learning-rate multiplier (Adam on He-initialised mapping layers, whose output keeps z's spread, and style
affines with weights N(0, 1/w_dim) and bias 1, as the papers' initial scales); no path-length regularization; the discriminator
is the harness's DCGAN one, with its BatchNorm (R1 regularization is in ``baselines/gan.py``; without
BatchNorm this small discriminator stayed at chance under R1 on digits). Noise inputs and
the mixing draws come from the ``generator`` passed in, so seeded samples and training steps are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ModulatedConv2d", "StyleGenerator", "WSpace"]


class ModulatedConv2d(nn.Module):
    """A k x k convolution whose weights are scaled per input channel by the style ``affine(w)`` (bias 1: styles
    start at 1) and, with ``demodulate``, normalized to unit L2 norm per output channel; one grouped conv per batch."""

    def __init__(self, cin: int, cout: int, k: int, w_dim: int, demodulate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) / math.sqrt(cin * k * k))
        self.affine = nn.Linear(w_dim, cin)
        nn.init.normal_(self.affine.weight, std=1 / math.sqrt(w_dim))  # styles vary with w as much as w varies
        nn.init.ones_(self.affine.bias)
        self.demodulate = demodulate
        self.pad = k // 2

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        n, cin, h, wd = x.shape
        weight = self.weight[None] * self.affine(w)[:, None, :, None, None]  # (n, cout, cin, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum((2, 3, 4), keepdim=True) + 1e-8)
        cout, k = weight.shape[1], weight.shape[-1]
        out = F.conv2d(x.reshape(1, n * cin, h, wd), weight.reshape(n * cout, cin, k, k), padding=self.pad, groups=n)
        return out.reshape(n, cout, h, wd)


class _StyleLayer(nn.Module):
    """Modulated 3x3 convolution, scaled per-pixel noise, bias, LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, w_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: Tensor, w: Tensor, noise: Tensor) -> Tensor:
        x = self.conv(x, w) + self.noise_strength * noise
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2)


def style_upsamplings(side: int) -> int:
    """2x upsamplings from the start map: the side is halved while it is even and above 4 (8 -> 4, 28 -> 14 -> 7)."""
    n = 0
    while side > 4 and side % 2 == 0:
        side //= 2
        n += 1
    return n


class StyleGenerator(nn.Module):
    """z (N, z_dim) -> images (N, C, H, W) in (0, 1) through the mapping and synthesis networks (module docstring).

    ``forward(z, generator=None, psi=1.0)``: noise (and, in training, the style-mixing draws) from ``generator``;
    ``psi`` < 1 truncates w towards w̄. :meth:`mapping` and :meth:`synthesis` are the two halves, for style mixing
    and interpolation in w.
    """

    stochastic = True  # forward draws noise: the GAN passes its generator

    def __init__(self, z_dim: int, shape: Sequence[int], width: int, mapping_layers: int = 4, mixing: float = 0.9) -> None:
        super().__init__()
        c, h, w = (int(s) for s in shape)
        if not 0.0 <= mixing <= 1.0:
            raise ValueError(f"stylegan: style mixing probability must be in [0, 1], got {mixing}")
        self.shape, self.z_dim, self.mixing = (c, h, w), int(z_dim), float(mixing)
        n_up = style_upsamplings(min(h, w))
        start = (math.ceil(h / 2**n_up), math.ceil(w / 2**n_up))
        layers: list[nn.Module] = []
        for _ in range(int(mapping_layers)):
            lin = nn.Linear(z_dim, z_dim)
            nn.init.kaiming_normal_(lin.weight, a=0.2, nonlinearity="leaky_relu")  # keeps w's spread through the layers
            nn.init.zeros_(lin.bias)
            layers += [lin, nn.LeakyReLU(0.2)]
        self.mapping_net = nn.Sequential(*layers)
        self.register_buffer("w_avg", torch.zeros(z_dim))
        ch = width * 2 ** min(n_up, 3)
        self.const = nn.Parameter(torch.randn(1, ch, *start))
        self.blocks = nn.ModuleList([nn.ModuleList([_StyleLayer(ch, ch, z_dim)])])
        self.to_img = nn.ModuleList([ModulatedConv2d(ch, c, 1, z_dim, demodulate=False)])
        for _ in range(n_up):
            out = max(width, ch // 2)
            self.blocks.append(nn.ModuleList([_StyleLayer(ch, out, z_dim), _StyleLayer(out, out, z_dim)]))
            self.to_img.append(ModulatedConv2d(out, c, 1, z_dim, demodulate=False))
            ch = out
        self.num_ws = sum(len(b) for b in self.blocks) + len(self.to_img)

    def mapping(self, z: Tensor) -> Tensor:
        """w (N, z_dim) of latents z; in training mode the batch mean also moves w̄ (EMA, decay 0.995)."""
        w = self.mapping_net(z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8))
        if self.training:
            with torch.no_grad():
                self.w_avg.lerp_(w.mean(0), 1 - 0.995)
        return w

    def truncate(self, ws: Tensor, psi: float) -> Tensor:
        """``w̄ + psi (w - w̄)`` for every layer's w (``psi`` = 1: unchanged)."""
        return ws if psi == 1.0 else self.w_avg + psi * (ws - self.w_avg)

    def synthesis(self, ws: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Images (N, C, H, W) in (0, 1) from per-layer styles ``ws`` (N, num_ws, w_dim); noise from ``generator``."""
        n = len(ws)
        x = self.const.expand(n, -1, -1, -1)
        img: Tensor | None = None
        k = 0
        for i, (block, to_img) in enumerate(zip(self.blocks, self.to_img)):
            if i > 0:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
                img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            for layer in block:
                noise = torch.randn(n, 1, *x.shape[2:], generator=generator).to(x.device)
                x = layer(x, ws[:, k], noise)
                k += 1
            y = to_img(x, ws[:, k])
            k += 1
            img = y if img is None else img + y
        return torch.sigmoid(img)[:, :, : self.shape[1], : self.shape[2]]

    def forward(self, z: Tensor, y: Tensor | None = None, *, generator: torch.Generator | None = None, psi: float = 1.0) -> Tensor:
        n = len(z)
        ws = self.mapping(z)[:, None].expand(n, self.num_ws, -1)
        if self.training and self.mixing > 0:
            w2 = self.mapping(torch.randn(z.shape, generator=generator).to(z.device))
            mix = torch.rand(n, generator=generator) < self.mixing
            cut = torch.randint(1, self.num_ws, (n,), generator=generator)
            second = (mix[:, None] & (torch.arange(self.num_ws)[None] >= cut[:, None])).to(z.device)
            ws = torch.where(second[..., None], w2[:, None].expand_as(ws), ws)
        return self.synthesis(self.truncate(ws, psi), generator)


class WSpace:
    """The intermediate latent space w of a model whose sampling network (``_sampling_net()``) is a
    :class:`StyleGenerator`: :meth:`to_w` and :meth:`from_w` (PPL in w, interpolation in w). Other networks raise."""

    name: str
    device: torch.device

    def _sampling_net(self) -> nn.Module:
        raise NotImplementedError

    @property
    def has_w_space(self) -> bool:
        """Whether the sampling network is style-based (``ppl_w`` applies)."""
        return isinstance(self._sampling_net(), StyleGenerator)

    def _style_net(self) -> StyleGenerator:
        net = self._sampling_net().eval()
        if not isinstance(net, StyleGenerator):
            raise ValueError(f"{self.name}: only the style-based generator has a w space")
        return net

    @torch.no_grad()
    def to_w(self, z: Tensor) -> Tensor:
        """w (N, w_dim) of latents z (N, z_dim), on the CPU."""
        return self._style_net().mapping(torch.as_tensor(z).float().to(self.device)).cpu()

    @torch.no_grad()
    def from_w(self, w: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Images (continuous, in (0, 1)) from w (N, w_dim), every layer reading the same w; noise from ``generator``."""
        net = self._style_net()
        w = torch.as_tensor(w).float().to(self.device)
        return net.synthesis(w[:, None].expand(-1, net.num_ws, -1), generator).float().cpu()
