"""Registry of generator factories, on the one registry type :class:`genbench.registry.Registry`.

A factory is any callable ``factory(info: DataInfo, **hparams) -> Generator``.
Families register themselves with :func:`register`; users can do the same (in
a script that ``bench run --import`` imports), publish a factory through the
entry-point group ``genbench.generators`` (the object may carry ``family`` and
``kinds`` attributes), or name it as ``"module:factory"`` (:func:`get` imports
it; see :mod:`genbench.plugins`).
"""

from __future__ import annotations

import functools
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from genbench.plugins import resolve_attribute
from genbench.registry import Registry, UnknownNameError

from .protocol import DataInfo, Generator

__all__ = ["ENTRY_POINT_GROUP", "GENERATORS", "Entry", "Factory", "UnknownGeneratorError", "available", "build", "get", "preset", "register"]

Factory = Callable[..., Generator]

ENTRY_POINT_GROUP = "genbench.generators"

DEFAULT_KINDS = ("image", "points")

GENERATORS: Registry[Factory] = Registry("generator", entry_point_group=ENTRY_POINT_GROUP, meta={"family": str, "kinds": tuple})
"""Name -> factory, with metadata ``family`` and ``kinds`` (data kinds it supports)."""


@dataclass(frozen=True)
class Entry:
    """A registered generator as the harness sees it."""

    name: str
    family: str
    factory: Factory
    description: str = ""
    kinds: tuple[str, ...] = DEFAULT_KINDS


class UnknownGeneratorError(UnknownNameError):
    """Raised for a generator name that is not registered (the message lists the valid ones)."""


def register(name: str, *, family: str, description: str = "", kinds: tuple[str, ...] = DEFAULT_KINDS) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory`` under ``name`` (a safe name: see :func:`genbench.registry.check_name`)."""

    def deco(factory: Factory) -> Factory:
        return GENERATORS.register(name, factory, description=description, family=family, kinds=tuple(kinds))

    return deco


def preset(name: str, cls: Factory, *, family: str, description: str = "", kinds: tuple[str, ...] = DEFAULT_KINDS, **settings: Any) -> Factory:
    """Register a variant of a family: ``cls`` with ``settings`` as its new defaults (a user's hyperparameters
    still override them) and, when ``cls`` takes a ``name``, that name. Returns the registered factory."""
    if "name" in inspect.signature(cls).parameters:
        settings = {"name": name, **settings}
    return register(name, family=family, description=description, kinds=kinds)(functools.partial(cls, **settings))


_imported = False


def _import_builtins() -> None:
    global _imported
    if _imported:
        return
    _imported = True
    for mod in builtin_modules():
        import_module(mod)


def builtin_modules() -> list[str]:
    """Every module of the ``baselines`` package, sorted: the built-in families register themselves when
    imported, so a new family module is found without a list to edit."""
    package = import_module("baselines")
    return sorted(f"baselines.{m.name}" for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


def available() -> dict[str, Entry]:
    """All registered generators, by name (sorted)."""
    _import_builtins()
    out = {}
    for name, e in GENERATORS.entries().items():
        factory = e.load()
        out[name] = Entry(
            name=name,
            family=str(e.meta.get("family", "user")),
            factory=factory,
            description=e.description,
            kinds=tuple(e.meta.get("kinds", DEFAULT_KINDS)),
        )
    return out


IMPORT_HINT = (
    "a model registered in your own script is known only once the script is imported: "
    "pass --import MODULE (or a path to the .py file) to bench run / bench check, or name the factory as module:factory"
)


def _from_module(spec: str) -> Entry:
    """The entry of ``"module:factory"``: the factory imported from the user's module (genbench.plugins), not registered."""
    try:
        factory = resolve_attribute(spec)
    except (ImportError, AttributeError) as e:
        raise UnknownGeneratorError(f"generator {spec!r}: {e}") from None
    if not callable(factory):
        raise UnknownGeneratorError(f"generator {spec!r} is not callable: a factory is factory(info: DataInfo, **params) -> generator")
    return Entry(
        name=spec,
        family=str(getattr(factory, "family", "user")),
        factory=factory,
        description=(factory.__doc__ or "").strip().split("\n")[0],
        kinds=tuple(getattr(factory, "kinds", DEFAULT_KINDS)),
    )


def get(name: str) -> Entry:
    """The entry of generator ``name`` (a registered name, or ``"module:factory"``); :class:`UnknownGeneratorError`
    lists the valid names."""
    entries = available()
    if name in entries:
        return entries[name]
    if isinstance(name, str) and ":" in name:
        return _from_module(name)
    raise UnknownGeneratorError(f"unknown generator {name!r}; valid: {', '.join(entries)}; {IMPORT_HINT}")


def family_of(name: str) -> str | None:
    """The registered family of generator ``name``; None when it cannot be resolved (not registered, or its
    module fails to import)."""
    try:
        return get(name).family
    except (KeyError, ValueError, ImportError, AttributeError):
        return None


def build(name: str, info: DataInfo, **hparams: Any) -> Generator:
    """Build generator ``name`` for data described by ``info``.

    Unknown hyperparameters raise a ``TypeError`` naming them and the accepted
    ones. ``device`` is passed only to factories that accept it.
    """
    entry = get(name)
    if info.kind not in entry.kinds:
        raise ValueError(f"generator {name!r} does not support {info.kind} data ({info.name}); it supports {entry.kinds}")
    sig = inspect.signature(entry.factory)
    accepts_var = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    if not accepts_var:
        if "device" in hparams and "device" not in sig.parameters:
            hparams = {k: v for k, v in hparams.items() if k != "device"}
        unknown = set(hparams) - set(sig.parameters)
        if unknown:
            valid = [p for p in sig.parameters if p != "info"]
            raise TypeError(f"generator {name!r} got unknown hyperparameters {sorted(unknown)}; valid: {valid}")
    return entry.factory(info, **hparams)
