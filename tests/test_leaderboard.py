"""The leaderboard renderer on records built here: significance marks, labels/units from records, FD∞, exports, safe assets."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from scipy import stats

from bench import leaderboard as lb
from bench.sections import SECTIONS
from bench.store import ResultStore
from bench.suite import load_suite

# ---------------------------------------------------------------- the test for ties


def _cells(rows: dict[str, list[float]]) -> dict[str, lb.CellStats]:
    return {r: lb.cell_stats(v) for r, v in rows.items()}


@pytest.mark.parametrize(
    "other",
    [[10.4, 11.6, 12.3], [11.0, 12.5, 13.9], [13.5, 14.0, 14.6], [20.0, 21.0, 22.5], [12.0, 12.1, 12.2]],
)
def test_ties_over_seeds_agree_with_welch_t_test(other):
    """Tied with the best <=> Welch's two-sided t-test does not reject at 5% (scipy as the independent reference)."""
    best = [10.0, 11.0, 12.0]
    marked, tested = lb.tied_with_best(_cells({"best": best, "other": other}), "min")
    p = stats.ttest_ind(best, other, equal_var=False).pvalue
    assert tested and "best" in marked
    assert ("other" in marked) == (p > 0.05), p


def test_welch_halfwidth_is_where_the_welch_test_reaches_5_percent():
    """At a mean difference equal to the half-width, scipy's Welch t-test gives p = 0.05 exactly."""
    a, b = lb.cell_stats([10.0, 11.0, 12.0]), lb.cell_stats([9.0, 13.5, 14.0, 17.0])
    half = lb.welch_halfwidth(a, b)
    p = stats.ttest_ind_from_stats(0.0, a.sd, a.n_seeds, half, b.sd, b.n_seeds, equal_var=False).pvalue
    assert p == pytest.approx(0.05, abs=1e-9)
    exact = lb.cell_stats([3.0], settings=[{"exact": True}])
    assert lb.welch_halfwidth(exact, exact) == 0.0


def test_single_seed_ties_use_the_bootstrap_interval():
    """One seed: se = interval width / (2 z); tied iff d <= z sqrt(se1^2 + se2^2) = sqrt(2) for three intervals of width 2."""
    ci = {"interval": "bootstrap 95% percentile", "bootstrap": 200}
    z = stats.norm.ppf(0.975)
    best = lb.cell_stats([10.0], [9.0], [11.0], [ci])
    near = lb.cell_stats([11.4], [10.4], [12.4], [ci])  # d = 1.40 <= 1.414
    far = lb.cell_stats([11.5], [10.5], [12.5], [ci])  # d = 1.50 > 1.414
    assert best.se == pytest.approx(1 / z) and math.isinf(best.df)
    marked, tested = lb.tied_with_best({"best": best, "near": near, "far": far}, "min")
    assert tested and marked == {"best", "near"}


def test_intervals_that_are_not_confidence_intervals_are_not_used():
    iqr = {"interval": "IQR (q25, q75) over repeats, not a confidence interval"}
    c = lb.cell_stats([1.0], [0.0], [2.0], [iqr])
    assert c.se is None and c.lo is None
    marked, tested = lb.tied_with_best({"a": c, "b": lb.cell_stats([1.1], [0.1], [2.1], [iqr])}, "min")
    assert marked == {"a"} and not tested  # untested: only the best is marked, and the column says so


@pytest.mark.parametrize("direction,best", [("max", "hi"), ("zero", "small"), ("min", "lo")])
def test_directions(direction, best):
    cells = _cells({"lo": [-5.0, -5.1], "small": [0.1, 0.11], "hi": [9.0, 9.1]})
    marked, _ = lb.tied_with_best(cells, direction)
    assert marked == {best}


# ---------------------------------------------------------------- tables from records

SUITE_TOML = """
name = "lbtest"
seeds = [0, 1, 2]
[[datasets]]
name = "digits"
extractor = "digits-cnn"
metrics = ["fid", "nll"]
[[generators]]
name = "data"
[[generators]]
name = "gaussian"
[[generators]]
name = "gmm"
[[generators]]
name = "vae"
"""


def _rec(gen, metric, value, seed=0, model=None, **kw):
    return {"suite": "lbtest", "job": f"digits/{gen}/seed{seed}", "dataset": "digits", "generator": gen, "base": gen,
            "model": model or gen, "seed": seed, "steps": None, "metric": metric, "value": value, **kw}  # fmt: skip


@pytest.fixture
def suite(tmp_path):
    p = tmp_path / "lbtest.toml"
    p.write_text(SUITE_TOML)
    return load_suite(str(p))


def _records():
    recs = []
    for seed, j in enumerate((0.0, 0.5, -0.5)):
        recs += [
            _rec("data", "fid", 2.8 + j / 10, seed, n_real=1437, n_fake=360, extractor="digits-cnn"),
            _rec("gaussian", "fid", 125 + j, seed, n_real=1437, n_fake=360, extractor="digits-cnn"),
            _rec("gmm", "fid", 24.6 + j, seed, n_real=1437, n_fake=360, extractor="digits-cnn"),
            _rec("vae", "fid", 24.9 + j, seed, n_real=1437, n_fake=360, extractor="digits-cnn"),
            _rec("gaussian", "nll", 2.94 + j / 100, seed, settings={"unit": "bits/dim", "kind": "dequantized"}),
            _rec("gmm", "nll", 2.99 + j / 100, seed, settings={"unit": "bits/dim", "kind": "dequantized"}),
            _rec("vae", "nll", 2.38 + j / 100, seed, settings={"unit": "bits/dim", "kind": "elbo"}),
            _rec("data", "nll", None, seed, na=True),
            # a metric the registry does not know: label, direction and unit come from the record itself
            _rec("gmm", "widgets", 7.0 + j, seed, label="Widgets", direction="max", unit="w/s"),
            _rec("vae", "widgets", 3.0 + j, seed, label="Widgets", direction="max", unit="w/s"),
        ]
    return recs


def test_table_marks_ties_seeds_units_kinds(suite):
    df = lb.records_frame(_records())
    md = lb.dataset_table(df, suite, "digits")
    header = md.splitlines()[0]
    assert "FID[digits-cnn] ↓" in header and "NLL (bits/dim) ↓" in header and "Widgets (w/s) ↑" in header
    line = {r.split("|")[1].strip(): r for r in md.splitlines() if r.startswith("| ")}
    # gmm 24.6 and vae 24.9 (3 seeds, sd 0.5): tied -> both bold; gaussian is not; the data row is never bold
    assert "**24.60 ± 0.500**" in line["gmm"] and "**24.90 ± 0.500**" in line["vae"]
    assert "**" not in line["gaussian"].split("|")[3] and "**" not in line["data (reference)"]
    # likelihood: the kind of number beside it (from settings.kind, no special case on 'nll'); vae best and alone
    assert "**2.38 ± 5.00e-03 (elbo)**" in line["vae"] and "2.99 ± 5.00e-03 (dequantized)" in line["gmm"]
    assert "n/a" in line["data (reference)"]  # nll does not apply to the data row
    assert "—" in line["gaussian"]  # no widgets record at all for gaussian
    assert line["gmm"].split("|")[2].strip() == "3"  # seeds column
    assert "Sample sizes: FID[digits-cnn]: N fake 360, N real (reference) 1437." in md


def test_fd_inf_column_states_reference_n(suite):
    recs = _records() + [
        _rec("gmm", "fd_inf", 20.1, 0, label="FD∞", direction="min", per_extractor=True, extractor="digits-cnn", n_real=1437,
             settings={"n_grid": [72, 360], "n_real": 1437}),  # fmt: skip
        _rec("vae", "fd_inf", 23.0, 0, label="FD∞", direction="min", per_extractor=True, extractor="digits-cnn", n_real=1437,
             settings={"n_grid": [72, 360], "n_real": 1437}),  # fmt: skip
    ]
    md = lb.dataset_table(lb.records_frame(recs), suite, "digits")
    assert "FD∞[digits-cnn] ↓ ¹" in md.splitlines()[0]  # one seed, no interval: ties not tested, and the table says so
    assert "FD∞[digits-cnn]" in md.split("Sample sizes:")[1] and "N real (reference) 1437" in md.split("Sample sizes:")[1]
    assert "¹ ties with the best row not tested" in md


def test_loaded_timings_are_flagged(suite):
    recs = _records() + [_rec("gmm", "latency_ms", 0.5, 0, loaded=True, settings={"phase": "timing", "threads": 1, "other_cpu_cores": 0.9}),
                         _rec("vae", "latency_ms", 0.4, 0, loaded=False, settings={"phase": "timing", "threads": 1, "other_cpu_cores": 0.1})]  # fmt: skip
    df = lb.records_frame(recs)
    md = lb.dataset_table(df, suite, "digits")
    assert "0.500 ⚠" in md and "0.400 ⚠" not in md and "⚠ timed while other processes loaded the CPU" in md
    assert "1 of 2 wall-time records flagged" in lb._timing_lines(df)[0]


# ---------------------------------------------------------------- files: exports and assets


def _store(tmp_path, recs):
    st = ResultStore(tmp_path / "res" / "lbtest")
    for r in recs:
        st.append(r)
    return tmp_path / "res"


def test_exports_carry_the_same_numbers(tmp_path, suite):
    res = _store(tmp_path, _records())
    md = lb.write_leaderboard(suite, res, tmp_path / "lb")
    csv = lb.write_leaderboard(suite, res, tmp_path / "lb", fmt="csv")
    js = lb.write_leaderboard(suite, res, tmp_path / "lb", fmt="json")
    assert md.suffix == ".md" and csv.name == "lbtest.csv" and js.name == "lbtest.json"
    t = pd.read_csv(csv)
    gmm = t[(t["generator"] == "gmm") & (t["metric"] == "fid")].iloc[0]
    assert gmm["mean"] == pytest.approx(24.6) and gmm["std"] == pytest.approx(0.5) and gmm["n_seeds"] == 3
    assert bool(gmm["best_or_tied"]) and gmm["label"] == "FID[digits-cnn]" and gmm["direction"] == "min"
    rows = json.loads(js.read_text())["rows"]
    vae_nll = next(r for r in rows if r["generator"] == "vae" and r["metric"] == "nll")
    assert vae_nll["unit"] == "bits/dim" and vae_nll["kind"] == "elbo" and vae_nll["best_or_tied"] is True
    assert "24.60 ± 0.500" in md.read_text()
    with pytest.raises(ValueError, match="format"):
        lb.write_leaderboard(suite, res, tmp_path / "lb", fmt="xlsx")


def test_assets_only_harness_files_are_removed(tmp_path, suite):
    res = _store(tmp_path, _records())
    src = res / "lbtest" / "assets"
    src.mkdir(parents=True)
    (src / "digits__gmm.png").write_bytes(b"png1")
    (src / "digits__vae.png").write_bytes(b"png2")
    out = tmp_path / "lb"
    lb.write_leaderboard(suite, res, out)
    assets = out / "assets" / "lbtest"
    assert (assets / "digits__gmm.png").read_bytes() == b"png1"
    (assets / "notes.txt").write_text("mine")  # a file the user put there
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    manifest = json.loads((assets / lb.MANIFEST).read_text())
    (assets / lb.MANIFEST).write_text(json.dumps(manifest + ["../../victim.txt", "/etc/passwd"]))  # a tampered manifest
    (src / "digits__vae.png").unlink()  # gone from the results: the stale copy must go
    lb.write_leaderboard(suite, res, out)
    assert not (assets / "digits__vae.png").exists() and (assets / "digits__gmm.png").exists()
    assert (assets / "notes.txt").read_text() == "mine" and victim.read_text() == "keep"


@pytest.mark.parametrize("name", ["../../escape", "/abs/path", "a/b"])
def test_suite_name_cannot_leave_out_dir(tmp_path, suite, name):
    bad = type(suite)(**{**suite.__dict__, "name": name})
    with pytest.raises(ValueError, match="suite name"):
        lb.write_leaderboard(bad, tmp_path / "res", tmp_path / "lb")
    assert not (tmp_path / "lb").exists() and not (tmp_path / "escape").exists()


def test_unknown_section_fails_before_any_work(tmp_path, suite):
    res = _store(tmp_path, _records())
    bad = type(suite)(**{**suite.__dict__, "sections": ("nope",)})
    with pytest.raises(KeyError, match="unknown leaderboard section 'nope'; valid: .*speed_quality"):
        lb.write_leaderboard(bad, res, tmp_path / "lb")
    assert not (tmp_path / "lb").exists()


def test_sections_registry_is_lazy_and_complete():
    entries = SECTIONS.entries()
    names = ("speed_quality", "likelihood", "per_seed", "personalization", "metric_sanity")
    assert set(names) <= set(entries) and all(entries[n].is_lazy or callable(entries[n].target) for n in names)
    for name in names:
        assert callable(SECTIONS.load(name))


def test_exact_counts_are_compared_exactly():
    """FLOPs and parameter counts carry no noise: equal counts tie, different counts are resolved (no ¹)."""
    ex = {"exact": True}
    cells = {"a": lb.cell_stats([100.0], settings=[ex]), "b": lb.cell_stats([100.0], settings=[ex]), "c": lb.cell_stats([101.0], settings=[ex])}
    marked, tested = lb.tied_with_best(cells, "min")
    assert marked == {"a", "b"} and tested


def test_section_figures_are_listed_in_the_manifest(tmp_path):
    """PNGs a section writes are harness files: listed in the manifest, so the next render may replace or remove them."""
    p = tmp_path / "lbsq.toml"
    p.write_text(SUITE_TOML.replace('name = "lbtest"', 'name = "lbsq"').replace("seeds = [0, 1, 2]", 'seeds = [0, 1, 2]\nsections = ["speed_quality"]'))
    suite = load_suite(str(p))
    assert suite.sections == ("speed_quality",)
    recs = [dict(r, suite="lbsq") for r in _records()]
    recs += [dict(_rec(g, "latency_ms", v, 0), suite="lbsq") for g, v in (("gmm", 0.5), ("vae", 0.2))]
    st = ResultStore(tmp_path / "res" / "lbsq")
    for r in recs:
        st.append(r)
    md = lb.write_leaderboard(suite, tmp_path / "res", tmp_path / "lb").read_text()
    assert "## Speed and quality" in md and "speed_quality__digits_pareto.png" in md
    manifest = json.loads((tmp_path / "lb" / "assets" / "lbsq" / lb.MANIFEST).read_text())
    assert "speed_quality__digits_pareto.png" in manifest


def test_only_the_current_rows_sample_grids_are_shown():
    """The results directory keeps the grids of every configuration it ran; the table shows its own rows' grids."""
    from types import SimpleNamespace

    import pandas as pd

    from bench.leaderboard import _stale_grids

    gens = ["ebm@60", "ebm@256", "vae", "vae-mode", "ddpm@25"]
    df = pd.DataFrame({"dataset": "d", "generator": gens, "base": ["ebm", "ebm", "vae", "vae-mode", "ddpm"]})
    stale = _stale_grids(SimpleNamespace(datasets=[SimpleNamespace(name="d"), SimpleNamespace(name="other")]), df)
    for name in ("ebm_at60", "ebm_at256", "vae", "vae-mode", "ddpm_at25", "vae_latent-arithmetic", "vae-mode_latent-arithmetic"):
        assert not stale(f"d__{name}.png"), name
    for name in ("ebm_at20", "ebm_at200", "ebm", "gan", "ddpm_at50", "vqvae_latent-arithmetic"):
        assert stale(f"d__{name}.png"), name
    assert not stale("losses__d.png") and not stale("other__gan.png")  # not a grid of a data set with rows: kept


def test_sections_and_the_report_core_do_not_import_the_leaderboard():
    """The leaderboard imports the sections (through the section registry); the sections take their statistics and
    formatting from bench.report, which imports no pipeline, runner, section or leaderboard code: no cycle."""
    import ast
    from pathlib import Path

    import bench

    root = Path(bench.__file__).parent
    forbidden = ("bench.leaderboard", "bench.pipeline", "bench.runner", "bench.sections")
    for package in ("sections", "report"):
        for path in sorted((root / package).glob("*.py")):
            names = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):  # relative imports resolved against bench.<package>
                    base = ["bench", package][: 3 - node.level] if node.level else []
                    names.add(".".join(base + ([node.module] if node.module else [])))
                elif isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
            own = f"bench.{package}"  # a section may use its own package's helpers
            bad = {n for n in names for f in forbidden if (n == f or n.startswith(f + ".")) and not n.startswith(own)}
            assert not bad, f"{path.relative_to(root)} imports {sorted(bad)}"


def test_reference_rows_come_from_the_records_without_importing_family_code(suite):
    """A record says whether its row is a floor/ceiling (``reference``, from run time): rendering a table from such
    records loads no family module; records written before the field existed get it from the registry."""
    import subprocess
    import sys

    recs = [{**r, "family": "reference" if r["generator"] == "data" else "x", "reference": r["generator"] == "data"} for r in _records()]
    code = (
        "import json, sys\n"
        "from bench import leaderboard as lb\n"
        "from bench.suite import load_suite\n"
        f"df = lb.records_frame(json.loads({json.dumps(recs)!r}))\n"
        f"md = lb.dataset_table(df, load_suite({str(suite.path)!r}), 'digits')\n"
        "assert 'data (reference)' in md, md\n"
        "fam = sorted(m for m in sys.modules if m.startswith('baselines.') and m not in "
        "('baselines.protocol', 'baselines.registry', 'baselines.training'))\n"
        "print(fam)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"family modules imported while rendering: {out.stdout}"
    # a legacy record (no reference field): looked up by model name, the data row is a reference row
    legacy = lb.records_frame(_records())
    assert set(legacy.loc[legacy["reference"], "generator"]) == {"data"}
    # a record that says it is not a reference row is ranked, whatever its model
    flipped = lb.records_frame([{**r, "reference": False} for r in _records()])
    assert not flipped["reference"].any()
