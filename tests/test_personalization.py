"""The personalization experiment end to end with a tiny ddpm, its pieces,
and its leaderboard section."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from baselines.adaptation import NewRowEmbedding, NotApplicable, attention_kv_layers, conditioning_projections, prepare_method
from baselines.lora import parameter_counts
from baselines.nets import UNet
from bench.personalization import METRICS, PersonalizationError, config_from_suite, run_personalization


def _tiny_suite() -> dict:
    methods = [
        {"name": "pretrained", "method": "none"},
        {"name": "full", "method": "full", "steps": 4, "batch_size": 4},
        {"name": "full+prior", "method": "full", "steps": 4, "batch_size": 4, "prior": True},
        {"name": "embedding", "method": "embedding", "steps": 4, "batch_size": 4},
        {"name": "kv", "method": "kv", "steps": 4},
        {"name": "cond-proj", "method": "cond-proj", "steps": 4, "batch_size": 4},
        {"name": "lora-r1", "method": "lora", "r": 1, "steps": 4, "batch_size": 4},
        {"name": "lora-r4", "method": "lora", "r": 4, "steps": 4, "batch_size": 4},
    ]
    return {
        "name": "personalization-test",
        "experiment": "personalization",
        "personalization": {
            "params": {"conditional": True, "width": 8, "T": 20},
            "pretrain": {"steps": 10, "batch_size": 32},
            "sample_steps": 2,
            "n_prior": 18,
            "grid_samples": 4,
            "methods": methods,
        },
    }


def _lora_count(net: nn.Module, r: int) -> int:
    """LoRA parameters by hand: r * (fan_in + fan_out) per layer (k*k*c_in for convs)."""
    n = 0
    for m in net.modules():
        if isinstance(m, nn.Linear):
            n += r * (m.in_features + m.out_features)
        elif isinstance(m, nn.Conv2d):
            n += r * (m.in_channels * m.kernel_size[0] * m.kernel_size[1] + m.out_channels)
    return n


# ------------------------------------------------------------------------------ pieces
def test_new_row_embedding_changes_and_trains_only_its_row():
    torch.manual_seed(0)
    base = nn.Embedding(11, 6)
    ref = base.weight.detach().clone()
    emb = NewRowEmbedding(base, 9)
    y = torch.tensor([0, 9, 3, 9, 10])
    torch.testing.assert_close(emb(y), ref[y])  # starts equal
    with torch.no_grad():
        emb.new_row.add_(1.0)
    out = emb(y)
    torch.testing.assert_close(out[[0, 2, 4]], ref[[0, 3, 10]])
    torch.testing.assert_close(out[[1, 3]], (ref[9] + 1).expand(2, 6))
    out.sum().backward()
    assert base.weight.grad is None and emb.new_row.grad is not None
    assert parameter_counts(emb) == (6, 66 + 6)


def test_method_setup_counts_on_the_unet():
    torch.manual_seed(0)
    net = UNet(1, width=8, num_classes=10)
    total = sum(p.numel() for p in net.parameters())
    assert attention_kv_layers(net) == []  # no attention: K/V-only does not apply
    proj = conditioning_projections(net)
    assert proj and all(n.endswith(".emb") for n in proj)

    import copy

    cases = {}
    for method in (
        {"method": "full"},
        {"method": "embedding"},
        {"method": "cond-proj"},
        {"method": "lora", "r": 2, "alpha": None, "targets": None},
    ):
        n = copy.deepcopy(net)
        params, state_fn, _ = prepare_method(n, method, 9, 10)
        cases[method["method"]] = (sum(p.numel() for p in params), parameter_counts(n)[0], state_fn())
    assert cases["full"][0] == cases["full"][1] == total
    assert cases["embedding"][:2] == (32, 32)  # one row of the 4*width-dim class table
    assert set(cases["embedding"][2]) == {"new_row"}
    mods = dict(net.named_modules())
    proj_params = sum(p.numel() for n in proj for p in mods[n].parameters())
    assert cases["cond-proj"][0] == cases["cond-proj"][1] == 32 + proj_params
    assert cases["lora"][0] == cases["lora"][1] == _lora_count(net, 2)
    with pytest.raises(NotApplicable, match="no attention"):
        prepare_method(copy.deepcopy(net), {"method": "kv"}, 9, 10)


def test_config_validation():
    with pytest.raises(PersonalizationError, match="methods"):
        config_from_suite({"personalization": {}})
    with pytest.raises(PersonalizationError, match="unknown method"):
        config_from_suite({"personalization": {"methods": [{"name": "a", "method": "dreambooth"}]}})
    with pytest.raises(PersonalizationError, match="unknown keys"):
        config_from_suite({"personalization": {"methods": [{"name": "a", "method": "embedding", "r": 4}]}})
    with pytest.raises(PersonalizationError, match="conditional"):
        config_from_suite({"personalization": {"params": {"conditional": False}, "methods": [{"name": "a", "method": "none"}]}})
    with pytest.raises(PersonalizationError, match="used twice"):
        config_from_suite({"personalization": {"methods": [{"name": "a", "method": "none"}, {"name": "a", "method": "full"}]}})


def test_shipped_suite_parses():
    raw = tomllib.loads((Path(__file__).parents[1] / "bench" / "suites" / "personalization.toml").read_text())
    assert raw["experiment"] == "personalization" and "personalization" in raw["sections"]
    cfg, methods = config_from_suite(raw)
    kinds = [m["method"] for m in methods]
    for k in ("none", "full", "embedding", "kv", "cond-proj", "lora"):
        assert k in kinds
    assert {m["r"] for m in methods if m["method"] == "lora"} == {1, 4, 16}
    assert any(m["method"] == "full" and m["prior"] for m in methods) and any(m["method"] == "full" and not m["prior"] for m in methods)


# ------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from baselines.registry import available

    if "ddpm" not in available():
        pytest.skip("baselines.diffusion (ddpm) is not available")
    root = tmp_path_factory.mktemp("pers")
    suite = _tiny_suite()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: threads only add overhead on a shared machine
    try:
        recs = run_personalization(suite, root / "results", root / "cache", "cpu", [0])
    finally:
        torch.set_num_threads(threads)
    return suite, root, recs


def test_records_cover_every_method_and_metric(run):
    suite, _, recs = run
    df = pd.DataFrame(recs)
    for m in suite["personalization"]["methods"]:
        sub = df[df["generator"] == m["name"]]
        assert set(METRICS) <= set(sub["metric"]), m["name"]
        assert (sub["dataset"] == "digits").all() and (sub["seed"] == 0).all()
    kv = df[(df["generator"] == "kv") & (df["metric"] == "concept_fid")].iloc[0]
    assert pd.isna(kv["value"]) and "attention" in kv["na"]
    real = df[df["generator"] == "real data"]
    assert set(real["metric"]) >= {"concept_acc", "concept_clip", "prior_fid"}
    for r in recs:
        if r["metric"] in METRICS and r.get("value") is not None:
            assert "concept" in r["settings"] and "sample_steps" in r["settings"]


def test_values_are_consistent(run):
    _, _, recs = run
    v = {(r["generator"], r["metric"]): r["value"] for r in recs}
    # embedding-only and the untouched model leave the other classes exactly as they were
    assert v[("embedding", "prior_fid")] == pytest.approx(v[("embedding", "prior_fid_before")], abs=1e-9)
    assert v[("pretrained", "prior_fid")] == pytest.approx(v[("pretrained", "prior_fid_before")], abs=1e-9)
    assert v[("full", "prior_fid")] != v[("full", "prior_fid_before")]
    assert v[("full", "trainable_pct")] == pytest.approx(100.0)
    assert v[("embedding", "trainable_params")] == 32
    assert v[("pretrained", "trainable_params")] == 0 and v[("pretrained", "adapter_bytes")] == 0
    sizes = [v[(g, "adapter_bytes")] for g in ("embedding", "lora-r1", "lora-r4", "full")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    assert v[("lora-r4", "trainable_params")] == 4 * v[("lora-r1", "trainable_params")]
    for g in ("full", "embedding", "lora-r1"):
        assert 0 <= v[(g, "concept_acc")] <= 1 and 0 <= v[(g, "concept_clip")] <= 100 and v[(g, "concept_fid")] > 0
        assert v[(g, "adapt_s")] > 0
    # the real nines are recognised: the ceiling of the concept columns
    assert v[("real data", "concept_acc")] > 0.9 and v[("real data", "concept_clip")] > 50


def test_rerun_uses_the_cache(run, monkeypatch):
    suite, root, recs = run
    import bench.personalization as bp

    def boom(*a, **k):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(bp, "finetune", boom)
    again = run_personalization(suite, root / "results", root / "cache", "cpu", [0])
    strip = lambda rs: sorted((r["generator"], r["metric"], r["value"] if r["value"] is None else round(r["value"], 9)) for r in rs)  # noqa: E731
    assert strip(again) == strip(recs)


def test_a_damaged_cache_artifact_is_recomputed_not_trusted(run, monkeypatch, tmp_path):
    """The experiment keeps its pretrained model and method results in the pipeline's checksummed cache: a flipped
    byte in a cached method result is reported and that method is run again, to the same records."""
    import shutil
    import warnings

    import bench.personalization as bp

    suite, root, recs = run
    cache = tmp_path / "cache"
    shutil.copytree(root / "cache", cache)
    results = sorted((cache / bp.METHOD).glob("*.json"))
    assert results and list((cache / bp.PRETRAIN).glob("*.pt"))
    raw = bytearray(results[0].read_bytes())
    raw[-3] ^= 0x01
    results[0].write_bytes(bytes(raw))
    calls = []
    real = bp._run_method
    monkeypatch.setattr(bp, "_run_method", lambda *a, **k: calls.append(a[2]["name"]) or real(*a, **k))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        again = run_personalization(suite, tmp_path / "results", cache, "cpu", [0])
    assert len(calls) == 1
    strip = lambda rs: sorted((r["generator"], r["metric"], r["value"] if r["value"] is None else round(r["value"], 9)) for r in rs)  # noqa: E731
    timings = {"adapt_s", "pretrain_s", "sample_s"}
    assert [x for x in strip(again) if x[1] not in timings] == [x for x in strip(recs) if x[1] not in timings]


def test_section_renders_table_and_grids(run, tmp_path):
    from bench.leaderboard import records_frame
    from bench.sections.personalization import section
    from bench.store import ResultStore

    suite, _, recs = run
    store = ResultStore(tmp_path / "store")  # the leaderboard's path: stored, read back, framed
    for r in recs:
        store.append(r)
    df = records_frame(store.records())
    assets = tmp_path / "assets" / "personalization-test"
    md = section(df, suite, assets)
    for m in suite["personalization"]["methods"]:
        assert f"| {m['name']}" in md
    assert "real data (reference)" in md
    assert "n/a — **kv**" in md
    assert "trainable params:" in md  # peft-format line
    pngs = sorted(p.name for p in assets.glob("*.png"))
    assert "personalization__lora-r4.png" in pngs and len(pngs) >= 7
    assert "assets/personalization-test/personalization__full.png" in md


# ------------------------------------------------------------------------------ the Adaptable capability
def test_ddpm_adapt_trains_only_what_the_method_names(digits):
    from baselines.adaptation import AdaptationError
    from baselines.protocol import Adaptable, Budget, TrainData
    from baselines.registry import build

    torch.manual_seed(0)
    m = build("ddpm", digits.info, conditional=True, width=8, T=20)
    m.fit(TrainData(digits.train_x[:64], digits.info, digits.train_y[:64]), Budget(steps=2, batch_size=16))
    assert isinstance(m, Adaptable)
    nines = digits.train_x[digits.train_y == 9][:5]
    y = torch.full((5,), 9)
    before = {k: v.clone() for k, v in m.ema.module.state_dict().items()}
    rep = m.adapt(TrainData(nines, digits.info, y), Budget(steps=3, batch_size=4), method="embedding", generator=torch.Generator().manual_seed(0))
    assert rep.steps == 3 and len(rep.losses["loss"]) == 3
    assert rep.extra["trainable_params"] == 32 and rep.extra["method"] == "embedding" and rep.extra["adapter_bytes"] > 0
    after = m.ema.module.state_dict()
    changed = {k for k in before if k in after and not torch.equal(before[k], after[k])}
    assert changed == set(), "the frozen table and every other weight are untouched"
    new_row = [v for k, v in after.items() if k.endswith("new_row")]
    assert len(new_row) == 1 and not torch.equal(new_row[0], before["label.emb.weight"][9])
    with pytest.raises(AdaptationError, match="unknown adaptation method"):
        m.adapt(TrainData(nines, digits.info, y), Budget(steps=1), method="dreambooth")
    with pytest.raises(AdaptationError, match="one new class"):
        m.adapt(TrainData(nines, digits.info, torch.tensor([9, 9, 9, 8, 9])), Budget(steps=1), method="embedding")
    u = build("ddpm", digits.info, width=8, T=20)
    with pytest.raises(AdaptationError, match="conditional"):
        u.adapt(TrainData(nines, digits.info), Budget(steps=1), method="embedding")
    with pytest.raises(NotApplicable, match="no attention"):
        m.adapt(TrainData(nines, digits.info, y), Budget(steps=1), method="kv")


def test_scores_go_through_the_metric_registry_and_the_feature_cache(tmp_path):
    """The experiment's FID and class accuracy are the registered metrics: equal to FID computed by hand on the
    extractor's features and to the share of matching argmax labels; the reference features land in the cache."""
    from bench.personalization import _Refs
    from genbench.cache import Cache
    from metrics.fid import fid_from_features

    cfg, _ = config_from_suite(_tiny_suite())
    refs = _Refs(cfg, 0, Cache(tmp_path))
    fake = refs.pre_x[:200]
    labels = refs.pre_y[:200]
    got = refs.scores("prior", fake, labels)
    ext = refs.ext
    assert got["fid"] == pytest.approx(fid_from_features(ext.features(refs.prior_ref), ext.features(fake)).value, rel=1e-9)
    assert got["class_acc"] == pytest.approx(float((ext.logits(fake).argmax(1) == labels).double().mean()), abs=1e-12)
    assert list(tmp_path.rglob("*")), "the reference features were not cached"
    assert refs.scores("prior", fake, labels)["fid"] == got["fid"]  # served from the cache: same value


def test_an_experiment_run_logs_the_one_process_it_ran_in(tmp_path):
    """An experiment suite runs in the bench process, whatever --jobs says: its runs.jsonl line says one worker with
    every usable core's thread, and why."""
    import json

    from bench.runner import run_suite
    from bench.suite import load_suite

    toml = (
        'name = "pers-tiny"\nexperiment = "personalization"\nseeds = [0]\n[personalization]\n'
        'params = { conditional = true, width = 8, T = 20 }\npretrain = { steps = 2, batch_size = 16 }\nsample_steps = 2\n'
        'grid_samples = 2\n[[personalization.methods]]\nname = "pretrained"\nmethod = "none"\n'
    )
    (tmp_path / "pers-tiny.toml").write_text(toml)
    run_suite(load_suite(str(tmp_path / "pers-tiny.toml")), results_dir=tmp_path / "res", workers=2, threads=1, progress=False)
    entry = json.loads((tmp_path / "res" / "pers-tiny" / "runs.jsonl").read_text().splitlines()[-1])
    assert entry["workers"] == 1 and entry["threads"] == 1 and entry["executor"] == "local"
    assert entry["parallelism"].startswith("1 worker x 1 thread") and "one process" in entry["parallelism"]
