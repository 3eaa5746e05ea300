"""A job and its context: the plain, serializable :class:`Job` a worker runs and the :class:`JobContext` the
stages of ``bench/pipeline.py`` share (its records carry the configuration hashes of :mod:`bench.store`)."""

from __future__ import annotations

import ast
import functools
import inspect
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines import registry as greg
from genbench.cache import Cache, content_hash, file_hash

from .provenance import device_description, git_commit, package_versions
from .record import new_record
from .store import _config_hash, _row_hash
from .suite import DatasetSpec, GeneratorSpec


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


def _local_modules(path: Path) -> set[Path]:
    """``path`` and, transitively, the modules of its own package that it imports (``from .base import Family``,
    ``from baselines.nets import mlp``), as resolved source files."""
    seen: set[Path] = set()
    todo = [path.resolve()]
    while todo:
        f = todo.pop()
        if f in seen or not f.is_file():
            continue
        seen.add(f)
        try:
            tree = ast.parse(f.read_text())
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        pkg = f.parent
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == pkg.name:
                names = node.module.split(".")[1:2] or [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".")[1] for a in node.names if a.name.split(".")[0] == pkg.name and "." in a.name]
            todo.extend(pkg / f"{n}.py" for n in names)
    return seen


def _code_hash(factory: Any) -> str:
    """Hash of the source a family's trained models depend on: the file that defines ``factory`` (a
    ``functools.partial`` is unwrapped to its function) and the files of its package that it imports,
    transitively (:func:`_local_modules`: the family base class, the training loop, the networks ...), so editing
    any of them retrains its cached models. A self-contained module hashes as its file alone; ``"unknown"``
    when there is no source file."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    try:
        path = Path(inspect.getsourcefile(factory))  # type: ignore[arg-type]
    except (TypeError, OSError):
        return "unknown"
    files = _local_modules(path)
    if len(files) <= 1:
        return file_hash(path)
    return content_hash({f.name: file_hash(f) for f in sorted(files)})


@functools.cache
def model_family(model: str) -> str | None:
    """The registered family of generator ``model`` (None when it cannot be resolved), written into each record so
    that the report needs no family code to tell reference rows from ranked ones."""
    return greg.family_of(model)


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
        rec = new_record(
            suite=job.suite, job=job.id, dataset=job.dataset.name, generator=row or job.gen.name, base=job.gen.name,
            model=job.gen.model, seed=job.seed, steps=steps, metric=metric,
            hashes={"config_hash": _config_hash(job, self.device), "row_hash": _row_hash(job, self.device)},
            provenance=self.provenance, fields=fields, family=model_family(job.gen.model),
        )  # fmt: skip
        self.emit(rec)
        if not metric.startswith("_"):
            self.added += 1
