"""Leaderboard section ``speed_quality``: sample quality against sampling cost.

Called by ``bench leaderboard`` for suites with ``sections = ["speed_quality"]``
as ``section(records, suite, assets_dir) -> markdown``. From the records of one
run it builds, per data set:

* a table per row (generator@steps): NFE, FID (FD∞ when recorded), precision,
  recall, latency per sample at batch 1 and at the suite's ``latency_batch``
  (median [IQR]), ms per NFE, FLOPs per sample, parameters, peak memory and
  the number of seeds; FID cells of the best row and of every row tied with it
  are bold (the leaderboard's significance test);
* for each network sampled by several rows (same model, params and budget:
  e.g. DDPM and DDIM at several step counts), the spread of ms/NFE;
* latency ratios between the reference row (DDPM at its largest step count)
  and the best-FID row of every other generator, each ratio taken within one
  seed (so within one run) and then averaged;
* the rows that sample the reference's network, paired with it by seed: FID
  ratio (geometric mean, 95% t-interval) and FD∞ difference;
* a Pareto plot of FID against latency and against FLOPs per sample (log x)
  saved in ``assets_dir``, with the step sweeps drawn as curves and the
  Pareto front marked;
* the fastest generator at each quality level (FID thresholds);
* the classifier-free guidance sweep (rows whose ``sample_params`` set
  ``guidance_scale``): FID against class accuracy, table and plot.

Optional suite table ``[speed_quality]``: ``fid_thresholds`` (list),
``reference`` (row label, default: the ``ddpm`` row with sampler "ddpm" at its
largest step count), ``fid_ratio_target`` (e.g. 1.3: the paired table says
whether each row's FID / reference FID interval lies below it), ``nfe`` (network evaluations per sample of
non-iterative rows, e.g. ``{ pixelcnn = 64 }``; default 1).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats as _stats

from bench.report import LEVEL, cell_stats, fmt_num, tied_with_best

from .speed_quality_plots import plot_pareto, plot_sweep

DEFAULT_THRESHOLDS = (10.0, 15.0, 20.0, 30.0, 50.0, 100.0)
METRICS = {
    "fid": "fid",
    "precision": "precision",
    "recall": "recall",
    "latency_ms": "lat",
    "latency_b1_ms": "lat_b1",
    "class_acc": "class_acc",
    "fd_inf": "fd_inf",
    "ms_per_nfe": "ms_nfe",
    "flops_per_sample": "flops",
    "params": "params",
    "peak_mem_mb": "mem",
}
SPREAD_TARGET = 0.15  # rows sharing one network should agree on ms/NFE within ±15%


def _fmt(v: Any) -> str:
    return fmt_num(None if v is None else float(v))


def _si(v: Any) -> str:
    """A count with an SI prefix: 1.23 k, 45.6 M, 7.89 G (FLOPs)."""
    if not _present(v):
        return "n/a"
    v = float(v)
    for prefix, k in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= k:
            return f"{v / k:.3g} {prefix}"
    return f"{v:.3g}"


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
    """One row per (dataset, generator, base, model, seed, steps) with a column per metric (value), IQR columns for latency,
    ``loaded`` (a timing record of the row was taken under load) and ``nfe_rec`` (the NFE the records state)."""
    d = df[df["metric"].isin(list(METRICS)) & df["value"].notna()].copy()
    if d.empty:
        return pd.DataFrame()
    d["value"] = d["value"].astype(float)
    d["spread"] = (pd.to_numeric(d["hi"], errors="coerce") - pd.to_numeric(d["lo"], errors="coerce")).astype(float)
    d["steps"] = d["steps"].astype("float")
    keys = ["dataset", "generator", "base", "model", "reference", "seed", "steps"]
    d["steps"] = d["steps"].fillna(-1)
    val = d.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean").rename(columns=METRICS)
    iqr = d[d["metric"].isin(["latency_ms", "latency_b1_ms"])].pivot_table(index=keys, columns="metric", values="spread", aggfunc="mean")
    iqr = iqr.rename(columns={"latency_ms": "lat_iqr", "latency_b1_ms": "lat_b1_iqr"})
    w = val.join(iqr, how="left")
    extra = pd.DataFrame(index=w.index)
    loaded = d["loaded"] if "loaded" in d.columns else pd.Series(False, index=d.index)
    d["_loaded"] = loaded.map(lambda v: v is True)
    extra["loaded"] = d.groupby(keys)["_loaded"].any()
    nfe = pd.to_numeric(d["nfe"], errors="coerce") if "nfe" in d.columns else pd.Series(float("nan"), index=d.index)
    d["_nfe"] = nfe
    extra["nfe_rec"] = d.groupby(keys)["_nfe"].max()
    w = w.join(extra, how="left").reset_index()
    w["steps"] = w["steps"].where(w["steps"] >= 0, None)
    for c in list(METRICS.values()) + ["lat_iqr", "lat_b1_iqr", "nfe_rec"]:
        if c not in w.columns:
            w[c] = float("nan")
    w["loaded"] = w["loaded"].fillna(False).astype(bool)
    return w


def _mean_rows(w: pd.DataFrame) -> pd.DataFrame:
    """Average over seeds: one row per generator row label."""
    num = [c for c in list(METRICS.values()) + ["lat_iqr", "lat_b1_iqr", "nfe_rec"] if c in w.columns]
    g = w.groupby(["generator", "base", "model", "reference"], dropna=False, sort=False)
    m = g[num].mean()
    m["n_seeds"] = g["seed"].nunique()
    m["steps"] = g["steps"].first()
    m["loaded"] = g["loaded"].any()
    return m.reset_index()


def _nfe(row: pd.Series, specs: dict[str, dict], cfg: dict) -> int | None:
    """NFE per sample: as recorded (the model's own count), else from steps (x2 under guidance), else the suite's ``nfe`` table, else 1."""
    rec = row.get("nfe_rec")
    if rec is not None and isinstance(rec, (int, float)) and math.isfinite(rec) and rec > 0:
        return int(rec)
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


def _lat_cell(v: float, iqr: float, loaded: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    text = f"{_fmt(v)} [{_fmt(iqr)}]" if iqr is not None and not (isinstance(iqr, float) and math.isnan(iqr)) else _fmt(v)
    return text + (" ⚠" if loaded else "")


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _network_key(spec: dict) -> str:
    """Rows with the same model, params and budget share one trained network (the cache key ignores sampler and steps)."""
    return json.dumps([spec.get("model", spec.get("name")), spec.get("params") or {}, spec.get("budget") or {}], sort_keys=True, default=str)


def _nfe_spread(m: pd.DataFrame, specs: dict[str, dict]) -> list[list[str]]:
    """Per network sampled by >= 2 rows with ms/NFE: min, max, median and the spread (max/min - 1, and ± around the median)."""
    groups: dict[str, list[pd.Series]] = {}
    for _, r in m.iterrows():
        if _present(r.get("ms_nfe")) and r["base"] in specs:
            groups.setdefault(_network_key(specs[r["base"]]), []).append(r)
    out = []
    for rows in groups.values():
        if len(rows) < 2:
            continue
        vals = sorted(float(r["ms_nfe"]) for r in rows)
        med = float(pd.Series(vals).median())
        half = max(vals[-1] - med, med - vals[0]) / med if med > 0 else float("nan")
        names = ", ".join(str(r["generator"]) for r in rows)
        ok = "yes" if half <= SPREAD_TARGET else "**no**"
        out.append([names, str(len(rows)), _fmt(vals[0]), _fmt(med), _fmt(vals[-1]), f"±{100 * half:.1f}%", ok])
    return out


def _marked(r: pd.Series, col: str, marks: dict[str, tuple[set[str], bool]]) -> str:
    text = _fmt(r[col])
    return f"**{text}**" if r["generator"] in marks[col][0] and text != "n/a" else text


def _fid_marks(records: pd.DataFrame, dataset: str, rows: list[str], metric: str) -> tuple[set[str], bool]:
    """Rows whose ``metric`` is best or statistically tied with the best (bench.report.tied_with_best)."""
    sub = records[(records["dataset"] == dataset) & (records["metric"] == metric)]
    cells = {}
    for r in rows:
        rs = sub[sub["generator"] == r]
        if not rs.empty:
            cells[r] = cell_stats(list(rs["value"]), list(rs["lo"]), list(rs["hi"]), list(rs["settings"]) if "settings" in rs else None)
    if len([c for c in cells.values() if c.mean is not None]) < 2:
        return set(), True
    return tied_with_best(cells, "min")


def _orderings(records: pd.DataFrame, dataset: str, chain: list[tuple[str, str]]) -> str:
    """Consecutive rows of a sweep (label, row): is each change of FID resolved by the tie test, or within noise?"""
    sub = records[(records["dataset"] == dataset) & (records["metric"] == "fid")]
    parts = []
    for (la, a), (lb_, b) in zip(chain, chain[1:]):
        cells = {}
        for r in (a, b):
            rs = sub[sub["generator"] == r]
            cells[r] = cell_stats(list(rs["value"]), list(rs["lo"]), list(rs["hi"]), list(rs["settings"]) if "settings" in rs else None)
        if cells[a].mean is None or cells[b].mean is None:
            continue
        marked, tested = tied_with_best(cells, "min")
        verdict = "not tested" if not tested and len(marked) == 1 else ("resolved" if len(marked) == 1 else "within noise")
        parts.append(f"{la}→{lb_}: {_fmt(cells[a].mean)} → {_fmt(cells[b].mean)} ({verdict})")
    return "; ".join(parts)


def _sweep_lines(records: pd.DataFrame, dataset: str, main: pd.DataFrame) -> list[str]:
    lines = []
    for base, g in main[main["steps"].notna()].groupby("base", sort=False):
        if len(g) < 2:
            continue
        g = g.sort_values("steps")
        text = _orderings(records, dataset, [(str(int(st)), r) for st, r in zip(g["steps"], g["generator"])])
        if text:
            lines.append(f"- `{base}` (steps): {text}")
    return lines


def _ratios(w: pd.DataFrame, m: pd.DataFrame, ref: str, specs: dict[str, dict]) -> list[list[str]]:
    """Per compared row: FID, latencies and reference/row latency ratios (per seed, then mean)."""
    rows = []
    cand = m[(m["generator"] != ref) & ~m["reference"] & m["fid"].notna()]
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


def _t_interval(vals: list[float]) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval of the mean (nan bounds with one value)."""
    c = cell_stats(vals)  # mean, and with >= 2 values the standard error over them and its degrees of freedom
    if c.n_seeds < 2:
        return c.mean, float("nan"), float("nan")
    h = float(_stats.t.ppf(0.5 + LEVEL / 2, c.df)) * c.se
    return c.mean, c.mean - h, c.mean + h


def _paired(w: pd.DataFrame, m: pd.DataFrame, ref: str, specs: dict[str, dict], target: float | None) -> list[list[str]]:
    """Rows that sample the reference row's network, compared with it seed by seed.

    Within a seed both rows use the same trained network (their own sample
    sets), so the network's seed-to-seed variation cancels in the pair:
    FID ratio = exp(mean of log(FID_row / FID_ref)) with a 95% t-interval over
    seeds (log-ratios assumed normal), FD∞ difference row - ref likewise (FD∞
    can be <= 0, so no ratio). ``target`` (e.g. 1.3): the verdict says whether
    the ratio's interval lies below it, above it, or straddles it.
    """
    base = m.loc[m["generator"] == ref, "base"]
    if base.empty or base.iloc[0] not in specs:
        return []
    key = _network_key(specs[base.iloc[0]])
    rw = w[w["generator"] == ref].set_index("seed")
    out = []
    for _, r in m.iterrows():
        if r["generator"] == ref or r["base"] not in specs or _network_key(specs[r["base"]]) != key:
            continue
        ow = w[w["generator"] == r["generator"]].set_index("seed")
        seeds = sorted(s for s in ow.index if s in rw.index and ow.at[s, "fid"] > 0 and rw.at[s, "fid"] > 0)
        if not seeds:
            continue
        per_seed = [float(ow.at[s, "fid"] / rw.at[s, "fid"]) for s in seeds]
        lm, llo, lhi = _t_interval([math.log(v) for v in per_seed])
        ratio = f"{_fmt(math.exp(lm))}× [{_fmt(math.exp(llo))}, {_fmt(math.exp(lhi))}]" if len(seeds) > 1 else f"{_fmt(math.exp(lm))}×"
        fd_seeds = [s for s in seeds if _present(ow.at[s, "fd_inf"]) and _present(rw.at[s, "fd_inf"])]
        fd = "n/a"
        if fd_seeds:
            dm, dlo, dhi = _t_interval([float(ow.at[s, "fd_inf"] - rw.at[s, "fd_inf"]) for s in fd_seeds])
            fd = f"{_fmt(dm)} [{_fmt(dlo)}, {_fmt(dhi)}]" if len(fd_seeds) > 1 else _fmt(dm)
        row = [r["generator"], str(len(seeds)), ratio, ", ".join(_fmt(v) for v in per_seed), fd]
        if target is not None:
            if len(seeds) < 2:
                verdict = "not tested (one seed)"
            elif math.exp(lhi) <= target:
                verdict = f"≤ {_fmt(target)}× (resolved)"
            elif math.exp(llo) > target:
                verdict = f"> {_fmt(target)}× (resolved)"
            else:
                verdict = f"unresolved (interval contains {_fmt(target)}×)"
            row.append(verdict)
        out.append(row)
    return out


def _fastest(m: pd.DataFrame, thresholds: list[float]) -> list[list[str]]:
    rows = []
    cand = m[~m["reference"] & m["fid"].notna()]
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
    timed = records["settings"].map(lambda st: isinstance(st, dict) and st.get("phase") == "timing").any() if "settings" in records else False
    when = ("measured in the timing phase after all jobs (one process, fixed threads, rows interleaved round-robin; see the protocol); "
            "⚠ = other processes loaded the CPU during that measurement"
            if timed else "measured in the same run as the FIDs")  # fmt: skip
    md += [
        f"NFE = network evaluations per sample (as counted by the sampler; sampler steps, ×2 under classifier-free guidance with w ∉ {{0, 1}}). "
        f"Latency = wall time per sample in ms, median [IQR] over repeats after warm-up, at batch 1 and at batch {batch}, {when}. "
        f"ms/NFE = ms/sample at batch {batch} / NFE. FLOPs/sample: matrix multiplications and convolutions only (torch.utils.flop_counter); "
        "peak memory: torch allocations during one sampling call (see the protocol). Cells are means over seeds; "
        "**bold** FID = the best row and every row statistically tied with it (see Significance in the protocol).",
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
            ranked = [r for r, ref in zip(main["generator"], main["reference"]) if not ref]
            marks = {k: _fid_marks(records, ds, ranked, k) for k in ("fid", "fd_inf")}
            has = {c: main[c].notna().any() for c in ("fd_inf", "ms_nfe", "flops", "params", "mem")}

            rows = []
            for _, r in main.iterrows():
                row = [r["generator"], r["model"], str(_nfe(r, specs, cfg)), _marked(r, "fid", marks), _fmt(r["precision"]), _fmt(r["recall"]),
                       _lat_cell(r["lat_b1"], r["lat_b1_iqr"], r["loaded"]), _lat_cell(r["lat"], r["lat_iqr"], r["loaded"])]  # fmt: skip
                row.insert(4, _marked(r, "fd_inf", marks)) if has["fd_inf"] else None
                row += [_fmt(r["ms_nfe"]) + (" ⚠" if r["loaded"] and _present(r["ms_nfe"]) else "")] if has["ms_nfe"] else []
                row += [_si(r["flops"])] if has["flops"] else []
                row += [f"{r['params']:,.0f}" if _present(r["params"]) else "n/a"] if has["params"] else []
                row += [_fmt(r["mem"])] if has["mem"] else []
                rows.append(row + [str(int(r["n_seeds"]))])
            header = ["row", "model", "NFE", "FID ↓" + ("" if marks["fid"][1] else " ¹"), "precision ↑", "recall ↑", "ms/sample @b1", f"ms/sample @b{batch}"]
            if has["fd_inf"]:
                header.insert(4, "FD∞ ↓" + ("" if marks["fd_inf"][1] else " ¹"))
            header += ([f"ms/NFE @b{batch}"] if has["ms_nfe"] else []) + (["FLOPs/sample"] if has["flops"] else [])
            header += (["params"] if has["params"] else []) + (["peak MB"] if has["mem"] else []) + ["seeds"]
            md += [_table(rows, header), ""]
            if not (marks["fid"][1] and marks["fd_inf"][1]):
                md += ["¹ some rows have one seed and no bootstrap interval: ties with the best row are not tested for them.", ""]
            spread = _nfe_spread(main, specs)
            if spread:
                md += [
                    f"ms/NFE of rows that sample one trained network (same model, params and budget): identical work per network evaluation, "
                    f"so the spread measures the timing's noise and per-call overhead (target ±{100 * SPREAD_TARGET:.0f}%):",
                    "",
                    _table(spread, ["rows", "n", "min ms/NFE", "median", "max", "spread", f"within ±{100 * SPREAD_TARGET:.0f}%"]),
                    "",
                ]
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
                target = cfg.get("fid_ratio_target")
                pr = _paired(w, main, ref, specs, None if target is None else float(target))
                if pr:
                    md += [
                        f"Paired by seed against **{ref}**: rows that sample its trained network, each seed's FID ratio taken with that "
                        "seed's network (so the seed-to-seed spread of the network cancels), then the geometric mean over seeds with a "
                        f"95% t-interval of the mean log ratio; FD∞ as the mean paired difference (row − {ref}) with its 95% t-interval"
                        + (f"; verdict: is the ratio's interval below {_fmt(float(target))}×?" if target is not None else "")
                        + ":",
                        "",
                        _table(pr, ["row", "seeds", f"FID row / {ref}", "per seed", f"FD∞ row − {ref}"] + (["verdict"] if target is not None else [])),
                        "",
                    ]
            sl = _sweep_lines(records, ds, main)
            if sl:
                md += [
                    "Which orderings of the step sweeps are resolved: consecutive step counts, FID change and whether the "
                    "95% interval of the difference excludes 0 (the tie test of the protocol; 'not tested' = one seed without a bootstrap interval):",
                    "",
                    *sl,
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
            p = plot_pareto(main, ds, batch, assets_dir / f"speed_quality__{_slug(ds)}_pareto.png")
            if p is not None:
                md += [f"![FID vs latency and FLOPs on {ds}](assets/{assets_dir.name}/{p.name})", ""]
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
            text = _orderings(records, ds, [(f"w={_fmt(w)}", r) for w, r in zip(sweep["w"], sweep["generator"])])
            if text:
                md += [f"FID orderings along w (tie test of the protocol): {text}.", ""]
            p = plot_sweep(sweep, ds, assets_dir / f"speed_quality__{_slug(ds)}_guidance.png")
            if p is not None:
                md += [f"![FID vs class accuracy on {ds}](assets/{assets_dir.name}/{p.name})", ""]
    return "\n".join(md).rstrip() + "\n"
