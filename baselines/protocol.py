"""The Generator protocol and capabilities, re-exported from :mod:`genbench.protocol`.

They live in the shared ``genbench`` package so that ``metrics`` can check
capabilities with ``isinstance`` without importing ``baselines``.
"""

from genbench.protocol import *  # noqa: F403
from genbench.protocol import __all__ as _all
from genbench.protocol import class_labels, dequantize, quantize  # noqa: F401

__all__ = list(_all) + ["class_labels", "dequantize", "quantize"]
