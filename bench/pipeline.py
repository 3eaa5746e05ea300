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

Where things are: the job, its hashes and context in ``bench/job.py``; the
stages up to the features in ``bench/stages.py``; measure and record in
``bench/measure.py``; sample grids and figures in ``bench/artifacts.py``. This
module runs them in order (:func:`run_job`) and re-exports their public names.
"""


from __future__ import annotations

import traceback

from metrics import registry as mreg

from .artifacts import _latent_figure, _save_grid, _save_samples
from .job import Job, JobContext, RunSummary, SampleError, _code_hash, provenance, seed_everything, validate_samples
from .measure import Measurement, MetricsIncomplete, measure, record
from .stages import build_model, choose_sampler, features, load_data, load_extractor, offline_hint, sample, train
from .store import ERROR, JOB_DONE, _config_hash
from .suite import metric_names, qualified

__all__ = [
    "MetricsIncomplete", "load_extractor", "offline_hint",
    "Job", "JobContext", "Measurement", "RunSummary", "SampleError", "load_data", "train", "sample", "features", "measure",
    "record", "run_job", "error_record", "validate_samples", "seed_everything", "provenance", "choose_sampler", "build_model",
    "metric_names", "_code_hash", "_config_hash",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------- the job
def run_job(ctx: JobContext) -> None:
    """All stages of one job; records already present (``ctx.have``) are not recomputed. Ends with the job-done marker."""
    job = ctx.job
    timing = mreg.timing_metrics()  # latency/cost: measured by the timing phase after all jobs
    names = [m for m in metric_names(job) if m not in timing]
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
