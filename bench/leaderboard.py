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

from .plots import save_loss_curves
from .report.assets import MANIFEST, _assets_dir, _read_manifest, _remove_generated, _sig, _write_manifest, check_output
from .report.core import (
    ARROW,
    CellStats,
    cell_stats,
    fmt_num,
    records_frame,
    tied_with_best,
    welch_halfwidth,
)
from .report.provenance import _provenance, _timing_lines, left_out_lines, protocol_lines, run_lines
from .report.tables import HIDDEN_METRICS, dataset_table, na_reason_lines, table_data, table_records  # noqa: F401 - re-exported
from .sections import SECTIONS
from .store import ResultStore, suite_store
from .suite import Suite

__all__ = [
    "MANIFEST",
    "check_output",
    "left_out_lines",
    "run_lines",
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
SIGNIFICANCE_NOTE = (
    "**bold** = the best non-reference row and every row statistically indistinguishable from it: the 95% interval of the "
    "difference to the best row contains 0. With ≥ 2 seeds a row's uncertainty is the standard error over seeds (sample std / √n, "
    "which includes sampling noise: each seed draws its own samples), combined as Welch's t-interval; a single-seed row uses its "
    "within-run 95% bootstrap interval over samples (se = width / 3.92, normal). Where a row has neither (one seed, no bootstrap), "
    "ties with it are not tested: the column is marked ¹ and its bold best cell may hide ties. Reference rows are never bold."
)


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
        rows = [r for d in suite.datasets for r in table_records(df, suite, d.name)]
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
    rows = [r for d in suite.datasets for r in table_records(df, suite, d.name)]
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
