"""From features to records, the one path of every evaluation: the feature cache of an evaluation context
(:func:`feature_cache`, keyed by :func:`feature_key`), the measure stage (run the requested metrics; each fails
alone: n/a with its reason, or retried by the next run when an extractor could not load) and the record stage
(values to records with the registration's label, direction and unit). ``bench run``, ``bench eval``, the Python
API and ``bench fid`` all measure here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genbench.cache import Cache
from metrics import extractors as freg
from metrics import registry as mreg
from metrics.context import EvalContext
from metrics.registry import MetricSpec, MetricValue

from .job import JobContext
from .suite import qualified

_log = logging.getLogger("genbench.metrics")


# ----------------------------------------------------------------------------- features
def reference_key(dataset: str, params: dict[str, Any], split: str, n: int) -> dict[str, Any]:
    """What identifies a data set's split as a source of features: the data set (and its parameters), the split, its N."""
    return {"dataset": dataset, "params": params, "split": split, "n": n}


def feature_key(source: dict[str, Any], kind: str, extractor: Any) -> dict[str, Any]:
    """The artifact-cache key of one feature set: what it was computed from (:func:`reference_key`, a samples key,
    a content hash), its kind (``features``, ``logits``, ``spatial:...``), the extractor's name and weights hash."""
    return {"source": source, "kind": kind, "extractor": extractor.name, "weights": extractor.weights_hash}


def feature_cache(cache: Cache, extractor: Any, sources: Mapping[str, dict[str, Any] | None]) -> Callable[[str, str, Callable[[], Tensor]], Tensor]:
    """The ``feature_cache`` of an :class:`~metrics.context.EvalContext`: the feature sets of ``sources`` (a set
    name, ``fake``, ``real``, ``train`` or ``test``, to its source key; a set absent or None is computed and not
    cached) are kept in ``cache`` under :func:`feature_key` as checksummed artifacts holding the values, their row
    count ``n`` and, for 2-D features, their mean ``mu`` and covariance ``sigma`` (float64)."""

    def cached(which: str, kind: str, compute: Callable[[], Tensor]) -> Tensor:
        source = sources.get(which)
        if source is None:
            return compute()

        def build() -> dict[str, Any]:
            t = compute()
            blob: dict[str, Any] = {"values": t, "n": len(t)}
            if kind == "features" and t.ndim == 2 and len(t) > 1:
                f = t.double()
                blob["mu"], blob["sigma"] = f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])
            return blob

        def check(blob: Any) -> None:
            if not isinstance(blob, dict) or "values" not in blob or blob.get("n") != len(blob["values"]):
                raise ValueError("cached features do not hold the rows they say")

        return cache.cached("features", feature_key(source, kind, extractor), build, validate=check)["values"]

    return cached


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
