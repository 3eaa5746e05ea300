"""Leaderboard section: textbook claims tested on the suite's own runs.

A suite lists its claims as ``[[claims]]`` tables, each a comparison of two
rows of one data set on one metric::

    [[claims]]
    claim = "GAN samples are sharper than VAE samples"
    cite = "Kynkaanniemi et al. 2019"
    dataset = "mnist5k"
    metric = "precision"
    a = "gan"            # row labels as in the tables (``name@steps`` for iterative rows)
    b = "vae"
    relation = "better"  # "better": a beats b; "no_worse": a is at least as good as b
    paired = true        # optional: a and b sample the same trained model of each seed

The test is the one the tables use to mark ties (:func:`bench.report.welch_halfwidth`):
the 95% Welch interval of the difference of the two rows' means, with the
standard error over seeds (or a single seed's bootstrap interval). The
metric's own direction (lower / higher / closest to zero is better) decides
which row is ahead. Each claim gets a verdict:

* ``reproduced``: row ``a`` is ahead of ``b`` and the interval excludes 0
  (for ``no_worse`` a tie also counts, see below);
* ``within noise``: the interval contains 0. For ``no_worse`` claims this
  is marked ``reproduced (tie)``, since a tie is what the claim allows;
* ``not reproduced``: ``b`` is ahead and the interval excludes 0;
* ``untested``: a row, the metric or an uncertainty is missing.

``paired = true`` is for two rows of one trained model per seed (the same
network sampled two ways: 1 vs 8 decoding steps, EMA vs raw weights). Their
seed-to-seed spread is mostly the spread of the trained models, which both
rows share, so the claim tests the per-seed differences instead: their mean
and the 95% t-interval (n - 1 degrees of freedom) over the seeds both rows
have. With fewer than two common seeds it falls back to the unpaired test.

``relation = "within_factor"`` with ``factor = F`` (for a metric where lower
is better, e.g. "a one-step student's FID is within 2x of its teacher's"):
the ratio a / b, paired by seed when ``paired`` (geometric mean of the
per-seed ratios with the 95% t-interval of their mean log), else the ratio of
the means with the interval from the Welch half-width on the difference
divided by b's mean. ``reproduced`` when the whole interval lies at or below
F, ``not reproduced`` when it lies above F, ``within noise`` otherwise.

A claim that does not reproduce stays in the table with its numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from scipy import stats as _stats

from bench.report import CellStats, cell_stats, fmt_num, welch_halfwidth

RELATIONS = ("better", "no_worse", "within_factor")
_KEYS = ("claim", "dataset", "metric", "a", "b")


def _cell(records: pd.DataFrame, dataset: str, metric: str, row: str) -> tuple[CellStats, str | None]:
    sub = records[(records["dataset"] == dataset) & (records["metric"] == metric) & (records["generator"] == row)]
    if sub.empty:
        return CellStats(None, None, 0), None
    direction = next((d for d in sub["direction"] if isinstance(d, str)), None)
    return cell_stats(list(sub["value"]), list(sub["lo"]), list(sub["hi"]), list(sub["settings"])), direction


def _ahead(direction: str, a: float, b: float) -> float:
    """How far a is ahead of b (> 0: a is better) under the metric's direction."""
    if direction == "min":
        return b - a
    if direction == "max":
        return a - b
    return abs(b) - abs(a)  # "zero": closest to zero is best


def _per_seed(records: pd.DataFrame, dataset: str, metric: str, row: str) -> dict[int, float]:
    sub = records[(records["dataset"] == dataset) & (records["metric"] == metric) & (records["generator"] == row) & records["value"].notna()]
    return {int(k): float(v) for k, v in sub.groupby("seed")["value"].mean().items()}


def paired_lead(a: dict[int, float], b: dict[int, float], direction: str | None, level: float = 0.95) -> tuple[float, float] | None:
    """(mean of the per-seed leads of a over b, half-width of their ``level`` t-interval) over the common seeds;
    None with fewer than two common seeds or an unknown direction."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2 or direction not in ("min", "max", "zero"):
        return None
    d = [_ahead(direction, a[s], b[s]) for s in seeds]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    return mean, float(_stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n))


def _judge(lead: float, hw: float, relation: str) -> str:
    if lead > hw:
        return "reproduced"
    if lead < -hw:
        return "not reproduced"
    return "reproduced (tie)" if relation == "no_worse" else "within noise"


def verdict(a: CellStats, b: CellStats, direction: str | None, relation: str) -> tuple[str, float | None, float | None]:
    """(verdict, how far a is ahead of b, 95% half-width) for one claim; see the module docstring."""
    if relation not in RELATIONS:
        raise ValueError(f"claims: relation must be one of {RELATIONS}, got {relation!r}")
    if direction not in ("min", "max", "zero") or not (a.testable and b.testable):
        return "untested", None, None
    lead = _ahead(direction, a.mean, b.mean)
    hw = welch_halfwidth(a, b)
    return _judge(lead, hw, relation), lead, hw


def ratio_verdict(
    a: CellStats, b: CellStats, factor: float, per_seed: tuple[dict[int, float], dict[int, float]] | None = None, level: float = 0.95
) -> tuple[str, float | None, float | None, float | None]:
    """(verdict, ratio a / b, lower, upper end of its ``level`` interval) of a ``within_factor`` claim (see the
    module docstring); paired by seed when ``per_seed`` holds both rows' values of two or more common seeds."""
    if per_seed is not None:
        pa, pb = per_seed
        seeds = sorted(s for s in set(pa) & set(pb) if pa[s] > 0 and pb[s] > 0)
        if len(seeds) >= 2:
            logs = [math.log(pa[s] / pb[s]) for s in seeds]
            n = len(logs)
            mean = sum(logs) / n
            sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1))
            hw = float(_stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
            return _ratio_judge(math.exp(mean), math.exp(mean - hw), math.exp(mean + hw), factor)
    if not (a.testable and b.testable) or not b.mean:
        return "untested", None, None, None
    hw = welch_halfwidth(a, b) / abs(b.mean)
    r = a.mean / b.mean
    return _ratio_judge(r, r - hw, r + hw, factor)


def _ratio_judge(r: float, lo: float, hi: float, factor: float) -> tuple[str, float, float, float]:
    v = "reproduced" if hi <= factor else "not reproduced" if lo > factor else "within noise"
    return v, r, lo, hi


def _cell_text(c: CellStats) -> str:
    if c.mean is None:
        return "—"
    return fmt_num(c.mean) + (f" ± {fmt_num(c.sd)}" if c.sd is not None else "") + f" (n={c.n_seeds})"


def _factor_row(records: pd.DataFrame, c: dict, ca: CellStats, cb: CellStats) -> dict[str, str]:
    """The table row of a ``within_factor`` claim."""
    factor = float(c.get("factor", 2.0))
    per_seed = None
    if c.get("paired"):
        per_seed = (_per_seed(records, c["dataset"], c["metric"], c["a"]), _per_seed(records, c["dataset"], c["metric"], c["b"]))
    v, r, lo, hi = ratio_verdict(ca, cb, factor, per_seed)
    paired = per_seed is not None and len(set(per_seed[0]) & set(per_seed[1])) >= 2
    label = next((x for x in records.loc[records["metric"] == c["metric"], "label"] if isinstance(x, str)), c["metric"])
    return {
        "claim": c["claim"] + (f" ({c['cite']})" if c.get("cite") else ""),
        "test": f"{c['a']} / {c['b']} ≤ {fmt_num(factor)}× on {label}, {c['dataset']}" + (", paired by seed" if paired else ""),
        "a": _cell_text(ca), "b": _cell_text(cb),
        "a ahead by [95% ±]": "—" if r is None else f"ratio {fmt_num(r)}× [{fmt_num(lo)}, {fmt_num(hi)}]",
        "verdict": f"**{v}**" if v.startswith("reproduced") else v,
    }  # fmt: skip


def section(records: pd.DataFrame, suite: dict, assets_dir: Path) -> str:
    claims = suite.get("claims") or []
    out = ["## Claims", ""]
    if not claims:
        return "\n".join(out + ["_no claims listed in the suite_"])
    out.append(
        "Textbook claims tested on this suite's runs. Each compares row a with row b on one metric; the verdict uses the tables' "
        "significance rule (95% Welch interval of the difference of the means, standard error over seeds); a test 'paired by seed' "
        "compares two samplings of the same trained model per seed by the mean per-seed difference and its 95% t-interval. `better` "
        "claims need a ahead with the interval excluding 0; `no_worse` claims also hold on a tie. Claims that do not reproduce stay listed."
    )
    out.append("")
    rows = []
    for i, c in enumerate(claims):
        missing = [k for k in _KEYS if k not in c]
        if missing:
            raise ValueError(f"claims[{i}]: missing {', '.join(missing)}")
        relation = c.get("relation", "better")
        ca, dir_a = _cell(records, c["dataset"], c["metric"], c["a"])
        cb, dir_b = _cell(records, c["dataset"], c["metric"], c["b"])
        if relation == "within_factor":
            rows.append(_factor_row(records, c, ca, cb))
            continue
        v, lead, hw = verdict(ca, cb, dir_a or dir_b, relation)
        paired = None
        if c.get("paired") and v != "untested":
            per_seed_a = _per_seed(records, c["dataset"], c["metric"], c["a"])
            per_seed_b = _per_seed(records, c["dataset"], c["metric"], c["b"])
            paired = paired_lead(per_seed_a, per_seed_b, dir_a or dir_b)
        if paired is not None:
            lead, hw = paired
            v = _judge(lead, hw, relation)
        label = next((x for x in records.loc[records["metric"] == c["metric"], "label"] if isinstance(x, str)), c["metric"])
        rows.append({
            "claim": c["claim"] + (f" ({c['cite']})" if c.get("cite") else ""),
            "test": f"{c['a']} {'>' if relation == 'better' else '≥'} {c['b']} on {label}, {c['dataset']}" + (", paired by seed" if paired else ""),
            "a": _cell_text(ca), "b": _cell_text(cb),
            "a ahead by [95% ±]": "—" if lead is None else f"{fmt_num(lead)} [± {fmt_num(hw)}]",
            "verdict": f"**{v}**" if v.startswith("reproduced") else v,
        })  # fmt: skip
    out.append(pd.DataFrame(rows).to_markdown(index=False))
    counts = pd.Series([r["verdict"].strip("*") for r in rows]).value_counts()
    out += ["", "Summary: " + ", ".join(f"{k} {n}" for k, n in counts.items()) + f" of {len(rows)} claims."]
    return "\n".join(out)
