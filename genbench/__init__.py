"""genbench: a benchmark and evaluation harness for deep generative image models.

The import packages are ``bench`` (the harness), ``baselines`` (model
families) and ``metrics``; this package holds what all three share
(:mod:`genbench.registry`, :mod:`genbench.protocol`) and, for notebooks, the
Python API in one import::

    import genbench
    res = genbench.evaluate(samples, dataset="digits")   # dict-like metric -> value; res.frame is a DataFrame
    res = genbench.score_sets("samples/", "reference/", extractor="effnet-lite0")   # bench fid: folder vs folder
    run = genbench.run_suite("smoke")                     # bench run
    df = genbench.load_results("results")                 # every record as a DataFrame
    print(genbench.check_generator("my_pkg.models:make").format())   # bench check

The API lives in :mod:`bench.api` and :mod:`bench.check`; it is imported on
first use (module ``__getattr__``), so ``import genbench.registry`` or
``import genbench.protocol`` never imports ``bench``, torch-heavy modules or
pandas.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# public name -> module that defines it (imported lazily)
_API = {
    "evaluate": "bench.api",
    "score_sets": "bench.folders",
    "run_suite": "bench.api",
    "load_results": "bench.api",
    "EvalResult": "bench.api",
    "SuiteRun": "bench.api",
    "check_generator": "bench.check",
    "partial_capabilities": "bench.check",
    "CheckReport": "bench.check",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'genbench' has no attribute {name!r}; the API offers {', '.join(__all__)}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
