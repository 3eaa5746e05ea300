"""Variational autoencoder (Kingma & Welling 2014) with the ELBO and the IWAE bound.

Model: z ~ N(0, I_d), x ~ p(x | z); amortized posterior q(z | x) = N(mu(x), diag exp(logvar(x))).

* Images: the decoder is *discrete*, so the bounds are bounds on the
  discrete log-likelihood log P(x_int) directly (no dequantization). Two
  heads (``likelihood``): ``"categorical"``, a softmax over the K intensity
  levels for every pixel (``C * K`` logits per position), or ``"logistic"``,
  a discretized logistic per pixel (Salimans et al. 2017, one component): 2
  outputs per pixel (mean mu in [0, 1] units and log-scale), P(x_int = k) the
  logistic mass of the bin [k - 1/2, k + 1/2] / (K - 1), the two end bins
  taking the tails. The logistic head costs 2 instead of K outputs per pixel
  (the difference between 17-level digits and 256-level MNIST).
  ``"bernoulli"``: the textbook MNIST VAE's decoder, one logit per pixel
  and the binary cross-entropy against the intensity in [0, 1]. That is not
  a distribution over the K levels, so this head reports no likelihood
  (:attr:`VAE.likelihood_na` says why; the harness marks NLL n/a); its
  samples are shown as the decoder mean sigmoid(logit), as the papers do.
* 2-D points: a Gaussian decoder with a mean and a diagonal log-variance per
  point (clamped below at ``min_logvar``), on standardized coordinates; the
  standardization's Jacobian is included, so numbers are nats per point of
  the raw data.

Bounds (nats per example, higher is better):

* ``elbo(x)``: E_q[log p(x|z)] - KL(q(z|x) || N(0, I)), one reparameterized
  sample for the expectation and the KL in closed form.
* ``iwae_bound(x, k)``: log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q (Burda et
  al. 2016). k = 1 is an (unbiased, noisier) estimate of the ELBO; the expected
  bound is non-decreasing in k and tends to log p(x).

``encode(x) -> (mu, logvar)`` and ``decode(z)`` (mean image) expose the latent
space for latent arithmetic (``bench.figures.vae_latent_figure``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Family
from .nets import ConvDecoder, ConvEncoder, mlp
from .protocol import Budget, DataInfo, TrainData, to_levels
from .registry import register
from .samplers import OnePassSampler
from .training import Batch

__all__ = ["VAE"]

LOG_2PI = math.log(2 * math.pi)
_DECODERS = ("sample", "mean", "mode")
_LIKELIHOODS = ("categorical", "logistic", "bernoulli")
_MIN_LOG_SCALE = -7.0  # lower clamp of the logistic head's log-scale (pixel units), as in PixelCNN++




def _std_normal_logpdf(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (z**2 + LOG_2PI).sum(-1)


def discretized_logistic_logp(x: Tensor, mu: Tensor, log_s: Tensor, levels: int) -> Tensor:
    """log P(x_int) in nats per pixel under a discretized logistic (Salimans et al. 2017).

    ``x`` in [0, 1] on the K = ``levels`` grid k / (K - 1); ``mu`` and ``log_s``
    (broadcastable to x) in the same units. The bin of level k is
    [x - h, x + h] with h = 1 / (2 (K - 1)); level 0 takes the mass below
    0 + h and level K - 1 the mass above 1 - h, so the K probabilities sum to 1.
    """
    h = 0.5 / (levels - 1)
    inv_s = torch.exp(-log_s)
    centred = x - mu
    plus, minus = inv_s * (centred + h), inv_s * (centred - h)
    log_cdf_plus = -F.softplus(-plus)  # log sigmoid(plus): the mass below x + h
    log_sf_minus = -F.softplus(minus)  # log (1 - sigmoid(minus)): the mass above x - h
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * centred
    log_mid = mid - log_s - 2 * F.softplus(mid) + math.log(2 * h)  # density at the centre x bin width, for tiny bins
    inner = torch.where(delta > 1e-5, torch.log(delta.clamp_min(1e-12)), log_mid)
    low, high = x < h, x > 1 - h
    return torch.where(low, log_cdf_plus, torch.where(high, log_sf_minus, inner))


def discretized_logistic_mean(mu: Tensor, log_s: Tensor, levels: int) -> Tensor:
    """E[x_int] / (K - 1) in [0, 1] under :func:`discretized_logistic_logp`:
    sum over k = 1..K-1 of P(x_int >= k), accumulated level by level (no K-sized tensor)."""
    h = 0.5 / (levels - 1)
    inv_s = torch.exp(-log_s)
    total = torch.zeros_like(mu)
    for k in range(1, levels):
        total += torch.sigmoid(-inv_s * (k / (levels - 1) - h - mu))
    return total / (levels - 1)


def discretized_logistic_sample(mu: Tensor, log_s: Tensor, levels: int, generator: torch.Generator | None) -> Tensor:
    """Exact samples x_int / (K - 1): a continuous logistic draw (uniforms on the CPU
    from ``generator``), rounded to the nearest level and clamped to [0, 1]."""
    u = torch.rand(mu.shape, generator=generator).to(mu.device).clamp(1e-6, 1 - 1e-6)
    y = mu + torch.exp(log_s) * (torch.log(u) - torch.log1p(-u))
    return torch.round(y.clamp(0, 1) * (levels - 1)) / (levels - 1)


class _VAENet(nn.Module):
    def __init__(self, info: DataInfo, latent_dim: int, width: int, hidden: Sequence[int], min_logvar: float, likelihood: str) -> None:
        super().__init__()
        self.is_image = info.is_image
        self.shape = tuple(info.shape)
        self.latent_dim = latent_dim
        self.min_logvar = min_logvar
        self.likelihood = likelihood
        if self.is_image:
            self.levels = int(info.levels)
            c = self.shape[0]
            per_pixel = {"categorical": self.levels, "logistic": 2, "bernoulli": 1}[likelihood]
            self.encoder = ConvEncoder(self.shape, 2 * latent_dim, width=width)
            self.decoder = ConvDecoder(latent_dim, self.shape, out_channels=c * per_pixel, width=width)
        else:
            d = info.dim
            self.encoder = mlp(d, 2 * latent_dim, hidden)
            self.decoder = mlp(latent_dim, 2 * d, hidden)
        self.register_buffer("shift", torch.zeros(info.dim))
        self.register_buffer("scale", torch.ones(info.dim))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data -> (mu, logvar) of q(z|x)."""
        h = x * 2 - 1 if self.is_image else (x - self.shift) / self.scale
        mu, logvar = self.encoder(h).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decoder_params(self, z: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Images, categorical head: log-probabilities (..., C, H, W, K); logistic
        head: (mu, log_scale), each (..., C, H, W) in [0, 1] pixel units;
        Bernoulli head: logits (..., C, H, W); points: (mean, logvar) in standardized units."""
        lead = z.shape[:-1]
        out = self.decoder(z.reshape(-1, self.latent_dim))
        if self.is_image:
            c, h, w = self.shape
            if self.likelihood == "logistic":
                mu, log_s = out.reshape(*lead, c, 2, h, w).unbind(-3)
                return 0.5 + mu, log_s.clamp(min=_MIN_LOG_SCALE)
            if self.likelihood == "bernoulli":
                return out.reshape(*lead, c, h, w)
            out = out.reshape(*lead, c, self.levels, h, w).movedim(-3, -1)
            return F.log_softmax(out, dim=-1)
        mean, logvar = out.reshape(*lead, -1).chunk(2, dim=-1)
        return mean, self.min_logvar + F.softplus(logvar - self.min_logvar)

    def log_px_given_z(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) in nats for x (N, ...) and z (..., N, d): shape z.shape[:-1]."""
        if self.is_image:
            if self.likelihood == "logistic":
                mu, log_s = self.decoder_params(z)
                return discretized_logistic_logp(x, mu, log_s, self.levels).flatten(-3).sum(-1)
            if self.likelihood == "bernoulli":  # -BCE(logits, x in [0, 1]): not normalized over the K levels
                logits = self.decoder_params(z)
                return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").flatten(-3).sum(-1)
            logp = self.decoder_params(z)  # (..., N, C, H, W, K)
            idx = to_levels(x, self.levels).expand(*logp.shape[:-1])
            return logp.gather(-1, idx.unsqueeze(-1)).squeeze(-1).flatten(-3).sum(-1)
        mean, logvar = self.decoder_params(z)
        y = (x - self.shift) / self.scale
        lp = -0.5 * (LOG_2PI + logvar + (y - mean) ** 2 / logvar.exp()).sum(-1)
        return lp - torch.log(self.scale).sum()


class VAE(Family):
    """Gaussian-latent VAE; discretized (categorical) decoder for images, Gaussian for 2-D.

    Args:
        info: data description.
        latent_dim: size of z (default 8 for images, 2 for 2-D points).
        width: base channel count of the conv encoder/decoder (images).
        hidden: hidden sizes of the MLPs (2-D points).
        lr: Adam learning rate (``Budget.lr`` overrides it when given).
        beta: weight of the KL term in the *training* loss (1 = the ELBO);
            the reported bounds always use beta = 1.
        min_logvar: lower bound of the 2-D decoder's log-variance (standardized units).
        iwae_k: default k of :meth:`iwae_bound`.
        kl_warmup: fraction of the training steps over which the KL weight ramps
            linearly from 0 to ``beta`` (0 = no warm-up); counters posterior collapse.
        likelihood: the image decoder's head, ``"categorical"`` (K-way softmax
            per pixel), ``"logistic"`` (discretized logistic, 2 outputs per pixel)
            or ``"bernoulli"`` (one logit per pixel, cross-entropy against the
            intensity: the textbook MNIST VAE; no likelihood is reported).
        device: ``"cpu"``, ``"cuda"`` or None (auto).
    """

    name = "vae"
    family = "vae"
    curves = ("neg_elbo", "kl")
    rng = "global"

    def __init__(
        self,
        info: DataInfo,
        *,
        latent_dim: int | None = None,
        width: int = 16,
        hidden: Sequence[int] = (128, 128),
        lr: float = 1e-3,
        beta: float = 1.0,
        min_logvar: float = -9.0,
        iwae_k: int = 64,
        kl_warmup: float = 0.0,
        likelihood: str = "categorical",
        device: str | None = None,
    ) -> None:
        if likelihood not in _LIKELIHOODS:
            raise ValueError(f"vae: likelihood must be one of {_LIKELIHOODS}, got {likelihood!r}")
        if info.is_image and not info.levels:
            raise ValueError("vae: image data needs info.levels (number of intensity levels K)")
        if latent_dim is None:
            latent_dim = 8 if info.is_image else 2
        if latent_dim < 1:
            raise ValueError(f"vae: latent_dim must be >= 1, got {latent_dim}")
        if beta <= 0:
            raise ValueError(f"vae: beta must be > 0, got {beta}")
        _check_k(iwae_k)
        if not 0 <= kl_warmup <= 1:
            raise ValueError(f"vae: kl_warmup is a fraction of the training steps in [0, 1], got {kl_warmup}")
        super().__init__(info, lr=lr, device=device)
        self.kl_warmup = float(kl_warmup)
        self.latent_dim = latent_dim
        self.beta = float(beta)
        self.iwae_k = int(iwae_k)
        self.likelihood = likelihood
        if likelihood == "bernoulli" and not info.is_image:
            raise ValueError("vae: the bernoulli head is for images; 2-D points use the Gaussian decoder")
        self.likelihood_na: str | None = (
            "the Bernoulli decoder's cross-entropy on intensities is not a likelihood of the K-level pixels"
            if likelihood == "bernoulli" else None
        )  # fmt: skip
        self.net = _VAENet(info, latent_dim, width, tuple(hidden), min_logvar, likelihood).to(self.device)
        self._warm_steps = 0.0  # KL warm-up length of the current fit, in steps

    # -- protocol ---------------------------------------------------------------------
    def info_fields(self) -> dict[str, Any]:
        return {"likelihood": None if self.likelihood_na else "elbo"}

    def make_sampler(self, decoder: str = "sample", temperature: float = 1.0) -> OnePassSampler:
        """Sampling options for :meth:`sample` (no retraining).

        Args:
            decoder: ``"sample"`` draws x ~ p(x|z) (the model whose bound is
                reported); ``"mean"`` outputs the decoder mean (rounded to the
                K levels for images), the usual "VAE sample" picture;
                ``"mode"`` (images) the most likely level of each pixel.
            temperature: scale of the prior noise z = temperature * eps.
        """
        if decoder not in _DECODERS:
            raise ValueError(f"vae: decoder must be one of {_DECODERS}, got {decoder!r}")
        if temperature <= 0:
            raise ValueError(f"vae: temperature must be > 0, got {temperature}")
        return OnePassSampler("vae", {"decoder": decoder, "temperature": float(temperature)})

    def _prep(self, x: Tensor) -> Tensor:
        return self.check_x(x).to(self.device)

    def prepare(self, data: TrainData) -> tuple[Tensor, None]:
        """The checked training images or points; 2-D data set the decoder's standardization."""
        x, _ = super().prepare(data)
        if not self.data_info.is_image:
            self.net.shift.copy_(x.mean(0).to(self.device))
            self.net.scale.copy_(x.std(0).clamp_min(1e-6).to(self.device))
        return x, None

    def before_fit(self, x: Tensor, budget: Budget) -> None:
        self._warm_steps = self.kl_warmup * budget.steps

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """``-(rec - beta_t KL)`` averaged over the batch (``"loss"``; beta_t warms up
        linearly over the first ``kl_warmup`` fraction of the steps of the current
        ``fit``), and the curves ``"neg_elbo"`` (-ELBO, nats/example) and ``"kl"``."""
        rec, kl = self._elbo_terms(batch.x.to(self.device), generator)
        warm = self._warm_steps
        beta = self.beta * min(1.0, (batch.step + 1) / warm) if warm > 0 else self.beta
        return {"loss": -(rec - beta * kl).mean(), "neg_elbo": -(rec - kl).mean(), "kl": kl.mean()}

    def _elbo_terms(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        mu, logvar = self.net.encode(x)
        eps = torch.randn(mu.shape, generator=generator).to(mu.device) if generator is not None else torch.randn_like(mu)
        z = mu + (0.5 * logvar).exp() * eps
        rec = self.net.log_px_given_z(x, z)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        return rec, kl

    def elbo(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """ELBO in nats per example (one posterior sample, closed-form KL); shape (N,)."""
        self.net.eval()
        with torch.no_grad():
            rec, kl = self._elbo_terms(self._prep(x), generator)
        return (rec - kl).float().cpu()

    def iwae_bound(self, x: Tensor, k: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Importance-weighted bound with k samples (1 <= k <= 256), nats per example; shape (N,)."""
        k = self.iwae_k if k is None else int(k)
        _check_k(k)
        self.net.eval()
        x = self._prep(x)
        chunk = max(1, 4096 // k)
        out = []
        with torch.no_grad():
            for i in range(0, len(x), chunk):
                xb = x[i : i + chunk]
                mu, logvar = self.net.encode(xb)
                std = (0.5 * logvar).exp()
                eps = torch.randn((k, *mu.shape), generator=generator).to(mu.device)
                z = mu + std * eps  # (k, n, d)
                log_q = -0.5 * (eps**2 + LOG_2PI + logvar).sum(-1)
                log_w = self.net.log_px_given_z(xb, z) + _std_normal_logpdf(z) - log_q
                out.append(torch.logsumexp(log_w, 0) - math.log(k))
        return torch.cat(out).float().cpu()

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data (N, *shape) -> (mu, logvar) of q(z|x), each (N, latent_dim), on CPU."""
        self.net.eval()
        with torch.no_grad():
            mu, logvar = self.net.encode(self._prep(x))
        return mu.cpu(), logvar.cpu()

    def decode(self, z: Tensor) -> Tensor:
        """Latents (N, latent_dim) -> decoder mean: images (N, C, H, W) in [0, 1] (not rounded), points (N, 2)."""
        self.net.eval()
        with torch.no_grad():
            params = self.net.decoder_params(z.float().to(self.device))
            if self.data_info.is_image:
                return self._image_mean(params).float().cpu()
            mean, _ = params
            return (mean * self.net.scale + self.net.shift).float().cpu()

    def _image_mean(self, params: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        """The decoder's mean image in [0, 1] (not rounded) from :meth:`_VAENet.decoder_params`."""
        k = self.net.levels
        if self.likelihood == "logistic":
            return discretized_logistic_mean(*params, k)
        if self.likelihood == "bernoulli":
            return torch.sigmoid(params)
        levels = torch.arange(k, device=params.device, dtype=params.dtype) / (k - 1)
        return (params.exp() * levels).sum(-1)

    @torch.no_grad()
    def from_latent(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The decoder's mean for latents ``z`` (N, latent_dim) (:class:`~genbench.protocol.LatentPath`): images in
        [0, 1], not rounded to the levels; 2-D data in data units."""
        self.require_fitted()
        self.net.eval()
        params = self.net.decoder_params(torch.as_tensor(z).float().to(self.device))
        if self.data_info.is_image:
            return self._image_mean(params).float().cpu()
        return (params[0] * self.net.scale + self.net.shift).float().cpu()

    def draw(self, n: int, labels: Tensor | None, steps: int | None, generator: torch.Generator | None, sampler: Any) -> Tensor:
        """n samples: z ~ N(0, T^2 I), then x ~ p(x|z) (or its mean; options from :meth:`make_sampler`)."""
        opts = self.make_sampler() if sampler is None else sampler
        decoder_mode, temperature = opts.get("decoder", "sample"), opts.get("temperature", 1.0)
        self.last_nfe = 1
        z = temperature * torch.randn(n, self.latent_dim, generator=generator)
        self.net.eval()
        with torch.no_grad():
            params = self.net.decoder_params(z.to(self.device))
            if self.data_info.is_image:
                k = self.net.levels
                if decoder_mode == "mean":
                    return (torch.round(self._image_mean(params) * (k - 1)) / (k - 1)).float().cpu()
                if decoder_mode == "mode":
                    if self.likelihood == "logistic":  # a logistic's bin mass peaks at the level nearest mu
                        return (torch.round(params[0].clamp(0, 1) * (k - 1)) / (k - 1)).float().cpu()
                    if self.likelihood == "bernoulli":  # each pixel at its more likely value, 0 or 1
                        return (params > 0).float().cpu()
                    return (params.argmax(-1).float() / (k - 1)).float().cpu()
                if self.likelihood == "logistic":
                    return discretized_logistic_sample(*params, k, generator).float().cpu()
                if self.likelihood == "bernoulli":  # binary pixels, as for binarized MNIST
                    u = torch.rand(params.shape, generator=generator).to(params.device)
                    return (u < torch.sigmoid(params)).float().cpu()
                # inverse-CDF sampling with CPU uniforms: reproducible on any device
                u = torch.rand(params.shape[:-1], generator=generator).to(params.device)
                cdf = params.exp().cumsum(-1)
                x_int = (cdf < u.unsqueeze(-1)).sum(-1).clamp(max=k - 1).float()
                return (x_int / (k - 1)).float().cpu()
            mean, logvar = params
            y = mean
            if decoder_mode == "sample":
                y = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=generator).to(mean.device)
            return (y * self.net.scale + self.net.shift).float().cpu()


def _check_k(k: int) -> None:
    if not 1 <= int(k) <= 256:
        raise ValueError(f"vae: the IWAE k must be in [1, 256], got {k}")


register("vae", family="vae", description="VAE: Gaussian encoder, categorical-over-K, discretized-logistic or Bernoulli decoder (images) or Gaussian decoder (2-D); ELBO and IWAE-k.")(VAE)
