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

from .gan import GAN
from .registry import preset

__all__ = ["STYLEGAN_SETTINGS"]

STYLEGAN_SETTINGS = {"loss": "ns", "arch": "style", "r1_gamma": 0.1, "style_mixing": 0.9, "mapping_layers": 4, "ema": 0.999, "betas": (0.0, 0.99)}
"""Mixing probability 0.9 and betas (0, 0.99) as in the papers; 4 mapping layers instead of 8 for CPU-sized
models; R1 weight 0.1 for [0, 1]-valued 8x8 images (StyleGAN2 scales gamma with resolution, 0.01-10; on digits
0.1 trained better than 1 and than 0.01 at 500 and 1,500 steps)."""

preset(
    "stylegan", GAN, family="gan", kinds=("image",),
    description="Style-based GAN: mapping network, modulated convolutions, noise, style mixing, R1, EMA; truncation psi as a sampling option.",
    **STYLEGAN_SETTINGS,
)  # fmt: skip
