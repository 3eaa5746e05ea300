"""Leaderboard section ``budget_curve``: sample quality against training compute.

For every model (registry name) that a suite trains at several budgets, the
quality of each budget's row: FID and IS (any registered quality metric the
suite asks for, table ``[budget_curve] metrics``, default ``["fid", "is"]``)
against the training steps and the training seconds. Training seconds are the
``train_s`` records (wall time of ``fit`` in a worker with one thread, so
close to CPU seconds on an idle core). Cells are means over seeds. The figure
``budget_curve__<dataset>.png`` draws each metric against training seconds
(log x), one line per model, so a reader sees where each family saturates and
what a suite's budget buys.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.plots import _plt, finish_figure
from bench.report import fmt_num


def _budget_steps(settings: Any) -> int | None:
    budget = settings.get("budget") if isinstance(settings, dict) else None
    steps = budget.get("steps") if isinstance(budget, dict) else None
    return int(steps) if isinstance(steps, (int, float)) else None


def suite_budget_steps(suite: dict) -> dict[str, int]:
    """Training steps of each generator row of a suite (its ``budget.steps``), by row name."""
    out = {}
    for g in suite.get("generators") or []:
        steps = _budget_steps(g)
        if isinstance(g, dict) and "name" in g and steps is not None:
            out[str(g["name"])] = steps
    return out


def curve_frame(records: pd.DataFrame, metrics: list[str], budget_steps: dict[str, int] | None = None) -> pd.DataFrame:
    """One row per (dataset, model, generator row): budget steps, mean training seconds and each metric's mean over seeds.

    The steps come from the ``train_s`` record's settings; a record without them (a model loaded from the
    artifact cache by a pipeline that did not copy them) takes the row's steps from ``budget_steps``."""
    train = records[(records["metric"] == "train_s") & records["value"].notna()]
    rows = []
    for (ds, model, gen), g in train.groupby(["dataset", "model", "generator"], sort=False):
        steps = next((s for s in map(_budget_steps, g["settings"]) if s is not None), (budget_steps or {}).get(gen))
        row: dict[str, Any] = {"dataset": ds, "model": model, "row": gen, "steps": steps,
                               "train_s": float(g["value"].mean()), "seeds": int(g["seed"].nunique())}  # fmt: skip
        for m in metrics:
            # a row's metric records carry its label (name@steps for iterative rows) as generator and its name as base
            v = records[(records["dataset"] == ds) & (records["base"] == gen) & (records["metric"] == m)]["value"].dropna()
            row[m] = float(v.mean()) if len(v) else math.nan
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    n_budgets = df.groupby(["dataset", "model"])["row"].transform("count")
    return df[n_budgets >= 2].sort_values(["dataset", "model", "train_s"]).reset_index(drop=True)


def _figure(df: pd.DataFrame, metrics: list[str], labels: dict[str, str], path: Path, root: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for model, g in df.groupby("model", sort=False):
            ax.plot(g["train_s"], g[m], marker="o", label=model)
            for _, r in g.iterrows():
                ax.annotate(str(r["steps"]), (r["train_s"], r[m]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("training seconds per seed (one thread)")
        ax.set_ylabel(labels.get(m, m))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("quality against training compute (labels: training steps)")
    finish_figure(fig, path, root, dpi=110)


def section(records: pd.DataFrame, suite: dict, assets_dir: Path) -> str:
    metrics = list((suite.get("budget_curve") or {}).get("metrics", ["fid", "is"]))
    out = ["## Quality against training compute", ""]
    df = curve_frame(records, metrics, suite_budget_steps(suite))
    if df.empty:
        return "\n".join(out + ["_no model is trained at two or more budgets in this suite_"])
    labels = {m: next((x for x in records.loc[records["metric"] == m, "label"] if isinstance(x, str)), m) for m in metrics}
    out.append(
        "Each model at every budget the suite trains it with: training steps, training seconds per seed (`train_s`, "
        "one thread), and the mean over seeds of each metric. Where the curve flattens, more training buys little."
    )
    for ds, g in df.groupby("dataset", sort=False):
        table = g[["model", "row", "steps", "train_s", "seeds", *metrics]].copy()
        table["train_s"] = table["train_s"].map(fmt_num)
        for m in metrics:
            table[m] = table[m].map(lambda v: fmt_num(v) if math.isfinite(v) else "n/a")
        table = table.rename(columns={"train_s": "training s", **labels})
        out += ["", f"### {ds}", "", table.to_markdown(index=False)]
        assets_dir.mkdir(parents=True, exist_ok=True)
        name = f"budget_curve__{ds}.png"
        _figure(g, metrics, labels, assets_dir / name, assets_dir)
        out += ["", f"![quality against training compute, {ds}](assets/{assets_dir.name}/{name})"]
    return "\n".join(out)
