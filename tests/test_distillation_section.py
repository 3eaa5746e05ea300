"""The leaderboard side of distillation: the ``within_factor`` claim relation and the ``distillation`` section."""

from __future__ import annotations

import math

import pytest

from bench.report import cell_stats
from bench.sections.claims import ratio_verdict


# ----------------------------------------------------------------------------- the claims relation
def test_within_factor_verdicts_on_constructed_values():
    ref = {s: 10.0 + s for s in range(5)}
    near = {s: 1.5 * v * (1 + 0.01 * (-1) ** s) for s, v in ref.items()}
    far = {s: 3.0 * v * (1 + 0.01 * (-1) ** s) for s, v in ref.items()}
    noisy = {s: v * (2.0 + (0.8 if s % 2 else -0.8)) for s, v in ref.items()}
    cs = lambda d: cell_stats(list(d.values()))  # noqa: E731
    v, r, lo, hi = ratio_verdict(cs(near), cs(ref), 2.0, (near, ref))
    assert v == "reproduced" and lo <= 1.5 <= hi and hi < 2
    assert ratio_verdict(cs(far), cs(ref), 2.0, (far, ref))[0] == "not reproduced"
    assert ratio_verdict(cs(noisy), cs(ref), 2.0, (noisy, ref))[0] == "within noise"
    # geometric mean of the per-seed ratios
    assert ratio_verdict(cs(near), cs(ref), 2.0, (near, ref))[1] == pytest.approx(math.exp(sum(math.log(near[s] / ref[s]) for s in ref) / 5))


# ----------------------------------------------------------------------------- the leaderboard section
def test_distillation_section_pairs_students_with_the_reference(tmp_path):
    from bench.report import records_frame
    from bench.sections.distillation import section

    recs = []

    def rec(row, metric, seed, value, **kw):
        base = row.split("@")[0]
        recs.append({"dataset": "digits", "generator": row, "base": base, "model": base, "seed": seed, "metric": metric, "value": value,
                     "direction": "min", "timestamp": 1000.0 + kw.pop("t", 0.0), **kw})  # fmt: skip

    for s in range(3):
        rec("ddpm@1000", "fid", s, 10.0 + s)
        rec("reflow@1", "fid", s, 1.5 * (10.0 + s))
        rec("reflow@2", "fid", s, 1.1 * (10.0 + s))
        rec("reflow", "train_s", s, 50.0, extra={"train_extra": {"teacher_train_s": 190.0 + s, "student_s": 100.0, "teacher_evals": 409600}})
    rec("ddpm@1000", "latency_ms", 0, 60.0)
    rec("reflow@1", "latency_ms", 0, 0.06)
    rec("reflow@2", "latency_ms", 0, 0.12, t=5 * 3600)
    suite = {"settings": {"latency_batch": 256}, "generators": [{"name": "ddpm", "model": "ddpm"}, {"name": "reflow", "teacher": "ddpm", "steps": [1, 2]}]}
    md = section(records_frame(recs), suite, tmp_path)
    one = next(line for line in md.splitlines() if line.startswith("| reflow@1 "))
    cells = [c.strip() for c in one.strip("|").split("|")]
    assert cells[3] == "1" and cells[5] == "1.50×" and cells[6] == "1.50× [1.50, 1.50]" and cells[7] == "reproduced"
    assert cells[9] == "1,000×" and cells[10] == "191" and cells[11] == "100" and cells[12] == "409,600" and cells[13] == "3"
    two = next(line for line in md.splitlines() if line.startswith("| reflow@2 "))
    assert "500.0× †" in two and "different timing phases" in md  # timed 5 h after the reference: flagged
    assert section(records_frame(recs), {"generators": [{"name": "ddpm"}]}, tmp_path).strip().endswith("No distillation students in this suite.")
