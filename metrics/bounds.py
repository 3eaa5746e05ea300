"""Importance-weighted likelihood bound (IWAE, Burda et al. 2016) as a metric.

For models with ``iwae_bound(x, k)`` (nats per example, a lower bound on
log p(x) that tightens as k grows; k = 1 is the ELBO). Reported in the same
unit as ``nll`` (bits/dim for images, nats/point for 2-D) so that the gap
ELBO - IWAE-k can be read off one table.
"""

from __future__ import annotations

import math

from genbench.protocol import ImportanceBound

from .context import EvalContext
from .likelihood import nll_nats
from .registry import MetricValue, Output, register_metric


def _has_iwae(ctx: EvalContext) -> bool:
    return isinstance(ctx.generator, ImportanceBound) and ctx.test is not None


@register_metric("nll_iwae", [Output("nll_iwae", "NLL (IWAE-k)", "min")], applies=_has_iwae)
def nll_iwae(ctx: EvalContext) -> dict[str, MetricValue]:
    """Test NLL from the IWAE bound with k = ``iwae_k`` (default 64) importance samples."""
    k = int(ctx.setting("iwae_k", 64))
    n = min(len(ctx.test), int(ctx.setting("iwae_n", len(ctx.test))))
    g = ctx.generator
    nll = nll_nats(lambda x: g.iwae_bound(x, k), ctx.test[:n], batch_size=max(1, 4096 // k), seed=ctx.seed)
    is_image = ctx.data_info.kind == "image"
    scale = ctx.data_info.dim * math.log(2) if is_image else 1.0
    v = float(nll.mean()) / scale
    se = float(nll.std() / math.sqrt(len(nll))) / scale if len(nll) > 1 else float("nan")
    settings = {"unit": "bits/dim" if is_image else "nats/point", "kind": f"iwae-{k}", "k": k, "n": n, "split": "test",
                "interval": "mean ± 1.96 standard errors over test examples (95%)"}
    return {"nll_iwae": MetricValue(v, (v - 1.96 * se, v + 1.96 * se) if math.isfinite(se) else None, settings, unit=settings["unit"])}
