"""Leaderboard section ``inversion``: how well each generator reproduces held-out images (suite ``inversion``).

One table per data set, rows in the order of the suite's ``[inversion].rows``: the method, the model, and per
measure of :data:`bench.inversion_study.MEASURES` the mean over seeds ± the sample std over seeds (each seed's
value is the mean over the fixed image subset; one seed: its 95% interval over images). **Bold**: the best
non-reference row and the rows tied with it (the tables' significance rule); reference rows (the input itself,
the nearest training image) are shown, not ranked.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report import ARROW, cell_stats, tied_with_best
from bench.report.core import _cell_text

MEASURE_ORDER = ("mse", "psnr", "ssim", "feature_dist", "class_agree", "class_kept", "latent_norm", "seconds_per_image")


def section(records: pd.DataFrame, suite: dict, assets_dir: Path) -> str:
    """Markdown for the inversion experiment (see the module docstring)."""
    cfg = dict(suite.get("inversion") or {})
    rows = [r for r in cfg.get("rows", []) if isinstance(r, dict) and "name" in r]
    md = ["## Inversion of held-out images", ""]
    if records is None or records.empty or not rows:
        return "\n".join(md + ["No inversion records."])
    n = cfg.get("n_images", 200)
    md += [
        f"The first {n} images of the test split, inverted by each row's method and reconstructed; per measure the mean over "
        "images, then mean ± std over seeds. MSE on [0, 1] pixels, PSNR in dB (capped at 100), SSIM, the distance in the "
        "extractor's feature space, the fraction of images whose reconstruction the extractor's classifier puts in the same "
        "class as the input (agreement) and in the input's true class (kept), ‖z‖²/d of a latent whose prior is N(0, I) "
        "(about 1 for a typical draw; a bijection such as RealNVP or the DDIM ODE reconstructs any input exactly, so this is "
        "its informative number), and seconds per image of the inversion (a learned encoder's training not included). "
        "**Bold**: best non-reference row and rows tied with it.",
        "",
    ]
    for ds in [d for d in records["dataset"].dropna().unique()]:
        sub = records[(records["dataset"] == ds) & records["metric"].astype(str).str.startswith("inversion_")]
        table, cols = [], [m for m in MEASURE_ORDER if (sub["metric"] == f"inversion_{m}").any()]
        cells: dict[str, dict[str, object]] = {m: {} for m in cols}
        meta: dict[str, tuple[str, str]] = {}
        for m in cols:
            rec = sub[sub["metric"] == f"inversion_{m}"]
            meta[m] = (str(rec["label"].iloc[0]), str(rec["direction"].iloc[0]))
            for r in rows:
                one = rec[rec["generator"] == r["name"]]
                cells[m][r["name"]] = cell_stats(list(one["value"]), list(one["lo"]), list(one["hi"]))
        ranked = [r["name"] for r in rows if r["method"] not in ("identity", "nearest-train")]
        bold = {m: tied_with_best({k: v for k, v in cells[m].items() if k in ranked}, meta[m][1])[0] for m in cols}
        for r in rows:
            ref = r["method"] in ("identity", "nearest-train")
            line = {"row": r["name"] + (" (reference)" if ref else ""), "method": r["method"], "model": r.get("model", "—")}
            for m in cols:
                t = _cell_text(cells[m][r["name"]])
                line[f"{meta[m][0]} {ARROW.get(meta[m][1], '')}".strip()] = f"**{t}**" if r["name"] in bold[m] else t
            line["seeds"] = str(max((c.n_seeds for c in (cells[m][r["name"]] for m in cols)), default=0))
            table.append(line)
        md += [f"### {ds}", "", pd.DataFrame(table).to_markdown(index=False), ""]
    return "\n".join(md).rstrip() + "\n"
