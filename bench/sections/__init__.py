"""Leaderboard sections: suite-specific markdown appended after the per-dataset tables.

A section is a function ``section(records, suite, assets_dir) -> str``:

* ``records``: the suite's records as a DataFrame (:func:`bench.report.records_frame`),
* ``suite``: the suite's raw TOML table (a dict; sections read their own
  ``[section_name]`` table from it),
* ``assets_dir``: the folder for the section's PNGs (``leaderboards/assets/<suite>/``);
  link them as ``assets/<suite>/<file>``. Files written there must be named
  ``<section>__*.png`` (or listed by the section) so that the leaderboard's
  clean-up, which only deletes files it knows the harness wrote, can remove
  them on the next render.

Suites name sections in ``sections = [...]``; names are looked up in
:data:`SECTIONS`, a :class:`genbench.registry.Registry` with lazy
``"module:function"`` targets, so listing sections imports nothing heavy.
Register a new one with ``SECTIONS.register("name", "package.module:section")``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from genbench.registry import Registry

__all__ = ["SECTIONS", "Section", "get_section"]

Section = Callable[[pd.DataFrame, dict, Path], str]

SECTIONS: Registry[Section] = Registry("leaderboard section")

SECTIONS.register("speed_quality", "bench.sections.speed_quality:section", description="Speed and quality: FID vs NFE, latency, ms/NFE, FLOPs, memory")
SECTIONS.register("likelihood", "bench.sections.likelihood:section", description="Likelihood table with the kind of each number and the ELBO-IWAE gap")
SECTIONS.register("per_seed", "bench.sections.per_seed:section", description="Every seed's value of chosen metrics")
SECTIONS.register("personalization", "bench.sections.personalization:section", description="Personalization methods: cost, new concept, prior preservation")
SECTIONS.register("translation", "bench.sections.translation:section", description="Translation rows head to head, seed by seed (blur vs realism)")
SECTIONS.register("claims", "bench.sections.claims:section", description="Textbook claims tested on the suite's runs: reproduced, within noise or not reproduced")
SECTIONS.register("budget_curve", "bench.sections.budget_curve:section", description="Quality against training compute: each model at several budgets (FID/IS vs steps and training seconds)")
SECTIONS.register("distillation", "bench.sections.distillation:section", description="Few-step students against their teacher: FID ratio by seed, speed-up, training cost")
SECTIONS.register("inversion", "bench.sections.inversion:section", description="Inversion of held-out images: reconstruction error, feature distance, class kept, time per image")
SECTIONS.register("metric_sanity", "bench.sections.metric_sanity:section", description="Constructed failures vs every metric: which metric detects which failure")


def get_section(name: str) -> Section:
    """The section function registered as ``name`` (:class:`genbench.registry.UnknownNameError` lists the valid names)."""
    return SECTIONS.load(name)
