"""Autoencoders as generators: ``autoencoder`` (deterministic) and ``dae`` (denoising).

An autoencoder learns an encoder E and a decoder D with D(E(x)) ~ x. It is not
a generative model by itself; it becomes one by fitting a
density to the latent codes of the training data (a full-covariance Gaussian
or a Gaussian mixture, hyperparameter ``latent_prior``) and decoding samples
of that density. Not every latent point decodes onto the data manifold, and
the sample metrics show it: nothing here hides that.

* ``autoencoder``: reconstruction loss only.
* ``dae``: the encoder sees a corrupted input x + sigma * eps and the decoder
  must reconstruct the clean x, which pushes the map towards a projection onto
  the data manifold (directions off the manifold fall in the map's nullspace).

Data: images are fed as x in [0, 1] (scaled to [-1, 1] inside) and decoded
with a sigmoid; samples are rounded to the K levels. The image loss
(``recon_loss``) is the squared error in [-1, 1] units (``"mse"``) or the
binary cross-entropy of the pixel intensities in [0, 1] against the
decoder's logits (``"bce"``, the usual MNIST autoencoder loss). Both are
summed over pixels. Through a sigmoid, the summed squared error can saturate:
on 28x28 MNIST (mostly black) it drives the logits of every pixel far below
zero within a few hundred steps, the sigmoid's gradient vanishes and the
decoder stays black; the cross-entropy's gradient (sigmoid - x) does not
vanish there. 2-D points
are standardized with the training mean/std (stored in the state) and use MLPs.
Neither model has a likelihood (its NLL columns read n/a).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Family
from .nets import ConvDecoder, ConvEncoder, mlp
from .protocol import DataInfo, TrainData, count_parameters
from .registry import preset, register
from .samplers import OnePassSampler
from .training import Batch

__all__ = ["AutoencoderGenerator"]

_PRIORS = ("gaussian", "gmm")
_RECON_LOSSES = ("mse", "bce")




class _AENet(nn.Module):
    """Encoder + decoder; for 2-D data also the standardization buffers."""

    def __init__(self, info: DataInfo, latent_dim: int, width: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.is_image = info.is_image
        if self.is_image:
            self.encoder = ConvEncoder(info.shape, latent_dim, width=width)
            self.decoder = ConvDecoder(latent_dim, info.shape, width=width)
        else:
            d = info.dim
            self.encoder = mlp(d, latent_dim, hidden)
            self.decoder = mlp(latent_dim, d, hidden)
        self.register_buffer("shift", torch.zeros(info.dim))
        self.register_buffer("scale", torch.ones(info.dim))

    def to_net(self, x: Tensor) -> Tensor:
        """Data -> network input space ([-1, 1] images; standardized points)."""
        if self.is_image:
            return x * 2 - 1
        return (x - self.shift) / self.scale

    def from_net(self, x: Tensor) -> Tensor:
        """Network output (reconstruction target space) -> data space."""
        if self.is_image:
            return x
        return x * self.scale + self.shift

    def decode_raw(self, z: Tensor) -> Tensor:
        out = self.decoder(z)
        return torch.sigmoid(out) if self.is_image else out


class AutoencoderGenerator(Family):
    """Autoencoder (optionally denoising) + a Gaussian / GMM density on the latent codes.

    Args:
        info: data description.
        latent_dim: size of the code (default 8 for images, 2 for 2-D points).
        width: base channel count of the conv encoder/decoder (images).
        hidden: hidden sizes of the MLPs (2-D points).
        lr: Adam learning rate (``Budget.lr`` overrides it when given).
        latent_prior: latent density to sample: ``"gaussian"`` (full covariance) or
            ``"gmm"`` (scikit-learn EM). Both are fitted; ``make_sampler(latent_prior=...)`` switches.
        gmm_components: mixture components when ``latent_prior="gmm"``.
        noise_std: input corruption std, in [0, 1] pixel units for images, in
            standardized units for 2-D (0 = plain AE; default 0, or with
            ``denoising`` 0.2 for images and 0.1 for 2-D).
        denoising: the denoising autoencoder (registered as ``dae``): ``noise_std`` must be > 0.
        recon_loss: images: ``"mse"`` (squared error in [-1, 1] units) or
            ``"bce"`` (binary cross-entropy on [0, 1] intensities); 2-D data always use MSE.
        device: ``"cpu"``, ``"cuda"`` or None (auto).
    """

    name = "autoencoder"
    family = "autoencoder"
    curves = ("recon",)
    rng = "global"

    def __init__(
        self,
        info: DataInfo,
        *,
        name: str = "autoencoder",
        latent_dim: int | None = None,
        width: int = 16,
        hidden: Sequence[int] = (128, 128),
        lr: float = 1e-3,
        latent_prior: str = "gaussian",
        gmm_components: int = 10,
        noise_std: float | None = None,
        denoising: bool = False,
        recon_loss: str = "mse",
        device: str | None = None,
    ) -> None:
        if noise_std is None:
            noise_std = (0.2 if info.is_image else 0.1) if denoising else 0.0
        if denoising and noise_std <= 0:
            raise ValueError(f"{name}: noise_std must be > 0 (use 'autoencoder' for none), got {noise_std}")
        if recon_loss not in _RECON_LOSSES:
            raise ValueError(f"{name}: recon_loss must be one of {_RECON_LOSSES}, got {recon_loss!r}")
        if latent_prior not in _PRIORS:
            raise ValueError(f"{name}: latent_prior must be one of {_PRIORS}, got {latent_prior!r}")
        if latent_dim is None:
            latent_dim = 8 if info.is_image else 2
        if latent_dim < 1:
            raise ValueError(f"{name}: latent_dim must be >= 1, got {latent_dim}")
        if noise_std < 0:
            raise ValueError(f"{name}: noise_std must be >= 0, got {noise_std}")
        if gmm_components < 1:
            raise ValueError(f"{name}: gmm_components must be >= 1, got {gmm_components}")
        super().__init__(info, lr=lr, device=device)
        self.name = name
        self.latent_dim = latent_dim
        self.latent_prior = latent_prior
        self.gmm_components = gmm_components
        self.noise_std = float(noise_std)
        self.recon_loss = recon_loss if info.is_image else "mse"
        self.net = _AENet(info, latent_dim, width, tuple(hidden)).to(self.device)
        # latent densities, both fitted after training: {name: (weights, means, cholesky factors)}
        self.priors: dict[str, tuple[Tensor, Tensor, Tensor]] = {}

    # -- protocol ---------------------------------------------------------------------
    def info_fields(self) -> dict[str, Any]:
        """The parameter count includes the sampled latent density's (weights, means, covariances)."""
        m = 1 if self.latent_prior == "gaussian" else self.gmm_components
        d = self.latent_dim
        return {"n_params": count_parameters(self.net)[0] + m * (d + d * (d + 1) // 2) + m - 1}

    def make_sampler(self, latent_prior: str | None = None) -> OnePassSampler:
        """Sampling option for :meth:`sample` (no retraining): which fitted latent
        density to sample, ``"gaussian"`` or ``"gmm"`` (both are fitted by
        :meth:`fit`); default the ``latent_prior`` hyperparameter."""
        if latent_prior is not None and latent_prior not in _PRIORS:
            raise ValueError(f"{self.name}: latent_prior must be one of {_PRIORS}, got {latent_prior!r}")
        return OnePassSampler(self.name, {"latent_prior": latent_prior or self.latent_prior})

    def encode(self, x: Tensor) -> Tensor:
        """Data (N, *shape) -> codes (N, latent_dim), no gradient."""
        self.net.eval()
        with torch.no_grad():
            return self.net.encoder(self.net.to_net(x.float().to(self.device))).cpu()

    def decode(self, z: Tensor) -> Tensor:
        """Codes (N, latent_dim) -> data; images in [0, 1] (not rounded to levels)."""
        self.net.eval()
        with torch.no_grad():
            out = self.net.from_net(self.net.decode_raw(z.float().to(self.device)))
        return out.reshape(len(z), *self.data_info.shape).float().cpu()

    def prepare(self, data: TrainData) -> tuple[Tensor, None]:
        """The checked training data; 2-D data set the network's standardization.

        Training minimizes the (denoising) reconstruction error (:meth:`loss`); :meth:`after_fit` then fits the latent densities.
        """
        x, _ = super().prepare(data)
        if not self.data_info.is_image:
            self.net.shift.copy_(x.mean(0).to(self.device))
            self.net.scale.copy_(x.std(0).clamp_min(1e-6).to(self.device))
        return x, None

    def after_fit(self, x: Tensor) -> None:
        self._fit_prior(x)

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Reconstruction loss summed over dimensions, mean over the batch (``"loss"``,
        also reported as ``"recon"``), of the (noised, for ``dae``) input: squared
        error, or binary cross-entropy with ``recon_loss="bce"``."""
        target = self.net.to_net(batch.x.to(self.device))
        inp = target
        if self.noise_std > 0:
            scale = 2.0 if self.data_info.is_image else 1.0  # pixel units -> [-1, 1] units
            noise = torch.randn_like(target) if generator is None else torch.randn(target.shape, generator=generator).to(target.device)
            inp = target + scale * self.noise_std * noise
        code = self.net.encoder(inp)
        if self.recon_loss == "bce":
            logits = self.net.decoder(code)
            loss = F.binary_cross_entropy_with_logits(logits, batch.x.to(self.device), reduction="none").flatten(1).sum(1).mean()
            return {"loss": loss, "recon": loss}
        recon = self.net.decode_raw(code)
        if self.data_info.is_image:
            recon = recon * 2 - 1
        loss = ((recon - target) ** 2).flatten(1).sum(1).mean()
        return {"loss": loss, "recon": loss}

    def _fit_prior(self, x: Tensor) -> None:
        """Fit both latent densities (full-covariance Gaussian; GMM by EM) to the training codes."""
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        codes = torch.cat([self.encode(x[i : i + 1024]) for i in range(0, len(x), 1024)]).double()
        reg = 1e-6 * torch.eye(self.latent_dim, dtype=torch.float64)
        mean = codes.mean(0)
        c = codes - mean
        cov = c.T @ c / len(codes) + reg
        self.priors["gaussian"] = (torch.ones(1, dtype=torch.float64), mean[None], torch.linalg.cholesky(cov)[None])
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())  # follows the harness's torch seed
        m = min(self.gmm_components, len(codes))
        gm = GaussianMixture(n_components=m, covariance_type="full", reg_covar=1e-6, random_state=seed)
        with threadpool_limits(1):  # tiny problem: BLAS/OpenMP threads only add contention
            gm.fit(codes.numpy())
        self.priors["gmm"] = (
            torch.as_tensor(gm.weights_, dtype=torch.float64),
            torch.as_tensor(gm.means_, dtype=torch.float64),
            torch.linalg.cholesky(torch.as_tensor(gm.covariances_, dtype=torch.float64) + reg),
        )

    def sample_latents(self, n: int, generator: torch.Generator | None = None, prior: str | None = None) -> Tensor:
        """Draw n codes from the fitted latent density ``prior`` (default ``latent_prior``; float64, CPU)."""
        weights, means, chols = self.priors[prior or self.latent_prior]
        comp = torch.multinomial(weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.latent_dim, generator=generator, dtype=torch.float64)
        return means[comp] + torch.einsum("nij,nj->ni", chols[comp], eps)

    def draw(self, n: int, labels: Tensor | None, steps: int | None, generator: torch.Generator | None, sampler: Any) -> Tensor:
        """n samples: images (n, C, H, W) on the K levels in [0, 1], or points (n, 2);
        codes from the latent density chosen by ``sampler`` (:meth:`make_sampler`)."""
        prior = None if sampler is None else sampler.get("latent_prior")
        self.last_nfe = 1
        out = self.decode(self.sample_latents(n, generator, prior))
        if self.data_info.is_image:
            k = self.data_info.levels
            out = torch.round(out.clamp(0, 1) * (k - 1)) / (k - 1)
        return out.float()

    def extra_state(self) -> dict[str, Any]:
        return {f"prior_{name}": {"weights": w, "means": m, "chols": c} for name, (w, m, c) in self.priors.items()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.priors = {}
        for name in _PRIORS:
            p = state[f"prior_{name}"]
            self.priors[name] = (p["weights"].double(), p["means"].double(), p["chols"].double())


register("autoencoder", family="autoencoder", description="Deterministic autoencoder; samples decode a Gaussian/GMM fitted to the latent codes.")(AutoencoderGenerator)
preset(
    "dae", AutoencoderGenerator, family="autoencoder", denoising=True,
    description="Denoising autoencoder (Gaussian input noise; default std 0.2 of the pixel range, 0.1 standardized units for 2-D).",
)  # fmt: skip
