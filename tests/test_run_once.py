"""One ``bench run`` does each piece of set-up work once: every data set is built once per process, the suite's
names are checked once, and records.jsonl is parsed once (its lines each read once, by the plan, the jobs, the
timing phase and the leaderboard together)."""

from __future__ import annotations

import pytest

import bench.store as store_mod
import bench.suite as suite_mod
from bench import data
from bench.cli import main
from bench.data import core as data_core

SUITE = """
name = "once"
seeds = [0, 1]
[settings]
latency_repeats = 2
[[datasets]]
name = "ring8"
extractor = "raw"
n_fake = 200
metrics = ["fid", "latency"]
[[datasets]]
name = "digits"
n_fake = 100
metrics = ["fid"]
[[generators]]
name = "data"
[[generators]]
name = "gaussian"
"""


@pytest.fixture
def counts(monkeypatch):
    """Counters of data-set builds (per name), name checks and record-line parses."""
    got: dict[str, object] = {"built": {}, "validated": 0, "parsed": 0}
    real_entry, real_validate, real_parse = data_core._entry, suite_mod.validate_names, store_mod._parse_line

    class CountingEntry:
        def __init__(self, name, entry):
            self.name, self.entry, self.meta = name, entry, entry.meta

        def load(self):
            fn = self.entry.load()

            def build(**params):
                got["built"][self.name] = got["built"].get(self.name, 0) + 1
                return fn(**params)

            build.__signature__ = __import__("inspect").signature(fn)
            return build

    def validate(suite):
        got["validated"] += 1
        return real_validate(suite)

    def parse(raw):
        got["parsed"] += 1
        return real_parse(raw)

    monkeypatch.setattr(data_core, "_entry", lambda name: CountingEntry(name, real_entry(name)))
    monkeypatch.setattr(suite_mod, "validate_names", validate)
    import bench.cli as cli_mod
    import bench.runner as runner_mod

    for mod in (runner_mod, cli_mod):  # the modules that import it by name
        monkeypatch.setattr(mod, "validate_names", validate, raising=False)
    monkeypatch.setattr(store_mod, "_parse_line", parse)
    data.clear_cache()
    yield got
    data.clear_cache()


def test_bench_run_sets_up_once(tmp_path, counts):
    p = tmp_path / "once.toml"
    p.write_text(SUITE)
    rc = main(["run", "--suite", str(p), "--results", str(tmp_path / "res"), "--out", str(tmp_path / "lb"), "--jobs", "1", "--no-progress"])
    assert rc == 0
    assert counts["built"] == {"ring8": 1, "digits": 1}
    assert counts["validated"] == 1
    lines = (tmp_path / "res" / "once" / "records.jsonl").read_bytes().splitlines()
    assert len(lines) > 8 and counts["parsed"] == len(lines)
    assert (tmp_path / "lb" / "once.md").exists()


def test_the_timing_phase_says_when_it_trains_a_model_again(tmp_path, monkeypatch, capsys):
    """A model missing from the cache when the timing phase loads it (the family's code changed since its job ran)
    is trained again, and a progress line says so: it can cost as much as the job did."""
    import bench.runner as runner_mod
    from bench.suite import load_suite

    p = tmp_path / "once.toml"
    p.write_text('name = "once"\nseeds = [0]\n[[datasets]]\nname = "ring8"\nextractor = "raw"\nn_fake = 200\nmetrics = ["fid"]\n'
                 '[[generators]]\nname = "gmm"\nparams = { n_components = 8 }\n')  # fmt: skip
    suite = load_suite(str(p))
    runner = runner_mod.Runner(suite, results_dir=tmp_path / "res", device="cpu", progress=False, job_lines=True)
    job = runner_mod.plan(suite, None)[0]
    runner.load_model(job)
    assert "trained again" in capsys.readouterr().err  # an empty cache: trained here
    runner.load_model(job)
    assert "trained again" not in capsys.readouterr().err  # now cached
