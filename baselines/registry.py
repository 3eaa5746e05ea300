"""Registry of generator factories.

A factory is any callable ``factory(info: DataInfo, **hparams) -> Generator``.
Families register themselves with :func:`register`; users can do the same, or
publish a factory through the entry-point group ``genbench.generators``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from .protocol import DataInfo, Generator

Factory = Callable[..., Generator]

ENTRY_POINT_GROUP = "genbench.generators"

# Modules that register the built-in families when imported.
_BUILTIN_MODULES = (
    "baselines.gaussian",
    "baselines.reference",
)
_OPTIONAL_MODULES = (
    "baselines.autoencoder",
    "baselines.vae",
    "baselines.flows",
    "baselines.autoregressive",
    "baselines.ebm",
    "baselines.gan",
    "baselines.diffusion",
    "baselines.flow_matching",
)


@dataclass(frozen=True)
class Entry:
    name: str
    family: str
    factory: Factory
    description: str = ""
    kinds: tuple[str, ...] = ("image", "points")  # data kinds it supports


_REGISTRY: dict[str, Entry] = {}
_loaded = False


class UnknownGeneratorError(KeyError):
    """Raised for a generator name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0])


def register(
    name: str,
    *,
    family: str,
    description: str = "",
    kinds: tuple[str, ...] = ("image", "points"),
) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory`` under ``name``."""

    def deco(factory: Factory) -> Factory:
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"generator {name!r} is already registered")
        _REGISTRY[name] = Entry(name, family, factory, description or (factory.__doc__ or "").strip().split("\n")[0], kinds)
        return factory

    return deco


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_MODULES:
        import_module(mod)
    for mod in _OPTIONAL_MODULES:
        try:
            import_module(mod)
        except ModuleNotFoundError as e:  # family not written yet / extra missing
            if e.name != mod:
                raise
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            obj = ep.load()
            register(ep.name, family=getattr(obj, "family", "user"))(obj)


def available() -> dict[str, Entry]:
    """All registered generators, by name."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Entry:
    entries = available()
    if name not in entries:
        raise UnknownGeneratorError(f"unknown generator {name!r}; valid: {', '.join(entries)}")
    return entries[name]


def build(name: str, info: DataInfo, **hparams: Any) -> Generator:
    """Build generator ``name`` for data described by ``info``.

    Unknown hyperparameters raise a ``TypeError`` naming them and the accepted ones.
    """
    entry = get(name)
    if info.kind not in entry.kinds:
        raise ValueError(f"generator {name!r} does not support {info.kind} data ({info.name}); it supports {entry.kinds}")
    sig = inspect.signature(entry.factory)
    accepts_var = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    if not accepts_var:
        unknown = set(hparams) - set(sig.parameters)
        if unknown:
            valid = [p for p in sig.parameters if p != "info"]
            raise TypeError(f"generator {name!r} got unknown hyperparameters {sorted(unknown)}; valid: {valid}")
    return entry.factory(info, **hparams)
