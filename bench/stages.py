"""The stages of a job over its :class:`~bench.job.JobContext`: the data set, the trained model (from the artifact
cache or fitted and cached), the sampler, the samples (validated when made and when read back), and the features
(the :class:`metrics.context.EvalContext`). ``bench/pipeline.py`` runs them in order."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from baselines import registry as greg
from baselines.training import thin_curve
from genbench.precision import autocast, budget_for, settings_for
from genbench.protocol import (
    Budget,
    Distilled,
    HeldOutReference,
    ImageConditioned,
    LabeledSampler,
    SamplerChoice,
    Trainable,
    TrainData,
    TrainReference,
    TranslationReference,
)
from metrics import extractors as freg
from metrics.context import EvalContext

from . import data as dreg
from .job import JobContext, SampleError, _code_hash, seed_everything, validate_samples
from .measure import feature_cache, reference_key


def load_data(ctx: JobContext) -> Any:
    """Stage 0: the job's data set (``bench.data.Dataset``)."""
    ctx.ds = dreg.load(ctx.job.dataset.name, **ctx.job.dataset.params)
    return ctx.ds


def _model_key(ctx: JobContext, model: str, params: dict[str, Any], budget: dict[str, Any], row: str) -> dict[str, Any]:
    """The artifact-cache key of a trained network: what it was built and trained from, and the hash of its
    family's code (:func:`~bench.job._code_hash`). A student's teacher gets the key its own row's job uses, so the
    two share one cached network."""
    job, settings = ctx.job, device_settings(ctx)
    key = {
        "model": model, "params": params, "budget": budget_for(budget, settings, row), "dataset": job.dataset.name,
        "dataset_params": job.dataset.params, "seed": job.seed, "code": _code_hash(greg.get(model).factory),
    }  # fmt: skip
    if settings.get("precision", "fp32") != "fp32":  # fp32 keys stay as they were
        key["precision"] = settings["precision"]
    return key


def _teacher_spec(ctx: JobContext) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """(model, params, cache key) of the job's teacher, None for a row without one."""
    t = ctx.job.gen.teacher
    if t is None:
        return None
    params = {**t["params"], **t["dataset_params"].get(ctx.job.dataset.name, {})}
    return t["model"], params, _model_key(ctx, t["model"], params, t["budget"], t["name"])


def build_model(ctx: JobContext) -> Any:
    """The untrained generator of the job, seeded; held-out reference rows receive the test split."""
    job, ds = ctx.job, ctx.ds
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
    ctx.model_key = _model_key(ctx, job.gen.model, params, job.gen.budget, job.gen.name)
    teacher = _teacher_spec(ctx)
    if teacher is not None:
        if not isinstance(model, Distilled):
            raise TypeError(f"{job.gen.name}: teacher = {job.gen.teacher['name']!r} given, but {job.gen.model} does not learn from a teacher (no set_teacher)")
        ctx.model_key["teacher"] = teacher[2]  # a retrained teacher retrains its students
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


def _load_or_fit(
    ctx: JobContext, model: Any, build: Callable[[], Any], key: dict[str, Any], before_fit: Callable[[Any], None] | None = None
) -> tuple[Any, dict[str, Any], bool]:
    """(model, train report dict, cached?): ``model`` (just built) with the state cached under ``key``, else fitted on
    the train split (``before_fit(model)`` first, e.g. a student receiving its teacher) and cached; a state from
    another code version is dropped and a fresh ``build()`` fitted. Rows sharing a network (ddpm/ddim, a teacher and
    its students) running at once: one trains, the others wait on the lock."""
    with ctx.cache.lock("models", key):
        state = ctx.cache.get("models", key)
        report = ctx.cache.get_json("models", key)
        if state is not None and isinstance(report, dict):
            try:
                model.load_state_dict(state)
                return model, report, True
            except (RuntimeError, KeyError, ValueError, TypeError):  # state from another code version: retrain
                model = build()
        if before_fit is not None:
            before_fit(model)
        seed_everything(ctx.job.seed)
        with autocast(ctx.device, device_settings(ctx).get("precision", "fp32")):
            data = TrainData(ctx.ds.train_x, ctx.ds.info, ctx.ds.train_y, source=getattr(ctx.ds, "train_source", None))
            rep = model.fit(data, Budget(**key["budget"], progress=None if ctx.progress else False)).to_dict()
        ctx.cache.put("models", key, model.state_dict())
        ctx.cache.put_json("models", key, rep)
    return model, rep, False


def _give_teacher(ctx: JobContext, student: Any) -> None:
    """Load (or train and cache, as its own row would) the job's teacher and hand it to ``student``."""
    model, params, key = _teacher_spec(ctx)  # type: ignore[misc]

    def build() -> Any:
        seed_everything(ctx.job.seed)
        return greg.build(model, ctx.ds.info, **params, device=ctx.device)

    teacher, report, _ = _load_or_fit(ctx, build(), build, key)
    student.set_teacher(teacher, train_s=report.get("wall_time_s"))


def train(ctx: JobContext) -> dict[str, Any] | None:
    """Stage 1: build the model and train it (or load its cached state). Returns the ``train_s`` record fields, None if not trainable."""
    model = build_model(ctx)
    if not isinstance(model, Trainable):
        return None
    before = (lambda m: _give_teacher(ctx, m)) if ctx.job.gen.teacher is not None else None
    ctx.model, report, cached = _load_or_fit(ctx, model, lambda: build_model(ctx), ctx.model_key, before)
    return {"value": report.get("wall_time_s"), "extra": {"cached": cached, **_small_report(report)}, "settings": {"budget": ctx.model_key["budget"]}}


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

    sizes = {"train": len(ds.train_x), "test": len(ds.test_x)}
    sources = {which: reference_key(ds.name, job.dataset.params, s, sizes[s]) for which, s in (("real", settings["reference"]), ("train", "train"), ("test", "test"))}
    return EvalContext(
        data_info=ds.info, fake=fake, real=split, extractor=extractor, train=ds.train_x, test=ds.test_x,
        real_labels=split_labels, train_labels=ds.train_y, test_labels=ds.test_y, fake_labels=fake_labels,
        generator=ctx.model, steps=steps, settings=settings, seed=job.seed, device=ctx.device,
        feature_cache=feature_cache(ctx.cache, extractor, {**sources, "fake": samples_key}),
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
