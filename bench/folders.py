"""``bench fid``: score a folder (or ``.npz``) of samples against a folder (or ``.npz``) of reference images.

The command researchers know from pytorch-fid (``python -m pytorch_fid dir1 dir2``)
and clean-fid (``fid.compute_fid(dir1, dir2)``), with any registered extractor::

    bench fid samples/ reference/ --extractor effnet-lite0        # FID, KID, PRDC
    bench fid samples.npz reference/ --metrics fid

    from bench.folders import score_sets                      # also genbench.score_sets
    res = score_sets("samples/", "reference/", extractor="effnet-lite0")
    res["fid"].value

The metrics are the panel's own (the pipeline's ``measure`` stage, as in
``bench eval`` and ``bench run``), so the numbers equal :func:`genbench.evaluate`'s
on the same arrays with the same extractor.

Images of mixed sizes or modes: **within one set**, every image must have the
size and the mode (grey or RGB) of the first; the first file that differs is
named in the error (no silent resize or conversion). **Between the two sets**,
sizes may differ (each set is resized by the extractor to its input, e.g. 224 x
224 for ``effnet-lite0``; extractors of a fixed size, such as ``digits-cnn``,
refuse other sizes with a message), and a grey set scored against an RGB set
is replicated to three channels (PIL's ``convert("RGB")``).

Reference features are cached by content: the key is the sha256 of the loaded
reference tensor (float32 NCHW in [0, 1]), the extractor name and weights hash,
and the kind (features or logits), under ``default_cache_dir()/fid/``; renaming
or moving the folder, or giving the same images as a ``.npz``, reuses them.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from torch import Tensor

from genbench.cache import Cache, default_cache_dir
from genbench.protocol import DataInfo
from metrics import extractors as freg
from metrics import registry as mreg
from metrics.context import EvalContext
from metrics.extractors import get_extractor
from metrics.registry import MetricValue

from .data import DataError
from .evaluate import _min_samples, default_extractor, format_eval, load_samples
from .measure import feature_cache, measure

__all__ = ["score_sets", "content_key", "DEFAULT_METRICS", "add_parser", "cmd_fid"]

DEFAULT_METRICS = ("fid", "kid", "prdc")
_NEEDS_SPLITS = ("memorization", "ct", "fls", "authpct", "class_kl", "class_acc", "nll", "latency", "latency_b1")


def content_key(x: Tensor) -> str:
    """sha256 of a tensor's shape, dtype and bytes: the identity of a reference set, whatever file it came from."""
    h = hashlib.sha256(f"{tuple(x.shape)}|{x.dtype}".encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _load(src: Any, npz_key: str | None, what: str) -> Tensor:
    if isinstance(src, (str, Path)):
        p = Path(src)
        if not p.exists():
            raise DataError(f"{what} {p}: no such file or folder")
    x = load_samples(src, npz_key)
    if x.ndim != 4:
        raise DataError(f"{what}: expected images, got an array of shape {tuple(x.shape)}")
    return x


def _match_channels(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Grey against RGB: the grey set is replicated to three channels."""
    if a.shape[1] == 1 and b.shape[1] == 3:
        a = a.expand(-1, 3, -1, -1).contiguous()
    elif a.shape[1] == 3 and b.shape[1] == 1:
        b = b.expand(-1, 3, -1, -1).contiguous()
    return a, b


def score_sets(
    samples: str | Path | Tensor | np.ndarray,
    reference: str | Path | Tensor | np.ndarray,
    *,
    extractor: str | None = None,
    extractor_weights: str | None = None,
    metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS,
    seed: int = 0,
    settings: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    npz_key: str | None = None,
    reference_npz_key: str | None = None,
) -> dict[str, MetricValue]:
    """Score ``samples`` against ``reference``: {output name: MetricValue} (``fid``, ``kid``, ``precision`` ...).

    Args:
        samples, reference: a folder of PNG/JPEG images, a ``.npz`` (uint8 0-255
            or float [0, 1]) or an array/tensor of images (see the module
            docstring for mixed sizes and modes).
        extractor: any registered extractor (``bench list extractors``); default
            as ``bench eval`` picks it from the image shape (``digits-cnn`` for
            8x8, else ``effnet-lite0`` with the ``imagenet`` extra, else
            ``inception-v3-compat``).
        extractor_weights: a local weights file for the extractor.
        metrics: panel metrics that need no train/test split or labels (fid,
            kid, prdc, is, fd_inf, sw, vendi ...); default FID, KID and PRDC.
        seed: seed of KID subsets, IS shuffling, bootstrap.
        settings: metric settings (``k_prc``, ``kid_subsets``, ``bootstrap`` ...).
        cache_dir: where reference features are cached (default ``default_cache_dir()/fid``).
        npz_key, reference_npz_key: the array to read from a ``.npz`` holding several.

    Raises ``DataError`` (a ``ValueError``) naming the file or set that cannot
    be read or scored, ``KeyError`` for unknown metric or extractor names.
    """
    names = list(dict.fromkeys(metrics))
    for m in names:
        mreg.get_metric(m)  # KeyError listing the valid names
        if m in _NEEDS_SPLITS:
            raise DataError(f"metric {m!r} needs a data set's train/test splits or labels; use bench eval --dataset for it")
    x = _load(samples, npz_key, "samples")
    ref = _load(reference, reference_npz_key, "reference")
    x, ref = _match_channels(x, ref)
    for what, t in (("samples", x), ("reference", ref)):
        if len(t) < 2:
            raise DataError(f"{what}: {len(t)} image(s); FID and KID need at least 2 in each set")
    for metric, (n_min, why) in _min_samples(names, settings or {}).items():
        if len(x) < n_min:
            raise DataError(f"samples: {len(x)} images is too few for {metric} (needs at least {n_min}: {why})")
    ref_source = f"{reference}, {len(ref)} images" if isinstance(reference, (str, Path)) else f"array of {len(ref)} images"
    ext_name = extractor or default_extractor(SimpleNamespace(kind="image", shape=tuple(ref.shape[1:])))
    ext = get_extractor(ext_name, **({"weights": extractor_weights} if extractor_weights else {}))
    info = DataInfo(name="reference", shape=tuple(ref.shape[1:]), kind="image", levels=256)
    cache = Cache(Path(cache_dir) if cache_dir else default_cache_dir() / "fid")
    ctx = EvalContext(
        data_info=info, fake=x, real=ref, extractor=ext, settings=dict(settings or {}), seed=seed,
        feature_cache=feature_cache(cache, ext, {"real": {"content": content_key(ref)}}),
    )  # fmt: skip
    results: dict[str, MetricValue] = {}
    for res in measure(ctx, names):
        if res.values is None:
            for o in res.spec.outputs:
                results[o.name] = MetricValue(math.nan, None, {"na": f"{res.spec.name} does not apply with {ext.name}"})
            continue
        for o in res.spec.outputs:
            if o.name in res.values:
                v = res.values[o.name]
                if "reference" in (v.settings or {}):
                    v.settings["reference"] = ref_source
                results[o.name] = v
    return results


# ------------------------------------------------------------------------------ command line
def add_parser(sub: Any) -> None:
    """Add ``bench fid`` to the CLI's subparsers."""
    p = sub.add_parser("fid", help="score a folder/.npz of samples against a folder/.npz of reference images (pytorch-fid style)")
    p.add_argument("samples", help="folder of PNG/JPEG images or a .npz of samples")
    p.add_argument("reference", help="folder of PNG/JPEG images or a .npz of reference images (its features are cached by content)")
    p.add_argument("--extractor", default=None, help="feature extractor (bench list extractors); default from the image shape, effnet-lite0 for photos with genbench[imagenet]")
    p.add_argument("--extractor-weights", default=None, help="local weights file for the extractor")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), help="metrics (default: fid kid prdc)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--npz-key", default=None, help="the array of a samples .npz holding several")
    p.add_argument("--reference-npz-key", default=None, help="the array of a reference .npz holding several")
    p.set_defaults(fn=cmd_fid)


def cmd_fid(args: argparse.Namespace) -> int:
    """Exit 0 with the table printed; 2 for usage errors (unknown names, a missing extra); 1 when the sets cannot be scored."""
    try:
        res = score_sets(args.samples, args.reference, extractor=args.extractor, extractor_weights=args.extractor_weights, metrics=args.metrics,
                         seed=args.seed, npz_key=args.npz_key, reference_npz_key=args.reference_npz_key)  # fmt: skip
    except freg.MissingExtraError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2
    except KeyError as e:
        print(f"bench: error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1
    print(format_eval(res))
    return 0

