"""The harness: plan -> train -> sample -> measure -> record.

A job is (suite, dataset, generator, seed). It is idempotent: trained
models, samples and features are cached by content hash (``bench/cache.py``)
and every metric is recorded as soon as it is computed (``bench/store.py``),
so a finished job is skipped and an interrupted run resumes where it stopped
with no lost and no duplicated records.
"""

from __future__ import annotations

import inspect
import random
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines import registry as greg
from baselines.protocol import Budget, Trainable, TrainData
from metrics import extractors as freg
from metrics import registry as mreg
from metrics.context import EvalContext

from . import data as dreg
from genbench.cache import Cache, content_hash, file_hash
from .check import require_complete_capabilities
from .provenance import device_description, git_commit, package_versions, resolve_device
from .store import ERROR, JOB_DONE, ResultStore
from .suite import DatasetSpec, GeneratorSpec, Suite, validate_names


class SampleError(ValueError):
    """A generator produced invalid samples (NaN, wrong shape or range)."""


@dataclass(frozen=True)
class Job:
    suite: str
    dataset: DatasetSpec
    gen: GeneratorSpec
    seed: int

    @property
    def id(self) -> str:
        return f"{self.dataset.name}/{self.gen.name}/seed{self.seed}"


@dataclass
class RunSummary:
    planned: int = 0
    skipped: int = 0
    ran: int = 0
    records_added: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    wall_s: float = 0.0


def plan(suite: Suite, seeds: list[int] | None = None) -> list[Job]:
    """All jobs of a suite, in a stable order.

    A generator is planned only on the data kinds it supports (e.g. PixelCNN
    on images, not on 2-D points), as declared when it was registered.
    """
    seeds = list(seeds) if seeds else list(suite.seeds)
    jobs = []
    for d in suite.datasets:
        kind = dreg.load(d.name, **d.params).info.kind
        for g in suite.generators_for(d.name):
            if kind in greg.get(g.model).kinds:
                jobs += [Job(suite.name, d, g, s) for s in seeds]
    return jobs


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def validate_samples(x: torch.Tensor, shape: tuple[int, ...], is_image: bool, who: str) -> torch.Tensor:
    """Clear errors for bad samples instead of failures deep inside a metric."""
    if not isinstance(x, torch.Tensor):
        raise SampleError(f"{who}: sample() returned {type(x).__name__}, expected a torch.Tensor")
    if tuple(x.shape[1:]) != tuple(shape):
        raise SampleError(f"{who}: samples have shape {tuple(x.shape[1:])}, expected {tuple(shape)} per example")
    x = x.detach().float().cpu()
    bad = ~torch.isfinite(x)
    if bad.any():
        raise SampleError(f"{who}: {int(bad.any(dim=tuple(range(1, x.ndim))).sum())} of {len(x)} samples contain NaN/inf")
    if is_image and (x.min() < 0 or x.max() > 1):
        raise SampleError(f"{who}: image samples must be in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
    return x


def _accepts(factory: Any, name: str) -> bool:
    params = inspect.signature(factory).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _code_hash(factory: Any) -> str:
    try:
        return file_hash(inspect.getsourcefile(factory))
    except (TypeError, OSError):
        return "unknown"


class Runner:
    def __init__(self, suite: Suite, *, results_dir: str | Path = "results", device: str | None = "auto", progress: bool = True, save_samples: bool = False) -> None:
        self.suite = suite
        self.save_samples = save_samples
        self.results_dir = Path(results_dir)
        self.store = ResultStore(self.results_dir / suite.name)
        self.cache = Cache(self.results_dir / "cache")
        self.assets = self.results_dir / suite.name / "assets"
        self.device = resolve_device(device)
        self.progress = progress
        self._provenance = {"git_commit": git_commit(), "versions": package_versions(), "device": device_description(self.device)}

    # ------------------------------------------------------------------ public
    def run(self, seeds: list[int] | None = None, executor: str = "local", workers: int = 1) -> RunSummary:
        t0 = time.perf_counter()
        validate_names(self.suite)
        require_complete_capabilities(self.suite)  # half-implemented generators fail here, before any work (bench/check.py)
        jobs = plan(self.suite, seeds)
        summary = RunSummary(planned=len(jobs))
        done = self.store.done_jobs()
        n_before = len(self.store.keys())
        todo = [j for j in jobs if j.id not in done]
        summary.skipped = len(jobs) - len(todo)
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"suite {self.suite.name}", disable=not self.progress, mininterval=1.0)

        def on_done(job_id: str, error: str | None) -> None:
            bar.update(1)
            bar.set_postfix_str(job_id)
            if error is None:
                summary.ran += 1
            else:
                summary.failed.append((job_id, error))

        if executor == "local":
            for job in todo:
                bar.set_postfix_str(job.id)
                try:
                    self.run_job(job)
                    on_done(job.id, None)
                except Exception as e:  # record the failure, keep going with other jobs
                    on_done(job.id, self.record_error(job, e))
        else:
            from .executors import map_jobs

            map_jobs(executor, self.suite.path, [j.id for j in todo], self.results_dir, self.device, workers, on_done)
        bar.close()
        summary.records_added = len(self.store.keys()) - n_before
        summary.wall_s = time.perf_counter() - t0
        return summary

    def record_error(self, job: Job, e: BaseException) -> str:
        """Record a failed job (it is not marked done, so a re-run retries it)."""
        msg = f"{type(e).__name__}: {e}"
        self._append(job, None, ERROR, {"value": None, "extra": {"error": msg, "traceback": traceback.format_exc()[-4000:]}})
        return msg

    # ------------------------------------------------------------------ one job
    def run_job(self, job: Job) -> None:
        ds = dreg.load(job.dataset.name, **job.dataset.params)
        have = self.store.keys()
        entry = greg.get(job.gen.model)
        model, model_key, train_info = self._build_and_train(job, ds, entry)
        if job.gen.sample_params:
            if not callable(getattr(model, "set_sampler", None)):
                raise TypeError(f"{job.gen.name}: sample_params given but {job.gen.model} has no set_sampler()")
            model.set_sampler(**job.gen.sample_params)
        if train_info is not None and (job.id, job.gen.name, "train_s") not in have:
            self._append(job, None, "train_s", train_info)
            if job.seed == min(self.suite.seeds):
                self._latent_figure(job, ds, model)
        extractor = freg.get_extractor(job.dataset.extractor)
        metric_names = [m for m in job.dataset.metrics if job.gen.metrics is None or m in job.gen.metrics]
        for steps in job.gen.steps:
            row = job.gen.row_label(steps)
            todo = [m for m in metric_names if not all((job.id, row, o.name) in have for o in mreg.get_metric(m).outputs)]
            if not todo:
                continue
            fake, fake_labels = self._samples(job, ds, model, model_key, steps)
            if self.save_samples:
                self._keep_samples(job, row, fake, fake_labels, ds.info)
            if job.seed == self.suite.seeds[0] or job.seed == min(self.suite.seeds):
                self._save_grid(job, row, fake, ds.info)
            ctx = self._context(job, ds, model, extractor, fake, fake_labels, steps, model_key)
            for m in todo:
                spec = mreg.get_metric(m)
                if not spec.applies(ctx):
                    for o in spec.outputs:
                        self._append(job, row, o.name, {"value": None, "na": True}, steps=steps)
                    continue
                t0 = time.perf_counter()
                values = spec.fn(ctx)
                dt = time.perf_counter() - t0
                for o in spec.outputs:
                    v = values.get(o.name)
                    if v is None:
                        self._append(job, row, o.name, {"value": None, "na": True}, steps=steps)
                        continue
                    self._append(
                        job, row, o.name,
                        {"value": v.value, "lo": v.interval[0] if v.interval else None, "hi": v.interval[1] if v.interval else None,
                         "settings": v.settings, "extra": v.extra, "metric_s": dt,
                         "n_fake": int(len(fake)), "n_real": v.settings.get("n_real"), "extractor": job.dataset.extractor},
                        steps=steps,
                    )  # fmt: skip
        self._append(job, None, JOB_DONE, {"value": None})

    # ------------------------------------------------------------------ pieces
    def _build_and_train(self, job: Job, ds: dreg.Dataset, entry: greg.Entry):
        params = job.gen.params_for(job.dataset.name)
        hp = dict(params)
        if _accepts(entry.factory, "device"):
            hp["device"] = self.device
        if _accepts(entry.factory, "pool"):
            hp["pool"] = ds.test_x
            if _accepts(entry.factory, "pool_labels"):
                hp["pool_labels"] = ds.test_y
        seed_everything(job.seed)
        model = greg.build(job.gen.model, ds.info, **hp)
        model_key = {
            "model": job.gen.model, "params": params, "budget": job.gen.budget, "dataset": job.dataset.name,
            "dataset_params": job.dataset.params, "seed": job.seed, "code": _code_hash(entry.factory),
        }  # fmt: skip
        if not isinstance(model, Trainable):
            return model, model_key, None
        state = self.cache.get("models", model_key)
        report = self.cache.get_json("models", model_key)
        if state is not None and report is not None:
            model.load_state_dict(state)
            return model, model_key, {"value": report.get("wall_time_s"), "extra": {"cached": True, **_small_report(report)}}
        seed_everything(job.seed)
        budget = Budget(**job.gen.budget)
        rep = model.fit(TrainData(ds.train_x, ds.info, ds.train_y), budget)
        self.cache.put("models", model_key, model.state_dict())
        self.cache.put_json("models", model_key, rep.to_dict())
        return model, model_key, {"value": rep.wall_time_s, "extra": {"cached": False, **_small_report(rep.to_dict())}, "settings": {"budget": job.gen.budget}}

    def _samples(self, job: Job, ds: dreg.Dataset, model, model_key: dict, steps: int | None):
        n = job.dataset.n_fake or len(ds.test_x)
        key = {"model": model_key, "sample_params": job.gen.sample_params, "steps": steps, "n": n, "seed": job.seed}
        cached = self.cache.get("samples", key)
        if cached is not None:
            return cached["x"], cached.get("y")
        info = model.info
        g = torch.Generator().manual_seed(job.seed)
        labels = None
        if info.conditioning in ("class", "text") and ds.info.num_classes:
            labels = torch.arange(n) % ds.info.num_classes
        bs = int(job.dataset.settings.get("sample_batch", 1000))
        from tqdm.auto import tqdm

        if callable(getattr(model, "sample_labeled", None)):  # reference rows carry their real labels
            x, labels = model.sample_labeled(n, generator=g)
        else:
            parts = []
            with torch.no_grad():
                for i in tqdm(range(0, n, bs), desc=f"sample {job.gen.name}", leave=False, disable=not self.progress or n <= bs):
                    lb = labels[i : i + bs] if labels is not None else None
                    parts.append(model.sample(min(bs, n - i), labels=lb, steps=steps, generator=g))
            x = torch.cat(parts)
        x = validate_samples(x, ds.info.shape, ds.info.is_image, f"{job.gen.name} on {ds.name}")
        out = {"x": x} if labels is None else {"x": x, "y": labels}
        self.cache.put("samples", key, out)
        return x, labels

    def _context(self, job, ds, model, extractor, fake, fake_labels, steps, model_key) -> EvalContext:
        n = len(fake)
        samples_key = {"model": model_key, "sample_params": job.gen.sample_params, "steps": steps, "n": n, "seed": job.seed}
        settings = {"reference": "train", **job.dataset.settings}
        split = {"train": ds.train_x, "test": ds.test_x}[settings["reference"]]
        split_labels = {"train": ds.train_y, "test": ds.test_y}[settings["reference"]]

        def feature_cache(which: str, kind: str, compute):
            base = samples_key if which == "fake" else {"dataset": ds.name, "params": job.dataset.params, "split": which if which != "real" else settings["reference"]}
            key = {"of": base, "kind": kind, "extractor": extractor.name, "weights": extractor.weights_hash}
            return self.cache.cached("features", key, compute)

        return EvalContext(
            data_info=ds.info, fake=fake, real=split, extractor=extractor, train=ds.train_x, test=ds.test_x,
            real_labels=split_labels, train_labels=ds.train_y, test_labels=ds.test_y, fake_labels=fake_labels,
            generator=model, steps=steps, settings=settings, seed=job.seed, device=self.device, feature_cache=feature_cache,
        )  # fmt: skip

    def _latent_figure(self, job: Job, ds: dreg.Dataset, model) -> None:
        """The seeds' latent-space arithmetic figure, for any model that can encode and decode labelled digits."""
        if not (callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None))):
            return
        if not ds.info.is_image or ds.train_y is None or ds.info.num_classes != 10:
            return
        from .figures import vae_latent_figure

        vae_latent_figure(model, ds, self.assets / f"{job.dataset.name}__{job.gen.name}_latent-arithmetic.png")

    def _save_grid(self, job: Job, row: str, x: torch.Tensor, info) -> None:
        from .plots import save_sample_grid

        safe = row.replace("/", "_").replace("@", "_at")
        save_sample_grid(x, info, self.assets / f"{job.dataset.name}__{safe}.png", title=f"{row} on {job.dataset.name}")

    def _keep_samples(self, job: Job, row: str, x: torch.Tensor, labels: torch.Tensor | None, info) -> None:
        """``--save-samples``: RESULTS/SUITE/samples/DATASET__ROW__seedS.npz (x float32 as sampled; y labels if any) and .png grid."""
        from .plots import save_sample_grid

        stem = self.results_dir / self.suite.name / "samples" / f"{job.dataset.name}__{row.replace('/', '_')}__seed{job.seed}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"x": x.numpy()} if labels is None else {"x": x.numpy(), "y": labels.numpy()}
        np.savez_compressed(stem.with_name(stem.name + ".npz"), **arrays)
        save_sample_grid(x, info, stem.with_name(stem.name + ".png"), title=f"{row} on {job.dataset.name}, seed {job.seed}")

    def _append(self, job: Job, row: str | None, metric: str, fields: dict[str, Any], steps: int | None = None) -> None:
        rec = {
            "suite": self.suite.name, "job": job.id, "dataset": job.dataset.name, "generator": row or job.gen.name,
            "base": job.gen.name, "model": job.gen.model, "seed": job.seed, "steps": steps, "metric": metric,
            "config_hash": content_hash({"gen": job.gen.__dict__, "dataset": job.dataset.__dict__}), "timestamp": time.time(),
            **self._provenance, **fields,
        }  # fmt: skip
        self.store.append(rec)


def _small_report(rep: dict) -> dict:
    """Train report for the store: loss curves subsampled to <= 200 points."""
    losses = {}
    for k, v in (rep.get("losses") or {}).items():
        v = list(v)
        stride = max(1, len(v) // 200)
        losses[k] = v[::stride]
    return {"steps": rep.get("steps"), "losses": losses, "train_extra": rep.get("extra", {})}


def run_suite(
    suite: Suite,
    *,
    seeds: list[int] | None = None,
    results_dir: str | Path = "results",
    device: str | None = "auto",
    progress: bool = True,
    executor: str = "local",
    workers: int = 1,
    save_samples: bool = False,
) -> RunSummary:
    """Run (or resume) every job of ``suite``; returns what was done.

    ``executor``: ``local`` (this process), ``process`` (``workers`` local
    processes) or ``ray`` (optional extra). ``save_samples`` keeps every
    job's samples as ``.npz`` and a PNG grid (local executor).
    """
    if suite.experiment:
        from .experiments import run_experiment

        return run_experiment(suite, seeds=seeds, results_dir=Path(results_dir), device=resolve_device(device), progress=progress)
    return Runner(suite, results_dir=results_dir, device=device, progress=progress, save_samples=save_samples).run(seeds, executor=executor, workers=workers)
