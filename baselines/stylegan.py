"""``stylegan``: a style-based GAN (Karras et al. 2019, 2020) for 8x8 digits and 28x28 MNIST.

The generator is :class:`baselines.stylegan_nets.StyleGenerator` (mapping network z -> w with the mean w̄ tracked
by EMA; synthesis from a learned constant with StyleGAN2's modulated/demodulated convolutions, per-layer noise
and styles, skip "to image" outputs; style mixing in training). It is trained by the GAN family's one loop
(:class:`baselines.gan.GAN` with ``arch="style"``): the non-saturating loss, R1 regularization on real images
(``r1_gamma``, every step: StyleGAN2's lazy schedule saves time only at large resolutions), an EMA generator
for sampling, the DCGAN discriminator. The settings below are this preset's defaults; a suite
may override any of them.

Truncation is a sampling option: ``sample_params = { psi = 0.7 }`` moves every w towards w̄ (the DCGAN-type
GANs take the same option and scale z instead).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .gan import GAN
from .registry import preset

__all__ = ["STYLEGAN_SETTINGS", "style_mixing_grid"]

STYLEGAN_SETTINGS = {"loss": "ns", "arch": "style", "r1_gamma": 0.1, "style_mixing": 0.9, "mapping_layers": 4, "ema": 0.999, "betas": (0.0, 0.99)}
"""Mixing probability 0.9 and betas (0, 0.99) as in the papers; 4 mapping layers instead of 8 for CPU-sized
models; R1 weight 0.1 for [0, 1]-valued 8x8 images (StyleGAN2 scales gamma with resolution, 0.01-10; on digits
0.1 trained better than 1 and than 0.01 at 500 and 1,500 steps)."""

preset(
    "stylegan", GAN, family="gan", kinds=("image",),
    description="Style-based GAN: mapping network, modulated convolutions, noise, style mixing, R1, EMA; truncation psi as a sampling option.",
    **STYLEGAN_SETTINGS,
)  # fmt: skip


def style_mixing_grid(model: GAN, coarse: Tensor, fine: Tensor, crossover: int, generator: torch.Generator | None = None) -> Tensor:
    """The paper's style-mixing figure as images (len(coarse) + 1, len(fine) + 1, C, H, W) in (0, 1), continuous:
    row 0 shows the ``fine`` sources' images, column 0 the ``coarse`` sources'; cell (i + 1, j + 1) takes the
    styles of layers < ``crossover`` (coarse: the start resolutions) from ``coarse[i]`` and the rest from
    ``fine[j]``. Latents z (N, z_dim); the sampling (EMA) generator, no truncation; the noise inputs of each of
    the three image sets come from one seed drawn from ``generator``."""
    net = model._style_net()
    if not 0 < crossover < net.num_ws:
        raise ValueError(f"{model.name}: crossover must be in [1, {net.num_ws - 1}], got {crossover}")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.no_grad():
        wa = net.mapping(coarse.float().to(model.device))[:, None].expand(-1, net.num_ws, -1)
        wb = net.mapping(fine.float().to(model.device))[:, None].expand(-1, net.num_ws, -1)
        mixed = torch.cat([wa[:, None, :crossover].expand(-1, len(fine), -1, -1), wb[None, :, crossover:].expand(len(coarse), -1, -1, -1)], 2)

        def images(ws: Tensor) -> Tensor:
            return net.synthesis(ws.reshape(-1, net.num_ws, ws.shape[-1]), torch.Generator().manual_seed(seed)).cpu()

        cells = images(mixed).reshape(len(coarse), len(fine), *net.shape)
        top, left = images(wb), images(wa)
    grid = torch.ones(len(coarse) + 1, len(fine) + 1, *net.shape)
    grid[0, 1:], grid[1:, 0], grid[1:, 1:] = top, left, cells
    return grid
