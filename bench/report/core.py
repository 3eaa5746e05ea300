"""The report layer's core: records as a DataFrame, number formatting, and the statistics the tables and sections
share (per-cell mean and uncertainty over seeds, Welch's t-interval of a difference, the ties with the best row).

Everything here is a pure function of records; it imports no pipeline, suite or section code, so sections may
depend on it without an import cycle through :mod:`bench.leaderboard`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy import stats as _stats

from metrics import registry as mreg

from ..record import REFERENCE_FAMILY, REPORT_COLUMNS

__all__ = ["ARROW", "LEVEL", "CellStats", "cell_stats", "fmt_num", "records_frame", "tied_with_best", "welch_halfwidth"]

ARROW = mreg.ARROWS
LEVEL = 0.95


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records -> DataFrame with the columns sections rely on. ``reference`` (bool) marks the floors and ceilings:
    shown, never ranked or bolded. Records carry it from run time; for older records that lack it, it is looked up
    once per model in the generator registry."""
    df = pd.DataFrame(records)
    for c in REPORT_COLUMNS:
        if c not in df.columns:
            df[c] = None
    missing = df["reference"].isna()
    if missing.any():
        from baselines.registry import family_of  # records written before they carried it: imports the families

        fam = {m: family_of(str(m)) for m in df.loc[missing, "model"].dropna().unique()}
        df.loc[missing, "family"] = df.loc[missing, "model"].map(fam)
        df.loc[missing, "reference"] = df.loc[missing, "family"] == REFERENCE_FAMILY
    df["reference"] = df["reference"].astype(bool)
    return df


def fmt_num(v: float | None) -> str:
    """A number with 3-4 significant digits ("n/a" for None/NaN/inf)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.01:
        return f"{v:.3f}"
    return f"{v:.2e}"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_ci(settings: Any) -> bool:
    """Whether a record's (lo, hi) is a 95% confidence interval (not an IQR or a ± std band)."""
    if not isinstance(settings, dict):
        return False
    desc = str(settings.get("interval", ""))
    return bool(settings.get("bootstrap")) or "95" in desc or "1.96" in desc


# ---------------------------------------------------------------- statistics
@dataclass
class CellStats:
    """One (row, metric) cell: values over seeds and what is known of their uncertainty.

    ``se`` is the standard error of ``mean`` (over seeds when ``n_seeds`` >= 2,
    else from the record's 95% interval), ``df`` its degrees of freedom
    (``inf`` for a normal approximation), ``None`` when unknown.
    """

    mean: float | None
    sd: float | None
    n_seeds: int
    lo: float | None = None
    hi: float | None = None
    se: float | None = None
    df: float | None = None
    kind: str | None = None
    loaded: bool = False

    @property
    def testable(self) -> bool:
        return self.se is not None and self.mean is not None


def cell_stats(values: list[Any], los: list[Any] | None = None, his: list[Any] | None = None, settings: list[Any] | None = None) -> CellStats:
    """Mean, sample std, seeds and standard error of one cell (one value per seed).

    One seed: the standard error comes from the record's 95% interval when it
    has one (settings say ``bootstrap`` or name a 95% interval), is 0 for an
    exact count (settings ``exact: true``: FLOPs, parameters), else unknown.
    """
    n_all = len(values)
    los = list(los) if los is not None else [None] * n_all
    his = list(his) if his is not None else [None] * n_all
    settings = list(settings) if settings is not None else [None] * n_all
    keep = [i for i, v in enumerate(values) if _finite(v)]
    if not keep:
        return CellStats(None, None, 0)
    vals = [float(values[i]) for i in keep]
    n = len(vals)
    m = sum(vals) / n
    if n >= 2:
        sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1))
        return CellStats(m, sd, n, se=sd / math.sqrt(n), df=float(n - 1))
    i = keep[0]
    if isinstance(settings[i], dict) and settings[i].get("exact"):  # a deterministic count (FLOPs, parameters): no noise
        return CellStats(m, None, 1, se=0.0, df=math.inf)
    lo, hi = los[i], his[i]
    if not (_finite(lo) and _finite(hi) and _is_ci(settings[i])):  # an IQR or a ± std band is not a confidence interval
        return CellStats(m, None, 1)
    lo, hi = float(lo), float(hi)
    se = (hi - lo) / (2 * _stats.norm.ppf(0.5 + LEVEL / 2))
    return CellStats(m, None, 1, lo, hi, se, math.inf if se is not None else None)


def _score(direction: str, v: float) -> float:
    return {"min": v, "max": -v, "zero": abs(v), "one": abs(v - 1)}[direction]


def welch_halfwidth(a: CellStats, b: CellStats, level: float = LEVEL) -> float:
    """Half-width of the ``level`` interval of ``a.mean - b.mean`` (same units as the cells).

    Welch's t-interval: standard error sqrt(se_a² + se_b²) times the t quantile
    at the Welch–Satterthwaite degrees of freedom; the normal quantile when
    neither cell has finite degrees of freedom (both from within-run bootstrap
    intervals). Both cells need ``se`` (``testable``); 0 when both are exact.
    """
    var = a.se**2 + b.se**2
    if var == 0:
        return 0.0
    terms = [s**4 / df for s, df in ((a.se, a.df), (b.se, b.df)) if df is not None and math.isfinite(df) and df > 0]
    dof = var**2 / sum(terms) if terms else math.inf
    q = _stats.norm.ppf(0.5 + level / 2) if math.isinf(dof) else _stats.t.ppf(0.5 + level / 2, dof)
    return float(q * math.sqrt(var))


def tied_with_best(cells: dict[str, CellStats], direction: str | None) -> tuple[set[str], bool]:
    """Rows to mark in a ranked column, and whether every tie was tested.

    The best row (lowest score; score = value, −value, |value| or |value − 1| for
    directions min, max, zero, one) is marked; so is every row whose difference to
    the best has a 95% interval containing 0 (Welch's t-interval with the
    Welch–Satterthwaite degrees of freedom; normal when both uncertainties
    come from within-run bootstrap intervals). A row without uncertainty
    cannot be tested: it is not marked, and ``all_tested`` is False.
    """
    cand = {r: c for r, c in cells.items() if c.mean is not None}
    if direction is None or len(cand) < 1:
        return set(), True
    best = min(cand, key=lambda r: _score(direction, cand[r].mean))
    b = cand[best]
    marked, all_tested = {best}, True
    for r, c in cand.items():
        if r == best:
            continue
        d = _score(direction, c.mean) - _score(direction, b.mean)
        if d == 0:
            marked.add(r)
            continue
        if not (c.testable and b.testable):
            all_tested = False
            continue
        if d <= welch_halfwidth(c, b):  # d > 0 here, so two exact cells (half-width 0) are never tied
            marked.add(r)
    return marked, all_tested


def _cell_text(c: CellStats) -> str:
    if c.mean is None:
        return "n/a"
    if c.n_seeds >= 2:
        text = f"{fmt_num(c.mean)} ± {fmt_num(c.sd)}"
    elif c.lo is not None and c.hi is not None:
        text = f"{fmt_num(c.mean)} [{fmt_num(c.lo)}, {fmt_num(c.hi)}]"
    else:
        text = fmt_num(c.mean)
    if c.kind:
        text += f" ({c.kind})"
    if c.loaded:
        text += " ⚠"
    return text
