"""Leaderboard section: head-to-head comparisons of translation rows, seed by seed.

The pix2pix paper's claim is a trade-off between two rows: the L1-only
U-Net wins on per-pixel distances (it predicts a conditional median, which
is blurry) while pix2pix wins on realism (FID). The per-dataset tables give
means; this section says, for each pair of rows named in the suite's
``[translation] compare`` list and each metric, which row is better on how
many of the shared seeds, with the mean difference, so a reader sees whether
the trade-off held on every seed or only on average.

Suite table::

    [translation]
    compare = [{ a = "pix2pix", b = "l1-regression", metrics = ["fid", "l1", "psnr"] }]
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metrics.registry import ARROWS

DEFAULT_COMPARE = ({"a": "pix2pix", "b": "l1-regression", "metrics": ["fid", "kid", "l1", "mse", "psnr", "ssim", "class_pres"]},)


def _better(direction: str | None, a: float, b: float) -> bool | None:
    if direction == "min":
        return a < b
    if direction == "max":
        return a > b
    if direction == "zero":
        return abs(a) < abs(b)
    if direction == "one":
        return abs(a - 1) < abs(b - 1)
    return None


def section(records: pd.DataFrame, suite: dict, assets_dir: Path) -> str:
    """Markdown: one table per (dataset, compared pair) with per-metric wins over seeds and the mean difference a - b."""
    compare = (suite.get("translation") or {}).get("compare", DEFAULT_COMPARE)
    out = ["## Head to head", "", "Each row: which generator is better on how many seeds (paired by seed), and the mean difference a − b over those seeds.", ""]
    vals = records[records["value"].notna()]
    wrote = False
    for ds in dict.fromkeys(vals["dataset"]):
        sub = vals[vals["dataset"] == ds]
        for c in compare:
            a, b = str(c["a"]), str(c["b"])
            if not {a, b} <= set(sub["generator"]):
                continue
            rows = []
            for m in c.get("metrics", []):
                ma, mb = sub[(sub["generator"] == a) & (sub["metric"] == m)], sub[(sub["generator"] == b) & (sub["metric"] == m)]
                if ma.empty or mb.empty:
                    continue
                pa, pb = ma.set_index("seed")["value"], mb.set_index("seed")["value"]
                seeds = sorted(set(pa.index) & set(pb.index))
                if not seeds:
                    continue
                direction = ma["direction"].iloc[0] if "direction" in ma else None
                wins = [_better(direction, float(pa[s]), float(pb[s])) for s in seeds]
                label = ma["label"].iloc[0] if "label" in ma and isinstance(ma["label"].iloc[0], str) else m
                diff = sum(float(pa[s]) - float(pb[s]) for s in seeds) / len(seeds)
                if wins[0] is None:
                    verdict = "not ranked"
                else:
                    na = sum(bool(w) for w in wins)
                    verdict = f"{a} on {na}/{len(seeds)}" if na * 2 > len(seeds) else f"{b} on {len(seeds) - na}/{len(seeds)}" if na * 2 < len(seeds) else f"split {na}/{len(seeds)}"
                rows.append({"metric": label, "direction": ARROWS.get(direction, "") if isinstance(direction, str) else "",
                             f"{a} (mean)": f"{pa[seeds].mean():.4g}", f"{b} (mean)": f"{pb[seeds].mean():.4g}",
                             "mean a − b": f"{diff:+.4g}", "better on seeds": verdict})  # fmt: skip
            if rows:
                out += [f"### {ds}: {a} (a) vs {b} (b)", "", pd.DataFrame(rows).to_markdown(index=False), ""]
                wrote = True
    if not wrote:
        out.append("_no pair of compared rows was run on the same data set_")
    return "\n".join(out)
