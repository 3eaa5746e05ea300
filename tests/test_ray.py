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
