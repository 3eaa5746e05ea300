"""Where jobs run: in this process (``local``), in a pool of local processes
(``process``, ``--jobs N``) or on a Ray cluster (``ray``, optional extra).

Jobs are idempotent and the store is append-only under a file lock, so any
executor can retry or resume a job; workers re-load the suite by path and run
one job each, writing records to the same results directory (for Ray, that
directory must be on a file system the workers share).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

EXECUTORS = ("local", "process", "ray")


def _run_one(suite_path: str, job_id: str, results_dir: str, device: str, threads: int | None) -> tuple[str, str | None]:
    """Worker entry point: run job ``job_id`` of the suite at ``suite_path``."""
    import torch

    from .runner import Runner, plan
    from .suite import load_suite

    if threads:
        torch.set_num_threads(threads)
    suite = load_suite(suite_path)
    job = next(j for j in plan(suite, _seeds_from(job_id, suite)) if j.id == job_id)
    runner = Runner(suite, results_dir=results_dir, device=device, progress=False)
    try:
        runner.run_job(job)
        return job_id, None
    except Exception as e:  # noqa: BLE001 - reported to the parent, which records it
        runner.record_error(job, e)
        return job_id, f"{type(e).__name__}: {e}"


def _seeds_from(job_id: str, suite) -> list[int]:
    seed = int(job_id.rsplit("seed", 1)[1])
    return sorted(set(suite.seeds) | {seed})


def map_jobs(kind: str, suite_path: Path, job_ids: list[str], results_dir: Path, device: str, workers: int, on_done: Callable[[str, str | None], None]) -> None:
    """Run ``job_ids`` with executor ``kind``; call ``on_done(job_id, error_or_None)`` as each finishes."""
    if kind == "process":
        import concurrent.futures as cf
        import multiprocessing as mp

        threads = max(1, (mp.cpu_count() or 1) // workers)
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futs = [pool.submit(_run_one, str(suite_path), j, str(results_dir), device, threads) for j in job_ids]
            for f in cf.as_completed(futs):
                on_done(*f.result())
    elif kind == "ray":
        try:
            import ray
        except ModuleNotFoundError as e:
            raise RuntimeError("the ray executor needs the optional extra: pip install 'genbench[ray]'") from e
        if not ray.is_initialized():
            ray.init(ignore_reinit_error=True)
        remote = ray.remote(num_gpus=1 if device.startswith("cuda") else 0)(_run_one)
        pending = [remote.remote(str(suite_path), j, str(results_dir), device, None) for j in job_ids]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            on_done(*ray.get(done[0]))
    else:
        raise ValueError(f"unknown executor {kind!r}; valid: {', '.join(EXECUTORS)}")
