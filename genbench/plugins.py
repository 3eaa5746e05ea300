"""Importing the user's own code: ``bench run --import MODULE`` and ``model = "module:factory"``.

A model registered with a decorator in the user's own file
(``@baselines.registry.register("my-model", ...)``) exists only once that file
is imported. ``bench run`` / ``bench check`` import it when asked:

* ``--import my_models`` imports a module by its dotted name, found like
  ``python -m`` finds it: from the current directory first, then
  ``sys.path`` (an installed package works too);
* ``--import path/to/my_models.py`` imports that file (its folder joins
  ``sys.path``, so its own sibling imports work; it is importable as
  ``my_models`` afterwards, so ``my_models:make`` names the same module);
* a suite's ``model = "my_models:make"`` (or ``bench check my_models:make``)
  imports ``my_models`` and uses its attribute ``make`` as the factory, with
  no registration at all.

Worker processes (``--jobs``, Ray) import the same modules before their first
job (:func:`bench.executors.prepare_worker`), so what the driver sees they see.
Importing runs the module's code: it is the user's own code, trusted like any
Python they run (see the README's "Security and trust").
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["import_user_module", "resolve_attribute"]


def _cwd_on_path() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def import_user_module(spec: str) -> ModuleType:
    """Import ``spec``: a dotted module name (current directory first) or a path to a ``.py`` file.

    Raises ``ImportError`` with a message that names ``spec`` and what went wrong;
    an exception raised by the module's own code propagates (it is the user's bug, with its traceback).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ImportError(f"cannot import {spec!r}: give a module name (my_models) or a path to a .py file")
    spec = spec.strip()
    if spec.endswith(".py") or os.sep in spec or (os.altsep and os.altsep in spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ImportError(f"cannot import {spec!r}: no such file")
        path = path.resolve()
        name = path.stem
        old = sys.modules.get(name)
        if old is not None:
            if getattr(old, "__file__", None) and Path(old.__file__).resolve() == path:
                return old
            name = f"genbench_user_{abs(hash(str(path))):x}"  # the stem names another module: load under a private name
            if name in sys.modules:
                return sys.modules[name]
        folder = str(path.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        mspec = importlib.util.spec_from_file_location(name, path)
        if mspec is None or mspec.loader is None:
            raise ImportError(f"cannot import {spec!r}: not a Python source file")
        module = importlib.util.module_from_spec(mspec)
        sys.modules[name] = module
        try:
            mspec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    _cwd_on_path()
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name and spec.split(".")[0] == e.name.split(".")[0]:
            raise ImportError(
                f"cannot import module {spec!r}: not found in the current directory ({os.getcwd()}) or on sys.path; "
                f"pass a path (--import path/to/{spec.split('.')[-1]}.py) or install the package"
            ) from None
        raise


def resolve_attribute(spec: str) -> Any:
    """The object ``module:attr`` names (``attr`` may be dotted), importing the module with :func:`import_user_module`.

    Raises ``ImportError`` (module) or ``AttributeError`` (attribute) naming ``spec``.
    """
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise ImportError(f"{spec!r} is not of the form module:factory")
    obj: Any = import_user_module(mod_name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"module {mod_name!r} has no attribute {attr!r} (from {spec!r})")
        obj = getattr(obj, part)
    return obj
