"""``bench eval``: score samples made elsewhere against a data set.

    from bench.evaluate import run_eval, format_eval
    res = run_eval("my_samples/", "digits")              # folder of PNGs, or a .npz
    print(format_eval(res))

The samples are validated (readable, finite, in range, the data set's shape,
enough of them for the k-NN metrics) and scored with the same metric panel as
``bench run``: the distribution metrics (FID, KID, precision/recall,
density/coverage, IS) against the data set's reference split — the train
split by default, as in the suites, so that the held-out test split written
out as images scores like the leaderboards' ``data`` row — plus memorization
(train split, with the test split as the unseen-data level), class-histogram
KL and mode collapse where they apply.

Reference features are checksummed artifacts of the project's cache
(``genbench.cache``) under ``default_cache_dir()/eval/features/``, cached by
the pipeline's feature cache (:func:`bench.measure.feature_cache`) with a key
of (data set, params, split, N; kind, extractor name, weights hash), so a
second evaluation against the same data set only extracts the samples'
features; a damaged entry is reported and recomputed. Metrics run through the
pipeline's ``measure`` stage, as in ``bench run``.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genbench.cache import Cache, default_cache_dir
from metrics import extractors as freg
from metrics import registry as mreg
from metrics.context import EvalContext
from metrics.registry import ARROWS, MetricValue

from . import data as dreg
from .data import DataError
from .measure import Measurement, feature_cache, measure, reference_key
from .stages import load_extractor

__all__ = ["run_eval", "format_eval", "default_extractor", "load_samples", "EvalValues"]

# metrics that need a generator object; samples from files have none
_GENERATOR_METRICS = ("nll", "latency", "latency_b1")


def default_extractor(info: Any, dataset: str | None = None) -> str:
    """The extractor a data set is scored with by default: the one ``dataset`` was registered with (every
    embedded data set has one whose weights ship: ``bench list datasets``), else by shape: ``raw`` for 2-D
    points, ``digits-cnn`` for 8x8 digits, ``inception-v3-compat`` for other images."""
    return dreg.default_extractor(dataset if dataset is not None else getattr(info, "name", None), info)


class EvalValues(dict):
    """What :func:`run_eval` returns: ``{record name: MetricValue}`` (a dict), plus

    * ``notes``: warnings about the evaluation as a whole (samples off the data's intensity levels, N
      below the size the leaderboards use ...), printed under the table;
    * ``requested_na``: metrics the caller named explicitly that came out n/a (the CLI's exit code);
    * ``extractor``: the extractor's name, and ``extractor_error`` the reason it could not load (or None).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[str] = []
        self.requested_na: list[str] = []
        self.extractor: str | None = None
        self.extractor_error: str | None = None


def load_samples(samples: str | Path | Tensor | np.ndarray, npz_key: str | None = None) -> Tensor:
    """A folder of images, a ``.npz`` file (``npz_key`` picks one of several arrays), or an array -> validated float32 tensor."""
    if isinstance(samples, (Tensor, np.ndarray)):
        a = samples.detach().cpu().numpy() if isinstance(samples, Tensor) else samples
        if a.ndim == 2:
            return dreg.validate_points(a, "samples")
        return dreg.validate_images(a, "samples")
    p = Path(samples)
    if p.is_dir():
        return dreg.load_image_folder(p)
    if p.suffix == ".npz":
        return dreg.load_npz(p, npz_key)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    raise DataError(f"{p}: expected a folder of images or a .npz file")


def _check_samples(x: Tensor, info: Any, source: str) -> Tensor:
    if info.kind == "points":
        if x.ndim != 2 or tuple(x.shape[1:]) != tuple(info.shape):
            raise DataError(
                f"{source}: samples have shape {tuple(x.shape[1:])}, data set {info.name} has points of shape {tuple(info.shape)}"
            )
    else:
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(info.shape):
            raise DataError(
                f"{source}: samples have shape {tuple(x.shape[1:])} (C, H, W), data set {info.name} has images of shape {tuple(info.shape)}"
            )
        if x.min() < 0 or x.max() > 1:
            raise DataError(f"{source}: images must be in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
    if not torch.isfinite(x).all():
        raise DataError(f"{source}: samples contain NaN or inf")
    return x


def _min_samples(names: list[str], settings: dict) -> dict[str, tuple[int, str]]:
    """Smallest N each requested k-NN / split metric needs, and why."""
    need = {}
    if "prdc" in names:
        k = max(int(settings.get("k_prc", 3)), int(settings.get("k_dc", 5)), 1)
        need["prdc"] = (k + 1, f"k-NN radii with k = {k} need k + 1 samples")
    for m in ("fid", "kid"):
        if m in names:
            need[m] = (2, "a covariance / an unbiased MMD needs at least 2 samples")
    if "is" in names:
        splits = int(settings.get("is_splits", 10))
        need["is"] = (splits, f"{splits} splits need at least {splits} samples")
    return need


def _level_note(x: Tensor, info: Any) -> str | None:
    """A note when image samples are not on the data's K intensity levels (the data always are)."""
    k = int(getattr(info, "levels", 0) or 0)
    if info.kind == "points" or k < 2 or x.numel() == 0:
        return None
    scaled = x.double() * (k - 1)
    tol = max(1e-3, (k - 1) / 255 / 2 + 1e-6) if k < 256 else 1e-3  # 8-bit files of K-level data stay on the grid
    off = float(((scaled - scaled.round()).abs() > tol).double().mean())
    if off <= 0.01:
        return None
    return (
        f"{100 * off:.0f}% of pixel values are off the data's K = {k} intensity levels (x = j/{k - 1}); real {info.name} images never are, "
        f"and the extractor sees the difference: quantize the samples first (round(x * {k - 1}) / {k - 1}) to score what the model draws"
    )


def run_eval(
    samples: str | Path | Tensor | np.ndarray,
    dataset: str,
    extractor: str | None = None,
    extractor_weights: str | None = None,
    metrics: list[str] | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    reference: str = "train",
    settings: dict | None = None,
    dataset_params: dict | None = None,
    npz_key: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
) -> EvalValues:
    """Score ``samples`` against data set ``dataset``; returns {record name: MetricValue} (an :class:`EvalValues`).

    Each metric fails alone: one whose precondition fails (FLS without held-out
    test points, a k-NN metric with too few samples, an extractor that cannot
    load) is returned as NaN with ``settings["na"]`` saying why, and every other
    metric is computed.

    Args:
        samples: folder of PNG/JPEG images, a ``.npz`` (uint8 0-255 or float
            [0, 1]; NCHW, NHWC or NHW), or an array/tensor.
        dataset: a registered data set name (``bench list datasets``).
        extractor: feature extractor (default: the data set's, :func:`default_extractor`).
        extractor_weights: local weights file for the extractor.
        metrics: metric names (``bench list metrics``); default: every panel
            metric that applies to samples without a generator object. A
            requested metric that does not apply is returned as NaN with
            ``settings["na"]`` saying why (and listed in ``requested_na``).
        seed: seed for KID subsets, IS shuffling and bootstrap.
        cache_dir: where reference features are cached (default
            ``metrics.features.default_cache_dir() / "eval"``).
        reference: split the distribution metrics compare with: ``train``
            (default, as in the suites) or ``test``.
        settings: metric settings (k_prc, k_dc, kid_subsets, bootstrap, ...).
        npz_key: the array to score when ``samples`` is a ``.npz`` holding several.
        device: where the extractor runs (``cpu``, ``cuda`` ...; default: its own choice).
        batch_size: samples per extractor forward pass (default 1024).
    """
    if reference not in ("train", "test"):
        raise ValueError(f"reference must be 'train' or 'test', got {reference!r}")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ds = dreg.load(dataset, **(dataset_params or {}))
    info = ds.info
    source = str(samples) if isinstance(samples, (str, Path)) else "samples"
    x = _check_samples(load_samples(samples, npz_key), info, source)
    ext_name = extractor or default_extractor(info, dataset)
    freg.EXTRACTORS.get(ext_name)  # an unknown name is a usage error (KeyError listing the valid ones), not an n/a
    kwargs: dict[str, Any] = {"weights": extractor_weights} if extractor_weights else {}
    if device is not None:
        try:
            accepts = set(inspect.signature(freg.EXTRACTORS.load(ext_name)).parameters)
        except (TypeError, ValueError, freg.ExtractorError):
            accepts = set()
        if "device" in accepts:
            kwargs["device"] = device
    ext = load_extractor(ext_name, info, **kwargs)
    settings = {"reference": reference, **(settings or {})}
    if batch_size is not None:
        settings["feature_batch"] = int(batch_size)

    all_metrics = mreg.available()
    if metrics is None:
        names = [m for m in all_metrics if m not in _GENERATOR_METRICS]
        explicit = False
    else:
        names = list(dict.fromkeys(metrics))
        for m in names:
            mreg.get_metric(m)  # KeyError listing the valid names
        explicit = True
    too_few = {m: f"{len(x)} samples is too few for {m}: {why}" for m, (n_min, why) in _min_samples(names, settings).items() if len(x) < n_min}

    real = ds.train_x if reference == "train" else ds.test_x
    real_labels = ds.train_y if reference == "train" else ds.test_y
    sizes = {"train": len(ds.train_x), "test": len(ds.test_x)}
    cache = Cache(Path(cache_dir) if cache_dir else default_cache_dir() / "eval")
    ctx = EvalContext(
        data_info=info, fake=x, real=real, extractor=ext, train=ds.train_x, test=ds.test_x, real_labels=real_labels,
        train_labels=ds.train_y, test_labels=ds.test_y, fake_labels=None, generator=None, settings=settings, seed=seed,
        device=device or "cpu", feature_cache=feature_cache(cache, ext, {which: reference_key(dataset, dataset_params or {}, split, sizes[split])
                                                              for which, split in (("real", reference), ("train", "train"), ("test", "test"))}),
    )  # fmt: skip
    results = EvalValues()
    results.extractor = ext.name
    if isinstance(ext, freg.UnavailableExtractor):
        results.extractor_error = ext.reason
    measured = measure(ctx, [m for m in names if m not in too_few])  # the pipeline's measure stage, as in bench run
    measured += [Measurement(mreg.get_metric(m), None, reason=why, error=True) for m, why in too_few.items()]
    order = {m: i for i, m in enumerate(names)}
    for res in sorted(measured, key=lambda r: order[r.spec.name]):
        if res.values is None:
            if res.error or explicit:  # a metric that failed is always shown; one that does not apply only when asked for
                for o in res.spec.outputs:
                    results[o.name] = MetricValue(math.nan, None, {"na": res.reason or f"{res.spec.name} does not apply", "dataset": dataset})
                if explicit:
                    results.requested_na.append(res.spec.name)
            continue
        for o in res.spec.outputs:
            if o.name in res.values:
                v = res.values[o.name]
                v.settings.setdefault("dataset", dataset)
                results[o.name] = v
    note = _level_note(x, info)
    if note:
        results.notes.append(note)
    n_test = len(ds.test_x)
    if info.kind != "points" and len(x) < n_test:
        results.notes.append(
            f"N = {len(x)} samples, fewer than the {n_test} of the test split (the N the leaderboards use for {dataset}): FID is biased "
            f"upward at small N and KID, precision/recall and coverage move with N; compare numbers only at equal N"
        )
    if results.extractor_error:
        results.notes.append(f"extractor {ext.name} could not load, so the metrics that need its features are n/a: {results.extractor_error}")
    return results


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, int) or float(v).is_integer() and abs(v) < 1e6:
        return f"{v:g}"
    a = abs(v)
    return f"{v:.4g}" if a < 1e4 else f"{v:.3e}"


def format_eval(results: dict[str, MetricValue]) -> str:
    """A plain-text table of :func:`run_eval` results: metric, value, interval, protocol; then the notes
    (:class:`EvalValues`) about the evaluation as a whole."""
    outputs = mreg.all_outputs()
    rows = []
    header_bits: dict[str, str] = {}
    for name, v in results.items():
        o = outputs.get(name)
        s = v.settings or {}
        label = o.label if o else name
        if o is not None and o.per_extractor and s.get("extractor"):
            label = f"{label}[{s['extractor']}]"
        arrow = ARROWS.get(o.direction if o else None, "")
        interval = f"[{_fmt(v.interval[0])}, {_fmt(v.interval[1])}]" if v.interval else ""
        proto = []
        for key in ("n_fake", "n_real", "k", "subsets", "subset_size", "splits", "copy_ratio", "bootstrap", "scale"):
            if key in s and s[key] is not None:
                proto.append(f"{key}={_fmt(s[key]) if isinstance(s[key], float) else s[key]}")
        if "na" in s:
            proto.append(s["na"])
        if "warning" in (v.extra or {}):
            proto.append("WARNING: " + v.extra["warning"])
        rows.append((f"{label} {arrow}".strip(), _fmt(v.value), interval, " ".join(proto)))
        if s.get("extractor") and "extractor" not in header_bits:
            header_bits["extractor"] = f"{s['extractor']} (weights {s.get('weights_hash', '?')})"
        for key in ("dataset", "reference"):
            if s.get(key) and key not in header_bits:
                header_bits[key] = str(s[key]).split(" (")[0]
    ext = getattr(results, "extractor", None)
    if ext and "extractor" not in header_bits:
        header_bits["extractor"] = f"{ext} (could not load)" if getattr(results, "extractor_error", None) else ext
    head = "  ".join(f"{k}: {v}" for k, v in header_bits.items())
    cols = ("metric", "value", "interval", "protocol")
    widths = [max(len(cols[i]), *(len(r[i]) for r in rows)) if rows else len(cols[i]) for i in range(4)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    out = [head] if head else []
    out += [line(cols), line(tuple("-" * w for w in widths))]
    out += [line(r) for r in rows]
    if any(r[1] == "n/a" for r in rows):
        out.append("n/a: the metric's reason is in its protocol column; the other metrics are unaffected")
    out += [f"note: {n}" for n in getattr(results, "notes", ())]
    return "\n".join(out)
