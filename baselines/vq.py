"""Discrete latent models: VQ-VAE (van den Oord et al. 2017) with three priors over its code grid.

Stage 1, the autoencoder (``vqvae``): a conv encoder maps an image to a grid
``z_e`` of D-dimensional vectors (``h x w``, one stride-2 convolution per
``n_down``); each vector is replaced by its nearest codebook entry (squared
Euclidean distance, K = ``num_codes`` entries); a conv decoder maps the
quantized grid ``z_q`` to a categorical distribution over the data's K
intensity levels for every pixel (as ``baselines/vae.py``), so
``-log p(x | z_q)`` is in nats of the discrete data. Gradients pass the
quantizer straight through (``z_e + sg[z_q - z_e]``); the loss is
``-log p(x|z_q) / D_x + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2``
(beta = 0.25), or with ``ema=True`` the codebook follows exponential moving
averages of its assigned encoder outputs (van den Oord et al., appendix) and
only the commitment term remains. Codes unused for ``restart_after``
training steps are restarted on random encoder outputs of the current batch
(dead-code restart).

Stage 2, a prior over the L = h * w codes of the training images:

* ``vqvae``: independent categorical per grid position (the code histogram),
  the baseline the transformers improve on.
* ``vq-ar``: a causal transformer over the raster-ordered codes; exact
  ``log p(codes)``; sampling makes one network evaluation per token (NFE = L).
* ``vq-maskgit``: a bidirectional transformer trained to predict masked codes
  with the cosine mask schedule; decoding fills the grid in T parallel steps,
  keeping the most confident predictions and re-masking the rest
  (Chang et al. 2022). ``steps`` = T = NFE.

Likelihood (``vqvae`` and ``vq-ar``): the encoder is deterministic, so
``q(z | x)`` is a point mass with zero entropy and
``log p(x) >= log p(x | z_q(x)) + log p_prior(z_q(x))`` is an evidence lower
bound; :meth:`elbo` returns it in nats per example (``info.likelihood`` =
``"vq-bound"``). MaskGIT has no tractable code likelihood and reports none.

This module holds the shared generator (training both stages, encoding,
decoding, the bound), ``vqvae`` and its reconstruction floor; the quantizer
and the autoencoder network are in ``baselines/vq_quantizer.py``, the
transformer priors in ``baselines/vq_priors.py``.

Samples decode the sampled codes with the decoder's most likely level per
pixel (``decoder="mode"``, default) or draw ``x ~ p(x | z)`` (``"sample"``).

``TrainReport.extra`` records the codebook size, usage (fraction of codes used
by the training set), perplexity ``exp(H)`` of the code histogram, dead codes
(unused by the training set), restarts, and the reconstruction error (nats per
example and per dimension, mean absolute error in [0, 1] units of the mode
reconstruction).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor, nn

from .base import Family, with_base_keywords
from .protocol import Budget, DataInfo, TrainData, TrainReport, count_parameters
from .registry import register
from .training import Batch, default_warmup, train
from .vq_quantizer import VectorQuantizer, _decode_levels, _VQNet, code_statistics

__all__ = [
    "VectorQuantizer",
    "VQVAE",
    "VQReconstruction",
    "code_statistics",
    "default_n_down",
]

_DECODERS = ("mode", "sample", "mean")


# ----------------------------------------------------------------------------- generators
MAX_GRID_SIDE = 8


def default_n_down(height: int, width: int) -> int:
    """Stride-2 downsamplings that bring an image to a code grid of side at most ``MAX_GRID_SIDE`` (8), at least one.

    The priors' cost grows with the number of codes L: a causal transformer
    samples with L sequential network evaluations and attends over all L, so
    28x28 MNIST gets two downsamplings (7x7, L = 49) rather than one (14x14,
    L = 196; the mnist suite's header has the measured cost), and 8x8 digits
    keep n_down = 1 (4x4).
    Stops early where a side would no longer halve exactly.
    """
    n = 1
    while max(height, width) // 2**n > MAX_GRID_SIDE and height % 2 ** (n + 1) == 0 and width % 2 ** (n + 1) == 0:
        n += 1
    return n


class _VQBase(Family):
    """VQ-VAE with an independent categorical prior per code position; see the module docstring.

    Args:
        info: image data description (needs ``levels``).
        num_codes: codebook size K (default 32).
        code_dim: code dimension D.
        width: base channels of the conv encoder/decoder.
        n_down: stride-2 downsamplings (1: 8x8 images -> 4x4 codes, 2 -> 2x2);
            None (default) picks :func:`default_n_down`: 8x8 -> 4x4 codes, 28x28 -> 7x7.
        beta: commitment weight.
        ema: EMA codebook updates instead of the codebook loss.
        restart_after: restart codes unused for this many steps (0 = never).
        ae_fraction: fraction of ``budget.steps`` spent on the autoencoder; the
            rest trains the prior (the independent prior is counted, not trained,
            so ``vqvae`` spends the whole budget on the autoencoder).
        lr: Adam learning rate of the autoencoder (``Budget.lr`` overrides it).
        prior_lr: learning rate of a transformer prior.
        decoder: how samples are decoded: ``"mode"`` (most likely level per
            pixel), ``"sample"`` (x ~ p(x | z)) or ``"mean"`` (not on the K levels).
        device: ``"cpu"``, ``"cuda"`` or None (auto).
    """

    name = "vqvae"
    family = "vq"

    def __init__(
        self,
        info: DataInfo,
        *,
        num_codes: int = 32,
        code_dim: int = 16,
        width: int = 32,
        n_down: int | None = None,
        beta: float = 0.25,
        ema: bool = False,
        restart_after: int = 100,
        ae_fraction: float = 0.5,
        lr: float = 2e-3,
        prior_lr: float = 1e-3,
        decoder: str = "mode",
        device: str | None = None,
    ) -> None:
        who = self.name
        if not info.is_image or not info.levels:
            raise ValueError(f"{who}: needs image data with intensity levels (info.levels); {info.name} is {info.kind}")
        n_down = default_n_down(info.shape[1], info.shape[2]) if n_down is None else int(n_down)
        if n_down < 0 or info.shape[1] % 2**n_down or info.shape[2] % 2**n_down:
            raise ValueError(f"{who}: image size {tuple(info.shape[1:])} must be divisible by 2**n_down = {2**max(n_down, 0)}")
        if not 0.0 < ae_fraction <= 1.0:
            raise ValueError(f"{who}: ae_fraction must be in (0, 1], got {ae_fraction}")
        if restart_after < 0:
            raise ValueError(f"{who}: restart_after must be >= 0 (0 = no restarts), got {restart_after}")
        if decoder not in _DECODERS:
            raise ValueError(f"{who}: decoder must be one of {_DECODERS}, got {decoder!r}")
        super().__init__(info, lr=float(lr), device=device)
        self.num_codes = int(num_codes)
        self.restart_after = int(restart_after)
        self.ae_fraction = float(ae_fraction)
        self.prior_lr = float(prior_lr)
        self.decoder_mode = decoder
        self.net = _VQNet(info, num_codes, code_dim, width, n_down, beta, ema).to(self.device)
        self.grid = self.net.grid
        self.length = self.grid[0] * self.grid[1]
        self.prior = self._make_prior()
        if self.prior is not None:
            self.prior.to(self.device).eval()  # train() only inside fit: dropout off for likelihoods and sampling
        self.register_buffers()
        self._sampler = self.make_sampler() if callable(self.make_sampler) else None

    # -- prior hooks (overridden by the transformer priors) ------------------------------
    def _make_prior(self) -> nn.Module | None:
        return None

    def register_buffers(self) -> None:
        # per-position code log-probabilities of the independent prior, (L, K)
        self.position_logp = torch.full((self.length, self.num_codes), -math.log(self.num_codes))

    def _fit_prior(self, codes: Tensor, budget: Budget, t0: float) -> TrainReport:
        """Stage 2 on the training codes (N, L); the independent prior counts them (no optimisation)."""
        counts = torch.stack([torch.bincount(codes[:, i].cpu(), minlength=self.num_codes) for i in range(self.length)]).double()
        p = (counts + 0.5) / (counts.sum(1, keepdim=True) + 0.5 * self.num_codes)  # Jeffreys-smoothed histogram
        self.position_logp = p.log().float()
        return TrainReport()

    def code_log_prob(self, codes: Tensor) -> Tensor:
        """log p_prior(codes) in nats for codes (N, L) in raster order, (N,)."""
        lp = self.position_logp.to(codes.device)
        return lp.gather(1, codes.t()).t().sum(1) if codes.numel() else torch.zeros(len(codes))

    def _sample_codes(self, n: int, sampler: Any, generator: torch.Generator | None, steps: int | None = None) -> Tensor:
        if not isinstance(sampler, IndependentCodeSampler):
            raise TypeError(f"{self.name}: sampler must be an IndependentCodeSampler, got {type(sampler).__name__}")
        codes = sampler(self.position_logp, n, generator)
        self.last_nfe = sampler.nfe
        return codes.to(self.device)

    # -- protocol ---------------------------------------------------------------------
    def info_fields(self) -> dict[str, Any]:
        """The autoencoder's and the prior's parameters together; the bound and the sampler's iterations."""
        n, t = count_parameters(self.net)
        if self.prior is not None:
            pn, pt = count_parameters(self.prior)
            n, t = n + pn, t + pt
        return {"n_params": n, "n_trainable": t, "likelihood": self._likelihood_kind, "iterative": self._iterative, "default_steps": self._default_steps}

    _likelihood_kind: str | None = None  # "vq-bound" with _VQBound
    _iterative = False
    _default_steps: int | None = None

    @property
    def latent_shape(self) -> tuple[int, int]:
        """The code grid (h, w)."""
        return self.grid

    def make_sampler(self, sampler: str = "independent") -> IndependentCodeSampler:
        """The independent prior's one algorithm: each position's code drawn from its own histogram."""
        if sampler != "independent":
            raise ValueError(f"{self.name}: unknown sampler {sampler!r}; valid: independent")
        return IndependentCodeSampler()

    def _on_device(self, x: Tensor) -> Tensor:
        """Checked images (:meth:`check_x`) on the model's device."""
        return self.check_x(x).to(self.device)

    # -- training ---------------------------------------------------------------------
    def fit(self, data: TrainData, budget: Budget) -> TrainReport:
        """Stage 1: the VQ autoencoder for ``ae_fraction`` of ``budget.steps``; stage 2: the prior on the frozen codes."""
        if budget.steps < 1:
            raise ValueError(f"{self.name}: budget.steps must be >= 1, got {budget.steps}")
        t0 = time.perf_counter()
        x = self.check_x(data.x)
        ae_steps = budget.steps if self.prior is None else max(1, round(self.ae_fraction * budget.steps))
        dim_x = self.data_info.dim
        q = self.net.quantizer
        restarts = [0]

        def ae_loss(batch: Batch, generator: torch.Generator | None) -> dict[str, Tensor]:
            xb = batch.x.to(self.device)
            z_e = self.net.encode(xb)
            out = q(z_e)
            rec = -self.net.log_px(xb, out.z_q).mean()
            step = batch.step
            if self.restart_after and step > 0 and step % max(1, self.restart_after // 2) == 0:
                restarts[0] += q.restart_dead(z_e, self.restart_after)
            return {"loss": rec / dim_x + out.loss, "rec_nats": rec, "vq": out.loss}

        self.net.train()
        opt = torch.optim.Adam(self.net.parameters(), lr=budget.lr or self.lr)
        ae_budget = Budget(steps=ae_steps, batch_size=budget.batch_size, max_seconds=budget.max_seconds)
        ae_rep = train(
            f"{self.name} autoencoder", ae_budget, x, loss=ae_loss, optimizer=opt, params=list(self.net.parameters()),
            warmup=default_warmup(ae_steps), clip_grad=1.0, curves=("rec_nats", "vq"), check_finite=True, started=t0,
        )  # fmt: skip
        self.net.eval()
        codes = self.encode_codes(x)
        stats = code_statistics(codes, self.num_codes)
        rest = max(0, budget.steps - ae_rep.steps) if self.prior is not None else 0
        if budget.max_seconds is not None and time.perf_counter() - t0 > budget.max_seconds:
            rest = min(rest, 1)
        prior_rep = self._fit_prior(codes.reshape(len(codes), -1), Budget(steps=rest, batch_size=budget.batch_size, max_seconds=budget.max_seconds), t0)
        self._fitted = True
        rec = self._reconstruction_error(x)
        extra = {**stats, "restarts": restarts[0], **rec, "code_grid": list(self.grid), "ae_steps": ae_rep.steps, "prior_steps": prior_rep.steps}
        return TrainReport(
            steps=ae_rep.steps + prior_rep.steps, wall_time_s=time.perf_counter() - t0, losses={**ae_rep.losses, **prior_rep.losses}, extra=extra
        )

    @torch.no_grad()
    def _reconstruction_error(self, x: Tensor) -> dict[str, float]:
        nll, mae = [], []
        for i in range(0, len(x), 512):
            xb = x[i : i + 512].to(self.device)
            z_q = self.net.quantizer(self.net.encode(xb)).z_q
            nll.append(-self.net.log_px(xb, z_q))
            mae.append((_decode_levels(self.net.log_probs(z_q), "mode", None) - xb).abs().flatten(1).mean(1))
        nll_t, mae_t = torch.cat(nll), torch.cat(mae)
        return {"recon_nats": float(nll_t.mean()), "recon_nats_per_dim": float(nll_t.mean()) / self.data_info.dim, "recon_mae": float(mae_t.mean())}

    # -- latent space -----------------------------------------------------------------
    @torch.no_grad()
    def encode_codes(self, x: Tensor) -> Tensor:
        """Images (N, C, H, W) in [0, 1] -> nearest codes (N, h, w), long, on CPU."""
        self.net.eval()
        x = self._on_device(x)
        out = [self.net.quantizer.nearest(self.net.encode(x[i : i + 512]).permute(0, 2, 3, 1).reshape(-1, self.net.quantizer.dim)) for i in range(0, len(x), 512)]
        return torch.cat(out).reshape(len(x), *self.grid).cpu()

    @torch.no_grad()
    def decode_codes(self, codes: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Codes (N, h, w) or (N, L) -> images (N, C, H, W) in [0, 1] (see ``decoder``)."""
        codes = codes.reshape(len(codes), *self.grid).long().to(self.device)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.num_codes):
            raise ValueError(f"{self.name}: codes must be in [0, {self.num_codes - 1}]")
        logp = self.net.log_probs(self.net.quantizer.lookup(codes))
        return _decode_levels(logp, self.decoder_mode, generator).float().cpu()

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Images -> continuous encoder outputs z_e before quantization, flattened to (N, D * h * w), on CPU."""
        self.net.eval()
        return self.net.encode(self._on_device(x)).flatten(1).cpu()

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Continuous latents, (N, D * h * w) or (N, D, h, w) -> nearest codes -> decoder mean images in [0, 1]."""
        self.net.eval()
        z = z.float().to(self.device).reshape(len(z), self.net.quantizer.dim, *self.grid)
        z_q = self.net.quantizer(z).z_q
        return _decode_levels(self.net.log_probs(z_q), "mean", None).float().cpu()

    # -- sampling ---------------------------------------------------------------------
    @torch.no_grad()
    def draw(self, n: int, labels: Tensor | None, steps: int | None, generator: torch.Generator | None, sampler: Any) -> Tensor:
        """n images in [0, 1]: codes from the prior, decoded (see ``decoder``)."""
        if labels is not None:
            raise ValueError(f"{self.name}: the model is unconditional (no labels)")
        if self.prior is not None:
            self.prior.eval()
        codes = self._sample_codes(n, sampler if sampler is not None else self._sampler, generator, steps)
        return self.decode_codes(codes, generator)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"net": self.net.state_dict(), "position_logp": self.position_logp}
        if self.prior is not None:
            state["prior"] = self.prior.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.position_logp = state["position_logp"].float()
        if self.prior is not None:
            if "prior" not in state:
                raise KeyError(f"{self.name}: state has no 'prior' entry (saved from a model without a transformer prior?)")
            self.prior.load_state_dict(state["prior"])
            self.prior.eval()
        self.net.eval()
        self._fitted = True


class _VQBound:
    """The VQ evidence lower bound, for priors with a tractable code likelihood."""

    _likelihood_kind = "vq-bound"

    # -- likelihood -------------------------------------------------------------------
    @torch.no_grad()
    def elbo(self, x: Tensor) -> Tensor:
        """log p(x | z_q(x)) + log p_prior(z_q(x)), nats per example, (N,): an
        evidence lower bound (the deterministic encoder's posterior has zero entropy)."""
        self.require_fitted()
        self.net.eval()
        x = self._on_device(x)
        out = []
        for i in range(0, len(x), 512):
            xb = x[i : i + 512]
            z_q = self.net.quantizer(self.net.encode(xb))
            codes = z_q.codes.reshape(len(xb), -1)
            out.append(self.net.log_px(xb, z_q.z_q) + self.code_log_prob(codes))
        return torch.cat(out).float().cpu()


class IndependentCodeSampler:
    """Codes drawn independently per position from the per-position histogram ``position_logp`` (L, K).

    No network runs for the codes; ``nfe`` = 1 counts the decoder pass that turns them into an image.
    """

    name = "independent"

    def __init__(self) -> None:
        self.nfe = 0

    def __call__(self, position_logp: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
        p = position_logp.exp()
        u = torch.rand(n, len(p), generator=generator)
        codes = (p.cumsum(-1)[None] < u[..., None]).sum(-1).clamp(max=p.shape[1] - 1)
        self.nfe = 1
        return codes


class VQVAE(_VQBound, _VQBase):
    """VQ-VAE with an independent categorical prior per code position (the code histogram); VQ bound."""


# ----------------------------------------------------------------------------- reconstruction floor
class VQReconstruction(_VQBase):
    """Reconstruction floor: decode(encode(x)) of held-out real images through the trained VQ autoencoder.

    A reference row, not a generator of new images: it shows what the
    autoencoder alone caps for every model built on its codes. The harness
    hands it the held-out pool (``use_pool``); ``sample`` draws pool images
    without replacement (with replacement beyond the pool size) and
    reconstructs them with the decoder's most likely levels.
    """

    name = "vqvae-recon"
    family = "reference"
    make_sampler = None  # no sampling algorithm to choose: it reconstructs held-out images (not a SamplerChoice)

    def __init__(self, info: DataInfo, *, pool: Tensor | None = None, pool_labels: Tensor | None = None, **kwargs: Any) -> None:
        super().__init__(info, **kwargs)
        self.pool: Tensor | None = None
        self.pool_labels: Tensor | None = None
        if pool is not None:
            self.use_pool(pool, pool_labels)

    def use_pool(self, x: Tensor, labels: Tensor | None = None) -> None:
        """The held-out images (N, C, H, W) in [0, 1] to reconstruct, with optional labels."""
        x = self.check_x(x)
        if len(x) == 0:
            raise ValueError(f"{self.name}: the pool of held-out images is empty")
        self.pool, self.pool_labels = x, (labels.clone() if labels is not None else None)

    def sample_labeled(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """n reconstructed pool images and the pool labels of their originals."""
        self.require_fitted()
        if self.pool is None:
            raise RuntimeError(f"{self.name}: no held-out pool; call use_pool(x) first")
        m = len(self.pool)
        idx = torch.randperm(m, generator=generator)[:n] if n <= m else torch.randint(0, m, (n,), generator=generator)
        codes = self.encode_codes(self.pool[idx])
        self.last_nfe = 1
        return self.decode_codes(codes, generator), (self.pool_labels[idx].clone() if self.pool_labels is not None else None)

    def sample(self, n: int, *, labels=None, prompts=None, steps=None, generator=None, sampler=None) -> Tensor:  # noqa: D102
        return self.sample_labeled(n, generator=generator)[0]


# ----------------------------------------------------------------------------- registry
register("vqvae", family="vq", kinds=("image",), description="VQ-VAE (nearest-code quantizer, straight-through, beta 0.25) with an independent per-position code prior; VQ bound.")(VQVAE)


register("vqvae-recon", family="reference", kinds=("image",), description="Reconstruction floor of the VQ autoencoder: decode(encode(held-out images)).")(
    with_base_keywords(VQReconstruction)
)
