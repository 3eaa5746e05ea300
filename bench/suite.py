"""Suites: TOML files in ``bench/suites/`` (or any path) describing
datasets x generators x seeds x metrics x sample counts.

See ``bench/suites/smoke.toml`` for a commented example. Parsing validates
everything up front so that a typo fails before any training starts: every
field's type and range at load time (:func:`load_suite`, a
:class:`SuiteError` naming the file and the field), and every name against
its registry (:func:`validate_names`: data sets, generators, extractors,
metrics, sections).

Names that end up in file paths (the suite's, data sets', generator rows')
must pass :func:`genbench.registry.check_name`. A suite is either a built-in
name (``bench/suites/NAME.toml``) or a path to a ``.toml`` file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from baselines import registry as greg
from genbench.precision import PrecisionError, validate_settings
from genbench.protocol import Budget
from genbench.registry import check_name
from metrics import extractors as freg
from metrics import registry as mreg

from . import data
from .record import EXTRACTOR_SEP, qualified, split_metric  # noqa: F401 - qualified: re-exported for the pipeline's modules
from .sections import SECTIONS
from .suite_schema import check_depth, check_quoted, check_settings

SUITES_DIR = Path(__file__).parent / "suites"


class SuiteError(ValueError):
    """A suite that cannot be found or parsed; the message says what is wrong."""




@dataclass(frozen=True)
class DatasetSpec:
    """One ``[[datasets]]`` entry. ``metrics`` lists metric names; an entry ``"METRIC@EXTRACTOR"`` computes a
    feature metric on a second extractor besides ``extractor`` (its records are named the same way and carry
    that extractor's name, so the leaderboard gives them their own columns, e.g. FID[effnet-lite0])."""

    name: str
    extractor: str
    metrics: tuple[str, ...]
    n_fake: int | None = None  # default: size of the test split
    params: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def metric_groups(self, names: Iterable[str] | None = None) -> dict[str | None, list[str]]:
        """Metric entries (default: ``metrics``) grouped by extractor: ``{None: [own extractor's metrics],
        "effnet-lite0": ["fid", "kid"], ...}``, in the order they are listed; one feature pass per group."""
        groups: dict[str | None, list[str]] = {}
        for entry in self.metrics if names is None else names:
            metric, extractor = split_metric(entry)
            groups.setdefault(extractor, []).append(metric)
        return groups

    @property
    def extra_extractors(self) -> tuple[str, ...]:
        """The extractors named by ``METRIC@EXTRACTOR`` entries, in order (empty for most suites)."""
        return tuple(e for e in self.metric_groups() if e is not None)


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
    seeds: tuple[int, ...] | None = None  # this row's seeds, replacing the suite's (a sweep whose ordering needs more)
    teacher: dict[str, Any] | None = None  # a distillation student's teacher: that row's model, params, budget, dataset_params

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


SEED_LIMIT = 2**32  # seeds are in [0, 2**32): what numpy and torch accept


def available_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def resolve_suite_path(name: str) -> Path:
    """A path to a ``.toml`` file as given, else the built-in suite ``name`` (a safe name, never a path)."""
    p = Path(name)
    if p.suffix == ".toml" and p.is_file():
        return p
    if p.suffix == ".toml":  # meant as a file: say so, rather than "unknown suite"
        what = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise SuiteError(f"suite file {name} {what}; give a path to an existing .toml file or a built-in suite ({', '.join(available_suites())})")
    try:
        check_name(name, "suite name")
    except ValueError as e:
        raise SuiteError(f"{e}; give a built-in suite ({', '.join(available_suites())}) or a path to an existing .toml file") from None
    cand = SUITES_DIR / f"{name}.toml"
    if cand.is_file():
        return cand
    raise SuiteError(f"unknown suite {name!r}; valid: {', '.join(available_suites())} (or a path to a .toml file)")


class _Fields:
    """Type and range checks that name the file and the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field_name: str, msg: str) -> SuiteError:
        return SuiteError(f"{self.where}: {field_name} {msg}")

    def table(self, v: Any, f: str) -> dict[str, Any]:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise self.fail(f, f"must be a table ({{ key = value }}), got {type(v).__name__} {v!r}")
        return dict(v)

    def string(self, v: Any, f: str, name: bool = False) -> str:
        if not isinstance(v, str) or not v:
            raise self.fail(f, f"must be a non-empty string, got {v!r}")
        if name:
            try:
                check_name(v, f)
            except ValueError as e:
                raise self.fail(f, f"is not a safe name: {e}") from None
        return v

    def integer(self, v: Any, f: str, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(f, f"must be an integer, got {type(v).__name__} {v!r}")
        if (lo is not None and v < lo) or (hi is not None and v >= hi):
            rng = f">= {lo}" if hi is None else f"in [{lo}, {hi})"
            raise self.fail(f, f"must be {rng}, got {v}")
        return v

    def strings(self, v: Any, f: str, name: bool = False) -> tuple[str, ...]:
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list):
            raise self.fail(f, f"must be a list of strings, got {type(v).__name__} {v!r}")
        return tuple(self.string(x, f"{f}[{i}]", name) for i, x in enumerate(v))

    def keys(self, d: dict[str, Any], allowed: set[str], f: str) -> None:
        unknown = set(d) - allowed
        if unknown:
            raise self.fail(f, f"has unknown keys {sorted(unknown)}; valid: {sorted(allowed)}")


_DATASET_KEYS = {"name", "extractor", "metrics", "n_fake", "params", "settings"}
_GENERATOR_KEYS = {"name", "model", "params", "budget", "sample_params", "steps", "datasets", "metrics", "dataset_params", "seeds", "teacher"}
TEACHER_FIELDS = ("model", "params", "budget", "dataset_params")  # what a student's job carries of its teacher row
_TOP_KEYS = {"name", "description", "seeds", "settings", "datasets", "generators", "quoted", "sections", "experiment"}


def _registered_extractor(dataset: str) -> str:
    """A data set's registered default extractor (``bench list datasets``), else ``raw``."""
    try:
        return str(data.DATASETS.get(dataset).meta.get("extractor") or "raw")
    except KeyError:  # unknown data set: validate_names reports it
        return "raw"


def _named_entry(v: Any, where: str, keys: set[str] | frozenset[str], c: _Fields) -> tuple[dict[str, Any], str, str]:
    """A ``[[datasets]]`` / ``[[generators]]`` entry: its table, its checked name, and where it is for messages
    (``datasets[0] (digits)``); its keys are checked against ``keys``."""
    d = c.table(v, where)
    if "name" not in d:
        raise c.fail(where, "has no name")
    name = c.string(d["name"], f"{where}.name", name=True)
    where = f"{where} ({name})"
    c.keys(d, keys, where)
    return d, name, where


def _dataset(v: Any, i: int, settings: dict[str, Any], c: _Fields) -> DatasetSpec:
    d, name, f = _named_entry(v, f"datasets[{i}]", _DATASET_KEYS, c)
    n_fake = d.get("n_fake")
    merged = {**settings, **c.table(d.get("settings"), f"{f}.settings")}
    try:
        _check_settings_tables(d.get("settings"), c.where, f"{f}.settings")
    except ValueError as e:
        raise SuiteError(str(e)) from None
    try:  # precision, [settings.cuda] / [settings.cpu] and their budget overrides (genbench.precision), checked up front
        validate_settings(merged)
    except PrecisionError as e:
        raise c.fail(f"{f}.settings", str(e)) from None
    return DatasetSpec(
        name=name,
        extractor=c.string(d.get("extractor", _registered_extractor(name)), f"{f}.extractor"),
        metrics=_metric_entries(d.get("metrics", ["fid"]), f"{f}.metrics", c),
        n_fake=None if n_fake is None else c.integer(n_fake, f"{f}.n_fake", lo=1),
        params=c.table(d.get("params"), f"{f}.params"),
        settings=merged,
    )


def _metric_entries(v: Any, f: str, c: _Fields) -> tuple[str, ...]:
    """A list of metric names, each ``METRIC`` or ``METRIC@EXTRACTOR`` with both parts non-empty (names checked by :func:`validate_names`)."""
    entries = c.strings(v, f)
    for j, entry in enumerate(entries):
        metric, extractor = split_metric(entry)
        if not metric or extractor == "" or (extractor and EXTRACTOR_SEP in extractor):
            raise c.fail(f"{f}[{j}]", f"{entry!r} must be METRIC or METRIC{EXTRACTOR_SEP}EXTRACTOR (e.g. \"fid{EXTRACTOR_SEP}effnet-lite0\")")
    return entries


def _check_settings_tables(settings: Any, where: str, field_name: str = "settings") -> None:
    """Types and ranges of a settings table and of its ``cuda``/``cpu`` device tables (``ValueError`` naming file and field)."""
    if not isinstance(settings, dict):
        return  # a non-table is refused, naming the field, by _Fields.table
    check_settings(settings, where, field_name)
    for dev in ("cuda", "cpu"):
        if isinstance(settings.get(dev), dict):
            check_settings(settings[dev], where, f"{field_name}.{dev}")


def _generator(v: Any, i: int, c: _Fields) -> GeneratorSpec:
    g, name, f = _named_entry(v, f"generators[{i}]", _GENERATOR_KEYS, c)
    budget = c.table(g.get("budget"), f"{f}.budget")
    c.keys(budget, {x.name for x in fields(Budget)} - {"progress"}, f"{f}.budget")
    for k in ("steps", "batch_size"):
        if k in budget:
            c.integer(budget[k], f"{f}.budget.{k}", lo=1)
    for k in ("lr", "max_seconds"):
        if k in budget and (isinstance(budget[k], bool) or not isinstance(budget[k], (int, float)) or budget[k] <= 0):
            raise c.fail(f"{f}.budget.{k}", f"must be a positive number, got {budget[k]!r}")
    steps_raw = g.get("steps")
    if steps_raw is None:
        steps: tuple[int | None, ...] = (None,)
    else:
        lst = steps_raw if isinstance(steps_raw, list) else [steps_raw]
        steps = tuple(dict.fromkeys(c.integer(s, f"{f}.steps[{j}]", lo=1) for j, s in enumerate(lst))) or (None,)
    dparams = c.table(g.get("dataset_params"), f"{f}.dataset_params")
    seeds = _seeds(g["seeds"], f"{f}.seeds", c) if "seeds" in g else None
    return GeneratorSpec(
        name=name,
        model=c.string(g.get("model", name), f"{f}.model"),
        params=c.table(g.get("params"), f"{f}.params"),
        budget=budget,
        sample_params=c.table(g.get("sample_params"), f"{f}.sample_params"),
        steps=steps,
        datasets=c.strings(g["datasets"], f"{f}.datasets") if "datasets" in g else None,
        metrics=_metric_entries(g["metrics"], f"{f}.metrics", c) if "metrics" in g else None,
        dataset_params={k: c.table(x, f"{f}.dataset_params.{k}") for k, x in dparams.items()},
        seeds=seeds,
        teacher={"name": c.string(g["teacher"], f"{f}.teacher", name=True)} if "teacher" in g else None,
    )


def _resolve_teachers(gens: list[GeneratorSpec], c: _Fields) -> list[GeneratorSpec]:
    """Each ``teacher = "ROW"`` replaced by that row's :data:`TEACHER_FIELDS`, so a student's job (and its
    configuration hash) carries the teacher's whole configuration; the teacher must be a row without a teacher."""
    by_name = {g.name: g for g in gens}
    out = []
    for i, g in enumerate(gens):
        if g.teacher is not None:
            t = by_name.get(g.teacher["name"])
            if t is None:
                raise c.fail(f"generators[{i}].teacher", f"names row {g.teacher['name']!r}, which the suite does not list; rows: {sorted(by_name)}")
            if t.teacher is not None or t.name == g.name:
                raise c.fail(f"generators[{i}].teacher", f"row {t.name!r} is itself a student; a teacher is a row trained on the data")
            g = replace(g, teacher={"name": t.name, **{k: getattr(t, k) for k in TEACHER_FIELDS}})
        out.append(g)
    return out


def _seeds(v: Any, f: str, c: _Fields) -> tuple[int, ...]:
    """A non-empty list (or one integer) of seeds in [0, 2**32), duplicates dropped."""
    lst = v if isinstance(v, list) else [v]
    seeds = tuple(dict.fromkeys(c.integer(s, f"{f}[{i}]", lo=0, hi=SEED_LIMIT) for i, s in enumerate(lst)))
    if not seeds:
        raise c.fail(f, "must list at least one seed")
    return seeds


def load_suite(name: str) -> Suite:
    """Parse and validate a suite by name (``bench/suites/NAME.toml``) or path.

    Raises :class:`SuiteError` naming the file and the field for anything
    malformed: unknown keys, wrong types, seeds outside [0, 2**32), ``n_fake``
    or ``steps`` below 1, names unsafe for file paths, duplicate rows.
    """
    path = resolve_suite_path(name)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SuiteError(f"{path}: invalid TOML: {e}") from e
    except RecursionError:
        raise SuiteError(f"{path}: invalid TOML: nested too deeply") from None
    c = _Fields(str(path))
    try:  # nesting, then every listed [settings] field (types, ranges) of the suite and its device tables
        check_depth(raw, str(path))
        _check_settings_tables(raw.get("settings"), str(path))
    except ValueError as e:
        raise SuiteError(str(e)) from None
    experiment = raw.get("experiment")
    if experiment is not None:
        c.string(experiment, "experiment", name=True)
    sections = c.strings(raw.get("sections", []), "sections", name=True)
    extra = set(raw) - _TOP_KEYS - set(sections) - ({experiment} if experiment else set())
    if extra:
        raise c.fail("top level", f"has unknown keys {sorted(extra)}; valid: {sorted(_TOP_KEYS)} and a table per section or experiment")
    settings = c.table(raw.get("settings"), "settings")
    ds_list = raw.get("datasets", [])
    if not isinstance(ds_list, list):
        raise c.fail("datasets", "must be an array of tables ([[datasets]])")
    datasets = [_dataset(d, i, settings, c) for i, d in enumerate(ds_list)]
    if len({d.name for d in datasets}) != len(datasets):
        raise c.fail("datasets", "lists a data set twice")
    g_list = raw.get("generators", [])
    if not isinstance(g_list, list):
        raise c.fail("generators", "must be an array of tables ([[generators]])")
    gens, seen = [], set()
    for i, g in enumerate(g_list):
        spec = _generator(g, i, c)
        if spec.name in seen:
            raise c.fail(f"generators[{i}].name", f"{spec.name!r} is used twice; names label rows and must be unique")
        seen.add(spec.name)
        gens.append(spec)
    gens = _resolve_teachers(gens, c)
    if not experiment and (not datasets or not gens):
        raise SuiteError(f"{path}: a suite needs at least one [[datasets]] and one [[generators]] entry")
    seeds = _seeds(raw.get("seeds", [0]), "seeds", c)
    quoted = raw.get("quoted", [])
    if not isinstance(quoted, list) or not all(isinstance(q, dict) for q in quoted):
        raise c.fail("quoted", "must be an array of tables ([[quoted]])")
    try:
        check_quoted(quoted, str(path))
    except ValueError as e:
        raise SuiteError(str(e)) from None
    return Suite(
        name=c.string(raw.get("name", path.stem), "name", name=True),
        path=path,
        description=raw.get("description", "") if isinstance(raw.get("description", ""), str) else str(raw.get("description")),
        seeds=seeds,
        datasets=tuple(datasets),
        generators=tuple(gens),
        settings=settings,
        quoted=tuple(quoted),
        sections=sections,
        experiment=experiment,
        raw=raw,
    )


def validate_names(suite: Suite) -> None:
    """Check that every dataset, generator, extractor, metric and section name exists (:class:`SuiteError` naming it)."""
    gens = greg.available()
    mets = mreg.available()
    exts = freg.available()
    for i, d in enumerate(suite.datasets):
        if d.name not in data.available():
            raise SuiteError(f"{suite.path}: unknown dataset {d.name!r}; valid: {', '.join(data.available())}")
        if d.extractor not in exts:
            raise SuiteError(f"{suite.path}: unknown extractor {d.extractor!r}; valid: {', '.join(exts)}")
        _check_extra(suite, d.extractor, f"datasets[{i}] ({d.name}).extractor")
        for j, entry in enumerate(d.metrics):
            _check_metric_entry(suite, d, entry, f"datasets[{i}] ({d.name}).metrics[{j}]", mets, exts)
    for g in suite.generators:
        if g.model not in gens:
            if ":" in g.model:  # module:factory, imported from the user's code (genbench.plugins)
                try:
                    greg.get(g.model)
                except KeyError as e:
                    raise SuiteError(f"{suite.path}: generator {g.name}: {e}") from None
            else:
                raise SuiteError(
                    f"{suite.path}: unknown generator model {g.model!r} ({g.name}); valid: {', '.join(gens)}; {greg.IMPORT_HINT}"
                )
        for j, entry in enumerate(g.metrics or ()):
            m = split_metric(entry)[0]
            if m not in mets:
                raise SuiteError(f"{suite.path}: generators ({g.name}).metrics[{j}]: unknown metric {m!r} for {g.name}; valid: {', '.join(sorted(mets))}")
        for dn in (g.datasets or ()) + tuple(g.dataset_params):
            if dn not in {d.name for d in suite.datasets}:
                raise SuiteError(f"{suite.path}: generator {g.name} names dataset {dn!r} that the suite does not list")
    for sname in suite.sections:
        if sname not in SECTIONS:
            raise SuiteError(f"{suite.path}: unknown section {sname!r}; valid: {', '.join(SECTIONS.names())}")


def _check_extra(suite: Suite, extractor: str, f: str) -> None:
    """:class:`SuiteError` with the extra's install line when ``extractor`` needs an optional extra that is not installed."""
    try:
        freg.check_extra(extractor)
    except freg.MissingExtraError as e:
        raise SuiteError(f"{suite.path}: {f}: {e}") from None


def _check_metric_entry(suite: Suite, d: DatasetSpec, entry: str, f: str, mets: dict[str, Any], exts: list[str]) -> None:
    """A dataset's metric entry: a registered metric; with ``@EXTRACTOR``, a registered extractor other than the
    data set's own, an installed extra, and a metric whose every output depends on the extractor (FID, KID, PRDC ...)."""
    metric, extractor = split_metric(entry)
    if metric not in mets:
        raise SuiteError(f"{suite.path}: {f}: unknown metric {metric!r} for {d.name}; valid: {', '.join(sorted(mets))}")
    if extractor is None:
        return
    if extractor not in exts:
        raise SuiteError(f"{suite.path}: {f}: unknown extractor {extractor!r} in {entry!r}; valid: {', '.join(exts)}")
    if extractor == d.extractor:
        raise SuiteError(f"{suite.path}: {f}: {entry!r} names the data set's own extractor; write {metric!r}")
    if not all(o.per_extractor for o in mets[metric].outputs):
        raise SuiteError(
            f"{suite.path}: {f}: {metric!r} does not measure features, so {EXTRACTOR_SEP}{extractor} has no meaning for it; "
            f"metrics that can name an extractor: {', '.join(sorted(n for n, s in mets.items() if all(o.per_extractor for o in s.outputs)))}"
        )
    _check_extra(suite, extractor, f)


def metric_names(job: Any) -> list[str]:
    """The metrics of a job (anything with ``dataset`` and ``gen`` specs): the data set's, restricted to the
    generator row's list when it has one."""
    return [m for m in job.dataset.metrics if job.gen.metrics is None or m in job.gen.metrics]
