"""Experiments that are not a plain (dataset x generator x seed) grid, e.g.
``personalization``. A suite with ``experiment = "NAME"`` is dispatched here.

Experiments live in :data:`EXPERIMENTS` (a :class:`genbench.registry.Registry`
with lazy ``"module:function"`` targets). An experiment function
``fn(suite: dict, results_dir: Path, cache_dir: Path, device: str,
seeds: list[int]) -> list[dict]`` returns records; the harness stores each one
(skipping keys already present), so a re-run adds nothing. Each record carries
``experiment_hash`` (``bench.store.experiment_hash``): after the suite is
edited, the records of its earlier configuration no longer count, so the new
ones are stored and shown.
"""

from __future__ import annotations

import time
from pathlib import Path

from genbench.registry import Registry

from .pipeline import RunSummary, provenance
from .record import new_record
from .store import experiment_hash, record_key, suite_store
from .suite import Suite, SuiteError

__all__ = ["EXPERIMENTS", "run_experiment"]

EXPERIMENTS: Registry = Registry("experiment")
EXPERIMENTS.register("personalization", "bench.personalization:run_personalization", description="teach a held-out digit to the conditional DDPM")
EXPERIMENTS.register("inversion", "bench.inversion_study:run_inversion", description="invert held-out images with each generator's methods")


def run_experiment(suite: Suite, *, seeds: list[int] | None, results_dir: Path, device: str, progress: bool = True) -> RunSummary:
    """Run the suite's experiment and append its new records to ``results_dir/<suite>/records.jsonl``."""
    if suite.experiment not in EXPERIMENTS:
        raise SuiteError(f"{suite.path}: unknown experiment {suite.experiment!r}; valid: {', '.join(EXPERIMENTS.names())}")
    fn = EXPERIMENTS.load(suite.experiment)
    t0 = time.perf_counter()
    store = suite_store(results_dir, suite)  # an edited experiment: its new records count
    have = store.keys()
    ehash = experiment_hash(suite)
    seeds = list(seeds) if seeds else list(suite.seeds)
    records = fn(suite.raw, results_dir / suite.name, results_dir / "cache", device, seeds)
    summary = RunSummary(planned=len(seeds), ran=len(seeds))
    prov = provenance(device)
    for r in records:
        rec = new_record(
            suite=suite.name, job=r.get("job", f"{r.get('dataset')}/{r.get('generator')}/seed{r.get('seed')}"), dataset=r.get("dataset"),
            generator=r.get("generator"), base=r.get("generator"), model=r.get("model"), seed=r.get("seed"), steps=r.get("steps"),
            metric=r.get("metric"), hashes={"experiment_hash": ehash}, provenance=prov, fields=r,
        )  # fmt: skip
        if record_key(rec) not in have:
            store.append(rec)
            summary.records_added += 1
    summary.wall_s = time.perf_counter() - t0
    return summary
