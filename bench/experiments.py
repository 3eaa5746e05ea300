"""Experiments that are not a plain (dataset x generator x seed) grid, e.g.
``personalization``. A suite with ``experiment = "NAME"`` is dispatched here.

An experiment function ``fn(suite: dict, results_dir: Path, cache_dir: Path,
device: str, seeds: list[int]) -> list[dict]`` returns records; the harness
stores each one (skipping keys already present), so a re-run adds nothing.
"""

from __future__ import annotations

import time
from importlib import import_module
from pathlib import Path

from .provenance import device_description, git_commit, package_versions
from .store import ResultStore, record_key

# name -> "module:function"
EXPERIMENTS = {"personalization": "bench.personalization:run_personalization"}


def run_experiment(suite, *, seeds, results_dir: Path, device: str, progress: bool = True):
    from .runner import RunSummary

    if suite.experiment not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {suite.experiment!r}; valid: {', '.join(EXPERIMENTS)}")
    mod, fn = EXPERIMENTS[suite.experiment].split(":")
    t0 = time.perf_counter()
    store = ResultStore(results_dir / suite.name)
    have = store.keys()
    seeds = list(seeds) if seeds else list(suite.seeds)
    records = getattr(import_module(mod), fn)(suite.raw, results_dir / suite.name, results_dir / "cache", device, seeds)
    summary = RunSummary(planned=len(seeds), ran=len(seeds))
    prov = {"git_commit": git_commit(), "versions": package_versions(), "device": device_description(device)}
    for r in records:
        rec = {"suite": suite.name, "job": r.get("job", f"{r.get('dataset')}/{r.get('generator')}/seed{r.get('seed')}"), "base": r.get("generator"),
               "timestamp": time.time(), **prov, **r}  # fmt: skip
        if record_key(rec) not in have:
            store.append(rec)
            summary.records_added += 1
    summary.wall_s = time.perf_counter() - t0
    return summary
