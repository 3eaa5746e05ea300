"""The mode-collapse suite (bench/suites/modes.toml) parses, names existing
generators/metrics, and its quoted paper rows use the mode-collapse records."""

from bench.suite import load_suite, validate_names

MODE_RECORDS = {
    "ring8": {"modes", "hq_pct", "reverse_kl"},
    "grid25": {"modes", "hq_pct", "reverse_kl"},
    "stacked-digits": {"modes", "kl_uniform"},
}


def test_modes_suite_is_valid():
    suite = load_suite("modes")
    validate_names(suite)
    assert len(suite.seeds) == 5
    by_name = {d.name: d for d in suite.datasets}
    assert by_name["ring8"].n_fake == by_name["grid25"].n_fake == 2500
    assert by_name["stacked-digits"].n_fake == 26000 and by_name["stacked-digits"].extractor == "digits-cnn"
    for d in suite.datasets:
        assert "mode_collapse" in d.metrics
    models = {g.model for g in suite.generators}
    assert {"gan", "pacgan", "wgan-gp"} <= models
    packs = {g.params.get("pack") for g in suite.generators if g.model == "pacgan"}
    assert {2, 3, 4} <= packs


def test_quoted_rows_are_labelled_and_use_mode_records():
    suite = load_suite("modes")
    assert suite.quoted
    for q in suite.quoted:
        assert q["dataset"] in MODE_RECORDS
        assert "quoted" in q["label"] and "not run here" in q["label"]
        assert q["values"] and set(q["values"]) <= MODE_RECORDS[q["dataset"]]
        assert 0 < q["values"]["modes"] <= {"ring8": 8, "grid25": 25, "stacked-digits": 1000}[q["dataset"]]
