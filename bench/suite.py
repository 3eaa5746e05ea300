"""Suites: TOML files in ``bench/suites/`` (or any path) describing
datasets x generators x seeds x metrics x sample counts.

See ``bench/suites/smoke.toml`` for a commented example. Parsing validates
everything up front so that a typo fails before any training starts.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUITES_DIR = Path(__file__).parent / "suites"


class SuiteError(ValueError):
    """A suite that cannot be found or parsed; the message says what is wrong."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    extractor: str
    metrics: tuple[str, ...]
    n_fake: int | None = None  # default: size of the test split
    params: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GeneratorSpec:
    name: str  # row label
    model: str  # registry name
    params: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    sample_params: dict[str, Any] = field(default_factory=dict)
    steps: tuple[int | None, ...] = (None,)
    datasets: tuple[str, ...] | None = None
    metrics: tuple[str, ...] | None = None  # restrict the dataset's metrics for this row
    dataset_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-dataset overrides of params

    def params_for(self, dataset: str) -> dict[str, Any]:
        return {**self.params, **self.dataset_params.get(dataset, {})}

    def row_label(self, steps: int | None) -> str:
        return self.name if steps is None else f"{self.name}@{steps}"


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str
    seeds: tuple[int, ...]
    datasets: tuple[DatasetSpec, ...]
    generators: tuple[GeneratorSpec, ...]
    settings: dict[str, Any]
    quoted: tuple[dict[str, Any], ...] = ()
    sections: tuple[str, ...] = ()
    experiment: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def generators_for(self, dataset: str) -> list[GeneratorSpec]:
        return [g for g in self.generators if g.datasets is None or dataset in g.datasets]


def available_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def resolve_suite_path(name: str) -> Path:
    p = Path(name)
    if p.suffix == ".toml" and p.is_file():
        return p
    cand = SUITES_DIR / f"{name}.toml"
    if cand.is_file():
        return cand
    raise SuiteError(f"unknown suite {name!r}; valid: {', '.join(available_suites())} (or a path to a .toml file)")


def _tuple(v: Any, what: str) -> tuple:
    if v is None:
        return ()
    if isinstance(v, (str, int)):
        return (v,)
    if not isinstance(v, list):
        raise SuiteError(f"{what} must be a list, got {v!r}")
    return tuple(v)


def load_suite(name: str) -> Suite:
    """Parse and validate a suite by name (``bench/suites/NAME.toml``) or path."""
    path = resolve_suite_path(name)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"{path}: invalid TOML: {e}") from e
    where = str(path)
    settings = dict(raw.get("settings", {}))
    experiment = raw.get("experiment")
    datasets = []
    for i, d in enumerate(raw.get("datasets", [])):
        if "name" not in d:
            raise SuiteError(f"{where}: datasets[{i}] has no name")
        unknown = set(d) - {"name", "extractor", "metrics", "n_fake", "params", "settings"}
        if unknown:
            raise SuiteError(f"{where}: datasets[{i}] ({d['name']}) has unknown keys {sorted(unknown)}")
        datasets.append(
            DatasetSpec(
                name=d["name"],
                extractor=d.get("extractor", "raw"),
                metrics=_tuple(d.get("metrics", ["fid"]), f"{where}: datasets[{i}].metrics"),
                n_fake=d.get("n_fake"),
                params=dict(d.get("params", {})),
                settings={**settings, **d.get("settings", {})},
            )
        )
    gens, seen = [], set()
    for i, g in enumerate(raw.get("generators", [])):
        if "name" not in g:
            raise SuiteError(f"{where}: generators[{i}] has no name")
        unknown = set(g) - {"name", "model", "params", "budget", "sample_params", "steps", "datasets", "metrics", "dataset_params"}
        if unknown:
            raise SuiteError(f"{where}: generators[{i}] ({g['name']}) has unknown keys {sorted(unknown)}")
        if g["name"] in seen:
            raise SuiteError(f"{where}: generator name {g['name']!r} is used twice; names label rows and must be unique")
        seen.add(g["name"])
        steps = _tuple(g.get("steps"), f"{where}: generators[{i}].steps") or (None,)
        gens.append(
            GeneratorSpec(
                name=g["name"],
                model=g.get("model", g["name"]),
                params=dict(g.get("params", {})),
                budget=dict(g.get("budget", {})),
                sample_params=dict(g.get("sample_params", {})),
                steps=steps,
                datasets=_tuple(g["datasets"], "datasets") if "datasets" in g else None,
                metrics=_tuple(g["metrics"], "metrics") if "metrics" in g else None,
                dataset_params={k: dict(v) for k, v in g.get("dataset_params", {}).items()},
            )
        )
    if not experiment and (not datasets or not gens):
        raise SuiteError(f"{where}: a suite needs at least one [[datasets]] and one [[generators]] entry")
    seeds = _tuple(raw.get("seeds", [0]), f"{where}: seeds")
    return Suite(
        name=raw.get("name", path.stem),
        path=path,
        description=raw.get("description", ""),
        seeds=tuple(int(s) for s in seeds),
        datasets=tuple(datasets),
        generators=tuple(gens),
        settings=settings,
        quoted=tuple(raw.get("quoted", [])),
        sections=_tuple(raw.get("sections"), "sections"),
        experiment=experiment,
        raw=raw,
    )


def validate_names(suite: Suite) -> None:
    """Check that every dataset, generator, extractor and metric name exists."""
    from baselines import registry as greg
    from metrics import extractors as freg
    from metrics import registry as mreg

    from . import data

    gens = greg.available()
    mets = mreg.available()
    exts = freg.available()
    for d in suite.datasets:
        if d.name not in data.available():
            raise SuiteError(f"{suite.path}: unknown dataset {d.name!r}; valid: {', '.join(data.available())}")
        if d.extractor not in exts:
            raise SuiteError(f"{suite.path}: unknown extractor {d.extractor!r}; valid: {', '.join(exts)}")
        for m in d.metrics:
            if m not in mets:
                raise SuiteError(f"{suite.path}: unknown metric {m!r} for {d.name}; valid: {', '.join(sorted(mets))}")
    for g in suite.generators:
        if g.model not in gens:
            raise SuiteError(f"{suite.path}: unknown generator model {g.model!r} ({g.name}); valid: {', '.join(gens)}")
        for m in g.metrics or ():
            if m not in mets:
                raise SuiteError(f"{suite.path}: unknown metric {m!r} for {g.name}; valid: {', '.join(sorted(mets))}")
        for dn in g.datasets or ():
            if dn not in {d.name for d in suite.datasets}:
                raise SuiteError(f"{suite.path}: generator {g.name} names dataset {dn!r} that the suite does not list")
