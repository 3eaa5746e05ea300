"""Leaderboard section ``speed_quality``: sample quality against sampling cost.

Called by ``bench leaderboard`` for suites with ``sections = ["speed_quality"]``
as ``section(records, suite, assets_dir) -> markdown``. From the records of one
run it builds, per data set:

* a table per row (generator@steps): NFE, FID, precision, recall, latency per
  sample at batch 1 and at the suite's ``latency_batch`` (median [IQR]);
* latency ratios between the reference row (DDPM at its largest step count)
  and the best-FID row of every other generator, each ratio taken within one
  seed (so within one run) and then averaged;
* a Pareto plot of FID against latency (log x) saved in ``assets_dir``, with
  the step sweeps drawn as curves and the Pareto front marked;
* the fastest generator at each quality level (FID thresholds);
* the classifier-free guidance sweep (rows whose ``sample_params`` set
  ``guidance_scale``): FID against class accuracy, table and plot.

Optional suite table ``[speed_quality]``: ``fid_thresholds`` (list),
``reference`` (row label, default: the ``ddpm`` row with sampler "ddpm" at its
largest step count), ``nfe`` (network evaluations per sample of
non-iterative rows, e.g. ``{ pixelcnn = 64 }``; default 1).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.leaderboard import fmt_num

REFERENCE_MODELS = ("data", "uniform")
DEFAULT_THRESHOLDS = (10.0, 15.0, 20.0, 30.0, 50.0, 100.0)
METRICS = {
    "fid": "fid",
    "precision": "precision",
    "recall": "recall",
    "latency_ms": "lat",
    "latency_b1_ms": "lat_b1",
    "class_acc": "class_acc",
}


def _fmt(v: Any) -> str:
    return fmt_num(None if v is None else float(v))


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)


def _gen_specs(suite: dict) -> dict[str, dict]:
    return {g["name"]: g for g in suite.get("generators", []) if "name" in g}


def _is_sweep(spec: dict | None) -> bool:
    return bool(spec) and "guidance_scale" in (spec.get("sample_params") or {})


def _table(rows: list[list[str]], header: list[str]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _wide(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, generator, base, model, seed, steps) with a column per metric (value) and IQR columns for latency."""
    d = df[df["metric"].isin(list(METRICS)) & df["value"].notna()].copy()
    if d.empty:
        return pd.DataFrame()
    d["value"] = d["value"].astype(float)
    d["spread"] = (pd.to_numeric(d["hi"], errors="coerce") - pd.to_numeric(d["lo"], errors="coerce")).astype(float)
    d["steps"] = d["steps"].astype("float")
    keys = ["dataset", "generator", "base", "model", "seed", "steps"]
    d["steps"] = d["steps"].fillna(-1)
    val = d.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean").rename(columns=METRICS)
    iqr = d[d["metric"].isin(["latency_ms", "latency_b1_ms"])].pivot_table(index=keys, columns="metric", values="spread", aggfunc="mean")
    iqr = iqr.rename(columns={"latency_ms": "lat_iqr", "latency_b1_ms": "lat_b1_iqr"})
    w = val.join(iqr, how="left").reset_index()
    w["steps"] = w["steps"].where(w["steps"] >= 0, None)
    for c in list(METRICS.values()) + ["lat_iqr", "lat_b1_iqr"]:
        if c not in w.columns:
            w[c] = float("nan")
    return w


def _mean_rows(w: pd.DataFrame) -> pd.DataFrame:
    """Average over seeds: one row per generator row label."""
    num = [c for c in list(METRICS.values()) + ["lat_iqr", "lat_b1_iqr"] if c in w.columns]
    g = w.groupby(["generator", "base", "model"], dropna=False, sort=False)
    m = g[num].mean()
    m["n_seeds"] = g["seed"].nunique()
    m["steps"] = g["steps"].first()
    return m.reset_index()


def _nfe(row: pd.Series, specs: dict[str, dict], cfg: dict) -> int | None:
    spec = specs.get(row["base"], {})
    steps = row["steps"]
    if steps is not None and not (isinstance(steps, float) and math.isnan(steps)):
        w = (spec.get("sample_params") or {}).get("guidance_scale")
        return int(steps) * (2 if w is not None and float(w) not in (0.0, 1.0) else 1)
    nfe = cfg.get("nfe", {})
    return int(nfe.get(row["base"], nfe.get(row["model"], 1)))


def _order(m: pd.DataFrame, specs: dict[str, dict]) -> pd.DataFrame:
    names = list(specs)
    m = m.copy()
    m["_o"] = [names.index(b) if b in names else len(names) for b in m["base"]]
    m["_s"] = [s if s is not None and not (isinstance(s, float) and math.isnan(s)) else -1 for s in m["steps"]]
    return m.sort_values(["_o", "_s"]).drop(columns=["_o", "_s"])


def _reference_row(m: pd.DataFrame, specs: dict[str, dict], cfg: dict) -> str | None:
    if cfg.get("reference"):
        return cfg["reference"] if cfg["reference"] in set(m["generator"]) else None
    cand = m[m["model"] == "ddpm"]
    cand = cand[cand["base"].map(lambda b: (specs.get(b, {}).get("sample_params") or {}).get("sampler", "ddpm") == "ddpm").astype(bool)]
    cand = cand[cand["steps"].notna()]
    if cand.empty:
        return None
    return str(cand.sort_values("steps").iloc[-1]["generator"])


def _lat_cell(v: float, iqr: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{_fmt(v)} [{_fmt(iqr)}]" if iqr is not None and not (isinstance(iqr, float) and math.isnan(iqr)) else _fmt(v)


def _pareto(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points (latency, fid, label) not dominated (lower latency and lower FID), by latency."""
    front, best = [], math.inf
    for p in sorted(points, key=lambda p: (p[0], p[1])):
        if p[1] < best:
            front.append(p)
            best = p[1]
    return front


def _plot_pareto(m: pd.DataFrame, dataset: str, batch: Any, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [("lat_b1", "batch 1"), ("lat", f"batch {batch}")]
    cols = [(c, t) for c, t in cols if m[c].notna().any()]
    if not cols or not m["fid"].notna().any():
        return None
    fig, axes = plt.subplots(1, len(cols), figsize=(6.5 * len(cols), 4.8), squeeze=False)
    for ax, (col, title) in zip(axes[0], cols):
        sub = m[m[col].notna() & m["fid"].notna() & (m[col] > 0)]
        for _, r in sub[sub["model"].isin(REFERENCE_MODELS)].iterrows():  # floor/ceiling lines, not points
            ax.axhline(r["fid"], ls="--", lw=1, color="gray")
            ax.annotate(
                f"{r['generator']} (reference)", (0.01, r["fid"]), xycoords=("axes fraction", "data"), fontsize=7, color="gray", va="bottom"
            )
        sub = sub[~sub["model"].isin(REFERENCE_MODELS)]
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
        ax.set_xlabel(f"latency per sample, ms ({title}, median; log)")
        ax.set_ylabel("FID (log)")
        ax.set_title(f"{dataset}: FID vs latency, {title}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_sweep(s: pd.DataFrame, dataset: str, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = s[s["fid"].notna() & s["class_acc"].notna()]
    if s.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    s = s.sort_values("w")
    ax.plot(s["class_acc"], s["fid"], marker="o")
    for _, r in s.iterrows():
        ax.annotate(f"w={_fmt(r['w'])}", (r["class_acc"], r["fid"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("class accuracy of the samples (digits-cnn)")
    ax.set_ylabel("FID")
    ax.set_title(f"{dataset}: classifier-free guidance sweep")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ratios(w: pd.DataFrame, m: pd.DataFrame, ref: str, specs: dict[str, dict]) -> list[list[str]]:
    """Per compared row: FID, latencies and reference/row latency ratios (per seed, then mean)."""
    rows = []
    cand = m[(m["generator"] != ref) & ~m["model"].isin(REFERENCE_MODELS) & m["fid"].notna()]
    best = []
    for base, g in cand.groupby("base", sort=False):
        if not _is_sweep(specs.get(base)):
            best.append(g.sort_values(["fid"]).iloc[0])
    rw = w[w["generator"] == ref].set_index("seed")
    for r in best:
        ow = w[w["generator"] == r["generator"]].set_index("seed")
        cells = []
        for col in ("lat_b1", "lat"):
            seeds = [s for s in ow.index if s in rw.index and pd.notna(ow.at[s, col]) and pd.notna(rw.at[s, col]) and ow.at[s, col] > 0]
            vals = [rw.at[s, col] / ow.at[s, col] for s in seeds]
            cells.append(f"{_fmt(sum(vals) / len(vals))}×" if vals else "n/a")
        rows.append([r["generator"], _fmt(r["fid"]), _lat_cell(r["lat_b1"], r["lat_b1_iqr"]), _lat_cell(r["lat"], r["lat_iqr"]), *cells])
    return rows


def _fastest(m: pd.DataFrame, thresholds: list[float]) -> list[list[str]]:
    rows = []
    cand = m[~m["model"].isin(REFERENCE_MODELS) & m["fid"].notna()]
    for th in thresholds:
        ok = cand[cand["fid"] <= th]
        cells = [f"FID ≤ {_fmt(th)}"]
        for col in ("lat_b1", "lat"):
            o = ok[ok[col].notna()]
            if o.empty:
                cells.append("none")
            else:
                r = o.sort_values(col).iloc[0]
                cells.append(f"**{r['generator']}** ({_fmt(r[col])} ms, FID {_fmt(r['fid'])})")
        rows.append(cells)
    return rows


def section(records: pd.DataFrame, suite: dict, assets_dir: Path) -> str:
    """Markdown for the speed/quality study (see the module docstring)."""
    assets_dir = Path(assets_dir)
    specs = _gen_specs(suite)
    cfg = dict(suite.get("speed_quality", {}))
    batch = (suite.get("settings") or {}).get("latency_batch", 64)
    thresholds = [float(t) for t in cfg.get("fid_thresholds", DEFAULT_THRESHOLDS)]
    md = ["## Speed and quality", ""]
    if records is None or records.empty:
        return "\n".join(md + ["No records."])
    w_all = _wide(records)
    if w_all.empty:
        return "\n".join(md + ["No FID/latency records."])
    datasets = [d for d in records["dataset"].dropna().unique()]
    md += [
        f"NFE = network evaluations per sample (sampler steps; ×2 under classifier-free guidance with w ∉ {{0, 1}}). "
        f"Latency = wall time per sample in ms, median [IQR] over repeats after warm-up, at batch 1 and at batch {batch}, "
        "measured in the same run as the FIDs. Cells are means over seeds.",
        "",
    ]
    for ds in datasets:
        w = w_all[w_all["dataset"] == ds]
        if w.empty:
            continue
        m = _order(_mean_rows(w), specs)
        is_sweep = m["base"].map(lambda b: _is_sweep(specs.get(b))).astype(bool)
        main = m[~is_sweep]
        sweep = m[is_sweep].copy()
        md += [f"### {ds}", ""]
        if not main.empty:
            rows = [
                [r["generator"], r["model"], str(_nfe(r, specs, cfg)), _fmt(r["fid"]), _fmt(r["precision"]), _fmt(r["recall"]),
                 _lat_cell(r["lat_b1"], r["lat_b1_iqr"]), _lat_cell(r["lat"], r["lat_iqr"])]
                for _, r in main.iterrows()
            ]  # fmt: skip
            md += [_table(rows, ["row", "model", "NFE", "FID ↓", "precision ↑", "recall ↑", "ms/sample @b1", f"ms/sample @b{batch}"]), ""]
            ref = _reference_row(main, specs, cfg)
            if ref is not None:
                rr = _ratios(w, main, ref, specs)
                if rr:
                    md += [
                        f"Latency ratios: how many times slower the reference **{ref}** is than the best-FID row of each other generator "
                        "(ratio within each seed's run, then averaged):",
                        "",
                        _table(rr, ["row", "FID ↓", "ms/sample @b1", f"ms/sample @b{batch}", f"{ref} / row @b1", f"{ref} / row @b{batch}"]),
                        "",
                    ]
            fr = _fastest(main, thresholds)
            if fr:
                md += [
                    "Fastest generator at each quality level (reference rows excluded):",
                    "",
                    _table(fr, ["quality", "fastest @b1", f"fastest @b{batch}"]),
                    "",
                ]
            p = _plot_pareto(main, ds, batch, assets_dir / f"speed_quality__{_slug(ds)}_pareto.png")
            if p is not None:
                md += [f"![FID vs latency on {ds}](assets/{assets_dir.name}/{p.name})", ""]
        if not sweep.empty:
            sweep["w"] = [float(specs[b]["sample_params"]["guidance_scale"]) for b in sweep["base"]]
            sweep = sweep.sort_values("w")
            rows = [
                [
                    _fmt(r["w"]),
                    r["generator"],
                    str(_nfe(r, specs, cfg)),
                    _fmt(r["fid"]),
                    _fmt(r["class_acc"]),
                    _fmt(r["precision"]),
                    _fmt(r["recall"]),
                ]
                for _, r in sweep.iterrows()
            ]
            md += [
                "#### Classifier-free guidance sweep",
                "",
                "eps = eps_u + w (eps_c - eps_u): w = 0 is the unconditional model, w = 1 the conditional one. "
                "Class accuracy = fraction of samples that the digits-cnn classifier assigns to the label they were conditioned on.",
                "",
                _table(rows, ["w", "row", "NFE", "FID ↓", "class acc ↑", "precision ↑", "recall ↑"]),
                "",
            ]
            p = _plot_sweep(sweep, ds, assets_dir / f"speed_quality__{_slug(ds)}_guidance.png")
            if p is not None:
                md += [f"![FID vs class accuracy on {ds}](assets/{assets_dir.name}/{p.name})", ""]
    return "\n".join(md).rstrip() + "\n"
