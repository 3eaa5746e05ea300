"""Leaderboard section: which metric catches which constructed failure (suite ``metric-sanity``).

Rows are the constructed sample sets of :mod:`baselines.corrupted` and the
held-out ``data`` row; columns are every metric output in the records. A cell
shows the mean over seeds and a mark:

* ✓ the metric moved in its *worse* direction (up for ↓ metrics, down for ↑
  metrics, away from 0 for →0 metrics) relative to the ``data`` row, beyond
  the 95% interval of the difference (Welch's t-interval from the two rows'
  seed-to-seed standard errors; each seed draws other images and noise);
* ✗ no such move (within noise);
* ✗⁺ a significant move in the *better* direction (the metric rewards the failure);
* – the metric has no direction, or no uncertainty.

Below the table, per failure type, the metrics that detect it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.leaderboard import ARROW, CellStats, cell_stats, fmt_num, welch_halfwidth

__all__ = ["section", "verdict", "FAILURE_TYPES"]

BASELINE = "data"
LEVEL = 0.95
FAILURE_TYPES = {
    "sanity-copy": "copies of the train split (memorisation)",
    "sanity-drop": "classes dropped",
    "sanity-collapse": "mode collapse (one image per class)",
    "sanity-noise": "Gaussian noise",
    "sanity-blur": "blur",
    "sanity-truncate": "truncation (low variance)",
    "sanity-mixture": "mixture (train copies + noise)",
}


def _worse(direction: str, d_mean: float, d_abs: float, d_one: float = 0.0) -> float:
    """How much worse the row is than the baseline (positive = worse)."""
    return {"min": d_mean, "max": -d_mean, "zero": d_abs, "one": d_one}[direction]


def verdict(row: CellStats, base: CellStats, direction: str | None) -> str:
    """ "✓", "✗", "✗⁺" or "–" for one cell against the baseline row (see the module docstring)."""
    direction = direction if isinstance(direction, str) else None  # pandas turns None into NaN
    if direction is None or row.mean is None or base.mean is None or row.se is None or base.se is None:
        return "–"
    worse = _worse(direction, row.mean - base.mean, abs(row.mean) - abs(base.mean), abs(row.mean - 1) - abs(base.mean - 1))
    half = welch_halfwidth(row, base, LEVEL)
    if worse > half:
        return "✓"
    if -worse > half:
        return "✗⁺"
    return "✗"


def section(records: pd.DataFrame, suite: dict, assets_dir: Path) -> str:
    out = ["## Which metric catches which failure", ""]
    df = records[records["metric"].notna() & ~records["metric"].astype(str).str.startswith("_") & (records["metric"] != "train_s")]
    if df.empty:
        return "\n".join(out + ["_no results_"])
    out += [
        "Each cell: mean over seeds, then ✓ if the metric moved in its worse direction relative to the held-out `data` row beyond the 95% "
        "interval of the difference (Welch t-interval from the seed-to-seed standard errors of both rows), ✗ if not, ✗⁺ if it moved "
        "significantly in its *better* direction (the metric rewards that failure), – if the metric has no direction. "
        "n/a: the metric does not apply to that row (its `applies` predicate); none is expected in this suite.",
        "",
        "Reading notes (true by construction, whatever the numbers):",
        "",
        "- Every row but the copies is built from held-out *test* images, so its samples sit on or near test points. FLS scores the "
        "test split's likelihood under a kernel density on the samples: test points that a row contains exactly are removed first, "
        "near-copies (noise 0.1, truncation) are not, and they flatter FLS.",
        "- The reference set of FID, KID, PRDC, SW, sFID and CMMD is the train split, which the digits-cnn extractor was trained on; "
        "copies of it are scored against features the extractor has fitted.",
        "- AuthPct, C_T and the copy rate measure distance to the training data, not quality: noise and blur move samples away from "
        "the train split, which AuthPct counts as more authentic and C_T (→0) flags as underfitting.",
        "",
    ]
    for ds, sub in df.groupby("dataset", sort=False):
        meta = sub.drop_duplicates("metric").set_index("metric")
        metrics = list(meta.index)
        gens = list(dict.fromkeys(sub["generator"]))
        if BASELINE in gens:
            gens.remove(BASELINE)
            gens.insert(0, BASELINE)
        cells: dict[tuple[str, str], CellStats] = {}
        for (g, m), c in sub.groupby(["generator", "metric"], sort=False):
            c = c.sort_values("seed")
            cells[(g, m)] = cell_stats(list(c["value"]), list(c["lo"]), list(c["hi"]), list(c["settings"]))
        headers = {
            m: f"{meta.at[m, 'label'] or m} {ARROW.get(meta.at[m, 'direction'] if isinstance(meta.at[m, 'direction'], str) else None, '')}".strip()
            for m in metrics
        }
        rows, detects = [], {}
        for g in gens:
            model = sub.loc[sub["generator"] == g, "model"].dropna()
            row = {"row": g}
            hits = []
            for m in metrics:
                c = cells.get((g, m))
                if c is None or c.mean is None:
                    row[headers[m]] = "n/a"
                    continue
                text = fmt_num(c.mean)
                if g != BASELINE:
                    base = cells.get((BASELINE, m))
                    v = verdict(c, base, meta.at[m, "direction"]) if base is not None else "–"
                    text += f" {v}"
                    if v == "✓":
                        hits.append(headers[m])
                elif c.sd is not None:
                    text += f" ± {fmt_num(c.sd)}"
                row[headers[m]] = text
            rows.append(row)
            if g != BASELINE:
                detects[g] = (model.iloc[0] if len(model) else "", hits)
        n_seeds = int(sub["seed"].nunique())
        out += [f"### {ds} ({n_seeds} seeds; `data` row: mean ± std)", "", pd.DataFrame(rows).to_markdown(index=False), ""]
        out += ["**Detected by** (✓ columns, per constructed failure):", ""]
        for g, (model, hits) in detects.items():
            kind = FAILURE_TYPES.get(model, model)
            out.append(f"- `{g}` — {kind}: " + (", ".join(hits) if hits else "_no metric_"))
        out.append("")
    return "\n".join(out)
