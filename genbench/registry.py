"""One registry type for everything the harness looks up by name.

Generators, metrics, feature extractors, data sets, leaderboard sections,
experiments and executors each live in a :class:`Registry`. An entry is a
name, a target and free-form metadata (a metric's label, direction and unit;
a generator's family and supported data kinds). A target is either the object
itself or a lazy ``"module:attribute"`` string resolved on first use, so that
listing names never imports torch-heavy modules it does not need.

Built-in entries register themselves when their module is imported; a
registry lists those modules (``modules``) and imports them on the first
query. Third-party entries come from an entry-point group.

This module depends on nothing else in the project: ``bench``, ``baselines``
and ``metrics`` all import it, and it imports none of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = ["Entry", "Registry", "UnknownNameError", "NAME_PATTERN", "check_name", "package_modules"]

T = TypeVar("T")

# Registered names end up in file names (sample grids, cache folders): keep
# them to a safe alphabet with no path separators and no leading dot.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+@=-]{0,99}")  # used with fullmatch: `$` would accept a final newline


def package_modules(package: str, directory: str | Path, exclude: Iterable[str] = ()) -> tuple[str, ...]:
    """``package.<stem>`` for every ``.py`` file of ``directory`` (the package's folder) but ``_private`` ones
    and ``exclude``, sorted: a registry's built-in modules, which register their entries when imported, found
    without a list to edit."""
    skip = set(exclude)
    return tuple(sorted(f"{package}.{p.stem}" for p in Path(directory).glob("*.py") if not p.stem.startswith("_") and p.stem not in skip))


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0])


def check_name(name: str, what: str = "name") -> str:
    """``name`` if it is safe to use in a file name, else ``ValueError`` naming it.

    Allowed: letters, digits and ``_ . + @ = -``, not starting with ``.`` or
    ``-``, at most 100 characters; ``..`` is refused.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ValueError(f"invalid {what} {name!r}: use letters, digits and _ . + @ = - (no path separators, no '..', at most 100 characters)")
    return name


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n")[0].strip()


@dataclass
class Entry(Generic[T]):
    """One registered name. ``target`` is the object or ``"module:attr"``."""

    name: str
    target: Any
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_lazy(self) -> bool:
        return isinstance(self.target, str)

    def load(self) -> T:
        """The registered object (imports its module the first time if lazy)."""
        if isinstance(self.target, str):
            mod, _, attr = self.target.partition(":")
            obj: Any = import_module(mod)
            for part in attr.split(".") if attr else ():
                obj = getattr(obj, part)
            self.target = obj
            if not self.description:
                self.description = _first_line(getattr(obj, "__doc__", None))
        return self.target

    def __getattr__(self, key: str) -> Any:  # entry.family, entry.kinds ... read from meta
        meta = self.__dict__.get("meta", {})
        if key in meta:
            return meta[key]
        raise AttributeError(f"{type(self).__name__} {self.__dict__.get('name')!r} has no attribute or metadata {key!r}")


class Registry(Generic[T]):
    """Names -> entries, for one ``kind`` of thing ("generator", "metric" ...).

    ``modules`` are imported on the first query (they register the built-in
    entries); ``entry_point_group`` adds entries published by installed
    packages (each entry point's object is the target). ``meta``: the metadata
    this kind of entry carries, key -> type (``None`` allowed where the type
    tuple includes ``type(None)``); :meth:`register` refuses other keys and
    values of another type, naming the registry, the entry and the key.
    """

    def __init__(
        self, kind: str, *, modules: tuple[str, ...] = (), entry_point_group: str | None = None, meta: dict[str, Any] | None = None
    ) -> None:
        self.kind = kind
        self.modules = tuple(modules)
        self.entry_point_group = entry_point_group
        self.meta_types = dict(meta or {})  # metadata key -> type (or tuple of types) its values must have
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False
        self._loading = False

    # ------------------------------------------------------------ registering
    def register(self, name: str, target: Any = None, *, description: str = "", replace: bool = False, **meta: Any) -> Any:
        """Register ``target`` (an object or ``"module:attr"``) under ``name``.

        Without ``target`` it is a decorator: ``@REG.register("x", unit="nats")``.
        Registering a different object under a taken name is an error unless
        ``replace=True``.
        """
        check_name(name, f"{self.kind} name")
        self._check_meta(name, meta)

        def add(obj: Any) -> Any:
            old = self._entries.get(name)
            if old is not None and not replace and old.target is not obj and old.target != obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            desc = description or ("" if isinstance(obj, str) else _first_line(getattr(obj, "__doc__", None)))
            self._entries[name] = Entry(name, obj, desc, dict(meta))
            return obj

        if target is None:
            return add
        add(target)
        return target

    def _check_meta(self, name: str, meta: dict[str, Any]) -> None:
        unknown = sorted(set(meta) - set(self.meta_types))
        if unknown:
            valid = ", ".join(sorted(self.meta_types)) or "none"
            raise TypeError(f"{self.kind} {name!r}: unknown metadata {unknown}; a {self.kind} takes: {valid}")
        for key, value in meta.items():
            if not isinstance(value, self.meta_types[key]):
                raise TypeError(f"{self.kind} {name!r}: metadata {key}={value!r} must be {_type_names(self.meta_types[key])}")

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and for user code that replaces a built-in)."""
        self._entries.pop(name, None)

    # ------------------------------------------------------------ querying
    def _load_builtins(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            for mod in self.modules:
                import_module(mod)
            if self.entry_point_group:
                for ep in entry_points(group=self.entry_point_group):
                    if ep.name not in self._entries:
                        obj = ep.load()
                        self.register(ep.name, obj, **{k: v for k, v in _entry_point_meta(obj).items() if k in self.meta_types})
            self._loaded = True
        finally:
            self._loading = False

    def entries(self) -> dict[str, Entry[T]]:
        """Every entry, sorted by name."""
        self._load_builtins()
        return dict(sorted(self._entries.items()))

    def names(self) -> list[str]:
        return list(self.entries())

    def get(self, name: str) -> Entry[T]:
        """The entry for ``name``; :class:`UnknownNameError` lists the valid names."""
        entries = self.entries()
        if name not in entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid: {', '.join(entries) or '(none)'}")
        return entries[name]

    def load(self, name: str) -> T:
        """The object registered under ``name``."""
        return self.get(name).load()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.entries()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.entries())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


def _type_names(t: Any) -> str:
    return " or ".join(x.__name__ for x in (t if isinstance(t, tuple) else (t,)))


def _entry_point_meta(obj: Any) -> dict[str, Any]:
    """Metadata an entry-point object may carry as attributes (``family``, ``kinds``)."""
    meta: dict[str, Any] = {}
    for key in ("family", "kinds"):
        if hasattr(obj, key):
            meta[key] = getattr(obj, key)
    return meta

