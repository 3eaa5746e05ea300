"""The claims section (bench/sections/claims.py): verdicts from constructed records,
checked against the Welch interval worked out by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from bench.leaderboard import cell_stats, records_frame
from bench.sections.claims import paired_lead, section, verdict


def _records(values: dict[str, list[float]], metric: str = "fid", direction: str = "min") -> pd.DataFrame:
    recs = []
    for gen, vals in values.items():
        name, _, steps = gen.partition("@")  # records carry the row label (name@steps) and the row name (base)
        for seed, v in enumerate(vals):
            recs.append({"dataset": "d", "generator": gen, "base": name, "steps": int(steps) if steps else None, "seed": seed, "metric": metric,
                         "value": v, "direction": direction, "label": metric.upper(), "settings": {}})  # fmt: skip
    return records_frame(recs)


def test_verdict_matches_a_hand_computed_welch_interval():
    a, b = [10.0, 11.0, 12.0], [14.0, 15.5, 13.0]
    ca, cb = cell_stats(a), cell_stats(b)
    v, lead, hw = verdict(ca, cb, "min", "better")
    se = math.sqrt(stats.tvar(a) / 3 + stats.tvar(b) / 3)
    dof = se**4 / ((stats.tvar(a) / 3) ** 2 / 2 + (stats.tvar(b) / 3) ** 2 / 2)
    assert lead == pytest.approx(sum(b) / 3 - sum(a) / 3)
    assert hw == pytest.approx(stats.t.ppf(0.975, dof) * se)
    assert v == ("reproduced" if lead > hw else "within noise")


@pytest.mark.parametrize(
    ("a", "b", "direction", "relation", "expected"),
    [
        ([1.0, 1.1, 0.9], [5.0, 5.1, 4.9], "min", "better", "reproduced"),
        ([5.0, 5.1, 4.9], [1.0, 1.1, 0.9], "min", "better", "not reproduced"),
        ([1.0, 3.0, 2.0], [2.1, 1.2, 2.9], "min", "better", "within noise"),
        ([1.0, 3.0, 2.0], [2.1, 1.2, 2.9], "min", "no_worse", "reproduced (tie)"),
        ([0.9, 0.91, 0.92], [0.5, 0.52, 0.51], "max", "better", "reproduced"),
        ([0.01, -0.01, 0.0], [3.0, 3.1, 2.9], "zero", "better", "reproduced"),
    ],
)
def test_verdicts(a, b, direction, relation, expected):
    assert verdict(cell_stats(a), cell_stats(b), direction, relation)[0] == expected


def test_section_renders_rows_by_label_and_marks_missing_rows_untested(tmp_path):
    recs = _records({"gan": [10.0, 11.0, 12.0], "ddpm@25": [3.0, 3.5, 2.5]})
    suite = {"claims": [
        {"claim": "diffusion beats GANs", "cite": "Dhariwal & Nichol 2021", "dataset": "d", "metric": "fid", "a": "ddpm@25", "b": "gan"},
        {"claim": "a missing row", "dataset": "d", "metric": "fid", "a": "vae", "b": "gan"},
    ]}  # fmt: skip
    md = section(recs, suite, tmp_path)
    lines = [ln for ln in md.splitlines() if ln.startswith("| diffusion") or ln.startswith("| a missing")]
    assert "**reproduced**" in lines[0] and "Dhariwal & Nichol 2021" in lines[0]
    assert "untested" in lines[1]
    assert "reproduced 1" in md and "untested 1" in md


def test_bad_claims_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"claims\[0\]: missing b"):
        section(_records({"gan": [1.0, 2.0]}), {"claims": [{"claim": "x", "dataset": "d", "metric": "fid", "a": "gan"}]}, tmp_path)
    with pytest.raises(ValueError, match="relation"):
        verdict(cell_stats([1.0, 2.0]), cell_stats([1.0, 2.0]), "min", "sometimes")


def test_paired_claims_test_the_per_seed_differences(tmp_path):
    """Two samplings of one model per seed: the models' spread (10 -> 30) hides a steady 1-unit lead from the
    unpaired test, the paired one finds it; its interval is scipy's paired t-interval on the same numbers."""
    one, eight = [31.0, 21.2, 11.1], [30.0, 20.0, 10.0]
    recs = _records({"m@8": eight, "m@1": one})
    claim = {"claim": "more steps help", "dataset": "d", "metric": "fid", "a": "m@8", "b": "m@1"}
    md_unpaired = section(recs, {"claims": [claim]}, tmp_path)
    md_paired = section(recs, {"claims": [{**claim, "paired": True}]}, tmp_path)
    assert "within noise" in md_unpaired
    assert "**reproduced**" in md_paired and "paired by seed" in md_paired
    ci = stats.ttest_rel(one, eight).confidence_interval(0.95)
    lead, hw = paired_lead(dict(enumerate(eight)), dict(enumerate(one)), "min")
    assert lead == pytest.approx((ci.low + ci.high) / 2)
    assert hw == pytest.approx((ci.high - ci.low) / 2)
    assert paired_lead({0: 1.0}, {0: 2.0}, "min") is None  # one common seed: the unpaired test stands
