"""The budget_curve section (bench/sections/budget_curve.py): models trained at several
budgets become one curve each; single-budget models are left out; the figure is written."""

from __future__ import annotations

from bench.leaderboard import records_frame
from bench.sections.budget_curve import curve_frame, section, suite_budget_steps


def _records() -> list[dict]:
    recs = []
    rows = {("gan", "gan-500", 500): (60.0, [300.0, 280.0]), ("gan", "gan-2000", 2000): (240.0, [130.0, 120.0]),
            ("vae", "vae", 1000): (90.0, [400.0, 420.0])}  # fmt: skip
    for (model, row, steps), (secs, fids) in rows.items():
        for seed, fid in enumerate(fids):
            base = {"dataset": "mnist5k", "generator": row, "base": row, "model": model, "seed": seed, "steps": None}
            recs.append({**base, "metric": "train_s", "value": secs + seed, "settings": {"budget": {"steps": steps, "batch_size": 64}}})
            recs.append({**base, "metric": "fid", "value": fid, "label": "FID[mnist-cnn]", "settings": {}})
            recs.append({**base, "metric": "is", "value": 2.0 + steps / 1000, "label": "IS[mnist-cnn]", "settings": {}})
    return recs


def test_curve_frame_keeps_models_with_two_budgets_and_averages_seeds():
    df = curve_frame(records_frame(_records()), ["fid", "is"])
    assert list(df["row"]) == ["gan-500", "gan-2000"]
    assert list(df["steps"]) == [500, 2000]
    assert df["fid"].tolist() == [290.0, 125.0]
    assert df["train_s"].tolist() == [60.5, 240.5]


def test_section_writes_table_and_figure(tmp_path):
    md = section(records_frame(_records()), {"budget_curve": {"metrics": ["fid", "is"]}}, tmp_path / "mnist")
    assert "| gan " in md and "gan-2000" in md and "vae" not in md.split("### mnist5k")[1].split("![")[0]
    assert (tmp_path / "mnist" / "budget_curve__mnist5k.png").stat().st_size > 1000
    assert "assets/mnist/budget_curve__mnist5k.png" in md
    assert "no model is trained at two or more budgets" in section(records_frame(_records()[4:6] + _records()[-3:]), {}, tmp_path)


def test_rows_loaded_from_the_cache_take_their_steps_from_the_suite(tmp_path):
    recs = [dict(r, settings=None) if r["generator"] == "gan-2000" and r["metric"] == "train_s" else r for r in _records()]
    assert curve_frame(records_frame(recs), ["fid"])["steps"].isna().tolist() == [False, True]
    suite = {"generators": [{"name": "gan-2000", "model": "gan", "budget": {"steps": 2000, "batch_size": 64}}, {"name": "data"}]}
    assert suite_budget_steps(suite) == {"gan-2000": 2000}
    assert list(curve_frame(records_frame(recs), ["fid"], suite_budget_steps(suite))["steps"]) == [500, 2000]
    assert "nan" not in section(records_frame(recs), suite, tmp_path).split("![")[0]
