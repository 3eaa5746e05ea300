"""Leaderboard section: every seed's value, not just mean ± std.

Lists, per dataset and generator, the value of each metric named in the
suite's ``[per_seed] metrics`` for every seed, so that no seed is hidden
behind an average (e.g. modes captured per run in the mode-collapse study).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def section(records: pd.DataFrame, suite: dict, assets_dir: Path) -> str:
    metrics = (suite.get("per_seed") or {}).get("metrics", ["modes"])
    out = ["## Every seed", "", f"Per-seed values of {', '.join(f'`{m}`' for m in metrics)} (seed: value).", ""]
    sub = records[records["metric"].isin(metrics) & records["value"].notna()]
    if sub.empty:
        return "\n".join(out + ["_no per-seed results_"])
    rows = []
    for (ds, gen, metric), g in sub.groupby(["dataset", "generator", "metric"], sort=False):
        vals = ", ".join(f"{int(s)}: {v:.4g}" for s, v in sorted(zip(g["seed"], g["value"])))
        rows.append({"dataset": ds, "generator": gen, "metric": metric, "per seed": vals})
    out.append(pd.DataFrame(rows).to_markdown(index=False))
    return "\n".join(out)
