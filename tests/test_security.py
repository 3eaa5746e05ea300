"""Hostile and broken inputs (issue 12): paths from names, damaged artifacts and records, suite schema,
CLI flags, short sample batches, concurrent runs on one results directory."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch

from baselines import registry
from bench import runner as runner_mod
from bench.cli import main
from bench.store import JOB_DONE, DamagedRecordWarning, ResultStore
from bench.suite import SuiteError, load_suite, validate_names
from genbench.cache import read_artifact
from genbench.protocol import GeneratorInfo

SUITE = """
name = "sec"
seeds = [0]
[[datasets]]
name = "ring8"
extractor = "raw"
n_fake = 200
metrics = ["fid", "nll"]
[[generators]]
name = "data"
[[generators]]
name = "gaussian"
[[generators]]
name = "gmm"
params = { n_components = 8 }
budget = { steps = 20 }
"""


def _write(tmp_path, text, name="sec.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _values(store_dir):
    return sorted((r["job"], r["generator"], r["metric"], r.get("value")) for r in ResultStore(store_dir).records() if r["metric"] != "train_s")


# ------------------------------------------------------------------------------------------------ names and paths
@pytest.mark.parametrize("name", ["../../victim", "/tmp/victim", "a/b", "..", ".hidden"])
def test_suite_name_cannot_escape(tmp_path, capsys, name):
    assert main(["run", "--suite", name, "--results", str(tmp_path / "res"), "--no-leaderboard"]) == 2
    assert "suite name" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize(
    "old,new,field",
    [
        ('name = "sec"', 'name = "../../victim"', "name"),
        ('name = "gaussian"', 'name = "../gaussian"', "generators[1].name"),
        ('name = "ring8"', 'name = "/etc/ring8"', "datasets[0].name"),
    ],
)
def test_names_in_a_suite_file_must_be_safe(tmp_path, old, new, field):
    with pytest.raises(SuiteError, match=re.escape(field)):
        load_suite(str(_write(tmp_path, SUITE.replace(old, new, 1))))


# ------------------------------------------------------------------------------------------------ suite schema
@pytest.mark.parametrize(
    "old,new,field",
    [
        ("seeds = [0]", 'seeds = ["zero"]', "seeds[0]"),
        ("seeds = [0]", "seeds = [-1]", "seeds[0]"),
        ("seeds = [0]", "seeds = [4294967296]", "seeds[0]"),
        ("seeds = [0]", "seeds = [true]", "seeds[0]"),
        ("n_fake = 200", "n_fake = -5", "n_fake"),
        ("n_fake = 200", 'n_fake = "many"', "n_fake"),
        ("params = { n_components = 8 }", "params = 5", "params"),
        ("budget = { steps = 20 }", "budget = { steps = 0 }", "budget.steps"),
        ("budget = { steps = 20 }", "budget = { stpes = 20 }", "budget"),
        ('metrics = ["fid", "nll"]', "metrics = 3", "metrics"),
        ('name = "gmm"', 'name = "gmm"\nsteps = [0]', "steps[0]"),
        ("seeds = [0]", "seeds = [0]\nbogus = 1", "bogus"),
    ],
)
def test_schema_errors_name_the_field(tmp_path, capsys, old, new, field):
    p = _write(tmp_path, SUITE.replace(old, new, 1))
    with pytest.raises(SuiteError, match=re.escape(field)):
        load_suite(str(p))
    assert main(["run", "--suite", str(p), "--results", str(tmp_path / "res"), "--no-leaderboard"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_unknown_section_is_caught_before_any_work(tmp_path, capsys):
    p = _write(tmp_path, SUITE.replace("seeds = [0]", 'seeds = [0]\nsections = ["nosuchsection"]'))
    with pytest.raises(SuiteError, match="unknown section 'nosuchsection'"):
        validate_names(load_suite(str(p)))
    assert main(["run", "--suite", str(p), "--results", str(tmp_path / "res")]) == 2
    assert not (tmp_path / "res").exists()


def test_duplicate_seeds_collapse(tmp_path):
    s = load_suite(str(_write(tmp_path, SUITE.replace("seeds = [0]", "seeds = [3, 3, 1]"))))
    assert s.seeds == (3, 1)
    assert len(runner_mod.plan(s, [0, 0])) == 3


# ------------------------------------------------------------------------------------------------ CLI flags
@pytest.mark.parametrize("flags", [["--jobs", "0"], ["--seeds", "-1"], ["--seeds", "4294967296"], ["--seeds", "x"]])
def test_bad_flags_exit_2(tmp_path, flags):
    p = _write(tmp_path, SUITE)
    with pytest.raises(SystemExit) as e:
        main(["run", "--suite", str(p), "--results", str(tmp_path / "res"), *flags])
    assert e.value.code == 2
    assert not (tmp_path / "res").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_results_exit_2_before_work(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert main(["run", "--suite", str(_write(tmp_path, SUITE)), "--results", str(ro / "res"), "--no-leaderboard"]) == 2
    assert "not writable" in capsys.readouterr().err


def test_results_that_is_a_file_exit_2_before_work(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["run", "--suite", str(_write(tmp_path, SUITE)), "--results", str(f / "res"), "--no-leaderboard"]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["run", "--suite", str(_write(tmp_path, SUITE)), "--results", str(tmp_path / "r"), "--out", str(f)]) == 2
    assert not (tmp_path / "r").exists()


def test_seeds_flag_duplicates_run_once(tmp_path, capsys):
    assert main(["run", "--suite", str(_write(tmp_path, SUITE)), "--results", str(tmp_path / "res"), "--no-leaderboard", "--seeds", "0", "0"]) == 0
    assert "3 jobs planned, 3 ran" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ damaged artifacts
def test_flipped_bytes_in_every_cached_artifact_are_recomputed(tmp_path, caplog):
    suite = load_suite(str(_write(tmp_path, SUITE)))
    runner_mod.run_suite(suite, results_dir=tmp_path / "res", progress=False)
    clean = _values(tmp_path / "res" / "sec")
    files = [p for p in (tmp_path / "res" / "cache").rglob("*") if p.is_file() and p.parent.name != ".locks"]  # artifacts, not locks
    assert {p.parent.name for p in files} >= {"models", "samples", "features"}
    for p in files:
        blob = bytearray(p.read_bytes())
        for i in range(len(blob) // 2, min(len(blob), len(blob) // 2 + 64)):
            blob[i] ^= 0x5A
        p.write_bytes(bytes(blob))
    (tmp_path / "res" / "sec" / "records.jsonl").unlink()
    with caplog.at_level(logging.WARNING, "genbench.cache"):
        s = runner_mod.run_suite(suite, results_dir=tmp_path / "res", progress=False)
    assert not s.failed and s.ran == 3
    assert _values(tmp_path / "res" / "sec") == clean  # no value computed from a damaged file (FID 6e43 was possible before)
    warned = [r.getMessage() for r in caplog.records if r.name == "genbench.cache"]
    assert len(warned) == len(files) and all(any(str(p) in m for m in warned) for p in files)  # each reported once, naming the file


def test_truncated_model_report_is_recomputed(tmp_path, caplog):
    suite = load_suite(str(_write(tmp_path, SUITE)))
    runner_mod.run_suite(suite, results_dir=tmp_path / "res", progress=False)
    reports = list((tmp_path / "res" / "cache" / "models").glob("*.json"))
    assert reports
    for p in reports:
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    (tmp_path / "res" / "sec" / "records.jsonl").unlink()
    with caplog.at_level(logging.WARNING, "genbench.cache"):
        s = runner_mod.run_suite(suite, results_dir=tmp_path / "res", progress=False)
    assert not s.failed and s.ran == 3
    cut = ("checksum mismatch", "bad or missing header")  # cut in the payload, or (short files) in the header
    assert any(any(c in r.getMessage() for c in cut) and ".json" in r.getMessage() for r in caplog.records)
    assert all(isinstance(read_artifact(p), dict) for p in reports)  # rewritten whole


def _rewrite_under_same_key(p, obj):
    """Replace an artifact's payload with ``obj``, with a valid checksum and the key it was written under: a tampered
    file that only the content re-validation can catch."""
    import hashlib
    import io

    head = p.read_bytes().split(b"\n", 1)[0].split(b" ")
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    p.write_bytes(b" ".join([*head[:2], hashlib.sha256(payload).hexdigest().encode(), *head[3:]]) + b"\n" + payload)


def test_cached_samples_are_revalidated_on_a_hit(tmp_path, caplog):
    """A checksummed but wrong sample file (one sample short, NaN) is caught by the re-validation, not scored."""
    suite = load_suite(str(_write(tmp_path, SUITE)))
    runner_mod.run_suite(suite, results_dir=tmp_path / "res", progress=False)
    clean = _values(tmp_path / "res" / "sec")
    for p in (tmp_path / "res" / "cache" / "samples").glob("*.pt"):
        obj = read_artifact(p)
        x = obj["x"][:-1].clone()
        x[0, 0] = float("nan")
        _rewrite_under_same_key(p, {**obj, "x": x})
    for p in (tmp_path / "res" / "cache" / "features").glob("*"):
        p.unlink()
    (tmp_path / "res" / "sec" / "records.jsonl").unlink()
    with caplog.at_level(logging.WARNING, "genbench.cache"):
        s = runner_mod.run_suite(suite, results_dir=tmp_path / "res", progress=False)
    assert not s.failed
    assert sum("failed validation" in r.getMessage() for r in caplog.records) == 3
    assert _values(tmp_path / "res" / "sec") == clean


# ------------------------------------------------------------------------------------------------ damaged records
@pytest.mark.parametrize("damage", [b'{"job": "ring8/gaussian/seed0", "gener\xff\xfe garbled\n', b"[1, 2, 3]\n", b'"a string"\n', b"\xff\xfe\xfa\n"])
def test_damaged_record_lines_mean_recomputation_never_loss(tmp_path, damage):
    suite = load_suite(str(_write(tmp_path, SUITE)))
    runner_mod.run_suite(suite, results_dir=tmp_path / "res", progress=False)
    path = tmp_path / "res" / "sec" / "records.jsonl"
    clean = _values(path.parent)
    lines = path.read_bytes().splitlines(keepends=True)
    i = next(k for k, line in enumerate(lines) if b'"gaussian"' in line and b'"fid"' in line)
    lines[i] = damage  # the gaussian job loses its FID record
    path.write_bytes(b"".join(lines))
    with pytest.warns(DamagedRecordWarning, match=rf"records.jsonl:{i + 1}:"):
        store = ResultStore(path.parent)
        assert "ring8/gaussian/seed0" not in store.done_jobs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedRecordWarning)
        s = runner_mod.run_suite(suite, results_dir=tmp_path / "res", progress=False)
        assert s.ran == 1 and s.skipped == 2 and s.records_added == 1  # only the lost record is recomputed
        assert _values(path.parent) == clean
        assert main(["leaderboard", "--suite", str(tmp_path / "sec.toml"), "--results", str(tmp_path / "res"), "--out", str(tmp_path / "lb")]) == 0


# ------------------------------------------------------------------------------------------------ short batches
class ShortGen:
    """Returns one sample fewer than asked."""

    def __init__(self, info):
        self._info = info

    @property
    def info(self):
        return GeneratorInfo("short-gen", "test", self._info.shape)

    def sample(self, n, *, labels=None, prompts=None, steps=None, generator=None):
        return torch.zeros(max(n - 1, 0), *self._info.shape)


def test_generator_must_return_exactly_n(tmp_path):
    registry.GENERATORS.unregister("short-gen")
    registry.register("short-gen", family="test")(lambda info: ShortGen(info))
    try:
        p = _write(tmp_path, SUITE + '\n[[generators]]\nname = "short-gen"\n')
        s = runner_mod.run_suite(load_suite(str(p)), results_dir=tmp_path / "r", progress=False)
    finally:
        registry.GENERATORS.unregister("short-gen")
    assert [j for j, _ in s.failed] == ["ring8/short-gen/seed0"]
    assert "SampleError" in s.failed[0][1] and "199" in s.failed[0][1] and "exactly" in s.failed[0][1]
    recs = ResultStore(tmp_path / "r" / "sec").records()
    assert not [r for r in recs if r["generator"] == "short-gen" and r["metric"] == "fid"]


# ------------------------------------------------------------------------------------------------ concurrent runs
def test_two_concurrent_runs_claim_jobs(tmp_path):
    """Two processes on one results directory: every job runs once, records_added sums to the records written."""
    text = SUITE.replace("seeds = [0]", "seeds = [0, 1, 2]\n[settings]\nlatency_repeats = 2\ntiming_max_repeats = 2\nlatency_batch = 8")
    text = text.replace('metrics = ["fid", "nll"]', 'metrics = ["fid", "nll", "latency"]')  # the timing phase is claimed too
    p = _write(tmp_path, text)
    cmd = [sys.executable, "-m", "bench", "run", "--suite", str(p), "--results", str(tmp_path / "res"), "--no-leaderboard", "--no-progress"]
    env = {**os.environ, "GENBENCH_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [pr.communicate(timeout=600) for pr in procs]
    assert all(pr.returncode == 0 for pr in procs), outs
    ran = [int(re.search(r"(\d+) ran", o).group(1)) for o, _ in outs]
    added = [int(re.search(r"(\d+) records added", o).group(1)) for o, _ in outs]
    raw = [json.loads(line) for line in (tmp_path / "res" / "sec" / "records.jsonl").read_bytes().splitlines()]
    done_lines = [r for r in raw if r["metric"] == JOB_DONE]
    assert sum(ran) == 9 and len(done_lines) == 9  # no job ran twice
    metric_lines = [r for r in raw if not r["metric"].startswith("_")]
    assert sum(added) == len(metric_lines) == len(ResultStore(tmp_path / "res" / "sec").records())


# ------------------------------------------------------------------------------------------------ a second round of probes
def test_linked_assets_folder_is_refused_before_any_work(tmp_path, capsys):
    """--out/assets/<suite> a symbolic link to another folder: exit 2 before training, nothing written or deleted there."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.png").write_bytes(b"not ours")
    (tmp_path / "lb" / "assets").mkdir(parents=True)
    (tmp_path / "lb" / "assets" / "sec").symlink_to(victim)
    assert main(["run", "--suite", str(_write(tmp_path, SUITE)), "--results", str(tmp_path / "res"), "--out", str(tmp_path / "lb")]) == 2
    assert "leads outside the output directory" in capsys.readouterr().err
    assert not (tmp_path / "res").exists() and sorted(p.name for p in victim.iterdir()) == ["keep.png"]


def test_record_with_non_string_keys_is_a_damaged_line(tmp_path):
    """A JSON object whose job/metric are not strings is reported and skipped like a garbled line, never a TypeError."""
    runner_mod.run_suite(load_suite(str(_write(tmp_path, SUITE))), results_dir=tmp_path / "res", progress=False)
    store = ResultStore(tmp_path / "res" / "sec")
    before = _values(store.root)
    with open(store.path, "a") as f:
        f.write(json.dumps({"job": {"a": 1}, "metric": 5, "value": 1.0}) + "\n")
    with pytest.warns(DamagedRecordWarning, match=r"records.jsonl:\d+: .*job, metric"):
        assert _values(store.root) == before
    assert len(store.done_jobs()) == 3


def test_pickle_payload_as_extractor_weights_runs_nothing(tmp_path, capsys):
    """--extractor-weights naming a pickle with a payload: a clear error, no code run, no advice to unpickle it."""
    import numpy as np

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import pickle

    weights = tmp_path / "w.pt"
    weights.write_bytes(pickle.dumps(Payload()))
    samples = tmp_path / "s.npz"
    np.savez(samples, x=np.random.default_rng(0).random((20, 1, 8, 8)).astype(np.float32))
    rc = main(["eval", "--samples", str(samples), "--dataset", "digits", "--extractor", "digits-cnn", "--extractor-weights", str(weights)])
    err = capsys.readouterr().err
    assert rc != 0 and "cannot load weights from" in err and "w.pt" in err
    assert "weights_only` set to `False" not in err and not marker.exists()
