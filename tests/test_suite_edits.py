"""Editing a suite between runs into one results directory: a re-run recomputes
exactly the rows whose configuration changed, and the leaderboard shows only
records of the suite as it is now (never a stale value under a current name)."""

import json
import shutil

from bench import api
from bench import runner as runner_mod
from bench.leaderboard import write_leaderboard
from bench.store import ResultStore, suite_store
from bench.suite import load_suite

BASE = """
name = "edits"
seeds = [0]
[[datasets]]
name = "ring8"
extractor = "raw"
n_fake = 200
metrics = ["fid"]
[[generators]]
name = "gmm"
params = { n_components = COMPONENTS }
[[generators]]
name = "ddpm"
model = "ddpm"
params = { width = 8, T = 20 }
budget = { steps = 5, batch_size = 32 }
sample_params = { sampler = "ddim", eta = ETA }
steps = STEPS
"""


def _suite(tmp_path, components=8, eta=0.0, steps=(2,)):
    p = tmp_path / "edits.toml"
    p.write_text(BASE.replace("COMPONENTS", str(components)).replace("ETA", str(eta)).replace("STEPS", json.dumps(list(steps))))
    return load_suite(str(p))


def _fid_lines(res, row):
    """Every FID line of ``row`` in the append-only file (records() would keep the first of each key)."""
    lines = (json.loads(x) for x in (res / "edits" / "records.jsonl").read_text().splitlines())
    return [r["value"] for r in lines if r["generator"] == row and r["metric"] == "fid"]


def _current(suite, res):
    return {(r["generator"], r["metric"]): r["value"] for r in suite_store(res, suite).records()}


def test_changed_params_are_recomputed_and_stale_records_left_out(tmp_path):
    res = tmp_path / "res"
    s1 = _suite(tmp_path)
    assert runner_mod.run_suite(s1, results_dir=res, progress=False).ran == 2
    first = _current(s1, res)

    s2 = _suite(tmp_path, components=2)  # the gmm row changes, the ddpm row does not
    summ = runner_mod.run_suite(s2, results_dir=res, progress=False)
    assert summ.ran == 1 and summ.skipped == 1, "the edited row must be recomputed, the other kept"
    now = _current(s2, res)
    assert now[("ddpm@2", "fid")] == first[("ddpm@2", "fid")]
    assert now[("gmm", "fid")] != first[("gmm", "fid")]  # 2 components on 8 modes: a different model
    assert len(_fid_lines(res, "gmm")) == 2  # both kept in the append-only store

    rows = json.loads(write_leaderboard(s2, res, tmp_path / "lb", fmt="json").read_text())["rows"]
    gmm = [r for r in rows if r["generator"] == "gmm" and r["metric"] == "fid"]
    assert len(gmm) == 1 and gmm[0]["mean"] == now[("gmm", "fid")]
    df = api.load_results(res, s2)  # a Suite: its current records only; a name: every line's first of each key
    assert set(df.loc[df["generator"] == "gmm", "value"].dropna()) >= {now[("gmm", "fid")]}
    assert first[("gmm", "fid")] not in set(df["value"]) and first[("gmm", "fid")] in set(api.load_results(res, "edits")["value"])
    md = write_leaderboard(s2, res, tmp_path / "lb").read_text()
    assert "- left out: 2 records of an earlier configuration" in md  # the old gmm's fid and train_s

    # back to the first configuration: its records are still there, nothing to run
    again = runner_mod.run_suite(s1, results_dir=res, progress=False)
    assert again.ran == 0 and _current(s1, res) == first


def test_added_step_runs_only_the_new_row(tmp_path):
    res = tmp_path / "res"
    s1 = _suite(tmp_path, steps=(2,))
    runner_mod.run_suite(s1, results_dir=res, progress=False)
    before = {(r["generator"], r["metric"]): r["timestamp"] for r in ResultStore(res / "edits").records()}

    s2 = _suite(tmp_path, steps=(2, 4))
    summ = runner_mod.run_suite(s2, results_dir=res, progress=False)
    assert summ.ran == 1 and summ.records_added == 1  # ddim@4's FID; ddim@2 and train_s reused
    now = {(r["generator"], r["metric"]): r for r in suite_store(res, s2).records()}
    assert now[("ddpm@2", "fid")]["timestamp"] == before[("ddpm@2", "fid")]
    assert ("ddpm@4", "fid") in now
    assert runner_mod.run_suite(s2, results_dir=res, progress=False).ran == 0

    # dropping the step again hides its row (the suite no longer asks for it) but runs nothing
    s3 = _suite(tmp_path, steps=(2,))
    assert runner_mod.run_suite(s3, results_dir=res, progress=False).ran == 0
    assert ("ddpm@4", "fid") not in _current(s3, res)


def test_sampling_change_is_recomputed(tmp_path):
    res = tmp_path / "res"
    s1 = _suite(tmp_path, eta=0.0)
    runner_mod.run_suite(s1, results_dir=res, progress=False)
    s2 = _suite(tmp_path, eta=1.0)
    assert runner_mod.run_suite(s2, results_dir=res, progress=False).ran == 1
    a, b = _current(s1, res)[("ddpm@2", "fid")], _current(s2, res)[("ddpm@2", "fid")]
    assert a != b


def test_records_without_row_hash_still_count(tmp_path):
    """Results written before records carried ``row_hash`` stay readable: kept while their row is in the suite."""
    res = tmp_path / "res"
    s1 = _suite(tmp_path)
    runner_mod.run_suite(s1, results_dir=res, progress=False)
    path = res / "edits" / "records.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    for r in lines:
        r.pop("row_hash", None)
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert runner_mod.run_suite(s1, results_dir=res, progress=False).ran == 0
    assert len(suite_store(res, s1).records()) == len([r for r in lines if not r["metric"].startswith("_")])


def test_gpu_settings_do_not_invalidate_cpu_records(tmp_path):
    """A ``[settings.cuda]`` table (GPU budgets, precision) is not part of a CPU job's configuration: adding or
    editing it reruns nothing on the CPU, while a setting the CPU reads (``[settings.cpu]``) reruns the rows."""
    res = tmp_path / "res"
    s1 = _suite(tmp_path)
    runner_mod.run_suite(s1, results_dir=res, progress=False)
    first = _current(s1, res)
    p = tmp_path / "edits.toml"
    base = p.read_text()
    for table in ('budgets = { ddpm = { steps = 50 } }', 'budgets = { ddpm = { steps = 80 } }\nprecision = "bf16"'):
        p.write_text(base.replace('seeds = [0]', f'seeds = [0]\n[settings.cuda]\n{table}', 1))
        s2 = load_suite(str(p))
        summ = runner_mod.run_suite(s2, results_dir=res, progress=False)
        assert summ.ran == 0 and _current(s2, res) == first, table
    p.write_text(base.replace('seeds = [0]', 'seeds = [0]\n[settings.cpu]\nbudgets = { ddpm = { steps = 6 } }', 1))
    s3 = load_suite(str(p))
    assert runner_mod.run_suite(s3, results_dir=res, progress=False).ran >= 1, "a CPU budget change must rerun its row"
    assert _current(s3, res)[("ddpm@2", "fid")] != first[("ddpm@2", "fid")]  # 6 training steps instead of 5


def test_records_hashed_with_every_device_table_stay_current_until_the_settings_change(tmp_path):
    """Records written before the hashes resolved the settings per device (their hash covers the GPU table too)
    are current while the settings are as they were, and stale once the GPU table changes."""
    from bench.job import _config_hash, _row_hash

    res = tmp_path / "res"
    p = tmp_path / "edits.toml"
    _suite(tmp_path)
    base = p.read_text()
    p.write_text(base.replace("seeds = [0]", "seeds = [0]\n[settings.cuda]\nbudgets = { ddpm = { steps = 50 } }", 1))
    s1 = load_suite(str(p))
    runner_mod.run_suite(s1, results_dir=res, progress=False)
    first = _current(s1, res)
    jobs = {(j.dataset.name, j.gen.name): j for j in runner_mod.plan(s1)}
    path = res / "edits" / "records.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    for r in lines:  # as the earlier code hashed them: the settings as written
        j = jobs[(r["dataset"], r["base"])]
        r["config_hash"], r["row_hash"] = _config_hash(j, None), _row_hash(j, None)
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert runner_mod.run_suite(s1, results_dir=res, progress=False).ran == 0 and _current(s1, res) == first
    p.write_text(base.replace("seeds = [0]", "seeds = [0]\n[settings.cuda]\nbudgets = { ddpm = { steps = 60 } }", 1))
    assert runner_mod.run_suite(load_suite(str(p)), results_dir=res, progress=False).ran == 2


def test_timing_settings_do_not_invalidate_quality_records(tmp_path):
    """Changing how latency is timed re-measures nothing else (the timing records carry their own settings)."""
    res = tmp_path / "res"
    s1 = _suite(tmp_path)
    runner_mod.run_suite(s1, results_dir=res, progress=False)
    first = _current(s1, res)
    p = tmp_path / "edits.toml"
    p.write_text(p.read_text().replace('seeds = [0]', 'seeds = [0]\n[settings]\nlatency_repeats = 7', 1))
    s2 = load_suite(str(p))
    shutil.rmtree(res / "cache")  # the re-opened jobs must not need their models: every row is current
    summ = runner_mod.run_suite(s2, results_dir=res, progress=False)
    assert summ.records_added == 0 and _current(s2, res) == first
    assert summ.ran == 2 and not any((res / "cache").rglob("*.pt")), "a re-opened job with every row current trained or sampled"
    assert runner_mod.run_suite(s2, results_dir=res, progress=False).ran == 0
    md = write_leaderboard(s2, res, tmp_path / "lb").read_text()
    assert "- runs that did work (`bench run`, `runs.jsonl`): 1," in md  # the bookkeeping run is not listed


def test_compare_uses_the_current_configuration(tmp_path):
    """A directory that once ran an older configuration compares equal to a fresh run of the current one."""
    from bench.compare import compare_runs

    a, b = tmp_path / "a", tmp_path / "b"
    runner_mod.run_suite(_suite(tmp_path, components=8), results_dir=a, progress=False)
    s2 = _suite(tmp_path, components=2)
    runner_mod.run_suite(s2, results_dir=a, progress=False)
    runner_mod.run_suite(s2, results_dir=b, progress=False)
    assert compare_runs(a, b, s2).ok
    assert not compare_runs(a, b, "edits").ok  # by name: a's first gmm record is the 8-component one


def test_timing_settings_retime_only_the_timing_records(tmp_path):
    """A changed latency_repeats re-times every row (the records say which settings timed them); FID stays."""
    p = tmp_path / "t.toml"
    base = BASE.split("[[generators]]\nname = \"ddpm\"")[0].replace('metrics = ["fid"]', 'metrics = ["fid", "latency"]').replace("COMPONENTS", "8")
    p.write_text(base.replace("seeds = [0]", "seeds = [0]\n[settings]\nlatency_repeats = 2", 1))
    res = tmp_path / "res"
    s1 = load_suite(str(p))
    runner_mod.run_suite(s1, results_dir=res, progress=False)
    before = {(r["generator"], r["metric"]): r for r in suite_store(res, s1).records()}
    assert before[("gmm", "latency_ms")]["settings"]["repeats"] >= 2

    p.write_text(base.replace("seeds = [0]", "seeds = [0]\n[settings]\nlatency_repeats = 3\ntiming_max_repeats = 3", 1))
    s2 = load_suite(str(p))
    summ = runner_mod.run_suite(s2, results_dir=res, progress=False)
    after = {(r["generator"], r["metric"]): r for r in suite_store(res, s2).records()}
    assert after[("gmm", "fid")]["timestamp"] == before[("gmm", "fid")]["timestamp"]  # not recomputed
    assert after[("gmm", "latency_ms")]["timestamp"] > before[("gmm", "latency_ms")]["timestamp"]  # timed again
    assert after[("gmm", "latency_ms")]["settings"]["repeats"] == 3
    assert summ.records_added == len([k for k in after if k[1] not in ("fid", "train_s")]) == 2  # latency_ms, ms_per_nfe only


def test_every_timing_setting_key_changes_the_timing_hash():
    from bench.timing import TIMING_SETTING_KEYS, timing_hash

    changed = {"timing_threads": 2, "latency_batch": 7, "latency_warmup": 3, "latency_repeats": 6, "timing_max_repeats": 60,
               "timing_rel_tol": 0.1, "latency_max_seconds": 3.0, "timing_load_threshold": 0.5, "cost_batch": 2, "timing_seeds": [1]}  # fmt: skip
    assert set(changed) == set(TIMING_SETTING_KEYS)
    h0 = timing_hash({})
    for k, v in changed.items():
        assert timing_hash({k: v}) != h0, k
    assert timing_hash({"bootstrap": 100}) == h0 and timing_hash({"latency_repeats": 5}) == h0  # other keys, or a default spelled out


def _toy_experiment(suite: dict, results_dir, cache_dir, device, seeds):
    """A stand-in experiment: one record per seed whose value is the suite's setting x."""
    return [{"dataset": "d", "generator": "g", "seed": s, "metric": "score", "value": float(suite["toy-exp"]["x"])} for s in seeds]


def test_edited_experiment_suite_stores_and_shows_its_new_records(tmp_path):
    from bench.experiments import EXPERIMENTS

    EXPERIMENTS.register("toy-exp", _toy_experiment)
    try:
        p = tmp_path / "exp.toml"
        res = tmp_path / "res"
        values = []
        for x in (1.0, 2.0, 1.0):
            p.write_text(f'name = "exp"\nexperiment = "toy-exp"\nseeds = [0, 1]\n[toy-exp]\nx = {x}\n')
            s = load_suite(str(p))
            summ = runner_mod.run_suite(s, results_dir=res, progress=False)
            values.append((summ.records_added, sorted(r["value"] for r in suite_store(res, s).records())))
        # the edit stores and shows the new values; going back finds the first run's records again
        assert values == [(2, [1.0, 1.0]), (2, [2.0, 2.0]), (0, [1.0, 1.0])]
    finally:
        EXPERIMENTS.unregister("toy-exp")
