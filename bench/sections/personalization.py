"""Leaderboard section: the personalization table and a sample grid per method.

Reads the records of :func:`bench.personalization.run_personalization`:
one row per method (mean ± std over seeds), the real-data reference row
first; cost columns (trainable parameters, % of the model, adapter file
size, adaptation time), the new concept (FID, classifier accuracy, CLIP
score) and prior preservation (FID on the other classes before/after, their
conditional accuracy). Methods that do not apply are listed with the reason.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.personalization_config import GRID_METRIC
from bench.report import fmt_num

COLUMNS = [
    # metric, header, direction, formatter kind
    ("trainable_params", "trainable params", None, "int"),
    ("trainable_pct", "% of model", None, "pct"),
    ("adapter_bytes", "adapter file", None, "bytes"),
    ("adapt_s", "adapt time (s)", None, "num"),
    ("concept_fid", "FID[digits-cnn] new concept ↓", "min", "num"),
    ("concept_acc", "class acc. new concept ↑", "max", "num"),
    ("concept_clip", "CLIPScore prompt ↑", "max", "num"),
    ("prior_fid_before", "prior FID before", None, "num"),
    ("prior_fid", "prior FID after ↓", "min", "num"),
    ("prior_acc", "prior acc. after ↑", "max", "num"),
]
REFERENCE = ("real data",)
BASELINE_KINDS = ("none", "data")


def _bytes(v: float) -> str:
    for unit, k in (("MB", 1e6), ("kB", 1e3)):
        if v >= k:
            return f"{v / k:.1f} {unit}"
    return f"{v:.0f} B"


def _fmt(kind: str, v: float) -> str:
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "pct":
        return f"{v:.3g}%"
    if kind == "bytes":
        return _bytes(v)
    return fmt_num(v)


def _cell(vals: list, kind: str) -> tuple[str, float | None]:
    vals = [float(v) for v in vals if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return "n/a", None
    m = sum(vals) / len(vals)
    if len(vals) == 1 or kind in ("int", "pct", "bytes"):
        return _fmt(kind, m), m
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return f"{_fmt(kind, m)} ± {_fmt(kind, sd)}", m


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-") or "row"


def _grid_png(extra: dict, levels: int, path: Path) -> Path:
    """Concept samples on the first row, one sample per other class on the second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in (extra.get("concept") or [], extra.get("prior") or []) if r]
    ncol = max(len(r) for r in rows)
    pad = 1
    canvas = np.zeros((len(rows) * (8 + pad) + pad, ncol * (8 + pad) + pad), dtype=np.float32)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            a = np.asarray(img, dtype=np.float32) / max(levels - 1, 1)
            y0, x0 = pad + i * (8 + pad), pad + j * (8 + pad)
            canvas[y0 : y0 + 8, x0 : x0 + 8] = a
    canvas = np.kron(canvas, np.ones((4, 4), dtype=np.float32))
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, canvas, cmap="gray", vmin=0, vmax=1)
    return path


def section(records: pd.DataFrame, suite: dict, assets_dir: Path) -> str:
    out = ["## Personalization: teaching a new concept", ""]
    if records is None or records.empty or "metric" not in records:
        return "\n".join(out + ["_no personalization results_"])
    df = records[records["metric"].isin([c[0] for c in COLUMNS] + [GRID_METRIC])]
    if df.empty:
        return "\n".join(out + ["_no personalization results_"])
    s0 = next((s for s in df["settings"] if isinstance(s, dict) and "concept" in s), {})
    concept = s0.get("concept", "?")
    seeds = sorted({int(s) for s in df["seed"].dropna()})
    out.append(
        f"A class-conditional `{s0.get('model', 'ddpm')}` ({s0.get('model_params', {})}, pretrain budget {s0.get('pretrain', {})}) is pretrained on every "
        f"digit except **{concept}**, then taught {concept} from **{s0.get('n_examples', '?')} training images** with each method. "
        f"New concept: {s0.get('n_concept_ref', '?')} samples of label {concept} against the {s0.get('n_concept_ref', '?')} real {concept}s of the "
        f"train and test splits not used for teaching (FID[digits-cnn]); class accuracy = share the digits-cnn classifies as {concept}; "
        f'CLIPScore = {s0.get("clip_scale", "100*max(cos,0)")} with `{s0.get("clip_model", "digits-clip")}` for the prompt "{s0.get("clip_prompt", "")}". '
        f"Prior preservation: FID[digits-cnn] of samples of the other digits (N = {s0.get('n_prior_ref', '?')}, the test split's labels) against "
        f"the test split's other digits, before and after teaching. Sampler {s0.get('sampler', {})}, {s0.get('sample_steps', '?')} steps; "
        f"the same noise for every method. % of model = trainable parameters / parameters of the pretrained network; adapter file = bytes of "
        f"`torch.save` of the tensors the method changes. Seeds {seeds}: mean ± std (sample std); FIDs compare only within a column (equal N)."
    )
    out.append("")
    gens = list(dict.fromkeys(df["generator"]))
    order = [m.get("name") for m in (suite.get("personalization", {}) or {}).get("methods", [])]
    gens = sorted(gens, key=lambda g: (g not in REFERENCE, order.index(g) if g in order else len(order)))
    table, means, kinds, na = [], {}, {}, {}
    for g in gens:
        sub = df[df["generator"] == g]
        kinds[g] = next((k for k in sub["model"] if isinstance(k, str)), "")
        if "na" in sub and sub["na"].notna().any():
            na[g] = next(r for r in sub["na"] if isinstance(r, str))
        row = {"method": g + (" (reference)" if g in REFERENCE else ""), "kind": kinds[g]}
        means[g] = {}
        for metric, header, _, kind in COLUMNS:
            vals = list(sub[sub["metric"] == metric]["value"])
            if g in REFERENCE and metric in (
                "trainable_params",
                "trainable_pct",
                "adapter_bytes",
                "adapt_s",
                "prior_fid_before",
                "concept_fid",
            ):
                row[header] = "—"
                continue
            text, m = _cell(vals, kind)
            row[header] = text if g not in na else "n/a"
            means[g][metric] = m if g not in na else None
        table.append(row)
    for metric, header, direction, _ in COLUMNS:
        if not direction:
            continue
        cands = {
            g: means[g].get(metric)
            for g in gens
            if g not in REFERENCE and kinds[g] not in BASELINE_KINDS and means[g].get(metric) is not None
        }
        if len(cands) > 1:
            best = (min if direction == "min" else max)(cands.values())
            for r in table:
                g = r["method"]
                if g in cands and cands[g] == best:
                    r[header] = f"**{r[header]}**"
    out += [pd.DataFrame(table).to_markdown(index=False), ""]
    if na:
        out += [f"- n/a — **{g}**: {reason}" for g, reason in na.items()] + [""]
    reports = df[(df["metric"] == "trainable_params") & df["extra"].notna()]
    lines = []
    for g in gens:
        ex = next((e for e in reports[reports["generator"] == g]["extra"] if isinstance(e, dict) and e.get("param_report")), None)
        if ex:
            lines.append(f"- {g}: `{ex['param_report']}`" + (f" ({len(ex['layers'])} adapted layers)" if ex.get("layers") else ""))
    if lines:
        out += ["Parameter counts (peft format, of the adapted network):", "", *lines, ""]
    # sample grids (first seed)
    first = seeds[0] if seeds else None
    samples = df[(df["metric"] == GRID_METRIC) & (df["seed"] == first)]
    imgs = []
    for g in gens:
        ex = next((e for e in samples[samples["generator"] == g]["extra"] if isinstance(e, dict)), None)
        if not ex or not (ex.get("concept") or ex.get("prior")):
            continue
        st = next((s for s in samples[samples["generator"] == g]["settings"] if isinstance(s, dict)), {})
        p = _grid_png(ex, int(st.get("levels", 17)), Path(assets_dir) / f"personalization__{_slug(g)}.png")
        imgs.append(f"| {g} | ![{g}](assets/{Path(assets_dir).name}/{p.name}) |")
    if imgs:
        out += [
            f"Samples (seed {first}): first row label {concept} (for `real data`: the {s0.get('n_examples', '?')} teaching images), "
            f"second row one sample of each other digit.",
            "",
            "| method | samples |",
            "|---|---|",
            *imgs,
            "",
        ]
    return "\n".join(out)
