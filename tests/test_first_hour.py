"""Issue 31, "the first hour of a new user": a fast default run, scoring that never dies on one metric,
defaults that work offline, a model from the user's own script, runs that leave the clone clean."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import data as dreg
from bench.cli import main
from bench.evaluate import format_eval, run_eval
from bench.leaderboard import tied_with_best
from bench.parallel import Parallelism, cgroup_cpu_limit, choose_parallelism, usable_cores
from metrics import extractors as freg
from metrics import registry as mreg
from metrics.latency import LoadMonitor

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- 1. workers and threads
def test_default_is_one_single_threaded_worker_per_usable_core():
    p = choose_parallelism(cores=2, env={})
    assert (p.workers, p.threads, p.source) == (2, 1, "default")
    assert choose_parallelism(cores=16, env={}).workers == 16
    assert choose_parallelism(cores=1, env={}).workers == 1
    assert "2 workers x 1 thread" in p.describe() and "default" in p.describe()


def test_jobs_and_threads_flags_override_the_default():
    assert (lambda p: (p.workers, p.threads))(choose_parallelism(jobs=1, cores=4, env={})) == (1, 4)  # the old quick start
    assert (lambda p: (p.workers, p.threads))(choose_parallelism(jobs=2, cores=4, env={})) == (2, 2)
    assert (lambda p: (p.workers, p.threads))(choose_parallelism(jobs=8, cores=4, env={})) == (8, 1)
    assert (lambda p: (p.workers, p.threads))(choose_parallelism(threads=2, cores=4, env={})) == (2, 2)
    assert (lambda p: (p.workers, p.threads))(choose_parallelism(threads=8, cores=4, env={})) == (1, 8)
    both = choose_parallelism(jobs=3, threads=5, cores=4, env={})
    assert (both.workers, both.threads, both.source) == (3, 5, "--jobs and --threads")
    with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
        choose_parallelism(jobs=0, cores=2)


def test_omp_num_threads_counts_as_threads_and_the_default_equals_omp1_jobs_cores():
    env1 = choose_parallelism(cores=2, env={"OMP_NUM_THREADS": "1"})
    default = choose_parallelism(cores=2, env={})
    explicit = choose_parallelism(jobs=2, cores=2, env={"OMP_NUM_THREADS": "1"})  # OMP_NUM_THREADS=1 bench run --jobs 2
    assert (default.workers, default.threads) == (explicit.workers, explicit.threads) == (env1.workers, env1.threads) == (2, 1)
    assert choose_parallelism(cores=4, env={"OMP_NUM_THREADS": "2"}).source == "OMP_NUM_THREADS"
    assert choose_parallelism(cores=4, env={"OMP_NUM_THREADS": "junk"}).source == "default"


def test_cuda_defaults_to_one_worker_with_every_core():
    p = choose_parallelism(cores=8, device="cuda", env={})
    assert (p.workers, p.threads) == (1, 8)


def test_usable_cores_respects_affinity_and_cgroup_quota():
    assert usable_cores(affinity=8, cgroup_limit=None) == 8
    assert usable_cores(affinity=8, cgroup_limit=2.5) == 2  # docker --cpus 2.5: two whole cores
    assert usable_cores(affinity=2, cgroup_limit=6.0) == 2  # taskset to 2 CPUs
    assert usable_cores(affinity=8, cgroup_limit=0.5) == 1  # never below one
    p = choose_parallelism(affinity=4, cgroup_limit=3.0, env={})
    assert (p.workers, p.cores, p.affinity, p.cgroup_limit) == (3, 3, 4, 3.0) and "cgroup quota 3 CPUs" in p.describe()
    if hasattr(os, "sched_getaffinity"):
        assert usable_cores(cgroup_limit=None) == len(os.sched_getaffinity(0))


def test_cgroup_quota_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    (v2 / "user" / "job").mkdir(parents=True)
    (v2 / "cpu.max").write_text("max 100000\n")
    (v2 / "user" / "job" / "cpu.max").write_text("150000 100000\n")
    me = tmp_path / "cgroup"
    me.write_text("0::/user/job\n")
    assert cgroup_cpu_limit(v2, me) == pytest.approx(1.5)
    (v2 / "user" / "job" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(v2, me) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct" / "docker" / "abc").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us").write_text("100000\n")
    me.write_text("4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n")
    assert cgroup_cpu_limit(v1, me) == pytest.approx(2.0)
    (v1 / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(v1, me) is None


def test_parallelism_reaches_the_runner_and_the_run_log(tmp_path):
    import datetime as dt

    from bench.pipeline import RunSummary
    from bench.runner import run_log_entry

    s = RunSummary(planned=3, ran=3, executor="process", workers=2, threads=1)
    e = run_log_entry(s, None, dt.datetime.now(dt.UTC), "process", 2, Parallelism(2, 1, 2, "default", 2, None))
    assert e["workers"] == 2 and e["threads"] == 1 and e["parallelism_source"] == "default" and "2 workers x 1 thread" in e["parallelism"]


# ----------------------------------------------------------------------------- 6. provenance: the run's own workers
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_load_monitor_counts_its_descendants_as_its_own_work():
    code = "import time\nwhile time.process_time() < 0.6: pass\nprint(time.process_time())"  # 0.6 s of CPU, however loaded
    with LoadMonitor(threshold_cores=0.25, track_children=True, poll_s=0.05) as mon:
        spin = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)  # a worker of this run
        child_cpu = float(spin.communicate(timeout=120)[0])
    r = mon.result
    # the child's CPU counts as the run's (less what it used after the last poll before it exited)
    assert r.own_cpu_s is not None and r.own_cpu_s > child_cpu - 0.3, (r, child_cpu)
    assert "descendants" in r.method
    before = mon.descendant_cpu_s()
    mon.report_worker_cpu(123456, "elsewhere", 5.0)  # a Ray worker on another machine adds nothing here
    mon.report_worker_cpu(123457, __import__("socket").gethostname(), 2.0)  # one on this machine, not a descendant, does
    assert mon.descendant_cpu_s() == pytest.approx(before + 2.0)


# ----------------------------------------------------------------------------- 2. each metric fails alone
def test_eval_of_the_held_out_split_scores_everything_but_fls(tmp_path):
    ds = dreg.load("digits")
    res = run_eval(ds.test_x.numpy(), "digits", cache_dir=tmp_path)
    assert math.isnan(res["fls"].value) and "held-out test points" in res["fls"].settings["na"]
    assert math.isnan(res["fls_gap"].value)
    for m in ("fid", "kid", "precision", "recall", "coverage", "copy_rate", "dist_ratio", "is"):
        assert math.isfinite(res[m].value), m
    assert res.requested_na == []  # the default panel: n/a does not make the evaluation fail
    text = format_eval(res)
    assert "FLS" in text and "n/a" in text and "FID" in text


def test_eval_cli_exit_code_says_n_a_only_for_metrics_asked_for(tmp_path, capsys):
    ds = dreg.load("digits")
    f = tmp_path / "test.npz"
    np.savez(f, x=ds.test_x.numpy())
    assert main(["eval", "--samples", str(f), "--dataset", "digits", "--metrics", "fid", "kid"]) == 0
    assert main(["eval", "--samples", str(f), "--dataset", "digits", "--metrics", "fid", "fls"]) == 1
    out = capsys.readouterr()
    assert "FID" in out.out and "n/a" in out.out and "asked for by name" in out.err
    args = ["eval", "--samples", str(f), "--dataset", "digits", "--metrics", "fid", "fls"]
    assert main([*args, "--json", "--batch-size", "64", "--device", "cpu"]) == 1
    payload = json.loads(capsys.readouterr().out)
    recs = {r["metric"]: r for r in payload["records"]}
    assert recs["fid"]["value"] > 0 and recs["fls"]["value"] is None and "held-out" in recs["fls"]["na_reason"]


def test_pipeline_measure_isolates_a_failing_metric():
    from bench.pipeline import measure
    from metrics.context import EvalContext
    from metrics.registry import Output, register_metric

    @register_metric("test-boom", [Output("test-boom", "boom", "min")])
    def boom(ctx):
        raise ValueError("boom needs something this context lacks")

    try:
        ds = dreg.load("ring8")
        ctx = EvalContext(data_info=ds.info, fake=ds.test_x[:200], real=ds.train_x[:500], extractor=freg.get_extractor("raw"))
        out = {m.spec.name: m for m in measure(ctx, ["test-boom", "fid"])}
        assert out["test-boom"].values is None and out["test-boom"].error and "lacks" in out["test-boom"].reason
        assert math.isfinite(out["fid"].values["fid"].value)
    finally:
        mreg.METRICS.unregister("test-boom")


def test_an_extractor_that_cannot_load_leaves_the_other_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # no inception weights here
    monkeypatch.setattr(freg, "_INSTANCES", {})  # nor one built earlier in this process
    ds = dreg.load("ring8")
    res = run_eval(ds.test_x[:300].numpy(), "ring8", extractor="inception-v3-compat", metrics=["fid", "mode_collapse"], cache_dir=tmp_path)
    assert res.extractor_error and math.isnan(res["fid"].value) and "could not load" in res["fid"].settings["na"]
    assert res["modes"].value == 8  # mode counting needs no features: still computed


# ----------------------------------------------------------------------------- 3. defaults that work offline
EMBEDDED = [n for n in dreg.available() if dreg.describe(n).source == "embedded"]


@pytest.mark.parametrize("name", EMBEDDED)
def test_every_embedded_dataset_has_an_offline_default_extractor(name):
    d = dreg.describe(name)
    assert d.extractor, f"{name} registers no default extractor"
    assert freg.weights_ship(d.extractor), f"{name}'s default {d.extractor} needs the network"
    info = dreg.load(name).info
    kind = "points" if info.kind == "points" else "image"
    assert d.extractor in freg.offline_extractors(tuple(info.shape), kind)
    assert f"default extractor: {d.extractor}" in d.line()


def test_mnist5k_defaults_to_mnist_cnn_and_scores_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    assert dreg.default_extractor("mnist5k", dreg.load("mnist5k").info) == "mnist-cnn"
    x = dreg.load("mnist5k").test_x[:200]
    res = run_eval(x.numpy(), "mnist5k", metrics=["fid"], cache_dir=tmp_path)
    assert res.extractor == "mnist-cnn" and math.isfinite(res["fid"].value) and res["fid"].settings["extractor"] == "mnist-cnn"
    assert any("N = 200" in n for n in res.notes)  # fewer samples than the test split: said out loud


def test_list_extractors_describes_each_and_missing_weights_name_working_ones(capsys):
    assert main(["list", "extractors"]) == 0
    out = capsys.readouterr().out
    for name in freg.available():
        assert name in out
    assert "trained on: mnist5k train split" in out and "features: 128" in out and "works offline" in out and "not shipped" in out
    from bench.pipeline import offline_hint

    hint = offline_hint("inception-v3-compat", dreg.load("mnist5k").info)
    assert "mnist-cnn" in hint and "1x28x28" in hint
    assert main(["list", "datasets"]) == 0
    assert "default extractor: mnist-cnn" in capsys.readouterr().out


def test_samples_off_the_intensity_levels_get_a_note(tmp_path):
    x = dreg.load("digits").test_x.clone()
    res = run_eval((x * 0.97 + 0.01).numpy(), "digits", metrics=["fid"], cache_dir=tmp_path)
    assert any("intensity levels" in n for n in res.notes)
    assert not any("intensity levels" in n for n in run_eval(x.numpy(), "digits", metrics=["fid"], cache_dir=tmp_path).notes)
    # 8-bit files of 17-level data (PNG) stay on the grid
    u8 = (x * 255).round() / 255
    assert not any("intensity levels" in n for n in run_eval(u8.numpy(), "digits", metrics=["fid"], cache_dir=tmp_path).notes)


# ----------------------------------------------------------------------------- 4. your own model from a script
SCRIPT = '''
import torch
from baselines.registry import register
from genbench.protocol import GeneratorInfo, TrainReport


class PixelGauss:
    """Independent Gaussian per pixel, rounded to the data's levels."""

    def __init__(self, info):
        self.data = info
        self.info = GeneratorInfo(name="pixel-gauss", family="mine", shape=tuple(info.shape))
        self.mu, self.sd = torch.zeros(info.shape), torch.ones(info.shape)

    def fit(self, data, budget):
        self.mu, self.sd = data.x.mean(0), data.x.std(0) + 1e-3
        return TrainReport(steps=1, wall_time_s=0.0, losses={})

    def state_dict(self):
        return {"mu": self.mu, "sd": self.sd}

    def load_state_dict(self, s):
        self.mu, self.sd = s["mu"], s["sd"]

    def sample(self, n, *, labels=None, prompts=None, steps=None, generator=None):
        k = self.data.levels - 1
        return ((self.mu + self.sd * torch.randn((n, *self.mu.shape), generator=generator)).clamp(0, 1) * k).round() / k


@register("pixel-gauss", family="mine", kinds=("image",))
def make(info):
    return PixelGauss(info)
'''


def _bench(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "GENBENCH_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture
def script_dir(tmp_path):
    (tmp_path / "my_models.py").write_text(textwrap.dedent(SCRIPT))
    (tmp_path / "mine.toml").write_text(
        textwrap.dedent("""
        name = "mine"
        seeds = [0, 1]
        [[datasets]]
        name = "digits"
        metrics = ["fid", "fls"]
        [[generators]]
        name = "pixel-gauss"
        [[generators]]
        name = "data"
        """)
    )
    return tmp_path


@pytest.mark.slow
def test_script_registered_model_runs_with_import_in_worker_processes(script_dir):
    r = _bench(["run", "--suite", "mine.toml", "--results", "res"], script_dir)
    assert r.returncode == 2 and "--import MODULE" in r.stderr  # without --import: unknown, and told how
    r = _bench(["run", "--suite", "mine.toml", "--results", "res", "--import", "my_models.py", "--jobs", "2"], script_dir)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in (script_dir / "res" / "mine" / "records.jsonl").read_text().splitlines()]
    fid = {(x["generator"], x["seed"]): x["value"] for x in recs if x["metric"] == "fid"}
    assert set(fid) == {("pixel-gauss", 0), ("pixel-gauss", 1), ("data", 0), ("data", 1)} and fid[("pixel-gauss", 0)] > fid[("data", 0)]
    fls = [x for x in recs if x["metric"] == "fls" and x["generator"] == "data"]
    assert fls and all(x["value"] is None and x["na_error"] and "held-out" in x["na_reason"] for x in fls)  # n/a, the job is not failed
    # progress: one line per job start and end on stderr, although it is a pipe here
    assert r.stderr.count("bench: start ") == 4 and r.stderr.count("bench: done ") == 4 and "4 of 4 finished" in r.stderr
    # the leaderboard went under the results directory, naming its records relative to it
    lb = (script_dir / "res" / "leaderboards" / "mine.md").read_text()
    assert "from `mine/records.jsonl` in the results directory" in lb and str(script_dir) not in lb
    assert "n/a (data) — FLS" in lb and "2 worker(s) x 1 thread(s)" in lb
    run = json.loads((script_dir / "res" / "mine" / "runs.jsonl").read_text().splitlines()[-1])
    assert run["workers"] == 2 and run["threads"] == 1 and run["executor"] == "process"


@pytest.mark.slow
def test_check_with_import_and_module_factory(script_dir):
    r = _bench(["check", "pixel-gauss"], script_dir)
    assert r.returncode == 1 and "on ?" not in r.stdout and "--import MODULE" in r.stdout
    r = _bench(["check", "--import", "my_models", "pixel-gauss"], script_dir)
    assert r.returncode == 0 and "PASS" in r.stdout, r.stdout + r.stderr
    r = _bench(["check", "my_models:make"], script_dir)
    assert r.returncode == 0 and "PASS" in r.stdout, r.stdout + r.stderr


def test_suite_model_as_module_factory(script_dir, monkeypatch):
    from baselines import registry as greg
    from bench.suite import SuiteError, load_suite, validate_names

    monkeypatch.chdir(script_dir)
    monkeypatch.syspath_prepend(str(script_dir))
    p = script_dir / "mf.toml"
    p.write_text('name = "mf"\n[[datasets]]\nname = "digits"\nmetrics = ["fid"]\n[[generators]]\nname = "mine"\nmodel = "my_models:make"\n')
    try:
        s = load_suite(str(p))
        validate_names(s)
        assert s.datasets[0].extractor == "digits-cnn"  # a data set's registered default when the suite names none
        entry = greg.get("my_models:make")
        assert entry.family == "user" and callable(entry.factory)
        bad = script_dir / "bad.toml"
        bad.write_text(p.read_text().replace("my_models:make", "my_models:nope"))
        with pytest.raises(SuiteError, match="has no attribute 'nope'"):
            validate_names(load_suite(str(bad)))
    finally:  # importing the script registered pixel-gauss in this process: take it out again
        greg.GENERATORS.unregister("pixel-gauss")
        sys.modules.pop("my_models", None)


def test_missing_toml_path_is_not_an_unknown_suite(tmp_path, capsys):
    assert main(["run", "--suite", str(tmp_path / "nope.toml"), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "unknown suite" not in err


# ----------------------------------------------------------------------------- 5. user runs leave the committed tables alone
def test_default_leaderboard_location_and_csv_on_stdout(tmp_path, capsys):
    suite = tmp_path / "t.toml"
    suite.write_text(
        'name = "t"\n[[datasets]]\nname = "ring8"\nparams = { n_train = 600, n_test = 200 }\nmetrics = ["fid"]\n'
        '[[generators]]\nname = "gaussian"\n'
    )
    res = tmp_path / "res"
    assert main(["run", "--suite", str(suite), "--results", str(res), "--no-progress"]) == 0
    assert (res / "leaderboards" / "t.md").is_file() and not (tmp_path / "leaderboards").exists()
    text = (res / "leaderboards" / "t.md").read_text()
    assert str(tmp_path) not in text and "`t/records.jsonl`" in text
    capsys.readouterr()
    assert main(["leaderboard", "--suite", str(suite), "--results", str(res), "--format", "csv", "--out", "-"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dataset,generator,") and "gaussian" in out
    assert main(["leaderboard", "--suite", str(suite), "--results", str(res), "--out", "-"]) == 2  # md cannot go to stdout
    assert main(["leaderboard", "--suite", str(suite), "--results", str(res), "--out", str(tmp_path / "lb")]) == 0
    assert (tmp_path / "lb" / "t.md").is_file()


def test_committed_leaderboards_hold_no_absolute_path():
    for p in (ROOT / "leaderboards").glob("*.md"):
        text = p.read_text()
        assert "from `/" not in text, p.name


def test_readme_quick_start_keeps_its_form_and_names_the_new_location():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -e . && bench run --suite smoke" in readme
    assert "results/leaderboards/smoke.md" in readme and "--out leaderboards" in readme and "--import" in readme


# ----------------------------------------------------------------------------- 7. smaller items
def test_direction_one_ranks_closest_to_one():
    from bench.leaderboard import CellStats

    cells = {"a": CellStats(0.5, None, 1), "b": CellStats(1.1, None, 1), "c": CellStats(2.0, None, 1)}
    marked, _ = tied_with_best(cells, "one")
    assert marked == {"b"}
    assert mreg.all_outputs()["dist_ratio"].direction == "one" and mreg.ARROWS["one"] == "→1"


def test_kid_states_its_scale(tmp_path):
    x = dreg.load("digits").test_x
    res = run_eval(x.numpy(), "digits", metrics=["kid"], cache_dir=tmp_path)
    assert "not x1000" in res["kid"].settings["scale"]


def test_check_report_does_not_say_on_question_mark_and_lists_no_set_sampler():
    from bench.check import check_generator

    rep = check_generator("no-such-model")
    assert rep.format().splitlines()[0] == "bench check no-such-model"
    assert "set_sampler" not in (ROOT / "bench" / "check.py").read_text()


def test_loss_curves_have_axis_labels(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from bench import plots

    labels = []
    for name in ("set_xlabel", "set_ylabel"):
        orig = getattr(Axes, name)
        monkeypatch.setattr(Axes, name, (lambda f: lambda self, t, *a, **k: (labels.append(t), f(self, t, *a, **k))[1])(orig))
    plots.save_loss_curves({"gan": {"g": [3.0, 2.0, 1.5], "d": [1.0, 0.9, 0.8]}}, tmp_path / "l.png", steps={"gan": 300})
    assert "training step" in labels and "loss" in labels and (tmp_path / "l.png").is_file()
