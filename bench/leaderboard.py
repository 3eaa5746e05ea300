"""Leaderboards from the result store: markdown, CSV and JSON.

``bench leaderboard --suite NAME`` reads ``results/NAME/records.jsonl`` and
writes ``leaderboards/NAME.md`` (+ PNGs in ``leaderboards/assets/NAME/``):
a provenance header (date, commit, device, package versions), the protocol
(N, extractor, metric settings, the significance test), one table per dataset
(rows generators, columns metrics with direction arrows and units, mean ± std
over seeds or the value with its 95% interval, the number of seeds per row),
sample grids, loss curves and any suite-specific sections
(:data:`bench.sections.SECTIONS`). ``fmt="csv"`` / ``"json"`` export the same
per-dataset tables as numbers (mean, std, interval, seeds, best/tied flags)
for people who plot their own.

Column labels, directions and units come from each record (the runner copies
them from the metric's registration) or else from the metric registry: the
renderer has no special case on metric names. A record whose settings carry
``kind`` (e.g. ``exact`` / ``dequantized`` / ``elbo`` for a likelihood) shows
it beside the value.

Significance: in every ranked column the best non-reference row and every row
statistically indistinguishable from it are **bold** (see
:func:`tied_with_best`); a single bold cell therefore means the others are
resolved as worse, not merely numerically worse.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from genbench import safeio
from genbench.registry import check_name
from metrics import registry as mreg

from .pipeline import suite_store
from .plots import save_loss_curves
from .report.core import (
    ARROW,
    CellStats,
    _cell_text,
    _finite,
    cell_stats,
    fmt_num,
    is_reference_model,
    records_frame,
    tied_with_best,
    welch_halfwidth,
)
from .sections import SECTIONS
from .store import ResultStore
from .suite import Suite, qualified, split_metric

__all__ = [
    "is_reference_model",
    "ARROW",
    "FORMATS",
    "CellStats",
    "records_frame",
    "fmt_num",
    "cell_stats",
    "tied_with_best",
    "welch_halfwidth",
    "table_data",
    "dataset_table",
    "protocol_lines",
    "write_leaderboard",
    "export_text",
    "records_name",
    "na_reason_lines",
    "dump_json",
]

FORMATS = ("md", "csv", "json")
MANIFEST = ".genbench-assets.json"  # names of the files the harness wrote into an assets folder
HIDDEN_METRICS = ("train_s",)  # shown as a line under the table, not as a column
SIGNIFICANCE_NOTE = (
    "**bold** = the best non-reference row and every row statistically indistinguishable from it: the 95% interval of the "
    "difference to the best row contains 0. With ≥ 2 seeds a row's uncertainty is the standard error over seeds (sample std / √n, "
    "which includes sampling noise: each seed draws its own samples), combined as Welch's t-interval; a single-seed row uses its "
    "within-run 95% bootstrap interval over samples (se = width / 3.92, normal). Where a row has neither (one seed, no bootstrap), "
    "ties with it are not tested: the column is marked ¹ and its bold best cell may hide ties. Reference rows are never bold."
)


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
def _suite_index(suite: Suite, sub: pd.DataFrame, row: str) -> tuple:
    base = sub[sub["generator"] == row]["base"].iloc[0]
    names = [g.name for g in suite.generators]
    steps = sub[sub["generator"] == row]["steps"].iloc[0]
    s = steps if steps is not None and not (isinstance(steps, float) and math.isnan(steps)) else -1
    return (names.index(base) if base in names else len(names), s)


def _metric_order(suite: Suite, dataset: str, sub: pd.DataFrame) -> list[str]:
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


def table_data(df: pd.DataFrame, suite: Suite, dataset: str) -> dict[str, Any]:
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
    ref_rows = {r for r in rows if is_reference_model(sub[sub["generator"] == r]["model"].iloc[0])}
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


def dataset_table(df: pd.DataFrame, suite: Suite, dataset: str) -> str:
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


def _table_records(df: pd.DataFrame, suite: Suite, dataset: str) -> list[dict[str, Any]]:
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


# ---------------------------------------------------------------- protocol
def protocol_lines(df: pd.DataFrame, suite: Suite) -> list[str]:
    lines = []
    for d in suite.datasets:
        sub = df[(df["dataset"] == d.name) & df["settings"].notna()]
        if sub.empty:
            continue
        n_fake = sorted({int(v) for v in sub["n_fake"].dropna()})
        parts = [f"**{d.name}**: extractor `{d.extractor}`"]
        own = sub[sub["extractor"].isna() | (sub["extractor"] == d.extractor)]
        ext = next((s for s in own["settings"] if isinstance(s, dict) and s.get("weights_hash")), None)
        if ext:
            parts.append(f"weights `{ext.get('weights_hash')}`" + (f" (test acc {ext['test_accuracy']:.3f})" if ext.get("test_accuracy") else ""))
        for extra in d.extra_extractors:  # METRIC@EXTRACTOR entries: a second ruler on the same samples
            rows = sub[sub["extractor"] == extra]
            w = next((s.get("weights_hash") for s in rows["settings"] if isinstance(s, dict) and s.get("weights_hash")), None)
            named = ", ".join(m for m, e in ((split_metric(x)) for x in d.metrics) if e == extra)
            parts.append(f"second extractor `{extra}`" + (f" (weights `{w}`)" if w else "") + f" for {named}")
        parts.append(f"N fake = {', '.join(map(str, n_fake))}")
        n_real = sorted({int(v) for v in sub["n_real"].dropna()})
        if n_real:
            first = sub["settings"].iloc[0]
            parts.append(f"N real = {', '.join(map(str, n_real))} ({first.get('reference', 'train split') if isinstance(first, dict) else 'train split'})")
        lines.append("- " + "; ".join(parts))
        seen: dict[str, dict] = {}
        skip = ("weights_hash", "test_accuracy", "extractor", "dim", "n_real", "n_fake", "n", "device")
        for m, g in sub.groupby("metric", sort=False):  # the protocol = settings shared by every record of a metric; varying ones are per-row data
            dicts = [st for st in g["settings"] if isinstance(st, dict)]
            if not dicts:
                continue
            seen[m] = {k: v for k, v in dicts[0].items()
                       if k not in skip and not isinstance(v, (dict, list)) and all(k in d and d[k] == v for d in dicts[1:])}  # fmt: skip
        for m, s in seen.items():
            if s:
                lines.append(f"  - `{m}`: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    return lines


def run_lines(runs: list[dict[str, Any]], most: int = 6) -> list[str]:
    """Provenance lines for the ``bench run`` invocations that did work (``runs.jsonl``): wall time and machine load.

    Runs that added no record and had no failure are left out: no-op re-runs
    (every job already done) and bookkeeping ones (jobs re-opened by a changed
    setting whose rows were all current: they only re-write done markers).
    Beyond ``most`` runs only the total is given for the older ones.
    """
    work = [r for r in runs if (r.get("records_added") or 0) > 0 or (r.get("failed") or 0) > 0]
    if not work:
        return []

    def one(r: dict[str, Any]) -> str:
        wall = r.get("wall_s")
        parts = [f"{r.get('started_utc', '?')}: {r.get('ran', '?')} of {r.get('planned', '?')} jobs ran ({r.get('failed', 0)} failed), "
                 f"{r.get('records_added', '?')} records, wall {f'{wall:.1f}' if _finite(wall) else '?'} s"
                 + (f" ({wall / 60:.1f} min)" if _finite(wall) and wall >= 60 else "")
                 + (f", executor {r.get('executor', '?')} x{r.get('workers', '?')}" if not isinstance(r.get("threads"), int) else
                    f", executor {r.get('executor', '?')}: {r.get('workers', '?')} worker(s) x {r['threads']} thread(s)"
                    + (f" ({r['parallelism_source']})" if r.get("parallelism_source") else ""))]  # fmt: skip
        load = [f"{r['cpu_count']} cores" if r.get("cpu_count") else None,
                f"this run {fmt_num(r['own_cpu_cores'])} cores on average" if _finite(r.get("own_cpu_cores")) else None,
                f"other processes {fmt_num(r['other_cpu_cores'])} cores" if _finite(r.get("other_cpu_cores")) else None,
                f"1-min load average {fmt_num(r['loadavg_before'])} → {fmt_num(r['loadavg_after'])}"
                if _finite(r.get("loadavg_before")) and _finite(r.get("loadavg_after")) else None]  # fmt: skip
        load = [x for x in load if x]
        return "  - " + parts[0] + (("; machine: " + ", ".join(load)) if load else "")

    total = sum(r["wall_s"] for r in work if _finite(r.get("wall_s")))
    lines = [f"- runs that did work (`bench run`, `runs.jsonl`): {len(work)}, total wall {total:.1f} s ({total / 60:.1f} min)"]
    older = work[:-most] if len(work) > most else []
    if older:
        lines.append(f"  - {len(older)} earlier runs: wall {sum(r['wall_s'] for r in older if _finite(r.get('wall_s'))):.1f} s")
    return lines + [one(r) for r in work[-most:]]


def _timing_lines(df: pd.DataFrame) -> list[str]:
    """The timing phase's conditions (threads, machine load), when its records exist."""
    t = df[df["settings"].map(lambda s: isinstance(s, dict) and s.get("phase") == "timing")]
    if t.empty:
        return []
    threads = sorted({s.get("threads") for s in t["settings"] if s.get("threads") is not None})
    blocks = [s.get("load") if isinstance(s.get("load"), dict) else s for s in t["settings"]]
    others = [b.get("other_cpu_cores") for b in blocks if _finite(b.get("other_cpu_cores"))]
    loads = [b.get("loadavg_before") for b in blocks if _finite(b.get("loadavg_before"))]
    timed = t[t["loaded"].notna()]  # wall-time records (FLOPs and memory do not depend on load)
    n_loaded = int(timed["loaded"].astype(bool).sum())
    line = (
        f"- timing: measured after all jobs in one process, generators interleaved round-robin after warm-up, torch threads = "
        f"{'/'.join(map(str, threads)) or '?'}; CPU used by other processes during the phase: up to {fmt_num(max(others)) if others else 'n/a'} cores "
        f"(1-min load average before: {fmt_num(max(loads)) if loads else 'n/a'}); {n_loaded} of {len(timed)} wall-time records flagged ⚠ (loaded)."
    )
    return [line]


# ---------------------------------------------------------------- assets (only files the harness wrote are ever removed)
def _inside(root: Path, p: Path) -> bool:
    try:
        return p.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def check_output(out_dir: str | Path, suite_name: str) -> None:
    """``ValueError`` when the leaderboard of ``suite_name`` could not be written inside ``out_dir``
    (e.g. its assets folder is a link leading elsewhere); checked by ``bench run`` before any work."""
    _assets_dir(Path(out_dir), suite_name)


def _assets_dir(out_dir: Path, suite_name: str) -> Path:
    check_name(suite_name, "suite name")
    assets = out_dir / "assets" / suite_name
    if not _inside(out_dir, assets):
        raise ValueError(f"assets folder {assets} for suite {suite_name!r} leads outside the output directory {out_dir} (a link?); refusing to write or delete there")
    return assets


def _read_manifest(assets: Path) -> list[str]:
    try:
        names = json.loads((assets / MANIFEST).read_text())
    except (OSError, ValueError):
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def _remove_generated(assets: Path, names: set[str]) -> None:
    """Delete ``names`` (files a previous render listed in the manifest): plain files directly in ``assets``, nothing else."""
    for name in sorted(names):
        try:
            check_name(name, "asset file name")
        except ValueError:
            continue
        p = assets / name
        if p.is_file() and not p.is_symlink() and p.parent == assets:
            p.unlink()


def _sig(p: Path) -> tuple[int, int]:
    """(inode, mtime in ns) of a file: changes when it is rewritten (atomic writes make a new inode)."""
    st = p.stat()
    return st.st_ino, st.st_mtime_ns


def _write_manifest(assets: Path, before: dict[str, tuple[int, int]], copied: set[str], also: set[str] = frozenset()) -> set[str]:
    """Write the manifest: the assets this render wrote (returned), plus ``also`` (old ones not yet removed)."""
    names = set(copied)
    for p in assets.iterdir():
        if p.name == MANIFEST or not p.is_file() or p.is_symlink():
            continue
        if p.name not in before or _sig(p) != before[p.name]:
            names.add(p.name)
    safeio.atomic_write(assets / MANIFEST, json.dumps(sorted(names | set(also)), indent=0) + "\n", root=assets)
    return names


# ---------------------------------------------------------------- writing
def write_leaderboard(suite: Suite, results_dir: str | Path = "results", out_dir: str | Path = "leaderboards", fmt: str = "md") -> Path:
    """Render the suite's leaderboard from the store; returns the path written.

    ``fmt``: ``"md"`` -> ``out_dir/<suite>.md`` with PNGs in
    ``out_dir/assets/<suite>/``; ``"csv"`` -> ``out_dir/<suite>.csv`` and
    ``"json"`` -> ``out_dir/<suite>.json``: the per-dataset tables as tidy
    rows (dataset, generator, metric, label, unit, direction, mean, std,
    lo, hi, se, seeds, best_or_tied ...), without figures or sections.
    Writes only inside ``out_dir``; deletes only asset files that an earlier
    render listed in its manifest.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown leaderboard format {fmt!r}; valid: {', '.join(FORMATS)}")
    check_name(suite.name, "suite name")
    for name in suite.sections:  # fail before any work on an unknown section
        SECTIONS.get(name)
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    store = suite_store(results_dir, suite)  # an edited suite: records of its earlier configuration left out
    records = store.records()
    if not records:
        raise FileNotFoundError(f"no results for suite {suite.name!r} under {results_dir}; run `bench run --suite {suite.name}` first")
    df = records_frame(records)
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt != "md":
        rows = [r for d in suite.datasets for r in _table_records(df, suite, d.name)]
        out = out_dir / f"{suite.name}.{fmt}"
        if fmt == "csv":
            safeio.atomic_write(out, pd.DataFrame(rows).to_csv(index=False), root=out_dir)
        else:
            payload = {"suite": suite.name, "generated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                       "provenance": _provenance(df), "significance": SIGNIFICANCE_NOTE, "rows": rows}  # fmt: skip
            safeio.atomic_write(out, json.dumps(payload, indent=1, default=_json_default) + "\n", root=out_dir)
        return out
    return _write_markdown(suite, df, store, out_dir)


def _json_default(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, (set, tuple)):
        return list(v)
    if hasattr(v, "__dataclass_fields__"):
        return asdict(v)
    return str(v)


def _provenance(df: pd.DataFrame) -> dict[str, Any]:
    return {
        "git_commits": sorted({c for c in df["git_commit"].dropna()}),
        "devices": sorted({c for c in df["device"].dropna()}),
        "versions": next((v for v in df["versions"] if isinstance(v, dict)), {}),
        "seeds": sorted({int(s) for s in df["seed"].dropna()}),
    }


def left_out_lines(n: int, suite: str) -> list[str]:
    """The provenance line saying how many records of an earlier configuration the table leaves out (none when 0)."""
    if not n:
        return []
    return [f"- left out: {n} records of an earlier configuration of this suite (rows whose params, budget, sampling or data set "
            f"changed since, or rows no longer in it); `bench run --suite {suite}` recomputes what the suite asks for now"]


def _grid_is_current(name: str, rows: set[str], bases: set[str]) -> bool:
    """Whether a sample grid ``<dataset>__<name>.png`` belongs to a row of the table now: ``name`` is a current
    row's label (``@`` written ``_at``, in ``rows``) or a current generator's name plus a figure suffix
    (``vae_latent-arithmetic``), but not an older step count of it (``ebm_at20`` once the row samples at 60 and 256).
    The results directory keeps the grids of every configuration it ran; the table shows only its own."""
    return name in rows or any(name.startswith(b + "_") and re.fullmatch(r"at\d+", name[len(b) + 1 :]) is None for b in bases | rows)


def _stale_grids(suite: Suite, df: pd.DataFrame) -> Callable[[str], bool]:
    """A test of file names: True for a sample grid ``<dataset>__<name>.png`` of one of the suite's data sets whose
    row is no longer in the table (:func:`_grid_is_current`); the current rows are read from ``df`` once."""
    if "generator" not in df or "dataset" not in df or df.empty:
        return lambda file_name: False
    current = {}
    for d in suite.datasets:
        sub = df[df["dataset"] == d.name]
        if sub.empty:
            continue
        bases = {str(b) for b in sub["base"].dropna().unique()} if "base" in sub else set()
        current[f"{d.name}__"] = ({str(r).replace("@", "_at") for r in sub["generator"].dropna().unique()}, bases)

    def stale(file_name: str) -> bool:
        for prefix, (rows, bases) in current.items():
            if file_name.startswith(prefix) and file_name.endswith(".png"):
                return not _grid_is_current(file_name[len(prefix) : -len(".png")], rows, bases)
        return False

    return stale


def _write_markdown(suite: Suite, df: pd.DataFrame, store: ResultStore, out_dir: Path) -> Path:
    assets = _assets_dir(out_dir, suite.name)
    if assets.is_symlink():
        raise ValueError(f"refusing to write assets into {assets}: it is a symbolic link")
    safeio.ensure_dir(assets, out_dir)
    old = set(_read_manifest(assets))  # removed only once the new markdown no longer refers to them
    before = {p.name: _sig(p) for p in assets.iterdir() if p.is_file()}
    copied: set[str] = set()
    stale = _stale_grids(suite, df)
    src_assets = store.root / "assets"
    if src_assets.is_dir():
        for p in sorted(src_assets.iterdir()):
            if p.is_file() and not p.is_symlink():
                try:
                    check_name(p.name, "asset file name")
                except ValueError:
                    continue
                if stale(p.name):
                    continue
                safeio.atomic_write(assets / p.name, p.read_bytes(), root=assets)
                copied.add(p.name)
    prov = _provenance(df)
    md = [
        f"# Leaderboard: `{suite.name}`",
        "",
        f"_{suite.description.strip()}_" if suite.description else "",
        "",
        f"Generated by `bench leaderboard --suite {suite.name}` from `{records_name(store)}` in the results directory "
        "(real runs of the committed code; do not edit by hand).",
        "",
        "## Provenance",
        "",
        f"- generated: {_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- git commit(s) of the runs: {', '.join(f'`{c}`' for c in prov['git_commits']) or 'unknown'}",
        f"- device(s): {', '.join(prov['devices'])}",
        *run_lines(store.runs()),
        *left_out_lines(store.left_out(), suite.name),
        f"- packages: {', '.join(f'{k} {v}' for k, v in prov['versions'].items())}",
        f"- seeds: {prov['seeds']}; cells are mean ± std over seeds (sample std) with the number of seeds in the `seeds` column, "
        "or, for one seed, the value with its 95% interval [lo, hi] when the run computed one",
        "",
        "## Protocol",
        "",
        *protocol_lines(df, suite),
        *_timing_lines(df),
        "- ↓ lower is better, ↑ higher is better, →0 closest to zero is best (unbiased estimates such as KID can be slightly negative), "
        "→1 closest to one is best (ratios to what real held-out data scores, e.g. the NN distance ratio); "
        "reference rows are the noise floor / ceiling, quoted rows (_italic_) are numbers from papers, not run here; "
        "n/a = the metric does not apply to that generator, or its precondition failed (the reason is under the table).",
        f"- Significance: {SIGNIFICANCE_NOTE}",
        "- FID is biased by sample size: compare FIDs only within a table (equal N). Read FID together with memorization when present.",
        "",
    ]
    for d in suite.datasets:
        md += [f"## {d.name}", "", dataset_table(df, suite, d.name)]
        grids = sorted(g for g in assets.glob(f"{d.name}__*.png") if g.name not in old or _sig(g) != before.get(g.name))
        grids = [g for g in grids if not stale(g.name)]
        if grids:
            md += ["Samples (first seed):", "", " ".join(f"![{g.stem.split('__', 1)[1]}](assets/{suite.name}/{g.name})" for g in grids), ""]
        steps: dict[str, int] = {}
        curves = _loss_curves(df, d.name, steps)
        if curves:
            p = save_loss_curves(curves, assets / f"losses__{d.name}.png", title=f"training losses on {d.name} (first seed)", steps=steps)
            md += [f"Training loss curves: ![losses](assets/{suite.name}/{p.name})", ""]
        train = df[(df["dataset"] == d.name) & (df["metric"] == "train_s")]
        if not train.empty:
            t = train.groupby("base")["value"].mean().dropna()
            if not t.empty:
                md += ["Training wall time (s, mean over seeds; cached runs report the original time): " + ", ".join(f"{k} {fmt_num(v)}" for k, v in t.items()), ""]
    for name in suite.sections:
        md += [SECTIONS.load(name)(df, suite.raw, assets), ""]
    new = _write_manifest(assets, before, copied, also=old)
    out = safeio.atomic_write(out_dir / f"{suite.name}.md", "\n".join(md).rstrip() + "\n", root=out_dir)
    _remove_generated(assets, old - new)  # the markdown now refers to the new assets only
    _write_manifest(assets, before, copied)
    return out


def records_name(store: ResultStore) -> str:
    """The records file relative to the results directory (``<suite>/records.jsonl``): never a machine's absolute path."""
    return f"{store.root.name}/{store.path.name}"


def export_text(suite: Suite, results_dir: str | Path = "results", fmt: str = "csv") -> str:
    """The per-dataset tables as tidy ``csv`` or ``json`` text (what ``write_leaderboard(fmt=...)`` writes), for stdout."""
    if fmt not in ("csv", "json"):
        raise ValueError(f"export format must be csv or json, got {fmt!r}")
    check_name(suite.name, "suite name")
    store = suite_store(Path(results_dir), suite)
    records = store.records()
    if not records:
        raise FileNotFoundError(f"no results for suite {suite.name!r} under {results_dir}; run `bench run --suite {suite.name}` first")
    df = records_frame(records)
    rows = [r for d in suite.datasets for r in _table_records(df, suite, d.name)]
    if fmt == "csv":
        return pd.DataFrame(rows).to_csv(index=False)
    payload = {"suite": suite.name, "generated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
               "provenance": _provenance(df), "significance": SIGNIFICANCE_NOTE, "rows": rows}  # fmt: skip
    return json.dumps(payload, indent=1, default=_json_default) + "\n"


def _loss_curves(df: pd.DataFrame, dataset: str, steps: dict[str, int] | None = None) -> dict[str, dict[str, list[float]]]:
    """The first seed's loss curves per row; ``steps`` (filled when given) gets each row's training steps (the x axis)."""
    steps = {} if steps is None else steps
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
            if isinstance(extra.get("steps"), int) and extra["steps"] > 0:
                steps[r["base"]] = extra["steps"]
    return curves


def dump_json(suite: Suite, results_dir: str | Path = "results") -> str:
    """Every record of the suite as JSON text (raw records, not the tables: see ``write_leaderboard(fmt="json")``)."""
    return json.dumps(ResultStore(Path(results_dir) / suite.name).records(), indent=1)
