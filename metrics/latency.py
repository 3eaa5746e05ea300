"""Sampling latency: median and IQR of wall time after warm-up.

On CUDA the clock is read after ``torch.cuda.synchronize`` so that queued
kernels are counted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch


@dataclass
class Latency:
    batch_size: int
    repeats: int
    median_s: float  # per batch
    iqr_s: float  # per batch, q75 - q25
    per_sample_ms: float
    per_sample_iqr_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure_latency(
    fn: Callable[[], object], *, batch_size: int, warmup: int = 1, repeats: int = 5, device: torch.device | str | None = None, max_seconds: float | None = None
) -> Latency:
    """Time ``fn`` (which samples one batch of ``batch_size``) ``repeats`` times.

    ``max_seconds`` caps the total timed wall time (at least 2 repeats are
    kept, so the IQR is defined), useful for slow sequential samplers.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        _sync(device)
        times: list[float] = []
        t_start = time.perf_counter()
        for i in range(repeats):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
            if max_seconds is not None and i >= 1 and time.perf_counter() - t_start > max_seconds:
                break
    med = statistics.median(times)
    if len(times) >= 2:
        q = statistics.quantiles(times, n=4, method="inclusive")
        iqr = q[2] - q[0]
    else:
        iqr = 0.0
    return Latency(batch_size, len(times), med, iqr, 1000 * med / batch_size, 1000 * iqr / batch_size)
