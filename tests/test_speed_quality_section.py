"""The speed_quality leaderboard section on a synthetic record set."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from bench.leaderboard import fmt_num
from bench.report import records_frame
from bench.sections.speed_quality import section
from bench.sections.speed_quality_plots import _pareto

SUITE = {
    "name": "speed-quality",
    "settings": {"latency_batch": 256},
    "generators": [
        {"name": "data"},
        {"name": "ddpm", "model": "ddpm", "sample_params": {"sampler": "ddpm"}, "steps": [1000]},
        {"name": "ddim", "model": "ddpm", "sample_params": {"sampler": "ddim"}, "steps": [1, 10, 100]},
        {"name": "flow-matching", "steps": [1, 10]},
        {"name": "gan"},
        {"name": "pixelcnn"},
        {"name": "cfg-w0", "model": "ddpm", "sample_params": {"sampler": "ddim", "guidance_scale": 0.0}, "steps": [20]},
        {"name": "cfg-w3", "model": "ddpm", "sample_params": {"sampler": "ddim", "guidance_scale": 3.0}, "steps": [20]},
    ],
    "speed_quality": {"fid_thresholds": [5, 20, 100], "nfe": {"pixelcnn": 64}},
}

# (row, base, model, steps, fid, precision, recall, ms@b1, ms@b256, class_acc)
ROWS = [
    ("data", "data", "data", None, 2.0, 0.8, 0.8, 0.001, 0.0001, None),
    ("ddpm@1000", "ddpm", "ddpm", 1000, 8.0, 0.7, 0.7, 2000.0, 100.0, None),
    ("ddim@1", "ddim", "ddpm", 1, 300.0, 0.0, 0.0, 2.0, 0.1, None),
    ("ddim@10", "ddim", "ddpm", 10, 18.0, 0.5, 0.5, 20.0, 1.0, None),
    ("ddim@100", "ddim", "ddpm", 100, 12.0, 0.6, 0.6, 200.0, 10.0, None),
    ("flow-matching@1", "flow-matching", "flow-matching", 1, 700.0, 0.0, 0.0, 2.0, 0.1, None),
    ("flow-matching@10", "flow-matching", "flow-matching", 10, 15.0, 0.6, 0.5, 20.0, 1.0, None),
    ("gan", "gan", "gan", None, 40.0, 0.7, 0.2, 0.5, 0.02, None),
    ("pixelcnn", "pixelcnn", "pixelcnn", None, 25.0, 0.6, 0.5, 50.0, 5.0, None),
    ("cfg-w0@20", "cfg-w0", "ddpm", 20, 14.0, 0.6, 0.6, 40.0, 2.0, 0.55),
    ("cfg-w3@20", "cfg-w3", "ddpm", 20, 30.0, 0.8, 0.3, 80.0, 4.0, 0.97),
]


def _records(seeds=(0, 1)) -> pd.DataFrame:
    recs = []
    for seed in seeds:
        jitter = 1.0 + 0.1 * seed
        for row, base, model, steps, fid, p, r, b1, bn, acc in ROWS:
            base_rec = {"suite": "speed-quality", "dataset": "digits", "generator": row, "base": base, "model": model, "seed": seed,
                        "steps": steps, "n_real": 360, "n_fake": 360, "extractor": "digits-cnn"}  # fmt: skip
            vals = {"fid": fid * jitter, "precision": p, "recall": r, "latency_b1_ms": b1 * jitter, "latency_ms": bn}
            if acc is not None:
                vals["class_acc"] = acc
            for metric, v in vals.items():
                lo, hi = (v * 0.9, v * 1.1) if metric.startswith("latency") else (None, None)
                recs.append({**base_rec, "metric": metric, "value": v, "lo": lo, "hi": hi})
        # a metric that did not apply is recorded with value None: must be ignored
        recs.append({"suite": "speed-quality", "dataset": "digits", "generator": "gan", "base": "gan", "model": "gan", "seed": seed,
                     "steps": None, "metric": "nll", "value": None, "lo": None, "hi": None})  # fmt: skip
    return records_frame(recs)


def _line(md: str, start: str) -> str:
    return next(line for line in md.splitlines() if line.startswith(start))


def test_section_table_ratios_fastest_and_plots(tmp_path):
    assets = tmp_path / "speed-quality"
    md = section(_records(), SUITE, assets)
    # main table: NFE from steps, from the nfe table, 1 for single-step generators; latency median [IQR]
    # FID averaged over seeds (8.0, 8.8); bold: best, and ddim@100 (12.0, 13.2) is resolved as worse (Welch t, 2 df)
    assert "| ddpm@1000 | ddpm | 1000 | **8.40** |" in md
    assert "| ddim@100 | ddpm | 100 | 12.60 |" in md
    assert _line(md, "| pixelcnn | pixelcnn | 64 |")
    assert _line(md, "| gan | gan | 1 |")
    assert "2,100 [420.0]" in md  # ddpm@1000 at b1: mean of 2000 and 2200, IQR 0.2 * value averaged
    # the sweep rows are not in the main table but in their own
    main = md.split("#### Classifier-free guidance sweep")[0]
    assert "cfg-w0" not in main.split("Latency ratios")[0]
    # ratios: reference ddpm@1000 against the best-FID row of each other generator, per seed then averaged
    ratio_part = md.split("Latency ratios")[1].split("Fastest")[0]
    assert "**ddpm@1000**" in md.split("Latency ratios")[1].splitlines()[0]
    ddim = _line(ratio_part, "| ddim@100 |")
    assert ddim.endswith("| 10.00× | 10.00× |")  # 2000/200 (seed 0) and 2200/220 (seed 1) at b1; 100/10 at b256
    gan = _line(ratio_part, "| gan |")
    assert gan.endswith("| 4,000× | 5,000× |")
    assert "| flow-matching@10 |" in ratio_part and "| data |" not in ratio_part and "cfg" not in ratio_part
    # fastest at each quality level, reference rows excluded (data has FID 2 and ~0 latency)
    fast = md.split("Fastest generator")[1]
    assert _line(fast, "| FID ≤ 5.00 |") == "| FID ≤ 5.00 | none | none |"
    l20 = _line(fast, "| FID ≤ 20.00 |")
    assert "**ddim@10**" in l20 or "**flow-matching@10**" in l20  # both 1 ms at b256; at b1 fm is faster (20 vs 20*jitter)
    assert "**gan**" in _line(fast, "| FID ≤ 100.0 |")
    # guidance sweep: w, FID and class accuracy, sorted by w
    sweep = md.split("#### Classifier-free guidance sweep")[1]
    assert sweep.index("| 0 | cfg-w0@20 | 20 |") < sweep.index("| 3.00 | cfg-w3@20 | 40 |")  # NFE doubled under guidance
    assert "0.970" in sweep
    # plots saved and linked relative to leaderboards/
    for name in ("speed_quality__digits_pareto.png", "speed_quality__digits_guidance.png"):
        assert (assets / name).stat().st_size > 1000
        assert f"(assets/speed-quality/{name})" in md


def test_section_handles_missing_pieces(tmp_path):
    recs = _records(seeds=(0,))
    only = recs[recs["base"].isin(["gan", "flow-matching"]) & (recs["metric"] != "latency_b1_ms")]
    md = section(only, SUITE, tmp_path / "a")
    assert "| flow-matching@10 |" in md and "Latency ratios" not in md  # no DDPM reference row
    assert "n/a" in _line(md, "| gan |")  # no batch-1 latency
    assert "Classifier-free guidance sweep" not in md
    assert section(recs.iloc[0:0], SUITE, tmp_path / "b").strip().endswith("No records.")


def test_pareto_front():
    pts = [(1.0, 50.0, "a"), (2.0, 60.0, "b"), (3.0, 10.0, "c"), (0.5, 100.0, "d"), (3.0, 12.0, "e")]
    assert [p[2] for p in _pareto(pts)] == ["d", "a", "c"]


@pytest.mark.parametrize("ref", ["ddim@100"])
def test_reference_row_can_be_chosen(tmp_path, ref):
    suite = {**SUITE, "speed_quality": {**SUITE["speed_quality"], "reference": ref}}
    md = section(_records(seeds=(0,)), suite, tmp_path)
    assert f"the reference **{ref}**" in md
    assert _line(md.split("Latency ratios")[1], "| ddpm@1000 |").endswith("| 0.100× | 0.100× |")


def test_speed_quality_suite_parses_and_shares_models():
    from bench.suite import load_suite, validate_names

    s = load_suite("speed-quality")
    validate_names(s)
    assert s.sections == ("speed_quality", "distillation", "claims") and s.settings["latency_batch"] == 256
    g = {x.name: x for x in s.generators}
    # DDPM and DDIM rows: one trained network (same model, params and budget), different samplers
    assert (g["ddpm"].model, g["ddpm"].params, g["ddpm"].budget) == (g["ddim"].model, g["ddim"].params, g["ddim"].budget)
    assert 1000 in g["ddpm"].steps and g["ddim"].steps == (1, 2, 5, 10, 20, 50, 100, 1000)
    assert g["flow-matching"].steps == (1, 2, 5, 10, 20, 50, 100)
    sweep = [x for x in s.generators if "guidance_scale" in x.sample_params]
    assert len(sweep) >= 3 and len({(str(x.params), str(x.budget)) for x in sweep}) == 1
    assert all(x.params.get("conditional") and "class_acc" in x.metrics for x in sweep)


def _timing_records(loaded_row: str | None = None) -> pd.DataFrame:
    """Seed-0 records plus timing-phase records: ms/NFE, FLOPs, params, peak memory, one row flagged as loaded."""
    recs = _records(seeds=(0,))
    extra = []
    per_nfe = {"ddpm@1000": 0.10, "ddim@1": 0.13, "ddim@10": 0.10, "ddim@100": 0.10, "flow-matching@1": 0.1, "flow-matching@10": 0.1}
    for row, base, model, steps, *_ in ROWS:
        b = {"suite": "speed-quality", "dataset": "digits", "generator": row, "base": base, "model": model, "seed": 0, "steps": steps,
             "settings": {"phase": "timing"}, "loaded": row == loaded_row, "nfe": steps}  # fmt: skip
        if row in per_nfe:
            extra.append({**b, "metric": "ms_per_nfe", "value": per_nfe[row]})
        extra.append({**b, "metric": "flops_per_sample", "value": 1e6 * (steps or 1)})
        extra.append({**b, "metric": "params", "value": 12345.0})
        extra.append({**b, "metric": "peak_mem_mb", "value": 2.5})
    return pd.concat([recs, records_frame(extra)], ignore_index=True)


def test_section_cost_columns_nfe_spread_and_flops_pareto(tmp_path):
    md = section(_timing_records(loaded_row="ddim@10"), SUITE, tmp_path / "speed-quality")
    header = _line(md, "| row | model | NFE |")
    assert header.endswith("| ms/NFE @b256 | FLOPs/sample | params | peak MB | seeds |")
    ddim10 = _line(md, "| ddim@10 |")
    assert "1.00 [0.200] ⚠" in ddim10 and "0.100 ⚠" in ddim10  # loaded timing flagged on its latency and ms/NFE cells
    assert ddim10.endswith("| 0.100 ⚠ | 10 M | 12,345 | 2.50 | 1 |")
    assert "⚠ = other processes loaded the CPU" in md and "timing phase" in md
    # ms/NFE spread per network: ddpm and ddim share one (same model/params/budget) -> 5 rows, 0.10 .. 0.13: ±30% > 15%
    spread = md.split("ms/NFE of rows that sample one trained network")[1].split("\n\n")[1]
    line = _line(spread, "| ddpm@1000, ddim@1, ddim@10, ddim@100 |")
    assert line == "| ddpm@1000, ddim@1, ddim@10, ddim@100 | 4 | 0.100 | 0.100 | 0.130 | ±30.0% | **no** |"
    assert _line(spread, "| flow-matching@1, flow-matching@10 |").endswith("| ±0.0% | yes |")
    # the Pareto figure has a FLOPs panel: three panels side by side
    from PIL import Image

    with Image.open(tmp_path / "speed-quality" / "speed_quality__digits_pareto.png") as im:
        assert im.size[0] > 2.5 * im.size[1]


def test_section_marks_every_row_tied_with_the_best(tmp_path):
    """Two seeds each: ddim@100 (12.0, 13.2) vs a near-identical ddpm@1000 (12.1, 13.0): tied, both bold; ddim@10 (18, 19.8) is not."""
    recs = _records()
    recs.loc[(recs["generator"] == "ddpm@1000") & (recs["metric"] == "fid"), "value"] = [12.1, 13.0]
    md = section(recs, SUITE, tmp_path)
    assert "| ddpm@1000 | ddpm | 1000 | **12.55** |" in md
    assert "| ddim@100 | ddpm | 100 | **12.60** |" in md
    assert "| ddim@10 | ddpm | 10 | 18.90 |" in md
    assert "| data | data | 1 | 2.10 |" in md  # reference rows never bold


def test_section_states_which_sweep_orderings_are_resolved(tmp_path):
    """Two seeds: ddim@1 (300, 330) -> @10 (18, 19.8) is resolved; @10 -> @100 with FIDs made to overlap is within noise."""
    recs = _records()
    recs.loc[(recs["generator"] == "ddim@100") & (recs["metric"] == "fid"), "value"] = [18.5, 19.0]
    md = section(recs, SUITE, tmp_path)
    line = _line(md, "- `ddim` (steps):")
    assert "1→10: 315.0 → 18.90 (resolved)" in line and "10→100: 18.90 → 18.75 (within noise)" in line
    one = section(_records(seeds=(0,)), SUITE, tmp_path / "one")
    assert "(not tested)" in _line(one, "- `ddim` (steps):")
    assert "FID orderings along w" in md and "w=0→w=3.00" in md


def test_rows_of_the_reference_network_are_paired_by_seed(tmp_path):
    """Three seeds: ddpm@1000 FID (8, 10, 5), ddim@10 (16, 15, 10) -> per-seed ratios 2, 1.5, 2; FD∞ likewise paired.
    The expected interval comes from scipy's t interval on the log ratios; flow matching (another network) is not paired."""
    recs = _records(seeds=(0, 1, 2))
    fid = {"ddpm@1000": [8.0, 10.0, 5.0], "ddim@10": [16.0, 15.0, 10.0], "ddim@100": [8.0, 10.0, 5.0]}
    for row, vals in fid.items():
        recs.loc[(recs["generator"] == row) & (recs["metric"] == "fid"), "value"] = vals
    fd = {"ddpm@1000": [1.0, -2.0, 0.5], "ddim@10": [4.0, 2.0, 3.5]}  # differences 3, 4, 3
    extra = recs[(recs["metric"] == "fid") & recs["generator"].isin(list(fd))].copy()
    extra["metric"] = "fd_inf"
    extra["value"] = [fd[g][s] for g, s in zip(extra["generator"], extra["seed"])]
    recs = pd.concat([recs, extra], ignore_index=True)
    suite = {**SUITE, "speed_quality": {**SUITE["speed_quality"], "fid_ratio_target": 1.3}}
    md = section(recs, suite, tmp_path)
    part = md.split("Paired by seed against **ddpm@1000**")[1].split("\n\n")[1]
    logs = [math.log(2.0), math.log(1.5), math.log(2.0)]
    lo, hi = stats.t.interval(0.95, 2, loc=sum(logs) / 3, scale=stats.sem(logs))
    gm = math.exp(sum(logs) / 3)
    dlo, dhi = stats.t.interval(0.95, 2, loc=10 / 3, scale=stats.sem([3.0, 4.0, 3.0]))
    line = _line(part, "| ddim@10 |")
    f = fmt_num
    assert line.startswith(f"| ddim@10 | 3 | {f(gm)}× [{f(math.exp(lo))}, {f(math.exp(hi))}] | 2.00, 1.50, 2.00 | 3.33 [{f(dlo)}, {f(dhi)}] |")
    assert math.exp(lo) < 1.3 < math.exp(hi) and line.endswith("| unresolved (interval contains 1.30×) |")
    # identical FIDs on every seed: ratio exactly 1, zero-width interval below the target; no FD∞ records: n/a
    assert _line(part, "| ddim@100 |") == "| ddim@100 | 3 | 1.00× [1.00, 1.00] | 1.00, 1.00, 1.00 | n/a | ≤ 1.30× (resolved) |"
    assert "| ddim@1 | 3 |" in part and "> 1.30× (resolved)" in _line(part, "| ddim@1 |")
    assert "flow-matching" not in part and "ddpm@1000 |" not in part.split("\n", 2)[2]
