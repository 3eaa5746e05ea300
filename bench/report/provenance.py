"""The leaderboard's provenance and protocol text: what was run where (commits, devices, packages, seeds, each
``bench run`` with its wall time and machine load), the metrics' settings as the records state them, the timing
phase's conditions, and the records an edited suite leaves out."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.suite import Suite, split_metric

from .core import _finite, fmt_num

__all__ = ["left_out_lines", "protocol_lines", "run_lines"]


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
