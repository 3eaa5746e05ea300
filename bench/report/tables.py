"""One data set's leaderboard table from records: the numbers (:func:`table_data`: rows, columns with their
labels, directions and units, per-cell statistics, the rows tied with the best), its markdown
(:func:`dataset_table`) and tidy rows for CSV/JSON export. ``suite`` is a :class:`bench.suite.Suite` (its row
order, data sets' metric lists and quoted rows); this module does not import it, so sections and the suite
module stay free of a cycle through the report package."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from metrics import registry as mreg

from ..record import qualified, split_metric
from .core import ARROW, _cell_text, _finite, cell_stats, fmt_num, tied_with_best

__all__ = ["HIDDEN_METRICS", "table_data", "dataset_table", "na_reason_lines", "table_records"]

HIDDEN_METRICS = ("train_s",)  # shown as a line under the table, not as a column


# ---------------------------------------------------------------- column metadata
def _first(series: pd.Series) -> Any:
    return next((v for v in series if v is not None and not (isinstance(v, float) and math.isnan(v))), None)


def _column_meta(metric: str, sub: pd.DataFrame, outputs: dict[str, mreg.Output]) -> dict[str, Any]:
    """Label, direction, unit of one column: from its records, else the registry, else the metric name."""
    out = outputs.get(metric)
    label = _first(sub["label"]) or (out.label if out else metric)
    direction = _first(sub["direction"]) if sub["direction"].notna().any() else (out.direction if out else None)
    per_ext = _first(sub["per_extractor"])
    per_ext = bool(per_ext) if per_ext is not None else bool(out and out.per_extractor)
    units = {u for u in sub["unit"] if isinstance(u, str) and u}
    if not units:
        units = {s.get("unit") for s in sub["settings"] if isinstance(s, dict) and isinstance(s.get("unit"), str)}
    if not units and out is not None and getattr(out, "unit", None):
        units = {out.unit}
    if per_ext:
        ext = _first(sub["extractor"])
        if ext:
            label = f"{label}[{ext}]"
    unit_text = "/".join(sorted(units))
    header = label + (f" ({unit_text})" if units and unit_text not in label else "")
    header = f"{header} {ARROW.get(direction, '')}".strip()
    return {"label": label, "header": header, "direction": direction, "unit": "/".join(sorted(units)) or None}


# ---------------------------------------------------------------- tables
def _suite_index(suite: Any, sub: pd.DataFrame, row: str) -> tuple:
    base = sub[sub["generator"] == row]["base"].iloc[0]
    names = [g.name for g in suite.generators]
    steps = sub[sub["generator"] == row]["steps"].iloc[0]
    s = steps if steps is not None and not (isinstance(steps, float) and math.isnan(steps)) else -1
    return (names.index(base) if base in names else len(names), s)


def _metric_order(suite: Any, dataset: str, sub: pd.DataFrame) -> list[str]:
    order: list[str] = []
    spec = next((d for d in suite.datasets if d.name == dataset), None)
    for entry in spec.metrics if spec else []:
        m, extractor = split_metric(entry)  # "fid@effnet-lite0": its records are "fid@effnet-lite0", "kid@..." ...
        try:
            order += [qualified(o.name, extractor) for o in mreg.get_metric(m).outputs]
        except KeyError:
            pass
    present = list(dict.fromkeys(sub["metric"]))
    order += [m for m in present if m not in order]
    return [m for m in order if m in set(present)]


def table_data(df: pd.DataFrame, suite: Any, dataset: str) -> dict[str, Any]:
    """The numbers behind one dataset's table (what md, csv and json all render).

    Returns ``{"rows": [...], "columns": {metric: meta}, "cells": {(row, metric): CellStats},
    "marked": {metric: set(rows)}, "untested": [metrics], "reference": set(rows), "seeds": {row: n}}``.
    """
    outputs = mreg.all_outputs()
    sub = df[(df["dataset"] == dataset) & ~df["metric"].astype(str).str.startswith("_") & ~df["metric"].isin(HIDDEN_METRICS)]
    if sub.empty:
        return {"rows": [], "columns": {}, "cells": {}, "marked": {}, "untested": [], "reference": set(), "seeds": {}, "sub": sub, "present": set()}
    metrics = _metric_order(suite, dataset, sub)
    rows = list(dict.fromkeys(sub["generator"]))
    ref_rows = set(sub.loc[sub["reference"].astype(bool), "generator"])
    rows = sorted(rows, key=lambda r: (r not in ref_rows, _suite_index(suite, sub, r)))
    columns, cells, marked, untested = {}, {}, {}, []
    present = set(zip(sub["generator"], sub["metric"]))
    for m in metrics:
        msub = sub[sub["metric"] == m]
        columns[m] = _column_meta(m, msub, outputs)
        for r in rows:
            rs = msub[msub["generator"] == r]
            c = cell_stats(list(rs["value"]), list(rs["lo"]), list(rs["hi"]), list(rs["settings"]))
            c.kind = next((s.get("kind") for s in rs["settings"] if isinstance(s, dict) and s.get("kind")), None)
            c.loaded = bool(rs["loaded"].fillna(False).astype(bool).any()) if not rs.empty else False
            cells[(r, m)] = c
        ranked = {r: cells[(r, m)] for r in rows if r not in ref_rows}
        if len([c for c in ranked.values() if c.mean is not None]) > 1:
            marked[m], tested = tied_with_best(ranked, columns[m]["direction"])
            if not tested:
                untested.append(m)
        else:
            marked[m] = set()
    metrics = [m for m in metrics if any(cells[(r, m)].mean is not None for r in rows)]  # hide all-n/a columns
    seeds = sub.groupby("generator")["seed"].nunique().to_dict()
    return {
        "rows": rows, "columns": {m: columns[m] for m in metrics}, "cells": cells, "marked": marked,
        "untested": [m for m in untested if m in metrics], "reference": ref_rows, "seeds": seeds, "sub": sub, "present": present,
    }  # fmt: skip


def _sizes_line(t: dict[str, Any]) -> str:
    """Sample sizes of the columns measured against a reference set (records with ``n_real``), grouped by (N fake, N real)."""
    sub = t["sub"]
    groups: dict[str, list[str]] = {}
    for m, meta in t["columns"].items():
        ms = sub[sub["metric"] == m]
        nr = sorted({int(v) for v in ms["n_real"] if _finite(v)})
        if not nr:
            continue
        nf = sorted({int(v) for v in ms["n_fake"] if _finite(v)})
        key = (f"N fake {'/'.join(map(str, nf))}, " if nf else "") + f"N real (reference) {'/'.join(map(str, nr))}"
        groups.setdefault(key, []).append(meta["label"])
    return ("Sample sizes: " + "; ".join(f"{', '.join(labels)}: {k}" for k, labels in groups.items()) + ".") if groups else ""


def dataset_table(df: pd.DataFrame, suite: Any, dataset: str) -> str:
    """Markdown table for one dataset: rows = generators, columns = metrics (see the module docstring)."""
    t = table_data(df, suite, dataset)
    if not t["rows"]:
        return "_no results yet_\n"
    headers = {m: meta["header"] + (" ¹" if m in t["untested"] else "") for m, meta in t["columns"].items()}
    body = []
    for r in t["rows"]:
        row = {"generator": r + (" (reference)" if r in t["reference"] else ""), "seeds": t["seeds"].get(r, 0)}
        for m in t["columns"]:
            c = t["cells"][(r, m)]
            text = _cell_text(c) if (r, m) in t["present"] else "—"
            row[headers[m]] = f"**{text}**" if r in t["marked"].get(m, set()) else text
        body.append(row)
    out = pd.DataFrame(body)
    for q in suite.quoted:
        if q.get("dataset") == dataset:
            row = {"generator": f"_{q['label']}_", "seeds": "quoted"}
            for m in t["columns"]:
                v = (q.get("values") or {}).get(m)
                row[headers[m]] = f"_{fmt_num(float(v))}_" if v is not None else "—"
            out = pd.concat([out, pd.DataFrame([row])], ignore_index=True)
    md = out.to_markdown(index=False) + "\n"
    notes = []
    if t["untested"]:
        notes.append("¹ ties with the best row not tested in this column for rows with one seed and no 95% interval.")
    if any(t["cells"][(r, m)].loaded for r in t["rows"] for m in t["columns"]):
        notes.append("⚠ timed while other processes loaded the CPU (see the timing protocol): compare with care.")
    sizes = _sizes_line(t)
    if sizes:
        notes.append(sizes)
    notes += na_reason_lines(t)
    return md + ("\n" + "\n".join(notes) + "\n" if notes else "")


def na_reason_lines(t: dict[str, Any]) -> list[str]:
    """Why cells are n/a where a metric's precondition failed (records with ``na_error``), one line per reason."""
    sub = t["sub"]
    if "na_error" not in sub.columns:
        return []
    bad = sub[sub["na_error"].fillna(False).astype(bool)]
    groups: dict[str, list[str]] = {}
    for _, r in bad.iterrows():
        meta = t["columns"].get(r["metric"], {})
        key = f"{meta.get('label', r['metric'])}: {r.get('na_reason') or 'failed'}"
        rows = groups.setdefault(key, [])
        if r["generator"] not in rows:
            rows.append(str(r["generator"]))
    return [f"n/a ({', '.join(rows)}) — {key}" for key, rows in groups.items()]


def table_records(df: pd.DataFrame, suite: Any, dataset: str) -> list[dict[str, Any]]:
    """One dataset's table as tidy rows (one per row x metric) for CSV/JSON export."""
    t = table_data(df, suite, dataset)
    out = []
    for r in t["rows"]:
        for m, meta in t["columns"].items():
            c = t["cells"][(r, m)]
            out.append({
                "dataset": dataset, "generator": r, "reference": r in t["reference"], "seeds": int(t["seeds"].get(r, 0)),
                "metric": m, "label": meta["label"], "unit": meta["unit"], "direction": meta["direction"],
                "mean": c.mean, "std": c.sd, "lo": c.lo, "hi": c.hi, "se": c.se, "n_seeds": c.n_seeds, "kind": c.kind,
                "best_or_tied": r in t["marked"].get(m, set()), "ties_tested": m not in t["untested"], "loaded": c.loaded,
            })  # fmt: skip
    return out
