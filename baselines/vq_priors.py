"""Stage 2 of the VQ models: transformer priors over the code grid of a trained VQ autoencoder (``baselines/vq.py``).

* ``vq-ar``: a causal transformer over the raster-ordered codes; exact
  ``log p(codes)``; sampled ancestrally, one network evaluation per token
  (:class:`~baselines.token_samplers.AutoregressiveSampler`, NFE = L). The VQ bound of ``vq.py`` applies.
* ``vq-maskgit``: a bidirectional transformer trained to predict masked codes
  with the cosine mask schedule; :class:`~baselines.token_samplers.MaskGITSampler` fills the grid in T
  parallel steps, keeping the most confident predictions and re-masking the
  rest (Chang et al. 2022). ``steps`` = T = NFE. No tractable likelihood.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import with_base_keywords
from .protocol import Budget, DataInfo, TrainReport
from .registry import register
from .samplers import make_sampler
from .token_samplers import AutoregressiveSampler, MaskGITSampler, cosine_mask_ratio
from .training import Batch, default_warmup, train
from .vq import _VQBase, _VQBound

__all__ = ["CodeTransformer", "VQAutoregressive", "VQMaskGIT"]


# ----------------------------------------------------------------------------- priors
class CodeTransformer(nn.Module):
    """A small pre-norm transformer over a sequence of L codes.

    Token ids 0..K-1 are codes; id K is the special token (``[MASK]`` for
    MaskGIT, start-of-sequence for the autoregressive prior). ``causal=True``
    masks attention to earlier positions. ``forward(tokens (N, L)) -> logits (N, L, K)``.

    Token and position embeddings both start at std 0.02 (the GPT/BERT
    convention). With ``nn.Embedding``'s default std 1 the token vectors would
    be ~50x the position vectors, and after the pre-norm LayerNorm a position
    would be a small perturbation: the bidirectional (MaskGIT) prior, which has
    no other way to know where a token sits, would learn little spatial context.
    """

    def __init__(
        self, num_codes: int, length: int, *, dim: int = 64, depth: int = 2, heads: int = 4, causal: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"CodeTransformer: dim ({dim}) must be divisible by heads ({heads})")
        self.num_codes = int(num_codes)
        self.length = int(length)
        self.causal = bool(causal)
        self.tok = nn.Embedding(num_codes + 1, dim)
        nn.init.normal_(self.tok.weight, std=0.02)
        self.pos = nn.Parameter(0.02 * torch.randn(length, dim))
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"CodeTransformer: dropout must be in [0, 1), got {dropout}")
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=dropout, activation="gelu", batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_codes)
        mask = torch.triu(torch.full((length, length), float("-inf")), diagonal=1)
        self.register_buffer("causal_mask", mask, persistent=False)

    @property
    def special(self) -> int:
        return self.num_codes

    def forward(self, tokens: Tensor) -> Tensor:
        n, length = tokens.shape
        h = self.drop(self.tok(tokens) + self.pos[:length])
        mask = self.causal_mask[:length, :length] if self.causal else None
        h = self.body(h, mask=mask, is_causal=self.causal)
        return self.head(self.norm(h))


class _TransformerPrior(_VQBase):
    """Shared parts of the transformer priors (constructor arguments and the training of stage 2)."""

    causal = False

    def __init__(
        self, info: DataInfo, *, prior_dim: int = 64, prior_depth: int = 2, prior_heads: int = 4, prior_dropout: float = 0.1,
        prior_weight_decay: float = 0.01, **kwargs: Any,
    ) -> None:  # fmt: skip
        self._prior_cfg = {"dim": int(prior_dim), "depth": int(prior_depth), "heads": int(prior_heads), "dropout": float(prior_dropout)}
        self.prior_weight_decay = float(prior_weight_decay)
        super().__init__(info, **kwargs)

    def _make_prior(self) -> nn.Module:
        return CodeTransformer(self.num_codes, self.length, causal=self.causal, **self._prior_cfg)

    def _prior_loss(self, codes: Tensor, generator: torch.Generator | None) -> Tensor:
        """Training loss of the prior on a batch of codes (N, L), nats per token."""
        raise NotImplementedError

    def _fit_prior(self, codes: Tensor, budget: Budget, t0: float) -> TrainReport:
        super()._fit_prior(codes, budget, t0)  # keep the histogram too (diagnostics)
        if budget.steps < 1:
            return TrainReport()

        def loss(batch: Batch, generator: torch.Generator | None) -> dict[str, Tensor]:
            val = self._prior_loss(batch.x.to(self.device), generator)
            return {"loss": val, "prior_nats_per_token": val}

        self.prior.train()
        opt = torch.optim.AdamW(self.prior.parameters(), lr=self.prior_lr, weight_decay=self.prior_weight_decay)
        rep = train(
            f"{self.name} prior", budget, codes, loss=loss, optimizer=opt, params=list(self.prior.parameters()),
            warmup=default_warmup(budget.steps), clip_grad=1.0, curves=("prior_nats_per_token",), check_finite=True, started=t0,
        )  # fmt: skip
        self.prior.eval()
        return rep


class VQAutoregressive(_VQBound, _TransformerPrior):
    """VQ-VAE with a causal transformer prior over raster-ordered codes (exact code likelihood, NFE = L)."""

    name = "vq-ar"
    causal = True
    _iterative = False

    def _inputs(self, codes: Tensor) -> Tensor:
        bos = torch.full((len(codes), 1), self.num_codes, dtype=torch.long, device=codes.device)
        return torch.cat([bos, codes[:, :-1]], 1)

    def _prior_loss(self, codes: Tensor, generator: torch.Generator | None) -> Tensor:
        logits = self.prior(self._inputs(codes))
        return F.cross_entropy(logits.reshape(-1, self.num_codes), codes.reshape(-1))

    @torch.no_grad()
    def code_log_prob(self, codes: Tensor) -> Tensor:
        """Exact log p(codes) = sum_i log p(c_i | c_<i) in nats, codes (N, L) raster order, (N,)."""
        codes = codes.long().to(self.device)
        self.prior.eval()
        logp = F.log_softmax(self.prior(self._inputs(codes)).float(), -1)
        return logp.gather(-1, codes.unsqueeze(-1)).squeeze(-1).sum(1)

    def make_sampler(self, **params: Any) -> AutoregressiveSampler:
        """``AutoregressiveSampler(temperature=...)``: a ``tokens-causal`` sampler of :data:`SAMPLERS` (``ancestral``)."""
        return make_sampler("tokens-causal", params.pop("sampler", "ancestral"), params, {}, "vq-ar")

    def _sample_codes(self, n: int, sampler: Any, generator: torch.Generator | None, steps: int | None = None) -> Tensor:
        if not isinstance(sampler, AutoregressiveSampler):
            raise TypeError(f"vq-ar: sampler must be an AutoregressiveSampler, got {type(sampler).__name__}")
        if steps is not None and int(steps) != self.length:
            raise ValueError(f"vq-ar: sampling takes one network evaluation per token: steps must be None or L = {self.length}, got {steps}")
        codes = sampler(self.prior, n, self.length, self.num_codes, device=self.device, generator=generator)
        self.last_nfe = sampler.nfe
        return codes


class VQMaskGIT(_TransformerPrior):
    """VQ-VAE with a bidirectional MaskGIT prior: cosine mask schedule, T parallel decoding steps (steps = T = NFE)."""

    name = "vq-maskgit"
    causal = False
    _iterative = True

    def __init__(self, info: DataInfo, *, default_steps: int = 8, temperature: float = 1.0, choice_temperature: float = 4.5, **kwargs: Any) -> None:
        self._defaults = {"steps": int(default_steps), "temperature": float(temperature), "choice_temperature": float(choice_temperature)}
        super().__init__(info, **kwargs)
        if not 1 <= self._defaults["steps"] <= self.length:
            raise ValueError(f"vq-maskgit: default_steps must be in [1, L = {self.length}], got {default_steps}")

    @property
    def _default_steps(self) -> int:  # type: ignore[override]
        return self._sampler.steps

    def _prior_loss(self, codes: Tensor, generator: torch.Generator | None) -> Tensor:
        """Cross-entropy on the masked positions; the mask ratio is gamma(r), r ~ U(0, 1), at least one token masked."""
        n, length = codes.shape
        r = torch.rand(n, generator=generator)
        n_mask = torch.ceil(cosine_mask_ratio(r) * length).clamp(1, length).long().to(codes.device)
        rank = torch.rand(n, length, generator=generator).argsort(1).argsort(1).to(codes.device)
        masked = rank < n_mask[:, None]
        tokens = torch.where(masked, torch.full_like(codes, self.num_codes), codes)
        logits = self.prior(tokens)
        return F.cross_entropy(logits[masked], codes[masked])

    def make_sampler(self, **params: Any) -> MaskGITSampler:
        """``MaskGITSampler(steps, temperature, choice_temperature)``, a ``tokens-masked`` sampler of :data:`SAMPLERS`;
        unspecified values use the model's defaults."""
        return make_sampler("tokens-masked", params.pop("sampler", "maskgit"), {**self._defaults, **params}, {}, "vq-maskgit")

    def _sample_codes(self, n: int, sampler: Any, generator: torch.Generator | None, steps: int | None = None) -> Tensor:
        if not isinstance(sampler, MaskGITSampler):
            raise TypeError(f"vq-maskgit: sampler must be a MaskGITSampler, got {type(sampler).__name__}")
        if steps is not None and int(steps) != sampler.steps:
            sampler = MaskGITSampler(int(steps), temperature=sampler.temperature, choice_temperature=sampler.choice_temperature)
        codes = sampler(self.prior, n, self.length, self.num_codes, device=self.device, generator=generator)
        self.last_nfe = sampler.nfe
        return codes


# ----------------------------------------------------------------------------- registry
register("vq-ar", family="vq", kinds=("image",), description="VQ-VAE + causal transformer prior over raster-ordered codes (one NFE per token); VQ bound in nats.")(
    with_base_keywords(VQAutoregressive)
)
register("vq-maskgit", family="vq", kinds=("image",), description="VQ-VAE + bidirectional MaskGIT prior: cosine mask schedule, T parallel decoding steps (steps = T).")(
    with_base_keywords(VQMaskGIT)
)
