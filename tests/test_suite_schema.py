"""Suite schema: every built-in suite passes it, and a suite using every optional field parses to the expected specs."""

from __future__ import annotations

import pytest

from bench.suite import SEED_LIMIT, SuiteError, available_suites, load_suite, validate_names

FULL = """
name = "full"
description = "every optional field"
seeds = [7, 2, 7]
sections = ["per_seed"]
[per_seed]
metrics = ["fid"]
[settings]
latency_repeats = 2
[[datasets]]
name = "ring8"
extractor = "raw"
n_fake = 10
metrics = ["fid"]
params = {}
settings = { k_prc = 3 }
[[generators]]
name = "g1"
model = "gmm"
params = { n_components = 4 }
budget = { steps = 3, batch_size = 8, lr = 0.01, max_seconds = 1.5 }
steps = 4
datasets = ["ring8"]
metrics = ["fid"]
dataset_params = { ring8 = { n_components = 8 } }
seeds = [3, 1, 3]
[[quoted]]
dataset = "ring8"
label = "a paper's row"
"""


@pytest.mark.parametrize("name", available_suites())
def test_builtin_suites_pass_the_schema(name):
    s = load_suite(name)
    validate_names(s)
    assert all(isinstance(x, int) and 0 <= x < SEED_LIMIT for x in s.seeds)
    assert all(d.n_fake is None or d.n_fake >= 1 for d in s.datasets)


def test_every_optional_field(tmp_path):
    p = tmp_path / "full.toml"
    p.write_text(FULL)
    s = load_suite(str(p))
    validate_names(s)
    assert s.seeds == (7, 2)  # duplicates dropped, order kept
    (g,) = s.generators
    assert g.steps == (4,) and g.params_for("ring8") == {"n_components": 8} and g.budget["max_seconds"] == 1.5
    assert s.datasets[0].settings == {"latency_repeats": 2, "k_prc": 3}
    assert g.seeds == (3, 1)  # a row's own seeds: duplicates dropped, order kept


@pytest.mark.parametrize(
    ("value", "message"),
    [("[]", r"generators\[0\] \(g1\)\.seeds must list at least one seed"), ("[1, -2]", r"seeds\[1\] must be in \[0, 4294967296\), got -2"),
     ('["a"]', r"seeds\[0\] must be an integer, got str 'a'")],
)  # fmt: skip
def test_a_rows_seeds_are_checked(tmp_path, value, message):
    p = tmp_path / "full.toml"
    p.write_text(FULL.replace("seeds = [3, 1, 3]", f"seeds = {value}"))
    with pytest.raises(SuiteError, match=message):
        load_suite(str(p))


def test_section_table_only_for_listed_sections(tmp_path):
    p = tmp_path / "full.toml"
    p.write_text(FULL.replace('sections = ["per_seed"]', "sections = []"))
    with pytest.raises(SuiteError, match=r"top level has unknown keys \['per_seed'\]"):
        load_suite(str(p))


def test_dataset_params_must_name_a_listed_dataset(tmp_path):
    p = tmp_path / "full.toml"
    p.write_text(FULL.replace("dataset_params = { ring8 =", "dataset_params = { grid25 ="))
    with pytest.raises(SuiteError, match="names dataset 'grid25'"):
        validate_names(load_suite(str(p)))


def test_ddim_probe_example_samples_the_speed_quality_networks():
    """examples/ddim-probe.toml must reuse speed-quality's trained DDPMs (same model, params, budget, seeds),
    or its numbers would not be about the table's networks; its samplers must all build."""
    from pathlib import Path

    from baselines import registry
    from bench.data import load as load_data

    probe = load_suite(str(Path(__file__).resolve().parents[1] / "examples" / "ddim-probe.toml"))
    sq = {g.name: g for g in load_suite("speed-quality").generators}["ddpm"]
    info = load_data("digits").info
    for g in probe.generators:
        assert (g.model, g.params, g.budget) == (sq.model, sq.params, sq.budget), g.name
        assert set(g.seeds or probe.seeds) == set(sq.seeds), g.name
        model = registry.build(g.model, info, **g.params)
        model.make_sampler(**g.sample_params)  # unknown options / spacing fail here, before a 20-minute run


def test_ddim_training_probe_changes_only_the_training_steps():
    """examples/ddim-training-probe.toml: one network per seed shared by all its rows, speed-quality's U-Net and
    recipe except the number of training steps (the one thing the probe varies); its samplers must all build."""
    from pathlib import Path

    from baselines import registry
    from bench.data import load as load_data

    probe = load_suite(str(Path(__file__).resolve().parents[1] / "examples" / "ddim-training-probe.toml"))
    sq = {g.name: g for g in load_suite("speed-quality").generators}["ddpm"]
    info = load_data("digits").info
    assert len({(g.model, repr(g.params), repr(g.budget)) for g in probe.generators}) == 1
    for g in probe.generators:
        assert (g.model, g.params) == (sq.model, sq.params), g.name
        assert {**g.budget, "steps": sq.budget["steps"]} == sq.budget and g.budget["steps"] > sq.budget["steps"], g.name
        registry.build(g.model, info, **g.params).make_sampler(**g.sample_params)
