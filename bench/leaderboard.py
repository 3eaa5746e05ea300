"""Markdown leaderboards from the result store.

``bench leaderboard --suite NAME`` reads ``results/NAME/records.jsonl`` and
writes ``leaderboards/NAME.md`` (+ PNGs in ``leaderboards/assets/NAME/``):
a provenance header (date, commit, device, package versions), the protocol
(N, extractor, metric settings), one table per dataset (rows generators,
columns metrics with direction arrows, mean ± std over seeds, best in bold;
reference rows — ``data``, ``uniform``, quoted paper numbers — are never
bolded), sample grids, loss curves and any suite-specific sections.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from metrics import registry as mreg

from .plots import save_loss_curves
from .sections import SECTIONS
from .store import ResultStore
from .suite import Suite

REFERENCE_MODELS = ("data", "uniform")
ARROW = {"min": "↓", "max": "↑", "zero": "→0", None: ""}


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records -> DataFrame with the columns sections rely on."""
    cols = ["suite", "job", "dataset", "generator", "base", "model", "seed", "steps", "metric", "value", "lo", "hi",
            "n_real", "n_fake", "extractor", "settings", "extra", "na", "git_commit", "device", "versions", "timestamp"]  # fmt: skip
    df = pd.DataFrame(records)
    for c in cols:
        if c not in df.columns:
            df[c] = None
    return df


def fmt_num(v: float | None) -> str:
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


def _cell(vals: list[float]) -> tuple[str, float | None]:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        return "n/a", None
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return fmt_num(m), m
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return f"{fmt_num(m)} ± {fmt_num(sd)}", m


def _column_label(metric: str, out: mreg.Output | None, sub: pd.DataFrame) -> str:
    label = out.label if out else metric
    if out and out.per_extractor:
        ext = next((e for e in sub["extractor"] if e), None)
        if ext:
            label = f"{label}[{ext}]"
    if metric == "nll":
        units = {(s or {}).get("unit") for s in sub["settings"] if isinstance(s, dict)} - {None}
        if units:
            label = f"{label} ({'/'.join(sorted(units))})"
    return f"{label} {ARROW[out.direction if out else None]}".strip()


def dataset_table(df: pd.DataFrame, suite: Suite, dataset: str) -> str:
    """Markdown table for one dataset: rows = generators, columns = metrics."""
    outputs = mreg.all_outputs()
    sub = df[(df["dataset"] == dataset) & ~df["metric"].astype(str).str.startswith("_") & (df["metric"] != "train_s")]
    if sub.empty:
        return "_no results yet_\n"
    metric_order = []
    spec = next((d for d in suite.datasets if d.name == dataset), None)
    for m in spec.metrics if spec else []:
        try:
            metric_order += [o.name for o in mreg.get_metric(m).outputs]
        except KeyError:
            pass
    metric_order += [m for m in sub["metric"].unique() if m not in metric_order]
    metric_order = [m for m in metric_order if m in set(sub["metric"])]
    rows = list(dict.fromkeys(sub["generator"]))
    ref_rows = {r for r in rows if sub[sub["generator"] == r]["model"].iloc[0] in REFERENCE_MODELS}
    rows = sorted(rows, key=lambda r: (r not in ref_rows, _suite_index(suite, sub, r)))
    table: dict[str, dict[str, str]] = {r: {} for r in rows}
    means: dict[str, dict[str, float | None]] = {r: {} for r in rows}
    kinds: dict[str, str] = {}
    headers = {}
    for m in metric_order:
        msub = sub[sub["metric"] == m]
        headers[m] = _column_label(m, outputs.get(m), msub)
        for r in rows:
            rs = msub[msub["generator"] == r]
            if rs.empty:
                table[r][m] = "—"
                means[r][m] = None
                continue
            text, mean = _cell([v for v in rs["value"]])
            table[r][m] = text
            means[r][m] = mean
            if m == "nll" and mean is not None:
                k = next((s.get("kind") for s in rs["settings"] if isinstance(s, dict) and s.get("kind")), None)
                if k:
                    kinds[r] = k
    for m in metric_order:
        direction = outputs[m].direction if m in outputs else None
        cands = {r: means[r][m] for r in rows if r not in ref_rows and means[r][m] is not None}
        if direction and len(cands) > 1:
            score = {"min": lambda v: v, "max": lambda v: -v, "zero": abs}[direction]
            best = min(score(v) for v in cands.values())
            for r, v in cands.items():
                if score(v) == best:
                    table[r][m] = f"**{table[r][m]}**"
    for r, k in kinds.items():
        table[r]["nll"] += f" ({k})"
    metric_order = [m for m in metric_order if any(means[r][m] is not None for r in rows)]  # hide all-n/a columns
    seeds = sub.groupby("generator")["seed"].nunique().to_dict()
    out = pd.DataFrame(
        [{"generator": r + (" (reference)" if r in ref_rows else ""), "seeds": seeds.get(r, 0), **{headers[m]: table[r][m] for m in metric_order}} for r in rows]
    )
    for q in suite.quoted:
        if q.get("dataset") == dataset:
            row = {"generator": f"_{q['label']}_", "seeds": "quoted"}
            for m in metric_order:
                v = (q.get("values") or {}).get(m)
                row[headers[m]] = f"_{fmt_num(float(v))}_" if v is not None else "—"
            out = pd.concat([out, pd.DataFrame([row])], ignore_index=True)
    return out.to_markdown(index=False) + "\n"


def _suite_index(suite: Suite, sub: pd.DataFrame, row: str) -> tuple:
    base = sub[sub["generator"] == row]["base"].iloc[0]
    names = [g.name for g in suite.generators]
    steps = sub[sub["generator"] == row]["steps"].iloc[0]
    s = steps if steps is not None and not (isinstance(steps, float) and math.isnan(steps)) else -1
    return (names.index(base) if base in names else len(names), s)


def protocol_lines(df: pd.DataFrame, suite: Suite) -> list[str]:
    lines = []
    for d in suite.datasets:
        sub = df[(df["dataset"] == d.name) & df["settings"].notna()]
        if sub.empty:
            continue
        n_fake = sorted({int(v) for v in sub["n_fake"].dropna()})
        parts = [f"**{d.name}**: extractor `{d.extractor}`"]
        ext = next((s for s in sub["settings"] if isinstance(s, dict) and s.get("weights_hash")), None)
        if ext:
            parts.append(f"weights `{ext.get('weights_hash')}`" + (f" (test acc {ext['test_accuracy']:.3f})" if ext.get("test_accuracy") else ""))
        parts.append(f"N fake = {', '.join(map(str, n_fake))}")
        n_real = sorted({int(v) for v in sub["n_real"].dropna()})
        if n_real:
            parts.append(f"N real = {', '.join(map(str, n_real))} ({sub['settings'].iloc[0].get('reference', 'train split') if isinstance(sub['settings'].iloc[0], dict) else 'train split'})")
        lines.append("- " + "; ".join(parts))
        seen = {}
        for m, s in zip(sub["metric"], sub["settings"]):
            if isinstance(s, dict) and m not in seen:
                keep = {k: v for k, v in s.items() if k not in ("weights_hash", "test_accuracy", "extractor", "dim", "n_real", "n_fake", "n", "device") and not isinstance(v, (dict, list))}
                seen[m] = keep
        for m, s in seen.items():
            if s:
                lines.append(f"  - `{m}`: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    return lines


def write_leaderboard(suite: Suite, results_dir: str | Path = "results", out_dir: str | Path = "leaderboards") -> Path:
    """Render ``out_dir/<suite>.md`` from the store; returns its path."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    records = ResultStore(results_dir / suite.name).records()
    if not records:
        raise FileNotFoundError(f"no results for suite {suite.name!r} under {results_dir}; run `bench run --suite {suite.name}` first")
    df = records_frame(records)
    assets = out_dir / "assets" / suite.name
    if assets.exists():
        shutil.rmtree(assets)
    assets.mkdir(parents=True, exist_ok=True)
    src_assets = results_dir / suite.name / "assets"
    if src_assets.exists():
        for p in sorted(src_assets.iterdir()):
            if p.is_file():
                shutil.copy2(p, assets / p.name)
    commits = sorted({c for c in df["git_commit"].dropna()})
    devices = sorted({c for c in df["device"].dropna()})
    versions = next((v for v in df["versions"] if isinstance(v, dict)), {})
    seeds = sorted({int(s) for s in df["seed"].dropna()})
    md = [
        f"# Leaderboard: `{suite.name}`",
        "",
        f"_{suite.description.strip()}_" if suite.description else "",
        "",
        f"Generated by `bench leaderboard --suite {suite.name}` from `{results_dir}/{suite.name}/records.jsonl` "
        "(real runs of the committed code; do not edit by hand).",
        "",
        "## Provenance",
        "",
        f"- generated: {_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- git commit(s) of the runs: {', '.join(f'`{c}`' for c in commits) or 'unknown'}",
        f"- device(s): {', '.join(devices)}",
        f"- packages: {', '.join(f'{k} {v}' for k, v in versions.items())}",
        f"- seeds: {seeds}; cells are mean ± std over seeds (sample std), a single value when one seed ran",
        "",
        "## Protocol",
        "",
        *protocol_lines(df, suite),
        "- ↓ lower is better, ↑ higher is better, →0 closest to zero is best (unbiased estimates such as KID can be slightly negative); **bold** = best non-reference row; reference rows are the noise floor / ceiling, "
        "quoted rows (_italic_) are numbers from papers, not run here; n/a = the metric does not apply to that generator.",
        "- FID is biased by sample size: compare FIDs only within a table (equal N). Read FID together with memorization when present.",
        "",
    ]
    for d in suite.datasets:
        md += [f"## {d.name}", "", dataset_table(df, suite, d.name)]
        grids = sorted(assets.glob(f"{d.name}__*.png"))
        if grids:
            md += ["Samples (first seed):", "", " ".join(f"![{g.stem.split('__', 1)[1]}](assets/{suite.name}/{g.name})" for g in grids), ""]
        curves = _loss_curves(df, d.name)
        if curves:
            p = save_loss_curves(curves, assets / f"losses__{d.name}.png", title=f"training losses on {d.name} (first seed)")
            md += [f"Training loss curves: ![losses](assets/{suite.name}/{p.name})", ""]
        train = df[(df["dataset"] == d.name) & (df["metric"] == "train_s")]
        if not train.empty:
            t = train.groupby("base")["value"].mean().dropna()
            if not t.empty:
                md += ["Training wall time (s, mean over seeds; cached runs report the original time): " + ", ".join(f"{k} {fmt_num(v)}" for k, v in t.items()), ""]
    for name in suite.sections:
        md += [SECTIONS.load(name)(df, suite.raw, assets), ""]
    out = out_dir / f"{suite.name}.md"
    out.write_text("\n".join(md).rstrip() + "\n")
    return out


def _loss_curves(df: pd.DataFrame, dataset: str) -> dict[str, dict[str, list[float]]]:
    sub = df[(df["dataset"] == dataset) & (df["metric"] == "train_s")]
    if sub.empty:
        return {}
    first = sub["seed"].min()
    curves = {}
    for _, r in sub[sub["seed"] == first].iterrows():
        extra = r["extra"] if isinstance(r["extra"], dict) else {}
        losses = extra.get("losses") or {}
        losses = {k: v for k, v in losses.items() if isinstance(v, list) and len(v) > 1}
        if losses:
            curves[r["base"]] = losses
    return curves


def dump_json(suite: Suite, results_dir: str | Path = "results") -> str:
    return json.dumps(ResultStore(Path(results_dir) / suite.name).records(), indent=1)
