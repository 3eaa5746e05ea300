"""Leaderboard section: the likelihood table.

Test NLL per generator with the kind of number stated — ``exact`` (discrete
likelihood or 2-D density), ``dequantized`` (continuous density, bound
-log p(y) + D log K), ``elbo``, ``iwae-k`` — and the gap between the ELBO
and the IWAE bound where both exist. Lower is better; bounds are upper
bounds on the true NLL, so a bound can only flatter a model by being loose.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd


def _mean_sd(v: pd.Series) -> tuple[float | None, float | None]:
    v = [x for x in v if x is not None and isinstance(x, (int, float)) and math.isfinite(x)]
    if not v:
        return None, None
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else None
    return m, sd


def _fmt(m: float | None, sd: float | None) -> str:
    if m is None:
        return "n/a"
    return f"{m:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")


def section(records: pd.DataFrame, suite: dict, assets_dir: Path) -> str:
    out = ["## Likelihood", ""]
    nll = records[records["metric"].isin(["nll", "nll_iwae"]) & records["value"].notna()]
    if nll.empty:
        return "\n".join(out + ["_no likelihood results_"])
    out.append(
        "Test-split NLL; lower is better. `exact`: the model's own likelihood of the data (discrete over K levels for images); "
        "`dequantized`: continuous density on y = (x_int + u)/K, reported as -log p(y) + D log K, an upper bound on the discrete NLL; "
        "`elbo`/`iwae-k`: variational upper bounds on the NLL (IWAE tightens with k). Gap = ELBO − IWAE-k (how loose the ELBO is)."
    )
    out.append("")
    for ds, sub in nll.groupby("dataset", sort=False):
        unit = next((s.get("unit") for s in sub["settings"] if isinstance(s, dict) and s.get("unit")), "")
        rows = []
        for gen, g in sub.groupby("generator", sort=False):
            base = g[g["metric"] == "nll"]
            kind = next((s.get("kind") for s in base["settings"] if isinstance(s, dict)), "")
            m, sd = _mean_sd(base["value"])
            row = {"generator": gen, f"NLL ({unit})": _fmt(m, sd), "kind": kind or "n/a"}
            iw = g[g["metric"] == "nll_iwae"]
            if not iw.empty:
                mi, sdi = _mean_sd(iw["value"])
                row["IWAE bound"] = _fmt(mi, sdi) + f" ({next((s.get('kind') for s in iw['settings'] if isinstance(s, dict)), '')})"
                row["gap ELBO−IWAE"] = _fmt(m - mi, None) if m is not None and mi is not None else "n/a"
            rows.append(row)
        df = pd.DataFrame(rows).fillna("—")
        out += [f"### {ds}", "", df.to_markdown(index=False), ""]
    return "\n".join(out)
