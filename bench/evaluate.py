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
(``genbench.cache``) under ``default_cache_dir()/eval/features/`` with a key
of (data set, params, split, extractor name, weights hash, N, kind)
(:func:`reference_key`), so a second evaluation against the same data set only
extracts the samples' features; a damaged entry is reported and recomputed.
Metrics run through the pipeline's ``measure`` stage, as in ``bench run``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genbench.cache import Cache, default_cache_dir
from metrics import registry as mreg
from metrics.context import EvalContext
from metrics.extractors import get_extractor
from metrics.registry import MetricValue

from . import data as dreg
from .data import DataError
from .pipeline import measure

__all__ = ["run_eval", "format_eval", "default_extractor", "load_samples"]

# metrics that need a generator object; samples from files have none
_GENERATOR_METRICS = ("nll", "latency", "latency_b1")


def default_extractor(info: Any) -> str:
    """The extractor a data set is scored with by default: ``raw`` for 2-D points,
    ``digits-cnn`` for 8x8 digits; for other images ``effnet-lite0`` (ImageNet-1k, offline)
    when the ``imagenet`` extra is installed, else ``inception-v3-compat`` (whose weights
    must be downloaded or given with ``--extractor-weights``; its error says how)."""
    if info.kind == "points":
        return "raw"
    if tuple(info.shape[1:]) == (8, 8):
        return "digits-cnn"
    from metrics.extractors.effnet import is_installed

    return "effnet-lite0" if is_installed() else "inception-v3-compat"


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


def _min_samples(names: list[str], settings: dict) -> dict[str, int]:
    """Smallest N each requested k-NN metric needs."""
    need = {}
    if "prdc" in names:
        need["prdc"] = max(int(settings.get("k_prc", 3)), 1) + 1
    if "kid" in names or "fid" in names:
        need["fid/kid"] = 2
    if "is" in names:
        need["is"] = int(settings.get("is_splits", 10))
    return need


def reference_key(dataset: str, params: dict, split: str, extractor: Any, n: int, kind: str) -> dict[str, Any]:
    """The artifact-cache key of a reference feature set: data set (+ params), split, extractor name and weights hash, N, kind."""
    return {"dataset": dataset, "params": params, "split": split, "extractor": extractor.name, "weights": extractor.weights_hash, "n": n, "kind": kind}


def _ref_cache(cache: Cache, dataset: str, params: dict, extractor: Any, reference: str, sizes: dict[str, int]) -> Callable[..., Tensor]:
    """feature_cache for EvalContext: real splits in the checksummed artifact cache (with mean and covariance), samples in memory only."""

    def feature_cache(which: str, kind: str, compute: Callable[[], Tensor]) -> Tensor:
        if which not in ("real", "train", "test"):
            return compute()
        split = reference if which == "real" else which
        key = reference_key(dataset, params, split, extractor, sizes[split], kind)

        def build() -> dict[str, Any]:
            t = compute()
            blob: dict[str, Any] = {"values": t, "n": sizes[split]}
            if kind == "features" and t.ndim == 2 and len(t) > 1:
                f = t.double()
                blob["mu"], blob["sigma"] = f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])
            return blob

        def check(blob: Any) -> None:
            if not isinstance(blob, dict) or blob.get("n") != sizes[split] or len(blob.get("values", ())) != sizes[split]:
                raise ValueError(f"cached reference features do not hold {sizes[split]} rows")

        return cache.cached("features", key, build, validate=check)["values"]

    return feature_cache


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
) -> dict[str, MetricValue]:
    """Score ``samples`` against data set ``dataset``; returns {record name: MetricValue}.

    Args:
        samples: folder of PNG/JPEG images, a ``.npz`` (uint8 0-255 or float
            [0, 1]; NCHW, NHWC or NHW), or an array/tensor.
        dataset: a registered data set name (``bench list datasets``).
        extractor: feature extractor (default: :func:`default_extractor`).
        extractor_weights: local weights file for the extractor.
        metrics: metric names (``bench list metrics``); default: every panel
            metric that applies to samples without a generator object. A
            requested metric that does not apply is returned as NaN with
            ``settings["na"]`` saying why.
        seed: seed for KID subsets, IS shuffling and bootstrap.
        cache_dir: where reference features are cached (default
            ``metrics.features.default_cache_dir() / "eval"``).
        reference: split the distribution metrics compare with: ``train``
            (default, as in the suites) or ``test``.
        settings: metric settings (k_prc, k_dc, kid_subsets, bootstrap, ...).
        npz_key: the array to score when ``samples`` is a ``.npz`` holding several.
    """
    if reference not in ("train", "test"):
        raise ValueError(f"reference must be 'train' or 'test', got {reference!r}")
    ds = dreg.load(dataset, **(dataset_params or {}))
    info = ds.info
    source = str(samples) if isinstance(samples, (str, Path)) else "samples"
    x = _check_samples(load_samples(samples, npz_key), info, source)
    ext_name = extractor or default_extractor(info)
    ext = get_extractor(ext_name, **({"weights": extractor_weights} if extractor_weights else {}))
    settings = {"reference": reference, **(settings or {})}

    all_metrics = mreg.available()
    if metrics is None:
        names = [m for m in all_metrics if m not in _GENERATOR_METRICS]
        explicit = False
    else:
        names = list(dict.fromkeys(metrics))
        for m in names:
            mreg.get_metric(m)  # KeyError listing the valid names
        explicit = True
    for metric, n_min in _min_samples(names, settings).items():
        if len(x) < n_min:
            raise DataError(f"{source}: {len(x)} samples is too few for {metric} (needs at least {n_min}; k-NN metrics need k+1)")

    real = ds.train_x if reference == "train" else ds.test_x
    real_labels = ds.train_y if reference == "train" else ds.test_y
    sizes = {"train": len(ds.train_x), "test": len(ds.test_x)}
    cache = Cache(Path(cache_dir) if cache_dir else default_cache_dir() / "eval")
    ctx = EvalContext(
        data_info=info, fake=x, real=real, extractor=ext, train=ds.train_x, test=ds.test_x, real_labels=real_labels,
        train_labels=ds.train_y, test_labels=ds.test_y, fake_labels=None, generator=None, settings=settings, seed=seed,
        feature_cache=_ref_cache(cache, dataset, dataset_params or {}, ext, reference, sizes),
    )  # fmt: skip
    results: dict[str, MetricValue] = {}
    for res in measure(ctx, names):  # the pipeline's measure stage, as in bench run
        if res.values is None:
            if explicit:
                for o in res.spec.outputs:
                    results[o.name] = MetricValue(
                        math.nan, None, {"na": f"{res.spec.name} does not apply to {dataset} with {ext.name} and no generator"}
                    )
            continue
        for o in res.spec.outputs:
            if o.name in res.values:
                v = res.values[o.name]
                v.settings.setdefault("dataset", dataset)
                results[o.name] = v
    return results


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, int) or float(v).is_integer() and abs(v) < 1e6:
        return f"{v:g}"
    a = abs(v)
    return f"{v:.4g}" if a < 1e4 else f"{v:.3e}"


def format_eval(results: dict[str, MetricValue]) -> str:
    """A plain-text table of :func:`run_eval` results: metric, value, interval, protocol."""
    outputs = mreg.all_outputs()
    rows = []
    header_bits: dict[str, str] = {}
    for name, v in results.items():
        o = outputs.get(name)
        s = v.settings or {}
        label = o.label if o else name
        if o is not None and o.per_extractor and s.get("extractor"):
            label = f"{label}[{s['extractor']}]"
        arrow = {"min": "↓", "max": "↑"}.get(o.direction if o else None, "")
        interval = f"[{_fmt(v.interval[0])}, {_fmt(v.interval[1])}]" if v.interval else ""
        proto = []
        for key in ("n_fake", "n_real", "k", "subsets", "subset_size", "splits", "copy_ratio", "bootstrap"):
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
                header_bits[key] = str(s[key])
    head = "  ".join(f"{k}: {v}" for k, v in header_bits.items())
    cols = ("metric", "value", "interval", "protocol")
    widths = [max(len(cols[i]), *(len(r[i]) for r in rows)) if rows else len(cols[i]) for i in range(4)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    out = [head] if head else []
    out += [line(cols), line(tuple("-" * w for w in widths))]
    out += [line(r) for r in rows]
    return "\n".join(out)
