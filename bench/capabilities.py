"""Capabilities a model implements only in part, found before any work runs.

A capability is half-implemented when one of its methods is present and
another is missing (``fit`` without ``state_dict``, ``encode`` without
``decode`` ...). :func:`suite_capability_errors` builds each generator of a
suite once, untrained, and the runner refuses the whole suite when any is
(:func:`require_complete_capabilities`); ``bench check`` reports the same
messages in its checklist. :func:`build_model` builds a generator as the
harness does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from baselines import registry as greg

from . import data as dreg
from .suite import Suite

__all__ = [
    "CapabilityError",
    "accepts_keyword",
    "build_model",
    "has_method",
    "partial_capabilities",
    "require_complete_capabilities",
    "resolve_factory",
    "suite_capability_errors",
]

# (method present, methods it needs, why) — a model with the first and not all of the second is half-implemented.
_NEEDS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("fit", ("state_dict", "load_state_dict"), "the harness caches a trained model with state_dict() and restores it with load_state_dict(); "
     "without them it cannot keep what fit() learned"),
    ("state_dict", ("load_state_dict",), "a saved state must be loadable"),
    ("load_state_dict", ("state_dict",), "there is no state to load without state_dict()"),
    ("adapt", ("state_dict", "load_state_dict"), "an adapted model is cached like a trained one"),
    ("encode", ("decode",), "the Autoencoding capability needs both directions (latent figures decode the codes)"),
    ("decode", ("encode",), "the Autoencoding capability needs both directions (latent figures encode real images)"),
)  # fmt: skip


def has_method(obj: Any, name: str) -> bool:
    """Whether ``obj.name`` is callable (False when reading it raises)."""
    try:
        return callable(getattr(obj, name, None))
    except Exception:  # a property that raises
        return False


def accepts_keyword(fn: Any, name: str) -> bool:
    """Whether ``fn`` takes the keyword ``name`` (or ``**kwargs``); True when it has no signature."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature: give them the benefit of the doubt
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def partial_capabilities(model: Any) -> list[str]:
    """One message per half-implemented capability of ``model`` (an instance or a class); empty when none.

    A capability is half-implemented when one of its methods is present and
    another is missing: ``fit`` (or ``adapt``) without ``state_dict`` /
    ``load_state_dict``; ``encode`` without ``decode`` (or the reverse);
    ``make_sampler`` without ``sample(..., sampler=...)``; ``info.conditioning``
    of ``class`` / ``text`` with a ``sample`` that takes no ``labels`` /
    ``prompts``. Each message names the missing methods, e.g.
    ``"fit() without state_dict(), load_state_dict(): ..."``.
    """
    out = []
    for have, needs, why in _NEEDS:
        if has_method(model, have):
            missing = [m for m in needs if not has_method(model, m)]
            if missing:
                out.append(f"{have}() without {', '.join(m + '()' for m in missing)}: {why}")
    sample = getattr(model, "sample", None)
    if has_method(model, "make_sampler") and callable(sample) and not accepts_keyword(sample, "sampler"):
        out.append("make_sampler() without sample(..., sampler=...): sample() must accept the sampler object make_sampler() builds")
    if not isinstance(model, type) and callable(sample):
        try:
            cond = getattr(getattr(model, "info", None), "conditioning", "none")
        except Exception:  # info raising is reported by check_generator, not here
            cond = "none"
        need = {"class": "labels", "text": "prompts"}.get(cond)
        if need and not accepts_keyword(sample, need):
            out.append(f"info.conditioning is {cond!r} but sample() has no {need}= keyword")
    return out


# ----------------------------------------------------------------------------- building
def resolve_factory(spec: str) -> tuple[str, Callable[..., Any], tuple[str, ...]]:
    """``(name, factory, kinds)`` for a registered generator name or ``"module:factory"``.

    Raises ``KeyError`` (an unknown name, listing the valid ones and how to make a
    script's registration visible) or ``ValueError`` (a ``module:factory`` that
    cannot be imported or is not callable).
    """
    try:
        entry = greg.get(spec)
    except KeyError as e:
        if ":" in spec:
            raise ValueError(str(e.args[0]) if e.args else str(e)) from None
        raise
    factory = getattr(entry, "factory", None)
    if factory is None:  # genbench.registry.Entry: the target is the factory
        factory = entry.load()
    name = spec.partition(":")[2] if ":" in spec else spec
    return name, factory, tuple(getattr(entry, "kinds", ("image", "points")))


def build_model(factory: Callable[..., Any], ds: dreg.Dataset, params: dict[str, Any], device: str | None) -> Any:
    """Build as the harness does: ``device`` to factories that take it, then the splits to reference rows."""
    hp = dict(params)
    if device is not None and accepts_keyword(factory, "device"):
        hp.setdefault("device", device)
    model = factory(ds.info, **hp)
    if has_method(model, "use_pool"):  # HeldOutReference rows draw from the held-out split
        model.use_pool(ds.test_x, ds.test_y)
    if has_method(model, "use_train"):  # TrainReference rows (metric sanity) also get the train split
        model.use_train(ds.train_x, ds.train_y)
    if has_method(model, "use_pairs") and getattr(ds, "test_truth", None) is not None:  # translation ground-truth rows
        model.use_pairs(ds.test_source, ds.test_truth)
    return model


def suite_capability_errors(suite: Suite) -> list[str]:
    """Plan-time check of a suite: one message per (data set, generator row) whose model is half-implemented.

    Each generator is built (not trained) once per data set it runs on, on
    the CPU; a build that fails is left to the job, which records the error.
    """
    errors = []
    for d in suite.datasets:
        ds = None
        for g in suite.generators_for(d.name):
            try:
                name, factory, kinds = resolve_factory(g.model)
            except (KeyError, ValueError):
                continue  # unknown names are reported by suite validation
            if ds is None:
                ds = dreg.load(d.name, **d.params)
            if ds.info.kind not in kinds:
                continue
            try:
                model = build_model(factory, ds, g.params_for(d.name), "cpu")
            except Exception:
                continue
            for msg in partial_capabilities(model):
                errors.append(f"generator {g.name!r} ({g.model}) on {d.name}: {msg}")
    return errors


class CapabilityError(ValueError):
    """A suite names a generator with a half-implemented capability; raised at plan time, before any work runs."""


def require_complete_capabilities(suite: Suite) -> None:
    """Raise :class:`CapabilityError` listing every half-implemented generator of ``suite`` (see :func:`suite_capability_errors`)."""
    errors = suite_capability_errors(suite)
    if errors:
        raise CapabilityError(
            f"suite {suite.name}: {len(errors)} generator(s) implement a capability only in part; nothing was run:\n  "
            + "\n  ".join(errors)
            + "\n(bench check GENERATOR shows the whole checklist)"
        )
