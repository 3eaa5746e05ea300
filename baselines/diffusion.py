"""Denoising diffusion (Ho et al. 2020) with separate samplers.

One trained network, several samplers (diffusers' scheduler/model split):

* **Training** (Algorithm 1 of Ho et al.): ``x_t = sqrt(abar_t) x_0 +
  sqrt(1 - abar_t) eps`` with ``t ~ U{1..T}``; the network predicts ``eps``
  (mean squared error). Schedules: ``"linear"`` (beta from 1e-4 to 0.02, both
  scaled by 1000 / T as in Nichol & Dhariwal so that any T gives the same
  curve) and ``"cosine"`` (Nichol & Dhariwal 2021, ``s = 0.008``, betas
  clipped at 0.999).
* **Networks**: a small U-Net (``nets.UNet``: residual blocks, sinusoidal time
  embedding, skip connections) for images and an MLP with a time embedding
  (``nets.TimeMLP``) for 2-D data.
* **Samplers** (objects from :mod:`baselines.samplers`, chosen per call with
  ``sample(..., sampler=model.make_sampler(sampler="ddim", eta=0.0))``):
  ancestral ``"ddpm"`` with the posterior variance beta~_t (the default), and
  ``"ddim"`` (Song et al. 2021) with ``eta = 0`` by default, and ``"dpm++2m"``
  (DPM-Solver++(2M), the same ODE as DDIM at second order). ``sample(n, steps=S)``: S network evaluations
  (S sampler steps; 2 S evaluations, batched in pairs, under classifier-free
  guidance with a scale other than 0 or 1). DDIM accepts any 1 <= S <= T on
  evenly spaced ("trailing") timesteps ``floor(T - i T / S + 1/2) - 1``; DDPM
  uses all T steps by default and, for S < T, the same strided timesteps with
  the respaced betas ``1 - abar_t / abar_s`` (Nichol & Dhariwal's respacing),
  which is an approximation of the T-step chain.
* **Class conditioning** (``conditional=True``): labels are dropped (replaced
  by a null label) with probability ``p_uncond`` during training, and sampling
  uses classifier-free guidance ``eps = eps_u + w (eps_c - eps_u)``: ``w = 0``
  is the unconditional model, ``w = 1`` the conditional one, ``w > 1``
  strengthens the condition.
* **Likelihood**: ``elbo(x)`` is the variational bound of Ho et al.
  ``-(L_T + sum_{t>=2} L_{t-1} + L_0)`` in nats per example, with a
  discretized Gaussian decoder over the K intensity levels for images (a lower
  bound on log P(x_int)) and a Gaussian decoder for 2-D data (a bound on the
  density, nats per point). See :meth:`DDPM.elbo` for the estimator.

Images are mapped to [-1, 1] internally; samples are quantized to the K levels
in [0, 1]. 2-D data are standardized with the training mean and std. Sampling
and ``elbo`` use the exponential moving average of the weights.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .adaptation import ADAPT_METHODS, DEFAULT_LR, AdaptationError, prepare_method, state_bytes
from .base import with_base_keywords
from .denoising import DenoisingModel
from .lora import merge_lora, parameter_counts, parameter_report
from .protocol import Budget, DataInfo, TrainData, TrainReport
from .registry import register
from .samplers import Denoiser, Sampler, sampler_timesteps
from .schedules import SCHEDULES, NoiseSchedule, cosine_betas, linear_betas
from .training import Batch, seeded_generator, train

__all__ = ["DDPM", "SCHEDULES", "NoiseSchedule", "cosine_betas", "discretized_gaussian_log_prob", "linear_betas", "make_ddpm", "sampler_timesteps"]



def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, log_std: Tensor | float, levels: int) -> Tensor:
    """log P(x) per element for x on the K-level grid of [-1, 1] (centres
    -1 + 2k/(K-1)), under N(mean, std^2) integrated over each bin of half width
    1/(K-1); the end bins extend to -inf / +inf. Computed in float64 with
    log-ndtr so that far tails do not underflow."""
    x, mean = x.double(), mean.double()
    std = torch.exp(torch.as_tensor(log_std, dtype=torch.float64, device=x.device))
    half = 1.0 / (levels - 1)
    lo = (x - half - mean) / std
    hi = (x + half - mean) / std
    lo = torch.where(x <= -1 + 1e-6, torch.full_like(lo, -math.inf), lo)
    hi = torch.where(x >= 1 - 1e-6, torch.full_like(hi, math.inf), hi)
    # use the lower tail: P = Phi(b) - Phi(a) with a < b both flipped when a > 0
    flip = lo > 0
    a = torch.where(flip, -hi, lo)
    b = torch.where(flip, -lo, hi)
    lb = torch.special.log_ndtr(b)
    la = torch.special.log_ndtr(a)
    return lb + torch.log1p(-torch.exp((la - lb).clamp(max=0.0)).clamp(max=1 - 1e-15))


# ----------------------------------------------------------------------------- the model
@with_base_keywords
class DDPM(DenoisingModel):
    """epsilon-prediction diffusion model; see the module docstring.

    Hyperparameters (registered as ``ddpm``): ``T`` diffusion steps,
    ``schedule`` ("linear" | "cosine"), network size (``width``, ``mults``,
    ``blocks`` for the U-Net; ``hidden`` for the 2-D MLP), ``conditional`` and
    ``p_uncond`` (label dropout), optimiser ``lr``, ``ema_decay``,
    ``elbo_timesteps`` (number of stratified timesteps of the ELBO estimate,
    ``None`` = all T terms).

    Defaults (cosine schedule, U-Net width 16, lr 2e-3) are meant for
    minute-scale CPU budgets (small nets, a schedule that keeps signal at few
    sampling steps); the probes behind them are in the digits suite's header.
    """

    name = "ddpm"
    family = "diffusion"
    prediction = "eps"
    default_sampler = "ddpm"
    deterministic_sampler = "ddim"
    time_dtype = torch.long
    likelihood = "elbo"

    def __init__(
        self,
        info: DataInfo,
        T: int = 1000,
        schedule: str = "cosine",
        elbo_timesteps: int | None = 100,
        **kwargs: Any,
    ) -> None:
        if elbo_timesteps is not None and elbo_timesteps < 1:
            raise ValueError(f"ddpm: elbo_timesteps must be >= 1 or None, got {elbo_timesteps}")
        self.schedule = NoiseSchedule(schedule, T)
        self.T = self.schedule.T
        self.elbo_timesteps = elbo_timesteps
        self.x0_bound = 1.0  # x_0 predictions are clipped to [-bound, bound] while sampling
        self.clip_denoised = True  # the ELBO's reverse model clips its x_0 prediction like the samplers
        super().__init__(info, **kwargs)

    @property
    def default_steps(self) -> int:
        """Steps of the default (ancestral) sampler: T. DDIM defaults to min(50, T)."""
        return self.T

    def make_sampler(self, sampler: str | None = None, **params: Any) -> Sampler:
        """A sampler object for :meth:`sample` (training is unaffected).

        Args:
            sampler: ``"ddpm"`` (ancestral, T steps by default), ``"ddim"`` or
                ``"dpm++2m"`` (DPM-Solver++(2M), 20 steps by default).
            spacing: (all three) timesteps of a run shorter than T:
                ``"trailing"``, ``"leading"`` or ``"quadratic"``.
            eta: (DDIM) stochasticity in [0, 1] (0 = deterministic, 1 = DDPM-like noise).
            guidance_scale: classifier-free guidance weight w >= 0 of a
                conditional model (0 unconditional, 1 conditional).
            clip_denoised: clip the predicted x_0 to the data range at every step (default True).
        """
        return super().make_sampler(sampler, **params)

    def _check_sampler_params(self, params: dict[str, Any]) -> None:
        if "eta" in params and not 0.0 <= float(params["eta"]) <= 1.0:
            raise ValueError(f"ddpm: eta must be in [0, 1], got {params['eta']}")

    def _sampler_context(self) -> dict[str, Any]:
        return {"schedule": self.schedule}

    def _fit_statistics(self, x: Tensor) -> None:
        super()._fit_statistics(x)
        self.x0_bound = float(((x - self.shift) / self.scale).abs().max()) * 1.5

    def _run_denoiser(self, den: Denoiser) -> Denoiser:
        den.x0_clip = self.x0_bound if self.clip_denoised else None
        return den

    # -- network --------------------------------------------------------------------
    def _null(self, n: int) -> Tensor:
        return torch.full((n,), self.num_classes, dtype=torch.long, device=self.device)

    def predict_eps(self, net: nn.Module, x: Tensor, i: int | Tensor, y: Tensor | None, guidance_scale: float = 1.0) -> Tensor:
        """Network noise prediction at index i (t = i + 1), with classifier-free
        guidance ``eps_u + w (eps_c - eps_u)`` for a conditional model given labels."""
        return self.denoiser(net)(x, i, y, guidance_scale)

    # -- training -------------------------------------------------------------------
    def loss(self, batch: Batch, generator: torch.Generator | None = None, *, net: nn.Module | None = None, p_uncond: float | None = None) -> Tensor:
        """Epsilon-prediction MSE of ``net`` (default the training network) at uniform t.

        ``batch.x`` is in the model's space (:meth:`to_internal`); ``batch.y``
        labels of a conditional model, replaced by the null label with
        probability ``p_uncond`` (default the model's; 0 draws nothing). Noise,
        t and the dropout come from ``generator``.
        """
        net = self.net if net is None else net
        xb = batch.x
        b = xb.shape[0]
        i = torch.randint(0, self.T, (b,), generator=generator)
        eps = torch.randn(xb.shape, generator=generator)
        xt = self.schedule.q_sample(xb, i, eps).to(self.device)
        y = self._labels_for_loss(batch.y, b, p_uncond, generator)
        pred = net(xt, i.to(self.device)) if y is None else net(xt, i.to(self.device), y)
        return nn.functional.mse_loss(pred, eps.to(self.device))

    def adapt(
        self,
        data: TrainData,
        budget: Budget,
        *,
        method: str,
        r: int = 4,
        alpha: float | None = None,
        targets: Sequence[str] | None = None,
        prior: tuple[Tensor, Tensor] | None = None,
        prior_weight: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> TrainReport:
        """Fine-tune the sampling (EMA) network in place on a few examples (the
        :class:`~genbench.protocol.Adaptable` capability).

        Args:
            data: the examples (data space) and, for a conditional model, their
                label; ``embedding``/``cond-proj`` train a new row of the class
                table for that one label (the "new concept").
            budget: ``steps`` Adam steps of ``batch_size`` examples drawn with
                replacement; ``lr`` (default :data:`baselines.adaptation.DEFAULT_LR`).
            method: ``full``, ``embedding``, ``kv``, ``cond-proj`` or ``lora``
                (see :mod:`baselines.adaptation`); ``r``, ``alpha``, ``targets``
                configure LoRA, whose adapters are merged after training.
            prior: optional prior-preservation set (x, labels) in data space:
                the loss becomes ``loss(data) + prior_weight * loss(prior)``
                (DreamBooth's class-prior loss), each on its own batch.
            generator: CPU generator for the LoRA initialisation, batches, t
                and noise (default: seeded from the global RNG).

        The loss is :meth:`loss` without label dropout, gradients clipped at 1,
        no EMA. Returns the report of :func:`baselines.training.train` with
        ``extra``: ``method``, ``trainable_params``, ``all_params``,
        ``param_report``, ``layers`` and ``adapter_bytes`` (size of the saved
        tensors the method changes). Raises :class:`baselines.adaptation.NotApplicable`
        when the method does not apply to this network.
        """
        if method not in ADAPT_METHODS:
            raise AdaptationError(f"ddpm: unknown adaptation method {method!r}; valid: {', '.join(ADAPT_METHODS)}")
        x_data = self.check_x(data.x, "adaptation data")
        concept = -1
        if self.conditional:
            if data.y is None:
                raise AdaptationError("ddpm: a conditional model adapts to labelled examples (TrainData.y)")
            concept = int(data.y[0])
            if method in ("embedding", "cond-proj") and not bool((data.y == concept).all()):
                raise AdaptationError(f"ddpm: method {method!r} teaches one new class; the examples carry labels {sorted(set(data.y.tolist()))}")
        elif method in ("embedding", "cond-proj"):
            raise AdaptationError(f"ddpm: method {method!r} needs a class-conditional model (conditional=True)")
        t0 = time.perf_counter()
        gen = generator if generator is not None else seeded_generator()
        net = self.ema.module
        spec = {"method": method, "r": r, "alpha": alpha, "targets": targets}
        params, state_fn, info = prepare_method(net, spec, concept, self.num_classes, generator=gen)
        trainable, total = parameter_counts(net)
        x = self.to_internal(x_data)
        y = data.y.long() if self.conditional else None
        px = py = None
        if prior is not None:
            px, py = self.to_internal(prior[0]), prior[1].long()

        def loss(batch: Batch, g: torch.Generator | None) -> Tensor:
            out = self.loss(batch, g, net=net, p_uncond=0.0)
            if px is not None:
                idx = torch.randint(0, len(px), (len(batch.x),), generator=g)
                out = out + prior_weight * self.loss(Batch(px[idx], py[idx], batch.step), g, net=net, p_uncond=0.0)
            return out

        opt = torch.optim.Adam(params, lr=budget.lr or DEFAULT_LR[method])
        net.train()
        try:
            report = train(
                f"ddpm adapt ({method})", budget, x, y, loss=loss, optimizer=opt, params=params, clip_grad=1.0,
                replacement=True, generator=gen, started=t0,
            )  # fmt: skip
        finally:
            net.eval()
        report.extra.update(
            {
                "method": method,
                "trainable_params": trainable,
                "all_params": total,
                "param_report": parameter_report(net),
                "layers": info.get("layers", []),
                "adapter_bytes": state_bytes(state_fn()),
            }
        )
        if method == "lora":
            merge_lora(net)  # sample with merged weights (no adapter cost at inference)
        return report

    # -- likelihood -----------------------------------------------------------------
    def _x0_hat(self, xt: Tensor, i: Tensor, y: Tensor | None) -> Tensor:
        """x_0 prediction (float64, CPU) of the EMA network at indices i, clipped
        like the sampler when ``clip_denoised`` (the reverse model's mean is the
        posterior mean given this prediction)."""
        ab = self.schedule.alphas_bar[i].view(-1, *([1] * (xt.dim() - 1)))
        e_hat = self.predict_eps(self.ema.module, xt.to(self.device), i, y, guidance_scale=1.0).cpu().double()
        x0 = (xt.double() - (1 - ab).sqrt() * e_hat) / ab.sqrt()
        return x0.clamp(-self.x0_bound, self.x0_bound) if self.clip_denoised else x0

    @torch.no_grad()
    def elbo(self, x: Tensor, labels: Tensor | None = None, timesteps: int | None = -1, seed: int = 0) -> Tensor:
        """Variational lower bound on log p(x), nats per example (N,).

        ``-(L_T + sum_{t=2}^T L_{t-1} + L_0)`` (Ho et al. 2020, eq. 5) for the
        T-step ancestral model, whose reverse steps p(x_{t-1} | x_t) are
        Gaussians with the posterior variance beta~_t and the posterior mean
        given the predicted x_0 (clipped to the data range when
        ``clip_denoised``, as in the sampler). Then
        ``L_{t-1} = (SNR(t-1) - SNR(t)) / 2 * ||x_0 - x0_hat(x_t)||^2`` with
        SNR = abar / (1 - abar) (equal to Ho et al.'s eps form without clipping).
        The decoder p(x_0 | x_1) = N(x0_hat(x_1), beta_1) is integrated over the
        K-level bins for images (so this bounds log P(x_int) of the discrete
        data, in nats) and evaluated as a density for 2-D data (nats per point,
        with the standardization's log-Jacobian). L_T is the closed-form KL of
        q(x_T | x_0) from N(0, I).

        Estimator: the sum over t is estimated, per example, by stratified
        sampling: {2..T} is cut into at most ``timesteps`` strata with
        geometrically growing widths (the terms fall off roughly like 1/t, so
        small t get strata of one step, evaluated exactly), one t is drawn
        uniformly in each stratum and weighted by its width, with one eps per
        term; this is unbiased. ``timesteps=None`` evaluates
        all T - 1 terms (still one eps draw each). The default (-1) uses the
        ``elbo_timesteps`` hyperparameter (100). Randomness comes from a CPU
        generator seeded with ``seed``, so repeated calls agree. A conditional
        model scores log p(x) with the null label unless ``labels`` are given
        (then log p(x | y)).
        """
        x = self.check_x(x, "x")
        if timesteps == -1:
            timesteps = self.elbo_timesteps
        gen = torch.Generator().manual_seed(seed)
        self.ema.module.eval()
        n = x.shape[0]
        x0 = self.to_internal(x).reshape(n, -1) if not self.data_info.is_image else self.to_internal(x)
        y = None
        if self.conditional:
            y = self._null(n) if labels is None else self._labels(n, labels, None)
        sch = self.schedule
        dims = tuple(range(1, x0.dim()))
        x0d = x0.double()
        # prior term L_T = KL(q(x_T | x_0) || N(0, I))
        abT = float(sch.alphas_bar[-1])
        lt = 0.5 * (abT * x0d**2 + (1 - abT) - 1 - math.log(1 - abT)).sum(dims)
        # denoising terms t = 2..T (indices 1..T-1)
        if timesteps is None or timesteps >= self.T - 1:
            draws = [torch.full((n,), i, dtype=torch.long) for i in range(1, self.T)]
            weights = [1.0] * len(draws)
        else:
            bounds = np.unique(np.round(np.geomspace(1, self.T, timesteps + 1)).astype(np.int64))
            draws = [torch.randint(int(lo), int(hi), (n,), generator=gen) for lo, hi in zip(bounds[:-1], bounds[1:])]
            weights = [float(hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:])]
        abar = sch.alphas_bar
        snr = abar / (1 - abar)
        ldiff = torch.zeros(n, dtype=torch.float64)
        for i, w in zip(draws, weights):
            eps = torch.randn(x0.shape, generator=gen)
            xt = sch.q_sample(x0.cpu(), i, eps)
            x0_hat = self._x0_hat(xt, i, y)
            coef = 0.5 * (snr[i - 1] - snr[i]).view(-1, *([1] * len(dims)))
            ldiff += w * (coef * (x0d - x0_hat) ** 2).sum(dims)
        # decoder term L_0 = -log p(x_0 | x_1): mean = posterior mean at t = 1 = x0_hat, variance beta_1
        i1 = torch.zeros(n, dtype=torch.long)
        x1 = sch.q_sample(x0.cpu(), i1, torch.randn(x0.shape, generator=gen))
        mean = self._x0_hat(x1, i1, y)
        log_std = 0.5 * math.log(float(sch.betas[0]))
        if self.data_info.is_image:
            l0 = -discretized_gaussian_log_prob(x0d, mean, log_std, self.data_info.levels).sum(dims)
        else:
            l0 = 0.5 * (((x0d - mean) / math.exp(log_std)) ** 2 + 2 * log_std + math.log(2 * math.pi)).sum(dims)
            l0 = l0 + torch.log(self.scale.double()).sum()  # density of the unstandardized data
        return (-(lt + ldiff + l0)).float()

    # -- state ----------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "x0_bound": self.x0_bound}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.x0_bound = float(state["x0_bound"])


# The class is the factory: its constructor's keywords are the hyperparameters.
make_ddpm = register("ddpm", family="diffusion", description="Denoising diffusion (eps-prediction; DDPM and DDIM samplers, CFG, ELBO).")(DDPM)
