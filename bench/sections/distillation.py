"""Leaderboard section ``distillation``: few-step students against their teacher.

For every row of the suite that names a ``teacher`` (a distillation student,
see :mod:`baselines.distillation`), one line per step count: the method
(model), NFE, FID (mean ± sd over seeds), the ratio of its mean FID to the
reference row's, the FID ratio to the reference row paired by seed (the student of seed s against the reference row of seed s,
which samples the student's own teacher network: geometric mean and the 95%
t-interval of the mean log ratio), the latency per sample at the suite's
``latency_batch`` and how many times faster than the reference the row is
(ratio of the means over the timed seeds), and the training cost from the
student's ``train_s`` record: the teacher's own training seconds, the
student's seconds (distillation data included) and the teacher network
evaluations per training example that the distillation spent, summed (one
evaluation = one example through the network).

Suite table ``[distillation]``: ``reference`` (row label, default
``"ddpm@1000"``: the teacher network sampled by its ancestral sampler) and
``factor`` (default 2.0): a line says whether the ratio's interval lies at or
below it (the claim of the distillation papers, one-step students within
about 2x of their teachers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.report import cell_stats, fmt_num

from .claims import _per_seed, ratio_verdict

LATENCY = "latency_ms"  # the timing phase's record of ms per sample at the suite's latency_batch
SAME_PHASE_S = 3 * 3600  # latencies whose records are further apart than this came from different timing phases


def _latency(records: pd.DataFrame, dataset: str, row: str) -> tuple[float | None, float | None]:
    """(mean ms/sample at the suite batch over the timed seeds, the latest timestamp of those records)."""
    sub = records[(records["dataset"] == dataset) & (records["metric"] == LATENCY) & (records["generator"] == row) & records["value"].notna()]
    if sub.empty:
        return None, None
    stamps = [float(t) for t in sub["timestamp"] if t is not None and pd.notna(t)] if "timestamp" in sub else []
    return float(sub["value"].mean()), (max(stamps) if stamps else None)


def _costs(records: pd.DataFrame, dataset: str, base: str) -> dict[str, float | None]:
    """Means over seeds of the cost fields of the student's train_s records (absent fields: None)."""
    sub = records[(records["dataset"] == dataset) & (records["metric"] == "train_s") & (records["base"] == base)]
    out: dict[str, list[float]] = {"teacher_train_s": [], "student_s": [], "teacher_evals": []}
    for extra in sub["extra"]:
        te = (extra or {}).get("train_extra", {}) if isinstance(extra, dict) else {}
        for k in out:
            if isinstance(te.get(k), (int, float)):
                out[k].append(float(te[k]))
    return {k: (sum(v) / len(v) if v else None) for k, v in out.items()}


def section(records: pd.DataFrame, suite: dict, assets_dir: Path) -> str:
    """Markdown for the distillation students of the suite (see the module docstring)."""
    cfg: dict[str, Any] = dict(suite.get("distillation", {}))
    ref = str(cfg.get("reference", "ddpm@1000"))
    factor = float(cfg.get("factor", 2.0))
    batch = (suite.get("settings") or {}).get("latency_batch", 64)
    students = [g for g in suite.get("generators", []) if g.get("teacher")]
    md = ["## Distillation", ""]
    if not students or records is None or records.empty:
        return "\n".join(md + ["No distillation students in this suite."])
    md += [
        f"Students of a teacher network, each row against **{ref}** (its teacher sampled by the ancestral sampler): FID mean ± sd over seeds; "
        f"the ratio of the two rows' mean FIDs; the FID ratio row / {ref} paired by seed (geometric mean [95% t-interval]; verdict: is the interval at or below {fmt_num(factor)}×?); "
        f"ms/sample at batch {batch} and speed-up = {ref} ms / row ms (timed seeds); training cost per seed: the teacher's own training, "
        "the student's (its distillation data included) and the teacher network evaluations the distillation spent (examples × evaluations).",
        "",
    ]
    for ds in [d for d in records["dataset"].dropna().unique()]:
        ref_lat, ref_when = _latency(records, ds, ref)
        apart = False
        per_ref = _per_seed(records, ds, "fid", ref)
        ref_mean = cell_stats(list(per_ref.values())).mean
        rows = []
        for g in students:
            name = g["name"]
            costs = _costs(records, ds, name)
            for steps in g.get("steps") or [None]:
                label = name if steps is None else f"{name}@{steps}"
                sub = records[(records["dataset"] == ds) & (records["metric"] == "fid") & (records["generator"] == label)]
                if sub.empty:
                    continue
                c = cell_stats(list(sub["value"]))
                v, r, lo, hi = ratio_verdict(c, cell_stats(list(per_ref.values())), factor, (_per_seed(records, ds, "fid", label), per_ref))
                lat, when = _latency(records, ds, label)
                far = ref_when is not None and when is not None and abs(when - ref_when) > SAME_PHASE_S
                apart |= far
                rows.append({
                    "row": label, "model": g.get("model", name), "teacher": g["teacher"], "NFE": "" if steps is None else str(steps),
                    "FID ↓": fmt_num(c.mean) + (f" ± {fmt_num(c.sd)}" if c.sd is not None else ""),
                    f"mean FID / mean {ref}": "n/a" if not (c.mean and ref_mean) else f"{fmt_num(c.mean / ref_mean)}×",
                    f"FID / {ref} by seed": "n/a" if r is None else f"{fmt_num(r)}× [{fmt_num(lo)}, {fmt_num(hi)}]",
                    f"≤ {fmt_num(factor)}×": v,
                    f"ms/sample @b{batch}": fmt_num(lat), "speed-up": "n/a" if not (lat and ref_lat) else f"{fmt_num(ref_lat / lat)}×" + (" †" if far else ""),
                    "teacher train s": fmt_num(costs["teacher_train_s"]), "student s": fmt_num(costs["student_s"]),
                    "teacher evals": "n/a" if costs["teacher_evals"] is None else f"{costs['teacher_evals']:,.0f}",
                    "seeds": str(c.n_seeds),
                })  # fmt: skip
        if rows:
            md += [f"### {ds}", "", pd.DataFrame(rows).to_markdown(index=False), ""]
            if apart:
                md += [f"† this row and {ref} were timed in different timing phases (more than {SAME_PHASE_S // 3600} h apart): the speed-up is not a side-by-side ratio.", ""]
    return "\n".join(md).rstrip() + "\n"
