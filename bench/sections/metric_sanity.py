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

Column headers name the extractor of feature metrics (FID[digits-cnn]). Below
the table, per failure type, the metrics that detect it; where a data set's
feature metrics were also measured on a second extractor (``METRIC@EXTRACTOR``
entries, e.g. ``fid@effnet-lite0``), a "which ruler sees what" table lists,
per failure, the metrics that detect it on each extractor.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.record import split_metric
from bench.report import ARROW, CellStats, cell_stats, fmt_num, welch_halfwidth

__all__ = ["section", "verdict", "rulers_table", "FAILURE_TYPES"]

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


def _ruler(sub: pd.DataFrame) -> str | None:
    """The extractor one column's records measure with (None: the metric does not use features)."""
    per_ext = any(v is not None and v == v and bool(v) for v in sub.get("per_extractor", ()))  # NaN != NaN
    return next((v for v in sub.get("extractor", ()) if isinstance(v, str) and v), None) if per_ext else None


def rulers_table(verdicts: dict[tuple[str, str], str], labels: dict[str, str], rulers: dict[str, str | None],
                 models: dict[str, str]) -> list[str]:
    """Markdown lines: per constructed failure (row), the metrics that detect it (✓) on each extractor.

    ``verdicts``: (row, column) -> mark; ``labels``: column -> metric label without the extractor;
    ``rulers``: column -> extractor (None: not a feature metric, left out); ``models``: row -> constructed model.
    Only metrics measured on every extractor are compared. Empty when fewer than two extractors are present."""
    names = list(dict.fromkeys(r for r in rulers.values() if r))
    if len(names) < 2:
        return []
    by_ruler = {r: {split_metric(m)[0]: m for m, e in rulers.items() if e == r} for r in names}
    common = [b for b in by_ruler[names[0]] if all(b in by_ruler[r] for r in names[1:])]
    rows = []
    for g, model in models.items():
        row = {"row": g, "failure": FAILURE_TYPES.get(model, model)}
        seen = {}
        for r in names:
            hits = [labels[by_ruler[r][b]] for b in common if verdicts.get((g, by_ruler[r][b])) == "✓"]
            seen[r] = bool(hits)
            row[r] = ", ".join(hits) if hits else "—"
        only = [r for r in names if seen[r] and not all(seen.values())]
        everyone = "both" if len(names) == 2 else "all"
        row["seen only by"] = ", ".join(only) if only else (everyone if all(seen.values()) else "neither" if len(names) == 2 else "none")
        rows.append(row)
    return [
        f"**Which ruler sees what**: the metrics measured on every extractor ({', '.join(labels[by_ruler[names[0]][b]] for b in common)}), "
        f"with ✓ per failure on each extractor ({', '.join(f'`{r}`' for r in names)}). Same samples, same reference, same "
        "significance rule; only the feature space differs. FID at N below the feature dimension (1280 for effnet-lite0) has a "
        "rank-deficient sample covariance and a large N-bias: read its values within a column, and KID (unbiased) beside it.",
        "",
        pd.DataFrame(rows).to_markdown(index=False),
        "",
    ]


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
        "- The reference set of FID, KID, PRDC, SW, sFID and CMMD is the train split, which the data set's own extractor (digits-cnn, "
        "mnist-cnn) was trained on; copies of it are scored against features the extractor has fitted. A second extractor "
        "(effnet-lite0: ImageNet photos) never saw these images.",
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
        labels = {m: str(meta.at[m, "label"] or m) for m in metrics}
        rulers = {m: _ruler(sub[sub["metric"] == m]) for m in metrics}
        headers = {
            m: f"{labels[m]}{f'[{rulers[m]}]' if rulers[m] else ''} {ARROW.get(meta.at[m, 'direction'] if isinstance(meta.at[m, 'direction'], str) else None, '')}".strip()
            for m in metrics
        }
        rows, detects, verdicts = [], {}, {}
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
                    verdicts[(g, m)] = v
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
        out += rulers_table(verdicts, labels, rulers, {g: model for g, (model, _) in detects.items()})
    return "\n".join(out)
