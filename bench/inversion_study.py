"""The inversion experiment (suite ``inversion``): how well can each trained generator reproduce held-out images?

For each seed and each row of the suite's ``[inversion]`` table, the row's model is trained (or loaded) through
the pipeline's own stages and artifact cache, so a row whose model, params and budget equal a row of another
suite on the same data set (e.g. the speed-quality suite's ``gan`` or ``ddpm``) reuses that trained network.
The first ``n_images`` images of the data set's test split (a fixed subset) are then inverted with the row's
registered method (:data:`baselines.inversion.INVERSIONS`, with the row's ``options``), and the reconstruction
is measured against the input (:mod:`metrics.inversion_measures`): pixel MSE, PSNR (dB, capped at 100) and SSIM
on [0, 1] images, the distance in the extractor's feature space, whether the extractor's classifier gives the
reconstruction the same class as the input (``class_agree``) and the input's true class (``class_kept``), and the
inversion's wall time per image, and, for a latent whose prior is N(0, I) (a GAN's z, the sampling ODE's noise, a
flow's base point), how typical it is: ``||z||^2 / d`` per image, about 1 for a draw of the prior. A bijection
(RealNVP, the DDIM / Euler ODE) reconstructs any input up to float error by construction; what tells whether the
model represents the image is then that typicality (a far-from-1 value: the input sits where the model puts
little mass), not the reconstruction. Each record is one (row, seed, measure): the mean over the images with its 95%
t-interval over images; the leaderboard's cells are means over seeds.

Reference rows (``method = "identity"`` / ``"nearest-train"``, no model): the input itself (the floor of every
error) and the nearest training image in pixel space (what a model that memorised its training set would return).

Suite table ``[inversion]``: ``dataset``, ``extractor`` (default: the data set's registered one), ``n_images``
(default 200) and ``rows``, each ``{ name, method, model, params, budget, options }``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from genbench.cache import Cache
from metrics import extractors as freg
from metrics.inversion_measures import inversion_measures, summarize

from . import data as dreg
from . import stages
from .job import Job, JobContext
from .suite import DatasetSpec, GeneratorSpec, SuiteError, _registered_extractor

__all__ = ["MEASURES", "REFERENCE_METHODS", "run_inversion"]

REFERENCE_METHODS = ("identity", "nearest-train")
MEASURES = {  # measure -> (label, direction, unit)
    "mse": ("MSE", "min", "[0,1] pixels^2"),
    "psnr": ("PSNR", "max", "dB"),
    "ssim": ("SSIM", "max", ""),
    "feature_dist": ("feature distance", "min", "extractor units"),
    "class_agree": ("class agreement", "max", "fraction"),
    "class_kept": ("true class kept", "max", "fraction"),
    "seconds_per_image": ("s/image", "min", "s"),
    "latent_norm": ("latent ‖z‖²/d", "one", ""),
}
GAUSSIAN_SPACES = ("z", "noise", "base")  # latents whose prior is N(0, I): ||z||^2 / d is about 1 when typical


class _Result:
    """What the measures read of an inversion: the reconstruction and the time per image."""

    def __init__(self, reconstruction: torch.Tensor, seconds_per_image: float) -> None:
        self.reconstruction, self.seconds_per_image = reconstruction, seconds_per_image


def _reference(method: str, x: torch.Tensor, train_x: torch.Tensor) -> _Result:
    t0 = time.perf_counter()
    if method == "identity":
        rec = x.clone()
    else:  # the nearest training image, pixel L2
        d = torch.cdist(x.flatten(1).double(), train_x.flatten(1).double())
        rec = train_x[d.argmin(1)].clone()
    return _Result(rec, (time.perf_counter() - t0) / len(x))


def _trained(row: dict[str, Any], dataset: DatasetSpec, seed: int, cache_dir: Path, device: str) -> tuple[Any, Any]:
    """(model, data set): the row's model trained or loaded by the pipeline's stages, under its usual cache key."""
    gen = GeneratorSpec(name=row["name"], model=row["model"], params=dict(row.get("params", {})), budget=dict(row.get("budget", {})))
    job = Job(suite="inversion", dataset=dataset, gen=gen, seed=seed)
    ctx = JobContext(job=job, cache=Cache(cache_dir), device=device, assets=Path(tempfile.gettempdir()), emit=lambda r: None)
    stages.load_data(ctx)
    stages.train(ctx)
    return ctx.model, ctx.ds


def run_inversion(suite: dict[str, Any], results_dir: Path, cache_dir: Path, device: str, seeds: list[int]) -> list[dict[str, Any]]:
    """The experiment's records (see the module docstring)."""
    from baselines.inversion import invert  # the families load only when the experiment runs

    cfg = dict(suite.get("inversion") or {})
    if "dataset" not in cfg or not cfg.get("rows"):
        raise SuiteError("inversion: the suite's [inversion] table needs a dataset and rows")
    ds_name = str(cfg["dataset"])
    extractor = str(cfg.get("extractor") or _registered_extractor(ds_name))
    n = int(cfg.get("n_images", 200))
    dataset = DatasetSpec(name=ds_name, extractor=extractor, metrics=())
    ds = dreg.load(ds_name)
    if not 1 <= n <= len(ds.test_x):
        raise SuiteError(f"inversion: n_images must be in [1, {len(ds.test_x)}] (the {ds_name} test split), got {n}")
    x, labels = ds.test_x[:n].float(), (ds.test_y[:n] if ds.test_y is not None else None)
    ext = freg.get_extractor(extractor, **stages.extractor_kwargs(extractor, {}, device))
    classifier = getattr(ext, "logits", None)
    records: list[dict[str, Any]] = []
    for seed in seeds:
        for row in cfg["rows"]:
            method = str(row["method"])
            if method in REFERENCE_METHODS:
                result, model_name = _reference(method, x, ds.train_x.float()), "reference"
            else:
                model, _ = _trained(row, dataset, seed, cache_dir, device)
                result = invert(method, model, x, generator=torch.Generator().manual_seed(seed), **dict(row.get("options", {})))
                model_name = row["model"]
            measures = inversion_measures(x, result, features=ext.features, classifier=classifier, labels=labels)
            if getattr(result, "space", None) in GAUSSIAN_SPACES:
                z = result.latent.double().flatten(1)
                measures["latent_norm"] = summarize((z**2).mean(1))
            for key, s in measures.items():
                label, direction, unit = MEASURES[key]
                records.append({
                    "dataset": ds_name, "generator": row["name"], "model": model_name, "seed": seed, "metric": f"inversion_{key}",
                    "value": s.mean, "lo": s.lo, "hi": s.hi, "label": label, "direction": direction, "unit": unit, "n_fake": n,
                    "reference": method in REFERENCE_METHODS, "extractor": extractor if key in ("feature_dist", "class_agree", "class_kept") else None,
                    "settings": {"method": method, "options": dict(row.get("options", {})), "n_images": n, "interval": s.interval,
                                 "images": f"the first {n} images of the {ds_name} test split"},
                })  # fmt: skip
    return records
