"""The Ray executor on a local Ray instance with 2 workers (Ray is part of the test extra).

Workers return their records and sample grids to the driver, which alone
writes the store; a worker killed mid-job is retried by Ray and no record is
lost or duplicated. Each run is a `bench run` subprocess, so Ray's processes
end with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from bench.store import JOB_DONE, ResultStore, record_key

pytest.importorskip("ray")  # installed by the test extra; only a hand-made environment lacks it

pytestmark = pytest.mark.slow

SUITE = """
name = "raytiny"
seeds = [0, 1]
[[datasets]]
name = "ring8"
extractor = "raw"
n_fake = 500
metrics = ["fid", "prdc", "mode_collapse"]
[[generators]]
name = "data"
[[generators]]
name = "vae"
budget = { steps = 600, batch_size = 128 }
"""
DETERMINISTIC = ("fid", "precision", "recall", "density", "coverage", "modes", "hq_pct", "reverse_kl")


def _bench(args: list[str], cwd, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local instance, never a cluster the machine knows of
    env.update(GENBENCH_PROGRESS="0", RAY_DISABLE_USAGE_STATS="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _values(store: ResultStore) -> dict[tuple, float]:
    return {(r["job"], r["metric"]): r["value"] for r in store.records() if r["metric"] in DETERMINISTIC}


def _ray_task_pids() -> list[int]:
    """PIDs of Ray worker processes currently executing our task (Ray titles them ``ray::_ray_worker``)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines() if "ray::_ray_worker" in line]


@pytest.fixture
def suite_file(tmp_path):
    p = tmp_path / "raytiny.toml"
    p.write_text(SUITE)
    return p


def test_ray_run_matches_local_and_survives_a_killed_worker(tmp_path, suite_file):
    local = _bench(["run", "--suite", str(suite_file), "--results", str(tmp_path / "local"), "--no-leaderboard"], tmp_path)
    out, _ = local.communicate(timeout=600)
    assert local.returncode == 0, out

    proc = _bench(["run", "--suite", str(suite_file), "--results", str(tmp_path / "ray"), "--executor", "ray", "--no-leaderboard"], tmp_path)
    killed = None
    deadline = time.monotonic() + 300
    while proc.poll() is None and killed is None and time.monotonic() < deadline:
        pids = _ray_task_pids()
        if pids:
            time.sleep(1.0)  # mid-job: let the task get into training
            if proc.poll() is None and pids[0] in _ray_task_pids():
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    if killed is None:
        pytest.skip("no Ray task was caught running before the run ended")

    store = ResultStore(tmp_path / "ray" / "raytiny")
    raw = [json.loads(line) for line in store.path.read_text().splitlines()]
    dup = [k for k, c in Counter(record_key(r) for r in raw).items() if c > 1]
    assert not dup, f"records written twice after the killed worker was retried: {dup[:3]}"
    assert len(store.done_jobs()) == 4 and all(r.get("metric") != "_error" for r in raw)
    assert sum(r.get("metric") == JOB_DONE for r in raw) == 4
    assert _values(store) == _values(ResultStore(tmp_path / "local" / "raytiny"))  # nothing lost, same numbers as in-process
    assert (tmp_path / "ray" / "raytiny" / "assets" / "ring8__vae.png").exists()  # the grid came back to the driver


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live process below ``root`` (from /proc)."""
    procs = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                procs[int(p)] = (int(rest[1]), rest[19])
            except (OSError, IndexError, ValueError):
                pass
    out = {}
    for pid, (_, start) in procs.items():
        q = pid
        while q in procs and q != root and q > 1:
            q = procs[q][0]
        if q == root and pid != root:
            out[pid] = start
    return out


def _alive(pids: dict[int, str]) -> list[int]:
    left = []
    for pid, start in pids.items():
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[19] == start:
                    left.append(pid)
        except OSError:
            pass
    return left


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the watchdog reads /proc (Linux)")
def test_sigkilled_driver_leaves_no_ray_process(tmp_path):
    """SIGKILL of `bench run --executor ray` mid-run: every process the run started (Ray's GCS, raylet,
    dashboard and runtime-env agents, workers) is gone within seconds, ended by the run's watchdog."""
    suite = tmp_path / "raykill.toml"
    suite.write_text(SUITE.replace("steps = 600", "steps = 200000").replace('name = "raytiny"', 'name = "raykill"'))
    proc = _bench(["run", "--suite", str(suite), "--results", str(tmp_path / "r"), "--executor", "ray", "--no-leaderboard"], tmp_path)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline and not _ray_task_pids():
        time.sleep(0.5)
    if proc.poll() is not None or not _ray_task_pids():
        out, _ = proc.communicate(timeout=60)
        pytest.skip(f"no Ray task was caught running: {out[-500:]}")
    time.sleep(3.0)  # the agents start a little after the first task
    started = _descendants(proc.pid)
    assert len(started) >= 3, f"expected Ray's processes below the driver, found {len(started)}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 60
    while _alive(started) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = _alive(started)
    for pid in left:  # do not leave them behind for the rest of the test run
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not left, f"{len(left)} of the run's {len(started)} processes were still running 60 s after the driver was killed"
