"""``bench check``: does a generator satisfy the protocol?

    from bench.check import check_generator
    report = check_generator("gmm")                 # or "my_pkg.models:make", dataset="digits"
    print(report.format()); assert report.ok

It builds the generator on a small data set and runs a checklist, each item
``ok``, ``fail`` (with a message saying what is wrong and what to change),
``warn`` or ``skip`` (the capability is absent):

* protocol: ``info`` (a :class:`~genbench.protocol.GeneratorInfo` of the data
  shape) and ``sample(n, *, labels, prompts, steps, generator)``;
* capabilities: none half-implemented (:func:`partial_capabilities`);
* fit: trains with a tiny budget and returns a ``TrainReport``;
* sample: exactly ``n`` float32 samples of the data shape, finite, images in [0, 1];
* reproducible: equal samples from two equally seeded ``torch.Generator`` s,
  whatever the global RNG state;
* conditioning: labels (or prompts) change the samples when ``info.conditioning``
  claims them;
* state_dict: survives ``torch.save`` / ``torch.load(weights_only=True)`` and a
  fresh model loaded from it samples exactly like the original;
* likelihood: ``log_prob`` / ``elbo`` / ``iwae_bound`` return one finite
  number per example (nats); for images on K levels a value above 0 nats is a
  warning (a log-probability of discrete data cannot be positive);
* translate (image-to-image models on a translation task): one float32 output
  in [0, 1] of the target shape per source image, reproducible under a seeded
  ``torch.Generator``;
* latency: wall time of one batch (milliseconds; informative, never fails).

:func:`partial_capabilities` (:mod:`bench.capabilities`) is also what the runner
calls at plan time, so a model with ``fit`` but no ``state_dict`` fails before any work runs.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from baselines import registry as greg
from genbench.protocol import Budget, DataInfo, Distilled, TrainData

from . import data as dreg
from .capabilities import (
    CapabilityError,
    accepts_keyword,
    build_model,
    has_method,
    partial_capabilities,
    require_complete_capabilities,
    resolve_factory,
    suite_capability_errors,
)

__all__ = [
    "CapabilityError",
    "CheckItem",
    "CheckReport",
    "DEFAULT_DATASETS",
    "check_generator",
    "partial_capabilities",
    "require_complete_capabilities",
    "resolve_factory",
    "suite_capability_errors",
]

# Data set a generator is checked on when none is given, by the data kind it supports (first match wins).
DEFAULT_DATASETS: dict[str, tuple[str, dict[str, Any]]] = {
    "image": ("digits", {}),
    "points": ("ring8", {"n_train": 2000, "n_test": 500}),
    "paired": ("digits-complete", {}),
    "unpaired": ("digits-thick", {}),
}

_SAMPLE_KEYWORDS = ("labels", "prompts", "steps", "generator")

# ----------------------------------------------------------------------------- the checklist
@dataclass
class CheckItem:
    """One line of the checklist. ``status`` is ``ok``, ``fail``, ``warn`` or ``skip``; ``seconds`` wall time."""

    name: str
    status: str
    message: str = ""
    seconds: float | None = None


@dataclass
class CheckReport:
    """The checklist of one generator on one data set; ``ok`` is False when any item failed."""

    generator: str
    dataset: str
    items: list[CheckItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(i.status == "fail" for i in self.items)

    @property
    def failures(self) -> list[CheckItem]:
        return [i for i in self.items if i.status == "fail"]

    def add(self, name: str, status: str, message: str = "", seconds: float | None = None) -> CheckItem:
        item = CheckItem(name, status, message, seconds)
        self.items.append(item)
        return item

    def format(self) -> str:
        """The checklist as text, one line per item, and a PASS / FAIL line."""
        mark = {"ok": "[ok]  ", "fail": "[FAIL]", "warn": "[warn]", "skip": "[--]  "}
        lines = [f"bench check {self.generator}" + (f" on {self.dataset}" if self.dataset else "")]
        for i in self.items:
            t = f" ({i.seconds:.2f}s)" if i.seconds is not None else ""
            lines.append(f"  {mark.get(i.status, i.status)} {i.name}: {i.message}{t}")
        n_fail = len(self.failures)
        lines.append("PASS" if self.ok else f"FAIL: {n_fail} check{'s' if n_fail != 1 else ''} failed")
        return "\n".join(lines)


def _describe_samples(x: Any, n: int, shape: tuple[int, ...], is_image: bool) -> str | None:
    """None when ``x`` is n valid samples, else what is wrong."""
    if not isinstance(x, Tensor):
        return f"sample() returned {type(x).__name__}, expected a torch.Tensor"
    if x.dtype != torch.float32:
        return f"sample() returned dtype {x.dtype}, expected torch.float32"
    if tuple(x.shape) != (n, *shape):
        return f"sample({n}) returned shape {tuple(x.shape)}, expected {(n, *shape)}"
    if not torch.isfinite(x).all():
        return f"{int((~torch.isfinite(x)).flatten(1).any(1).sum())} of {n} samples contain NaN/inf"
    if is_image and (x.min() < 0 or x.max() > 1):
        return f"image samples must be in [0, 1], got range [{float(x.min()):.3g}, {float(x.max()):.3g}]"
    return None


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def check_generator(
    spec: str,
    dataset: str | None = None,
    params: dict[str, Any] | None = None,
    *,
    dataset_params: dict[str, Any] | None = None,
    n: int = 16,
    budget_steps: int = 5,
    batch_size: int = 32,
    steps: int | None = None,
    seed: int = 0,
    device: str | None = "cpu",
    progress: bool = False,
) -> CheckReport:
    """Run the checklist (module docstring) on generator ``spec`` and return the report.

    Args:
        spec: a registered generator name (``bench list generators``) or ``"module:factory"``.
        dataset: data set to build and train on; default by the kinds the
            generator supports (:data:`DEFAULT_DATASETS`: ``digits`` for
            images, a 2,000-point ``ring8`` for 2-D points).
        params: hyperparameters for the factory (as a suite's ``params``).
        n: samples per check.
        budget_steps, batch_size: the tiny training budget for ``fit``.
        steps: network evaluations for iterative samplers (default:
            ``min(info.default_steps, 10)``, 10 when unset).
        seed: seed of the ``torch.Generator`` s used for sampling.
        device: passed to factories that take ``device``.
        progress: draw the training progress bar (when stderr is a terminal).
    """
    params = dict(params or {})
    try:
        name, factory, kinds = resolve_factory(spec)
    except (KeyError, ValueError) as e:
        rep = CheckReport(spec, dataset or "")
        rep.add("resolve", "fail", str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e))
        return rep
    if dataset is None:
        kind = next((k for k in kinds if k in DEFAULT_DATASETS), None)
        if kind is None:
            rep = CheckReport(spec, "")
            rep.add("dataset", "fail", f"no default data set for the kinds {kinds} it supports: pass --dataset")
            return rep
        dataset, default_params = DEFAULT_DATASETS[kind]
        dataset_params = {**default_params, **(dataset_params or {})}
    rep = CheckReport(spec, dataset)
    try:
        ds = dreg.load(dataset, **(dataset_params or {}))
    except (KeyError, ValueError, FileNotFoundError) as e:
        rep.add("dataset", "fail", str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e))
        return rep
    info: DataInfo = ds.info
    if info.kind not in kinds:
        rep.add("dataset", "fail", f"{spec} supports {kinds} data, {dataset} is {info.kind!r}")
        return rep

    # -- build and protocol
    t0 = time.perf_counter()
    try:
        model = build_model(factory, ds, params, device)
    except Exception as e:
        rep.add("build", "fail", f"factory({info.name} info, **{params}) raised {_short(e)}")
        return rep
    rep.add("build", "ok", f"{type(model).__name__} from {spec}", time.perf_counter() - t0)
    problems = []
    try:
        ginfo = model.info
    except Exception as e:
        ginfo = None
        problems.append(f"info raised {_short(e)}" if hasattr(type(model), "info") else "no info property (a GeneratorInfo)")
    if ginfo is not None:
        gshape = getattr(ginfo, "shape", None)
        if gshape is None or tuple(gshape) != tuple(info.shape):
            problems.append(f"info.shape is {gshape!r}, the data shape is {tuple(info.shape)}")
        if getattr(ginfo, "conditioning", "none") not in ("none", "class", "text"):
            problems.append(f"info.conditioning must be 'none', 'class' or 'text', got {ginfo.conditioning!r}")
    if not callable(getattr(model, "sample", None)):
        problems.append("no sample(n, *, labels=None, prompts=None, steps=None, generator=None) method")
    else:
        missing = [k for k in _SAMPLE_KEYWORDS if not accepts_keyword(model.sample, k)]
        if missing:
            problems.append(f"sample() does not accept the keyword(s) {', '.join(missing)} (the harness passes them)")
    if problems:
        rep.add("protocol", "fail", "; ".join(problems))
        return rep
    rep.add("protocol", "ok", f"info ({ginfo.family}, conditioning {ginfo.conditioning}) and sample()")
    partial = partial_capabilities(model)
    rep.add("capabilities", "fail" if partial else "ok", "; ".join(partial) if partial else _capability_list(model))

    # -- fit
    if isinstance(model, Distilled):  # a student: a tiny DDPM teacher of its size first, trained with the same budget
        t0 = time.perf_counter()
        try:
            torch.manual_seed(seed)
            teacher = greg.build("ddpm", info, **model.teacher_params(), device=device)
            teacher.fit(TrainData(ds.train_x, info), Budget(steps=budget_steps, batch_size=batch_size, progress=False))
            model.set_teacher(teacher)
            rep.add("teacher", "ok", f"a ddpm teacher ({model.teacher_params()}) trained {budget_steps} steps x {batch_size}", time.perf_counter() - t0)
        except Exception as e:
            rep.add("teacher", "fail", f"set_teacher() with a ddpm of teacher_params() {model.teacher_params()} raised {_short(e)}", time.perf_counter() - t0)
            return rep
    if has_method(model, "fit"):
        t0 = time.perf_counter()
        try:
            torch.manual_seed(seed)
            out = model.fit(TrainData(ds.train_x, info, ds.train_y, source=getattr(ds, "train_source", None)), Budget(steps=budget_steps, batch_size=batch_size, progress=None if progress else False))
            dt = time.perf_counter() - t0
            if not callable(getattr(out, "to_dict", None)):
                rep.add("fit", "fail", f"fit() returned {type(out).__name__}, expected a TrainReport", dt)
            else:
                rep.add("fit", "ok", f"budget {budget_steps} steps x {batch_size}: TrainReport with {getattr(out, 'steps', '?')} steps", dt)
        except Exception as e:
            rep.add("fit", "fail", f"fit() with budget {budget_steps} steps x {batch_size} raised {_short(e)}", time.perf_counter() - t0)
            return rep
    else:
        rep.add("fit", "skip", "no fit(): used as built")

    # -- sample
    cond = ginfo.conditioning
    labels = torch.arange(n) % info.num_classes if cond == "class" and info.num_classes else None
    prompts = [info.captions[i % len(info.captions)] for i in range(n)] if cond == "text" and info.captions else None
    if steps is None and ginfo.iterative:
        steps = min(int(ginfo.default_steps or 10), 10)

    translating = info.is_translation and has_method(model, "translate")  # the harness's outputs are translate(test sources)

    def draw(k: int, s: int, lb: Tensor | None = labels, pr: Sequence[str] | None = prompts, m: Any = model) -> Any:
        with torch.no_grad():
            if translating:
                return m.translate(ds.test_source[:k], generator=torch.Generator().manual_seed(s))
            return m.sample(k, labels=lb, prompts=pr, steps=steps, generator=torch.Generator().manual_seed(s))

    if translating:  # checked first: the checks below draw through translate()
        rep.items.append(_check_translate(model, ds, info, n, seed))
        if rep.items[-1].status == "fail":
            return rep
    t0 = time.perf_counter()
    try:
        torch.manual_seed(seed + 1)
        x = draw(n, seed)
    except Exception as e:
        rep.add("sample", "fail", f"sample({n}{', labels' if labels is not None else ''}, steps={steps}) raised {_short(e)}")
        return rep
    bad = _describe_samples(x, n, tuple(info.shape), info.is_image)
    if bad:
        rep.add("sample", "fail", bad, time.perf_counter() - t0)
        return rep
    rng = "in [0, 1]" if info.is_image else f"in [{float(x.min()):.3g}, {float(x.max()):.3g}]"
    rep.add(
        "sample",
        "ok",
        f"{n} float32 samples of shape {tuple(info.shape)} {rng}" + (f", steps={steps}" if steps else ""),
        time.perf_counter() - t0,
    )

    # -- reproducible
    try:
        torch.manual_seed(seed + 12345)  # a different global RNG state: only the torch.Generator may matter
        x2 = draw(n, seed)
        same = isinstance(x2, Tensor) and x2.shape == x.shape and torch.allclose(x, x2, atol=1e-6, rtol=0)
        rep.add(
            "reproducible",
            "ok" if same else "fail",
            "equal samples from equally seeded torch.Generators" if same else
            "two calls with equally seeded torch.Generators gave different samples: draw every random number from `generator` (not the global RNG)",
        )  # fmt: skip
    except Exception as e:
        rep.add("reproducible", "fail", f"second sample() raised {_short(e)}")

    # -- conditioning
    if cond in ("class", "text"):
        rep.items.append(_check_conditioning(draw, info, cond, max(n, COND_MIN_N), seed))
    else:
        rep.add("conditioning", "skip", "unconditional (info.conditioning 'none')")

    # -- state_dict round trip
    if has_method(model, "state_dict") and has_method(model, "load_state_dict"):
        rep.items.append(_check_state(model, factory, ds, params, device, draw, x, n, seed))
    else:
        rep.add("state_dict", "skip", "no state_dict(): nothing to cache")

    # -- likelihoods
    xr = ds.test_x[:n]
    for meth, what in (("log_prob", "log-likelihood"), ("elbo", "lower bound"), ("iwae_bound", "importance-weighted bound")):
        if not has_method(model, meth):
            continue
        rep.items.append(_check_likelihood(model, meth, what, xr, info))
    if not any(has_method(model, m) for m in ("log_prob", "elbo", "iwae_bound")):
        rep.add("likelihood", "skip", "no log_prob() / elbo()")

    # -- image-to-image
    if has_method(model, "translate") and not translating:
        rep.items.append(_check_translate(model, ds, info, n, seed))

    # -- latency
    try:
        t0 = time.perf_counter()
        draw(n, seed + 1)
        dt = time.perf_counter() - t0
        rep.add(
            "latency",
            "ok",
            f"{1000 * dt:.1f} ms per batch of {n} ({1000 * dt / n:.2f} ms per sample" + (f", steps={steps})" if steps else ")"),
        )
    except Exception as e:
        rep.add("latency", "fail", f"sample() raised {_short(e)}")
    return rep


def _capability_list(model: Any) -> str:
    caps = [
        m
        for m in ("fit", "log_prob", "elbo", "iwae_bound", "encode", "adapt", "make_sampler", "translate")
        if has_method(model, m)
    ]
    return "complete: " + (", ".join(caps) if caps else "sample only")


COND_MIN_N = 64  # samples per label in the conditioning check: after a 2-step fit a label moves few pixels across a level


def _check_conditioning(draw: Callable[..., Any], info: DataInfo, cond: str, n: int, seed: int) -> CheckItem:
    try:
        if cond == "class":
            if info.num_classes < 2:
                return CheckItem("conditioning", "skip", f"class-conditional, but {info.name} has fewer than 2 classes")
            a = draw(n, seed, lb=torch.zeros(n, dtype=torch.long), pr=None)
            b = draw(n, seed, lb=torch.ones(n, dtype=torch.long), pr=None)
            what = "labels 0 and 1"
        else:
            if len(info.captions) < 2:
                return CheckItem("conditioning", "skip", f"text-conditional, but {info.name} has fewer than 2 captions")
            a = draw(n, seed, lb=None, pr=[info.captions[0]] * n)
            b = draw(n, seed, lb=None, pr=[info.captions[1]] * n)
            what = f"prompts {info.captions[0]!r} and {info.captions[1]!r}"
    except Exception as e:
        return CheckItem("conditioning", "fail", f"sample() with {cond} conditioning raised {_short(e)}")
    if torch.allclose(a, b):
        return CheckItem("conditioning", "fail", f"{what} gave identical samples under the same seed: the conditioning is ignored")
    return CheckItem("conditioning", "ok", f"{what} give different samples under the same seed")


def _check_state(model, factory, ds, params, device, draw, x, n, seed) -> CheckItem:  # noqa: ANN001
    t0 = time.perf_counter()
    try:
        state = model.state_dict()
        buf = io.BytesIO()
        torch.save(state, buf)
        buf.seek(0)
    except Exception as e:
        return CheckItem("state_dict", "fail", f"state_dict() / torch.save raised {_short(e)}")
    try:
        loaded = torch.load(buf, weights_only=True)
    except Exception as e:
        return CheckItem(
            "state_dict", "fail",
            "state_dict() must hold only tensors, numbers, strings, lists, tuples and dicts: checkpoints load with "
            f"torch.load(weights_only=True), which refused it ({str(e).splitlines()[0][:200]})",
        )  # fmt: skip
    try:
        fresh = build_model(factory, ds, params, device)
        fresh.load_state_dict(loaded)
        y = draw(n, seed, m=fresh)
    except Exception as e:
        return CheckItem("state_dict", "fail", f"a fresh model could not load the state or sample: {_short(e)}")
    if not (isinstance(y, Tensor) and y.shape == x.shape and torch.allclose(x, y, atol=1e-5, rtol=0)):
        return CheckItem(
            "state_dict",
            "fail",
            "a fresh model loaded from state_dict() samples differently from the original: the state misses something fit() learned",
        )
    kib = len(buf.getbuffer()) / 1024
    return CheckItem(
        "state_dict",
        "ok",
        f"round trip through torch.load(weights_only=True) ({kib:.0f} KiB) samples identically",
        time.perf_counter() - t0,
    )


def _check_translate(model: Any, ds: Any, info: DataInfo, n: int, seed: int) -> CheckItem:
    src = getattr(ds, "test_source", None)
    if src is None:
        return CheckItem("translate", "skip", f"{info.name} is not a translation task (no source images): pass --dataset with one")
    src = src[:n]
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            a = model.translate(src, generator=torch.Generator().manual_seed(seed))
            b = model.translate(src, generator=torch.Generator().manual_seed(seed))
    except Exception as e:
        return CheckItem("translate", "fail", f"translate(x_source of shape {tuple(src.shape)}) raised {_short(e)}")
    bad = _describe_samples(a, len(src), tuple(info.shape), True)
    if bad:
        return CheckItem(
            "translate", "fail", bad.replace("sample(", "translate(").replace("sample()", "translate()"), time.perf_counter() - t0
        )
    if not torch.allclose(a, b, atol=1e-6, rtol=0):
        return CheckItem(
            "translate",
            "fail",
            "two translate() calls with equally seeded torch.Generators differ: draw every random number from `generator`",
        )
    return CheckItem(
        "translate",
        "ok",
        f"{len(src)} sources {tuple(src.shape[1:])} -> float32 {tuple(info.shape)} in [0, 1], reproducible",
        time.perf_counter() - t0,
    )


def _check_likelihood(model: Any, meth: str, what: str, xr: Tensor, info: DataInfo) -> CheckItem:
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            v = getattr(model, meth)(xr, 4) if meth == "iwae_bound" else getattr(model, meth)(xr)
    except Exception as e:
        return CheckItem(meth, "fail", f"{meth}(x of shape {tuple(xr.shape)}) raised {_short(e)}")
    dt = time.perf_counter() - t0
    if not isinstance(v, Tensor) or tuple(v.shape) != (len(xr),):
        got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
        return CheckItem(meth, "fail", f"{meth}() must return one {what} per example, shape ({len(xr)},); got {got}", dt)
    if not torch.isfinite(v).all():
        return CheckItem(meth, "fail", f"{meth}() returned {int((~torch.isfinite(v)).sum())} non-finite values of {len(xr)}", dt)
    mean = float(v.double().mean())
    msg = f"{len(xr)} finite values, mean {mean:.4g} nats per example"
    if info.is_image and info.levels:
        bpd = -mean / (info.dim * math.log(2))
        msg += f" ({bpd:.3f} bits/dim)"
        if float(v.max()) > 1e-3:
            return CheckItem(meth, "warn", msg + f"; max {float(v.max()):.4g} > 0 nats: a {what} of discrete images must be <= 0 "
                             "(report nats of x_int, see genbench.protocol)", dt)  # fmt: skip
    return CheckItem(meth, "ok", msg, dt)
