"""The staged pipeline: one job = train -> sample -> features -> measure -> record.

A :class:`Job` is a plain, serializable description of everything a worker
needs (suite name, dataset spec, generator spec, seed, which seeds draw the
figures): a worker runs it as given, never re-plans the suite and never parses
anything out of the job id.

Each stage is a small function over a :class:`JobContext`:

- :func:`load_data`: the data set of the job;
- :func:`train`: build the generator (held-out reference rows get the test
  split through :class:`~genbench.protocol.HeldOutReference`), then load its
  trained state from the artifact cache or fit it and cache it;
- :func:`sample`: ``n`` samples per steps setting (sampler objects through
  :class:`~genbench.protocol.SamplerChoice`; reference rows with their real
  labels through :class:`~genbench.protocol.LabeledSampler`), validated
  (count, shape, finite, range) when made *and* when read back from the cache;
- :func:`features`: the :class:`metrics.context.EvalContext` with the cached
  feature sets;
- :func:`measure`: run the requested metrics (``bench eval`` uses this stage too);
  each fails alone: a metric whose precondition fails is n/a with its reason,
  the others are computed; an extractor that cannot load becomes a stand-in
  whose metrics are retried by the next run (:class:`MetricsIncomplete`);
- :func:`record`: turn the values into records (with the metric
  registration's label, direction and unit, and the row's NFE) and hand them
  to the context's sink.

The sink is the store's ``append`` for local runs; remote workers collect the
records and return them to the driver, which alone appends to the store.
"""

from __future__ import annotations

import functools
import inspect
import io
import logging
import random
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from baselines import registry as greg
from baselines.training import thin_curve
from genbench.cache import Cache, atomic_write, content_hash, file_hash
from genbench.precision import autocast, budget_for, settings_for
from genbench.protocol import (
    Autoencoding,
    Budget,
    HeldOutReference,
    ImageConditioned,
    LabeledSampler,
    SamplerChoice,
    Trainable,
    TrainData,
    TrainReference,
    TranslationReference,
)
from genbench.registry import check_name
from metrics import extractors as freg
from metrics import registry as mreg
from metrics.context import EvalContext
from metrics.registry import MetricSpec, MetricValue

from . import data as dreg
from .figures import latent_figure_applies, vae_latent_figure
from .plots import save_sample_grid, save_translation_grid
from .provenance import device_description, git_commit, package_versions
from .store import ERROR, JOB_DONE, ResultStore
from .suite import DatasetSpec, GeneratorSpec, Suite, qualified, split_metric
from .timing import TIMING_METRICS, TIMING_SETTING_KEYS, timing_hash

_log = logging.getLogger("genbench.metrics")

__all__ = [
    "MetricsIncomplete", "load_extractor", "offline_hint",
    "CurrentConfig", "Job", "JobContext", "Measurement", "RunSummary", "current_config", "experiment_hash", "suite_store", "SampleError", "load_data", "train", "sample", "features", "measure",
    "record", "run_job", "error_record", "validate_samples", "seed_everything", "provenance",
]  # fmt: skip


class SampleError(ValueError):
    """A generator produced invalid samples (wrong count, shape or range, NaN/inf)."""


@dataclass
class RunSummary:
    """What a run did: jobs planned / skipped (already done) / run, records this run appended, failures."""

    planned: int = 0
    skipped: int = 0
    ran: int = 0
    records_added: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    wall_s: float = 0.0
    executor: str = ""  # where the jobs ran: local, process or ray
    workers: int = 0  # worker processes used (local: 1)
    threads: int | None = None  # threads per worker (None: not limited)
    na_errors: int = 0  # n/a records of metrics whose precondition failed (records carry na_reason)


@dataclass(frozen=True)
class Job:
    """One (suite, dataset, generator, seed): everything a worker needs, nothing to re-plan.

    ``figure_seeds``: the seeds whose job writes sample grids (the suite's first
    and smallest seed); ``latent_seed``: the seed whose job writes the latent
    figure (the suite's smallest seed).
    """

    suite: str
    dataset: DatasetSpec
    gen: GeneratorSpec
    seed: int
    figure_seeds: tuple[int, ...] = ()
    latent_seed: int | None = None

    @property
    def id(self) -> str:
        return f"{self.dataset.name}/{self.gen.name}/seed{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (JSON-able when the suite's params are)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        ds, g = dict(d["dataset"]), dict(d["gen"])
        ds["metrics"] = tuple(ds["metrics"])
        g["steps"] = tuple(g["steps"])
        for k in ("datasets", "metrics", "seeds"):
            g[k] = tuple(g[k]) if g.get(k) is not None else None
        return cls(
            suite=d["suite"], dataset=DatasetSpec(**ds), gen=GeneratorSpec(**g), seed=int(d["seed"]),
            figure_seeds=tuple(d.get("figure_seeds", ())), latent_seed=d.get("latent_seed"),
        )  # fmt: skip


def _config_hash(job: Job) -> str:
    """Hash of the row's and data set's configuration; the row's list of seeds is not part of a job (it has one seed)."""
    gen = {k: v for k, v in job.gen.__dict__.items() if k != "seeds"}
    return content_hash({"gen": gen, "dataset": job.dataset.__dict__})


def _own_metrics(entries: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Metric entries without the ``METRIC@EXTRACTOR`` ones (None stays None)."""
    return None if entries is None else tuple(m for m in entries if split_metric(m)[1] is None)


def _row_hash(job: Job) -> str:
    """What one row (one step count) of the job depends on: the configuration without the step list, without
    the settings only the timing phase reads (its records carry those settings themselves) and without the
    ``METRIC@EXTRACTOR`` entries (adding a second extractor keeps the first one's records current;
    :class:`CurrentConfig` checks the second extractor's records against the entries listed now)."""
    gen = {k: v for k, v in job.gen.__dict__.items() if k not in ("seeds", "steps")}
    gen["metrics"] = _own_metrics(job.gen.metrics)
    ds = {**job.dataset.__dict__, "metrics": _own_metrics(job.dataset.metrics),
          "settings": {k: v for k, v in job.dataset.settings.items() if k not in TIMING_SETTING_KEYS}}  # fmt: skip
    return content_hash({"gen": gen, "dataset": ds})


class CurrentConfig:
    """Which records of a results directory belong to the suite as it is configured now.

    Every record of a job carries ``config_hash`` (the generator row's and data
    set's configuration, step list and settings included) and ``row_hash``
    (the same without the step list and the timing-phase settings). A record
    is *current* when its (dataset, generator) pair is still in the suite, its
    row label is one of the pair's rows now and its ``row_hash`` matches. A
    job's done marker is current only when its ``config_hash`` matches, so
    adding a step count re-opens the job, which then computes only the new
    row. Timing-phase records also carry ``timing_hash`` (the timing
    settings, defaults filled in) and are current only while it matches, so a
    changed ``latency_repeats`` re-times the rows and recomputes nothing else.
    A record of a second extractor (metric ``"fid@effnet-lite0"``) is current
    only while the pair's metrics still name that extractor.
    Records written before ``row_hash`` existed are kept when their pair
    and row are current (their hash cannot be split); records with neither
    hash are always kept. Records of an experiment suite (personalization)
    carry ``experiment_hash`` (:func:`experiment_hash`) and are current while
    it matches.
    Use it as a :class:`bench.store.ResultStore` ``keep`` predicate.
    """

    def __init__(self, jobs: Iterable[Job], experiment: str | None = None) -> None:
        self._experiment = experiment
        self._spec: dict[tuple[str, str], tuple[str, str, str, frozenset[str]]] = {}
        self._extra: dict[tuple[str, str], frozenset[str]] = {}  # the second extractors each pair's metrics name
        for job in jobs:
            labels = frozenset({job.gen.name, *(job.gen.row_label(s) for s in job.gen.steps)})
            self._spec[(job.dataset.name, job.gen.name)] = (_config_hash(job), _row_hash(job), timing_hash(job.dataset.settings), labels)
            self._extra[(job.dataset.name, job.gen.name)] = frozenset(e for e in job.dataset.metric_groups(metric_names(job)) if e is not None)

    def __call__(self, r: dict[str, Any]) -> bool:
        if "experiment_hash" in r:
            return r["experiment_hash"] == self._experiment
        if "config_hash" not in r and "row_hash" not in r:
            return True
        spec = self._spec.get((r.get("dataset"), r.get("base")))
        if spec is None:
            return False
        full, row, timing, labels = spec
        if r.get("metric") == JOB_DONE:
            return r.get("config_hash") == full
        extractor = split_metric(str(r.get("metric")))[1]
        if extractor is not None and extractor not in self._extra[(r.get("dataset"), r.get("base"))]:
            return False
        return r.get("generator") in labels and r.get("row_hash", row) == row and r.get("timing_hash", timing) == timing


def experiment_hash(suite: Suite) -> str | None:
    """Hash of an experiment suite's configuration: everything in its file but its name, prose, seeds and the
    leaderboard's rendering (``sections``, ``quoted``). None for a grid suite."""
    if not suite.experiment:
        return None
    return content_hash({k: v for k, v in suite.raw.items() if k not in ("name", "description", "seeds", "sections", "quoted")})


def current_config(suite: Suite) -> CurrentConfig:
    """The test of which records belong to ``suite`` as configured now (:class:`bench.pipeline.CurrentConfig`):
    one job per (dataset, generator) pair; no data is loaded."""
    return CurrentConfig((Job(suite.name, d, g, 0) for d in suite.datasets for g in suite.generators_for(d.name)), experiment_hash(suite))


def suite_store(results_dir: str | Path, suite: str | Suite) -> ResultStore:
    """The store of ``suite`` under ``results_dir``: for a :class:`Suite`, reading back only the records of its
    current configuration (:class:`CurrentConfig`); for a suite name, every record in its file."""
    if isinstance(suite, Suite):
        return ResultStore(Path(results_dir) / suite.name, keep=current_config(suite))
    return ResultStore(Path(results_dir) / suite)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (training streams of the families use them)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def provenance(device: str) -> dict[str, Any]:
    """The provenance fields every record carries: git commit, package versions, device."""
    return {"git_commit": git_commit(), "versions": package_versions(), "device": device_description(device)}


def validate_samples(x: Any, shape: tuple[int, ...], is_image: bool, who: str, n: int | None = None) -> torch.Tensor:
    """Clear errors for bad samples instead of failures deep inside a metric.

    Checks: a tensor, exactly ``n`` samples (when given), per-example ``shape``,
    finite, and images in [0, 1]. Returns the samples as float32 on the CPU.
    """
    if not isinstance(x, torch.Tensor):
        raise SampleError(f"{who}: sample() returned {type(x).__name__}, expected a torch.Tensor")
    if x.ndim == 0 or tuple(x.shape[1:]) != tuple(shape):
        raise SampleError(f"{who}: samples have shape {tuple(x.shape[1:])}, expected {tuple(shape)} per example")
    if n is not None and len(x) != n:
        raise SampleError(f"{who}: asked for {n} samples, got {len(x)}; every metric needs exactly the N it states")
    x = x.detach().float().cpu()
    bad = ~torch.isfinite(x)
    if bad.any():
        raise SampleError(f"{who}: {int(bad.any(dim=tuple(range(1, x.ndim))).sum())} of {len(x)} samples contain NaN/inf")
    if is_image and (x.min() < 0 or x.max() > 1):
        raise SampleError(f"{who}: image samples must be in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
    return x


def _code_hash(factory: Any) -> str:
    """Hash of the source file that defines ``factory`` (a ``functools.partial`` is unwrapped to its function), so
    editing a family's module retrains its cached models; ``"unknown"`` when there is no source file."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    try:
        return file_hash(inspect.getsourcefile(factory))
    except (TypeError, OSError):
        return "unknown"


@dataclass
class JobContext:
    """State shared by the stages of one job.

    ``emit`` receives each finished record (a dict); ``have`` holds the record
    keys ``(job, row, metric)`` already in the store, which are not recomputed.
    """

    job: Job
    cache: Cache
    device: str
    assets: Path
    emit: Callable[[dict[str, Any]], None]
    have: set[tuple] = field(default_factory=set)
    provenance: dict[str, Any] = field(default_factory=dict)
    progress: bool = False
    ds: Any = None
    model: Any = None
    model_key: dict[str, Any] | None = None
    sampler: Any = None
    save_samples: bool = False  # keep samples as results/<suite>/samples/<dataset>__<row>__seed<seed>.npz + .png
    samples_dir: Path | None = None
    expected: set[tuple] = field(default_factory=set)  # every record key this job must end with
    extractor_error: Any = None  # the UnavailableExtractor standing in for an extractor that could not load
    added: int = 0  # metric records appended (internal markers not counted)

    def append(self, row: str | None, metric: str, fields: dict[str, Any], steps: int | None = None) -> None:
        """Build the record of (row, metric) and hand it to the sink."""
        job = self.job
        rec = {
            "suite": job.suite, "job": job.id, "dataset": job.dataset.name, "generator": row or job.gen.name,
            "base": job.gen.name, "model": job.gen.model, "seed": job.seed, "steps": steps, "metric": metric,
            "config_hash": _config_hash(job), "row_hash": _row_hash(job), "timestamp": time.time(),
            **self.provenance, **fields,
        }  # fmt: skip
        self.emit(rec)
        if not metric.startswith("_"):
            self.added += 1


# ---------------------------------------------------------------------------------------------- stages
def load_data(ctx: JobContext) -> Any:
    """Stage 0: the job's data set (``bench.data.Dataset``)."""
    ctx.ds = dreg.load(ctx.job.dataset.name, **ctx.job.dataset.params)
    return ctx.ds


def build_model(ctx: JobContext) -> Any:
    """The untrained generator of the job, seeded; held-out reference rows receive the test split."""
    job, ds = ctx.job, ctx.ds
    entry = greg.get(job.gen.model)
    params = job.gen.params_for(job.dataset.name)
    seed_everything(job.seed)
    model = greg.build(job.gen.model, ds.info, **params, device=ctx.device)
    if isinstance(model, HeldOutReference):
        model.use_pool(ds.test_x, ds.test_y)
    if isinstance(model, TrainReference):  # metric-sanity rows that copy the train split
        model.use_train(ds.train_x, ds.train_y)
    if isinstance(model, TranslationReference):  # translation ground truth: the test pairs to look up
        if getattr(ds, "test_truth", None) is None:
            raise ValueError(f"{job.gen.name}: {ds.name} does not know the true target of its test sources")
        model.use_pairs(ds.test_source, ds.test_truth)
    ctx.model = model
    settings = device_settings(ctx)
    ctx.model_key = {
        "model": job.gen.model, "params": params, "budget": budget_for(job.gen.budget, settings, job.gen.name), "dataset": job.dataset.name,
        "dataset_params": job.dataset.params, "seed": job.seed, "code": _code_hash(entry.factory),
    }  # fmt: skip
    if settings.get("precision", "fp32") != "fp32":  # fp32 keys stay as they were
        ctx.model_key["precision"] = settings["precision"]
    return model


def device_settings(ctx: JobContext) -> dict[str, Any]:
    """The dataset's settings on the job's device (``[settings.cuda]`` merged over ``[settings]`` on CUDA; see :mod:`genbench.precision`)."""
    return settings_for(ctx.job.dataset.settings, ctx.device)


def extractor_kwargs(name: str, settings: dict[str, Any], device: str) -> dict[str, Any]:
    """Keyword arguments for the extractor ``name``: ``weights`` from the ``extractor_weights`` setting (a local file) and
    the job's ``device``, each only where the extractor's factory takes it."""
    try:
        accepts = set(inspect.signature(freg.EXTRACTORS.load(name)).parameters)
    except (TypeError, ValueError):
        accepts = set()
    kw: dict[str, Any] = {}
    if settings.get("extractor_weights") is not None:
        if "weights" not in accepts:
            raise ValueError(f"extractor {name!r} takes no weights file, but the suite sets extractor_weights = {settings['extractor_weights']!r}")
        kw["weights"] = str(Path(settings["extractor_weights"]).expanduser())
    if "device" in accepts:
        kw["device"] = device
    return kw


def _small_report(rep: dict[str, Any]) -> dict[str, Any]:
    """Train report for the store: loss curves thinned to <= 200 points (the training loop's thinning)."""
    losses = {k: thin_curve(list(v)) for k, v in (rep.get("losses") or {}).items()}
    return {"steps": rep.get("steps"), "losses": losses, "train_extra": rep.get("extra", {})}


def train(ctx: JobContext) -> dict[str, Any] | None:
    """Stage 1: build the model and train it (or load its cached state). Returns the ``train_s`` record fields, None if not trainable."""
    job = ctx.job
    model = build_model(ctx)
    if not isinstance(model, Trainable):
        return None
    with ctx.cache.lock("models", ctx.model_key):  # rows sharing a network (ddpm/ddim) running at once: one trains, the other waits
        state = ctx.cache.get("models", ctx.model_key)
        report = ctx.cache.get_json("models", ctx.model_key)
        if state is not None and isinstance(report, dict):
            try:
                model.load_state_dict(state)
                return {"value": report.get("wall_time_s"), "extra": {"cached": True, **_small_report(report)}, "settings": {"budget": ctx.model_key["budget"]}}
            except (RuntimeError, KeyError, ValueError, TypeError):  # state from another code version: retrain
                model = build_model(ctx)
        seed_everything(job.seed)
        with autocast(ctx.device, device_settings(ctx).get("precision", "fp32")):
            data = TrainData(ctx.ds.train_x, ctx.ds.info, ctx.ds.train_y, source=getattr(ctx.ds, "train_source", None))
            rep = model.fit(data, Budget(**ctx.model_key["budget"]))
        ctx.cache.put("models", ctx.model_key, model.state_dict())
        ctx.cache.put_json("models", ctx.model_key, rep.to_dict())
    return {"value": rep.wall_time_s, "extra": {"cached": False, **_small_report(rep.to_dict())}, "settings": {"budget": ctx.model_key["budget"]}}


def choose_sampler(ctx: JobContext) -> None:
    """The row's sampler object from ``sample_params`` (:class:`SamplerChoice`)."""
    params = ctx.job.gen.sample_params
    ctx.sampler = None
    if not params:
        return
    if isinstance(ctx.model, SamplerChoice):
        ctx.sampler = ctx.model.make_sampler(**params)
    else:
        raise TypeError(f"{ctx.job.gen.name}: sample_params {params} given but {ctx.job.gen.model} has no make_sampler() (SamplerChoice)")


def _samples_key(ctx: JobContext, steps: int | None, n: int) -> dict[str, Any]:
    job = ctx.job
    return {"model": ctx.model_key, "sample_params": job.gen.sample_params, "steps": steps, "n": n, "seed": job.seed}


def sample(ctx: JobContext, steps: int | None) -> tuple[torch.Tensor, torch.Tensor | None, int | None]:
    """Stage 2: ``(samples, labels or None, NFE or None)`` for one steps setting, cached and validated.

    N is the dataset's ``n_fake`` (default: the test split's size). Class- and
    text-conditional models get labels ``arange(n) % num_classes``.
    """
    job, ds, model = ctx.job, ctx.ds, ctx.model
    translating = ds.info.is_translation and isinstance(model, ImageConditioned)  # outputs = translate(test sources[:n])
    n = job.dataset.n_fake or len(ds.test_source if translating else ds.test_x)
    who = f"{job.gen.name} on {ds.name}"
    if translating and n > len(ds.test_source):
        raise ValueError(f"{who}: n_fake = {n} but the task has {len(ds.test_source)} test sources to translate")

    def check(obj: Any) -> None:
        validate_samples(obj["x"], ds.info.shape, ds.info.is_image, who + " (cached)", n)

    def compute() -> dict[str, Any]:
        g = torch.Generator().manual_seed(job.seed)
        labels = None
        if model.info.conditioning in ("class", "text") and ds.info.num_classes:
            labels = torch.arange(n) % ds.info.num_classes
        settings = device_settings(ctx)
        bs = int(settings.get("sample_batch", 1000))
        if translating:
            with torch.no_grad():
                x = torch.cat([model.translate(ds.test_source[i : min(i + bs, n)], generator=g) for i in range(0, n, bs)])
        elif isinstance(model, LabeledSampler):  # reference rows carry their real labels
            x, labels = model.sample_labeled(n, generator=g)
        else:
            parts = []
            kw = {"sampler": ctx.sampler} if ctx.sampler is not None else {}
            with torch.no_grad(), autocast(ctx.device, settings.get("precision", "fp32")):
                for i in tqdm(range(0, n, bs), desc=f"sample {job.gen.name}", leave=False, disable=not ctx.progress or n <= bs):
                    lb = labels[i : i + bs] if labels is not None else None
                    m = min(bs, n - i)
                    part = model.sample(m, labels=lb, steps=steps, generator=g, **kw)
                    if isinstance(part, torch.Tensor) and part.ndim > 0 and len(part) != m:
                        raise SampleError(f"{who}: sample({m}) returned {len(part)} samples; a generator must return exactly n")
                    parts.append(part)
            x = torch.cat(parts) if all(isinstance(p, torch.Tensor) for p in parts) else parts[0]
        x = validate_samples(x, ds.info.shape, ds.info.is_image, who, n)
        nfe = getattr(model, "last_nfe", None)
        out: dict[str, Any] = {"x": x}
        if labels is not None:
            out["y"] = labels
        if isinstance(nfe, int):
            out["nfe"] = nfe
        return out

    got = ctx.cache.cached("samples", _samples_key(ctx, steps, n), compute, validate=check)
    return got["x"], got.get("y"), got.get("nfe")


def features(ctx: JobContext, fake: torch.Tensor, fake_labels: torch.Tensor | None, steps: int | None, extractor_name: str | None = None) -> EvalContext:
    """Stage 3: the metrics' context, with every feature set cached under (samples or split, kind, extractor, weights hash).

    ``extractor_name``: a second extractor (a ``METRIC@EXTRACTOR`` entry) instead of the data set's own (None);
    the ``extractor_weights`` setting belongs to the data set's own extractor and is not passed to it."""
    job, ds = ctx.job, ctx.ds
    settings = {"reference": "train", **device_settings(ctx)}
    name = extractor_name or job.dataset.extractor
    ext_settings = settings if extractor_name is None else {k: v for k, v in settings.items() if k != "extractor_weights"}
    extractor = load_extractor(name, ds.info, **extractor_kwargs(name, ext_settings, ctx.device))
    if isinstance(extractor, freg.UnavailableExtractor):
        ctx.extractor_error = extractor
    samples_key = _samples_key(ctx, steps, len(fake))
    fake = fake.float()  # features are computed in float32 whatever precision the generator ran in
    split = {"train": ds.train_x, "test": ds.test_x}[settings["reference"]]
    split_labels = {"train": ds.train_y, "test": ds.test_y}[settings["reference"]]

    def feature_cache(which: str, kind: str, compute: Callable[[], Any]) -> Any:
        real_split = which if which != "real" else settings["reference"]
        base = samples_key if which == "fake" else {"dataset": ds.name, "params": job.dataset.params, "split": real_split}
        key = {"of": base, "kind": kind, "extractor": extractor.name, "weights": extractor.weights_hash}
        return ctx.cache.cached("features", key, compute)

    return EvalContext(
        data_info=ds.info, fake=fake, real=split, extractor=extractor, train=ds.train_x, test=ds.test_x,
        real_labels=split_labels, train_labels=ds.train_y, test_labels=ds.test_y, fake_labels=fake_labels,
        generator=ctx.model, steps=steps, settings=settings, seed=job.seed, device=ctx.device, feature_cache=feature_cache,
        **_translation_inputs(ds, len(fake)),
    )  # fmt: skip


def load_extractor(name: str, info: Any, **kwargs: Any) -> freg.Extractor:
    """The extractor ``name``, or, when it cannot be built (weights missing offline, a corrupt file), a
    :class:`metrics.extractors.UnavailableExtractor` whose reason names the extractors that would work on
    ``info``'s samples offline: every metric that needs features is then n/a with that reason, the others run."""
    try:
        return freg.get_extractor(name, **kwargs)
    except (freg.ExtractorError, OSError) as e:
        return freg.UnavailableExtractor(name, f"{e}{offline_hint(name, info)}")


def offline_hint(name: str, info: Any) -> str:
    """`` Extractors that work offline on ...: a, b.`` (empty when there are none besides ``name``)."""
    shape = tuple(getattr(info, "shape", ()))
    kind = "points" if getattr(info, "kind", "image") == "points" else "image"
    names = [n for n in freg.offline_extractors(shape, kind) if n != name]
    if not names:
        return ""
    where = "2-D points" if kind == "points" else f"{'x'.join(map(str, shape))} images"
    return f" Extractors that work offline on {where}: {', '.join(names)} (--extractor NAME, or a suite's extractor = \"NAME\")."


def _translation_inputs(ds: Any, n: int) -> dict[str, Any]:
    """Translation tasks: the first ``n`` test sources (what the outputs were translated from), their true targets and labels."""
    if not ds.info.is_translation:
        return {}
    truth, labels = ds.test_truth, ds.test_source_y
    return {"source": ds.test_source[:n], "truth": truth[:n] if truth is not None else None, "source_labels": labels[:n] if labels is not None else None}


@dataclass
class Measurement:
    """One metric's outcome: its registration, its values (None: n/a) and the seconds it took.

    ``reason`` says why the values are None: the metric does not apply here, or its precondition failed
    (``error`` is True: it raised, e.g. FLS without held-out test points, a k-NN metric with too few samples,
    an extractor that cannot load). ``retry``: the failure may go away on a re-run (the extractor could not
    be built, e.g. weights missing offline): ``bench run`` records nothing for it and leaves the job unfinished.
    """

    spec: MetricSpec
    values: dict[str, MetricValue] | None
    seconds: float = 0.0
    reason: str | None = None
    error: bool = False
    retry: bool = False


def _failure(e: BaseException) -> str:
    """One line for an n/a record: the exception's message (its type when the message says nothing)."""
    msg = (str(e).strip().splitlines() or [""])[0][:300]
    return msg if msg and isinstance(e, (ValueError, freg.ExtractorError)) else f"{type(e).__name__}: {msg}".rstrip(": ")


def _first_sentence(text: str) -> str:
    head = text.strip().splitlines()[0] if text.strip() else ""
    i = head.find(". ")
    return head[: i + 1] if i > 0 else head


def _not_applicable(ectx: EvalContext, spec: MetricSpec) -> str:
    ext = ectx.extractor
    if isinstance(ext, freg.UnavailableExtractor):
        return f"{spec.name} does not apply here (extractor {ext.name} could not load: {ext.reason})"
    return f"{spec.name} does not apply to these samples ({getattr(ectx.data_info, 'name', 'data')}, extractor {ext.name}" + (
        ", no generator object)" if ectx.generator is None else ")"
    )


def measure(ectx: EvalContext, names: Iterable[str]) -> list[Measurement]:
    """Stage 4: run each named metric on ``ectx``; each fails alone.

    A metric that does not apply comes back with ``values=None`` and a reason; one that raises (a failed
    precondition) comes back with ``values=None``, ``error=True`` and the exception's message as its reason,
    and the others are still computed. Unknown names raise ``KeyError`` before anything runs.
    """
    specs = [mreg.get_metric(m) for m in names]
    out = []
    for spec in specs:
        t0 = time.perf_counter()
        try:
            if not spec.applies(ectx):
                out.append(Measurement(spec, None, reason=_not_applicable(ectx, spec)))
                continue
            values = spec.fn(ectx)
        except Exception as e:  # noqa: BLE001 - one metric's failure must not take the panel with it
            retry = isinstance(e, freg.ExtractorUnavailable)
            name = ectx.extractor.name
            why = f"extractor {name} could not load: {_first_sentence(str(e)).removeprefix(name + ': ')}" if retry else _failure(e)
            _log.info("metric %s: n/a: %s", spec.name, why)
            out.append(Measurement(spec, None, time.perf_counter() - t0, reason=why, error=True, retry=retry))
            continue
        out.append(Measurement(spec, values, time.perf_counter() - t0))
    return out


class MetricsIncomplete(RuntimeError):
    """Some metrics of a job could not be computed for a reason a re-run may remove (its extractor could not load):
    the job's other records are kept, the job is not marked done, and the next ``bench run`` computes only those."""


def record(
    ctx: JobContext, row: str, steps: int | None, results: list[Measurement], n_fake: int, nfe: int | None, extractor: str | None = None
) -> list[str]:
    """Stage 5: one record per metric output, with label/direction/unit from the registration and the row's NFE.

    An n/a record carries ``na_reason`` (and ``na_error`` when the metric raised). Measurements to retry write
    nothing; their messages are returned. ``extractor``: the second extractor the values were measured on (a
    ``METRIC@EXTRACTOR`` entry): the records are named ``"fid@EXTRACTOR"`` and carry that extractor."""
    extra = {"nfe": nfe} if nfe is not None else {}
    ext = {"extractor": extractor or ctx.job.dataset.extractor}
    retry = []
    for res in results:
        if res.retry:
            retry.append(f"{row}: {qualified(res.spec.name, extractor)}")
            continue
        for o in res.spec.outputs:
            v = None if res.values is None else res.values.get(o.name)
            meta = mreg.output_meta(o, v)
            name = qualified(o.name, extractor)
            if v is None:
                why = res.reason or f"{res.spec.name} returned no {o.name}"
                ctx.append(row, name, {**({} if extractor is None else ext), "value": None, "na": True, "na_reason": why, **({"na_error": True} if res.error else {}), **meta, **extra}, steps=steps)
                continue
            ctx.append(
                row, name,
                {"value": v.value, "lo": v.interval[0] if v.interval else None, "hi": v.interval[1] if v.interval else None,
                 "settings": v.settings, "extra": v.extra, "metric_s": res.seconds,
                 "n_fake": int(n_fake), "n_real": v.settings.get("n_real"), **ext, **meta, **extra},
                steps=steps,
            )  # fmt: skip
    return retry


# ---------------------------------------------------------------------------------------------- figures
def _save_grid(ctx: JobContext, row: str, x: torch.Tensor) -> None:
    job = ctx.job
    name = f"{check_name(job.dataset.name, 'dataset name')}__{check_name(row.replace('@', '_at'), 'generator row')}.png"
    if ctx.ds.info.is_translation and isinstance(ctx.model, ImageConditioned):
        tr = _translation_inputs(ctx.ds, len(x))
        save_translation_grid(tr["source"], x, tr["truth"], _inside(ctx.assets, name), title=f"{row} on {job.dataset.name}: source | output | target")
        return
    save_sample_grid(x, ctx.ds.info, _inside(ctx.assets, name), title=f"{row} on {job.dataset.name}")


def _save_samples(ctx: JobContext, row: str, x: torch.Tensor, labels: torch.Tensor | None) -> None:
    """``--save-samples``: the row's samples as ``.npz`` (``x`` float32 as sampled, ``y`` labels if any) and a PNG grid."""
    job = ctx.job
    root = ctx.samples_dir or ctx.assets.parent / "samples"
    stem = f"{check_name(job.dataset.name, 'dataset name')}__{check_name(row.replace('@', '_at'), 'generator row')}__seed{int(job.seed)}"
    buf = io.BytesIO()
    arrays = {"x": x.numpy().astype(np.float32)}
    if labels is not None:
        arrays["y"] = labels.numpy()
    np.savez(buf, **arrays)
    atomic_write(_inside(root, stem + ".npz"), buf.getvalue())
    save_sample_grid(x, ctx.ds.info, _inside(root, stem + ".png"), title=f"{row} on {job.dataset.name} (seed {job.seed})")


def _latent_figure(ctx: JobContext) -> None:
    """The latent-space arithmetic figure for any model that encodes and decodes, on labelled images that have the figure's classes."""
    if not isinstance(ctx.model, Autoencoding) or not latent_figure_applies(ctx.ds):
        return
    job = ctx.job
    name = f"{check_name(job.dataset.name, 'dataset name')}__{check_name(job.gen.name, 'generator name')}_latent-arithmetic.png"
    vae_latent_figure(ctx.model, ctx.ds, _inside(ctx.assets, name))


def _inside(root: Path, name: str) -> Path:
    """``root / name``, proven to stay inside ``root``."""
    p = (root / name).resolve()
    if not p.is_relative_to(root.resolve()):
        raise ValueError(f"refusing to write {p}: outside {root}")
    return p


# ---------------------------------------------------------------------------------------------- the job
def metric_names(job: Job) -> list[str]:
    """The dataset's metrics, restricted to the generator row's list when it has one."""
    return [m for m in job.dataset.metrics if job.gen.metrics is None or m in job.gen.metrics]


def run_job(ctx: JobContext) -> None:
    """All stages of one job; records already present (``ctx.have``) are not recomputed. Ends with the job-done marker."""
    job = ctx.job
    names = [m for m in metric_names(job) if m not in TIMING_METRICS]  # latency/cost: measured by the timing phase after all jobs
    groups = job.dataset.metric_groups(names)  # {None: own extractor's metrics, "effnet-lite0": [...]}: one feature pass each

    def keys(row: str, extractor: str | None, m: str) -> set[tuple]:
        return {(job.id, row, qualified(o.name, extractor)) for o in mreg.get_metric(m).outputs}

    row_keys = {s: set().union(*(keys(job.gen.row_label(s), e, m) for e, ms in groups.items() for m in ms)) for s in job.gen.steps}
    every = set().union(*row_keys.values())
    if every and every <= ctx.have:  # re-opened (its config_hash changed, e.g. a timing setting) with every row current
        ctx.expected |= every | ({(job.id, job.gen.name, "train_s")} & ctx.have)
        ctx.append(None, JOB_DONE, {"value": None, "n_records": len(ctx.expected)})
        return  # nothing to load, train or sample
    load_data(ctx)
    train_fields = train(ctx)
    choose_sampler(ctx)
    if train_fields is not None:
        ctx.expected.add((job.id, job.gen.name, "train_s"))
        if (job.id, job.gen.name, "train_s") not in ctx.have:
            ctx.append(None, "train_s", train_fields)
            if job.seed == job.latent_seed:
                _latent_figure(ctx)
    retry: list[str] = []
    for steps in job.gen.steps:
        row = job.gen.row_label(steps)
        ctx.expected |= row_keys[steps]
        todo = {e: [m for m in ms if not keys(row, e, m) <= ctx.have] for e, ms in groups.items()}
        todo = {e: ms for e, ms in todo.items() if ms}
        if not todo:
            continue
        fake, fake_labels, nfe = sample(ctx, steps)
        if job.seed in job.figure_seeds:
            _save_grid(ctx, row, fake)
        if ctx.save_samples:
            _save_samples(ctx, row, fake, fake_labels)
        for extractor, ms in todo.items():
            ectx = features(ctx, fake, fake_labels, steps, extractor)
            retry += record(ctx, row, steps, measure(ectx, ms), len(fake), nfe, extractor)
    if retry:  # the other records are kept; the job stays unfinished, so a re-run computes only these
        why = ctx.extractor_error.reason if ctx.extractor_error is not None else ""
        failed = ctx.extractor_error.name if ctx.extractor_error is not None else job.dataset.extractor
        raise MetricsIncomplete(
            f"extractor {failed} could not load, so {len(retry)} metric(s) were not computed ({', '.join(retry)}); the job's other records "
            f"are kept and the next bench run computes only these. {why}"
        )
    ctx.append(None, JOB_DONE, {"value": None, "n_records": len(ctx.expected)})


def error_record(ctx: JobContext, e: BaseException) -> str:
    """Record a failed job (it is not marked done, so a re-run retries it); returns the one-line message."""
    msg = f"{type(e).__name__}: {e}"
    ctx.append(None, ERROR, {"value": None, "extra": {"error": msg, "traceback": traceback.format_exc()[-4000:]}})
    return msg
