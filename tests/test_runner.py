"""The harness: idempotent jobs, resume after a crash, clear errors, leaderboard."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from baselines import registry
from bench import runner as runner_mod
from bench.cli import main
from bench.leaderboard import write_leaderboard
from bench.store import JOB_DONE, ResultStore
from bench.suite import SuiteError, load_suite

TIMINGS = {"latency_ms", "latency_b1_ms", "ms_per_nfe", "peak_mem_mb", "train_s"}  # wall-clock and allocator figures vary run to run

SUITE = """
name = "tiny"
seeds = [0, 1]
[settings]
latency_repeats = 2
[[datasets]]
name = "ring8"
extractor = "raw"
n_fake = 300
metrics = ["fid", "nll", "latency"]
[[generators]]
name = "data"
[[generators]]
name = "gaussian"
[[generators]]
name = "gmm"
params = { n_components = 8 }
"""


@pytest.fixture
def suite_file(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(SUITE)
    return p


def _stable(records):
    """Records without timings: (key, value) for deterministic metrics."""
    return sorted((r["job"], r["generator"], r["metric"], None if r["metric"] in TIMINGS else r.get("value")) for r in records)


def test_run_rerun_and_leaderboard(tmp_path, suite_file):
    suite = load_suite(str(suite_file))
    s1 = runner_mod.run_suite(suite, results_dir=tmp_path / "res", progress=False)
    assert s1.ran == 6 and not s1.failed
    store = ResultStore(tmp_path / "res" / "tiny")
    recs = store.records()
    # 6 jobs x 3 metrics, minus nll is n/a for data (still recorded), + train_s for 4 trained jobs
    assert len([r for r in recs if r["metric"] in ("fid", "nll", "latency_ms")]) == 18
    assert [r for r in recs if r["generator"] == "data" and r["metric"] == "nll"][0]["na"] is True
    assert all(r["git_commit"] and r["device"] and r["versions"] for r in recs)
    s2 = runner_mod.run_suite(suite, results_dir=tmp_path / "res", progress=False)
    assert s2.ran == 0 and s2.skipped == 6 and s2.records_added == 0
    out = write_leaderboard(suite, tmp_path / "res", tmp_path / "lb")
    md = out.read_text()
    assert "| data (reference)" in md and "FID[raw] ↓" in md and "**" in md and "n/a" in md
    assert "± " in md  # two seeds -> mean ± std
    assert (tmp_path / "lb" / "assets" / "tiny" / "ring8__gmm.png").exists()
    # one runs.jsonl line per invocation; the provenance names the run that did work (wall time, load), not the no-op re-run
    runs = store.runs()
    assert [r["ran"] for r in runs] == [6, 0] and runs[1]["skipped"] == 6
    assert runs[0]["wall_s"] > 0 and runs[0]["cpu_count"] == os.cpu_count() and "loadavg_before" in runs[0]
    assert "- runs that did work (`bench run`, `runs.jsonl`): 1, total wall" in md
    assert "6 of 6 jobs ran (0 failed)" in md and "machine: " in md and "0 of 6 jobs ran" not in md


def test_run_lines_summarise_older_runs():
    from bench.leaderboard import run_lines

    runs = [{"started_utc": f"t{i}", "ran": 1, "planned": 9, "records_added": 3, "wall_s": 10.0 * (i + 1), "cpu_count": 2,
             "own_cpu_cores": 1.0, "other_cpu_cores": 0.5, "loadavg_before": 0.1, "loadavg_after": 1.5, "executor": "local", "workers": 1}
            for i in range(4)] + [{"started_utc": "noop", "ran": 0, "records_added": 0, "wall_s": 1.0}]  # fmt: skip
    lines = run_lines(runs, most=2)
    assert lines[0].endswith("4, total wall 100.0 s (1.7 min)")
    assert lines[1] == "  - 2 earlier runs: wall 30.0 s"
    assert lines[2].startswith("  - t2: 1 of 9 jobs ran (0 failed), 3 records, wall 30.0 s")
    assert "other processes 0.500 cores" in lines[3] and "1-min load average 0.100 → 1.50" in lines[3]
    assert not any("noop" in x for x in lines) and run_lines([]) == []


class _Crash(BaseException):
    pass


def test_resume_after_crash_matches_uninterrupted(tmp_path, suite_file, monkeypatch):
    suite = load_suite(str(suite_file))
    runner_mod.run_suite(suite, results_dir=tmp_path / "full", progress=False)
    full = ResultStore(tmp_path / "full" / "tiny").records()

    # crash after the 7th record, and leave a torn half-line as a kill mid-write would
    calls = {"n": 0}
    real_append = ResultStore.append

    def crashing_append(self, rec):
        calls["n"] += 1
        if calls["n"] == 7:
            with open(self.path, "ab") as f:
                f.write(b'{"job": "torn')
            raise _Crash()
        real_append(self, rec)

    monkeypatch.setattr(ResultStore, "append", crashing_append)
    with pytest.raises(_Crash):
        runner_mod.run_suite(suite, results_dir=tmp_path / "part", progress=False)
    monkeypatch.setattr(ResultStore, "append", real_append)
    partial = ResultStore(tmp_path / "part" / "tiny").records()
    assert 0 < len(partial) < len(full)
    runner_mod.run_suite(suite, results_dir=tmp_path / "part", progress=False)
    resumed = ResultStore(tmp_path / "part" / "tiny").records()
    assert _stable(resumed) == _stable(full)
    raw_lines = (tmp_path / "part" / "tiny" / "records.jsonl").read_bytes().splitlines()
    assert all(json.loads(line) for line in raw_lines)  # the torn line was cut


def test_sigkill_then_resume(tmp_path, suite_file):
    """A real kill -9 mid-run; the re-run ends with the same set of records."""
    env = {**os.environ, "GENBENCH_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "bench", "run", "--suite", str(suite_file), "--results", str(tmp_path / "k"), "--no-leaderboard"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = tmp_path / "k" / "tiny" / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= 4:
            break
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not killed:
        pytest.skip("the run finished before it could be killed")
    n_partial = len(ResultStore(path.parent).records(include_internal=True))
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runner_mod.run_suite(load_suite(str(suite_file)), results_dir=tmp_path / "ref", progress=False)
    got, ref = ResultStore(path.parent).records(), ResultStore(tmp_path / "ref" / "tiny").records()
    assert n_partial < len(ref) + 6
    assert _stable(got) == _stable(ref)
    assert len(ResultStore(path.parent).done_jobs()) == 6


class NaNGen:
    def __init__(self, info):
        self._info = info

    @property
    def info(self):
        from baselines.protocol import GeneratorInfo

        return GeneratorInfo("nan-gen", "test", self._info.shape)

    def sample(self, n, *, labels=None, prompts=None, steps=None, generator=None):
        x = torch.zeros(n, *self._info.shape)
        x[0, 0] = float("nan")
        return x


def test_bad_generator_is_recorded_not_fatal(tmp_path):
    registry.register("nan-gen", family="test")(lambda info: NaNGen(info))
    try:
        _run_bad_generator(tmp_path)
    finally:  # the registry is global: test_check walks every registered generator and would find this one
        registry.GENERATORS.unregister("nan-gen")


def _run_bad_generator(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(textwrap.dedent(SUITE.replace("seeds = [0, 1]", "seeds = [0]")) + '\n[[generators]]\nname = "nan-gen"\n')
    s = runner_mod.run_suite(load_suite(str(p)), results_dir=tmp_path / "r", progress=False)
    assert len(s.failed) == 1 and "NaN" in s.failed[0][1] and "nan-gen" in s.failed[0][1]
    assert s.ran == 3
    errs = [r for r in ResultStore(tmp_path / "r" / "tiny").records(include_internal=True) if r["metric"] == "_error"]
    assert errs and "contain NaN" in errs[0]["extra"]["error"]
    assert "nan-gen" not in {r["job"].split("/")[1] for r in ResultStore(tmp_path / "r" / "tiny").records(True) if r["metric"] == JOB_DONE}


def test_cli_unknown_names(capsys, tmp_path):
    assert main(["run", "--suite", "nope", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown suite 'nope'" in err and "smoke" in err
    with pytest.raises(SystemExit) as e:
        main(["list", "things"])
    assert e.value.code == 2
    assert main(["leaderboard", "--suite", "nope"]) == 2
    assert main(["eval", "--samples", str(tmp_path), "--dataset", "nope"]) == 2
    assert "valid: " in capsys.readouterr().err


def test_suite_validation(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(SUITE.replace('name = "gmm"', 'name = "gmm"\nbogus = 1'))
    with pytest.raises(SuiteError, match="unknown keys.*bogus"):
        load_suite(str(p))
    p.write_text(SUITE.replace('"latency"]', '"latency", "nosuchmetric"]'))
    with pytest.raises(SuiteError, match="unknown metric 'nosuchmetric'"):
        runner_mod.validate_names(load_suite(str(p)))
    p.write_text(SUITE.replace('name = "gmm"', 'name = "gmm"\nmodel = "nosuchmodel"'))
    with pytest.raises(SuiteError, match="unknown generator model"):
        runner_mod.validate_names(load_suite(str(p)))


def test_cli_list(capsys):
    for what in ("suites", "generators", "metrics", "datasets", "extractors"):
        assert main(["list", what]) == 0
    out = capsys.readouterr().out
    assert "smoke" in out and "gaussian" in out and "fid" in out and "digits" in out and "digits-cnn" in out


def test_smoke_suite_parses():
    s = load_suite("smoke")
    runner_mod.validate_names(s)
    assert {d.name for d in s.datasets} >= {"ring8", "grid25", "digits"}
    assert {g.name for g in s.generators} >= {"data", "gaussian", "ppca", "gmm"}


def test_process_executor_matches_local(tmp_path, suite_file):
    suite = load_suite(str(suite_file))
    s = runner_mod.run_suite(suite, results_dir=tmp_path / "p", progress=False, executor="process", workers=2, seeds=[0])
    assert s.ran == 3 and not s.failed
    runner_mod.run_suite(suite, results_dir=tmp_path / "l", progress=False, seeds=[0])
    assert _stable(ResultStore(tmp_path / "p" / "tiny").records()) == _stable(ResultStore(tmp_path / "l" / "tiny").records())


def test_ray_executor(tmp_path, suite_file):
    """Without the [ray] extra: a clear error. With it: a real run on a local cluster."""
    import importlib.util

    suite = load_suite(str(suite_file))
    if importlib.util.find_spec("ray") is None:
        with pytest.raises(RuntimeError, match=r"genbench\[ray\]"):
            runner_mod.run_suite(suite, results_dir=tmp_path / "r", progress=False, executor="ray", seeds=[0])
        return
    s = runner_mod.run_suite(suite, results_dir=tmp_path / "r", progress=False, executor="ray", seeds=[0])
    assert s.ran == 3


def test_plan_respects_supported_data_kinds(tmp_path):
    p = tmp_path / "k.toml"
    p.write_text(SUITE.replace('name = "data"', 'name = "data"\n[[generators]]\nname = "uniform"'))
    jobs = runner_mod.plan(load_suite(str(p)))
    assert "uniform" not in {j.gen.name for j in jobs}  # images only: not planned on ring8
    assert {j.gen.name for j in jobs} == {"data", "gaussian", "gmm"}


_ORPHAN_DRIVER = """
import os, time
from bench.executors import worker_pool
if __name__ == "__main__":
    pool = worker_pool(1)
    print(pool.submit(os.getpid).result(), flush=True)  # the worker is up and watching
    pool.submit(time.sleep, 600)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    try:
        return not any(line.startswith("State:") and "Z" in line.split()[1] for line in status.read_text().splitlines())
    except OSError:
        return not status.parent.parent.exists()  # no /proc (macOS): trust os.kill


def test_pool_workers_exit_when_the_driver_is_killed(tmp_path):
    """SIGKILL of the driver (a scheduler's time limit) must not leave its --jobs workers running."""
    script = tmp_path / "driver.py"
    script.write_text(_ORPHAN_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())
        assert _alive(worker)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), f"worker {worker} outlived its killed driver"
    finally:
        proc.kill()
