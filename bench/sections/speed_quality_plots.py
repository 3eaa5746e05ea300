"""The speed-quality section's figures: FID against latency and FLOPs with the Pareto front, and the guidance sweep."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.plots import _plt, finish_figure
from bench.report import fmt_num

__all__ = ["plot_pareto", "plot_sweep"]


def _pareto(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points (latency, fid, label) not dominated (lower latency and lower FID), by latency."""
    front, best = [], math.inf
    for p in sorted(points, key=lambda p: (p[0], p[1])):
        if p[1] < best:
            front.append(p)
            best = p[1]
    return front


def plot_pareto(m: pd.DataFrame, dataset: str, batch: Any, path: Path) -> Path | None:
    """FID against latency at batch 1 and at ``batch``, and against FLOPs, one panel each (log-log), with the
    Pareto front and the reference rows as dashed lines; written to ``path``; None when there is nothing to plot."""
    plt = _plt()
    cols = [("lat_b1", "batch 1"), ("lat", f"batch {batch}"), ("flops", "FLOPs")]
    cols = [(c, t) for c, t in cols if c in m.columns and m[c].notna().any()]
    if not cols or not m["fid"].notna().any():
        return None
    fig, axes = plt.subplots(1, len(cols), figsize=(6.5 * len(cols), 4.8), squeeze=False)
    for ax, (col, title) in zip(axes[0], cols):
        sub = m[m[col].notna() & m["fid"].notna() & (m[col] > 0)]
        for _, r in m[m["reference"] & m["fid"].notna()].iterrows():  # floor/ceiling lines, not points (at any cost)
            ax.axhline(r["fid"], ls="--", lw=1, color="gray")
            ax.annotate(
                f"{r['generator']} (reference)", (0.01, r["fid"]), xycoords=("axes fraction", "data"), fontsize=7, color="gray", va="bottom"
            )
        sub = sub[~sub["reference"]]
        for base, g in sub.groupby("base", sort=False):
            g = g.sort_values(col)
            ax.plot(g[col], g["fid"], marker="o", ms=4, lw=1, label=base)
            for _, r in g.iterrows():
                lab = r["generator"].split("@")[-1] if "@" in r["generator"] else r["generator"]
                ax.annotate(lab, (r[col], r["fid"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        real = [(float(r[col]), float(r["fid"]), r["generator"]) for _, r in sub.iterrows()]
        front = _pareto(real)
        if front:
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="k", lw=1.5, alpha=0.35, label="Pareto front")
        ax.set_xscale("log")
        ax.set_yscale("log")
        if col == "flops":
            ax.set_xlabel("FLOPs per sample (matmul/conv, counted; log)")
            ax.set_title(f"{dataset}: FID vs FLOPs per sample")
        else:
            ax.set_xlabel(f"latency per sample, ms ({title}, median; log)")
            ax.set_title(f"{dataset}: FID vs latency, {title}")
        ax.set_ylabel("FID (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    finish_figure(fig, path, dpi=110)
    return path


def plot_sweep(s: pd.DataFrame, dataset: str, path: Path) -> Path | None:
    """FID against the samples' class accuracy along a guidance sweep (one point per weight w), written to ``path``."""
    plt = _plt()
    s = s[s["fid"].notna() & s["class_acc"].notna()]
    if s.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    s = s.sort_values("w")
    ax.plot(s["class_acc"], s["fid"], marker="o")
    for _, r in s.iterrows():
        ax.annotate(f"w={fmt_num(float(r['w']))}", (r["class_acc"], r["fid"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("class accuracy of the samples (digits-cnn)")
    ax.set_ylabel("FID")
    ax.set_title(f"{dataset}: classifier-free guidance sweep")
    ax.grid(True, alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    finish_figure(fig, path, dpi=110)
    return path
