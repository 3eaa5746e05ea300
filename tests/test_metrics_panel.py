"""The registered panel through an EvalContext: record names, applicability, settings, bootstrap."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from metrics import registry as mreg
from metrics.context import EvalContext
from metrics.extractors import get_extractor


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small-op loops (KID subsets, k-NN blocks) crawl with several threads on a busy small machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


NEW = ["kid", "is", "prdc", "class_kl", "class_acc", "memorization", "mode_collapse"]


def _run(ctx: EvalContext, names=NEW) -> dict:
    out = {}
    for m in names:
        spec = mreg.get_metric(m)
        if spec.applies(ctx):
            out.update(spec.fn(ctx))
    return out


def test_record_names_and_directions():
    outs = mreg.all_outputs()
    expected = {
        "kid": "zero", "is": "max", "precision": "max", "recall": "max", "density": "max", "coverage": "max",
        "class_kl": "min", "class_acc": "max", "copy_rate": "min", "dist_ratio": "one", "modes": "max",
        "hq_pct": "max", "reverse_kl": "min", "kl_uniform": "min",
    }  # fmt: skip
    for name, direction in expected.items():
        assert outs[name].direction == direction, name
    assert outs["kid"].label == "KID" and outs["is"].label == "IS"


@pytest.fixture(scope="module")
def digits_ctx():
    from bench import data

    ds = data.load("digits")
    ext = get_extractor("digits-cnn")
    # the `data` row: the held-out test split scored against the train-split reference
    return EvalContext(
        data_info=ds.info, fake=ds.test_x, real=ds.train_x, extractor=ext, train=ds.train_x, test=ds.test_x,
        real_labels=ds.train_y, train_labels=ds.train_y, test_labels=ds.test_y, fake_labels=ds.test_y,
        settings={"reference": "train", "kid_subsets": 20}, seed=0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def data_row(digits_ctx):
    return _run(digits_ctx)


def test_digits_panel_data_row(digits_ctx, data_row):
    out = data_row
    assert set(out) == {"kid", "is", "precision", "recall", "density", "coverage", "class_kl", "class_acc", "copy_rate", "dist_ratio"}
    assert out["kid"].settings["subsets"] == 20 and out["kid"].settings["subset_size"] == 360
    assert out["precision"].value > 0.8 and out["recall"].value > 0.8
    assert 0.7 < out["density"].value < 1.3 and out["coverage"].value > 0.8
    assert 8 < out["is"].value <= 10  # digits-cnn is ~99% accurate on balanced data
    assert out["class_kl"].value < 0.01 and out["class_acc"].value > 0.97
    assert out["dist_ratio"].value == pytest.approx(1.0)
    for v in out.values():
        s = v.settings
        assert s["extractor"] == "digits-cnn" and s["weights_hash"] == digits_ctx.extractor.weights_hash
        assert "n_fake" in s
    assert out["precision"].settings["k"] == 3 and out["density"].settings["k"] == 5
    # PRDC against a random reference subset of the samples' size (N-dependent k-NN manifolds)
    assert out["precision"].settings["n_real"] == 360 and out["precision"].settings["n_fake"] == 360
    assert out["precision"].settings["n_real_available"] == 1437 and "real_subset" in out["coverage"].settings
    assert out["copy_rate"].settings["copy_ratio"] == pytest.approx(1 / 3)
    assert out["precision"].interval is None


def test_collapsed_digits_lose_recall_and_class_balance(digits_ctx, data_row):
    from dataclasses import replace

    ones = digits_ctx.test_labels == 1
    fake = digits_ctx.test[ones].repeat(10, 1, 1, 1)[:360]
    ctx = replace(digits_ctx, fake=fake, fake_labels=torch.arange(360) % 10, _memo={})
    out = _run(ctx, ["kid", "prdc", "class_kl", "class_acc", "is", "memorization"])
    # KID's scale follows the features' (digits-cnn features are large): compare with the data row
    assert out["kid"].value > 50 * abs(data_row["kid"].value) + 1.0
    assert out["recall"].value < 0.3 and out["coverage"].value < 0.3
    assert out["class_kl"].value > 1.5 and out["class_acc"].value < 0.15 and out["is"].value < 1.5


def test_bootstrap_setting_gives_intervals(digits_ctx):
    from dataclasses import replace

    ctx = replace(digits_ctx, settings={**digits_ctx.settings, "bootstrap": 20}, _memo={})
    out = _run(ctx, ["fid", "prdc"])
    for name in ("fid", "precision", "recall", "density", "coverage"):
        lo, hi = out[name].interval
        assert lo <= hi and out[name].settings["bootstrap"] == 20, name
    assert out["fid"].interval[1] > 0
    assert out["recall"].interval[0] <= out["recall"].value <= out["recall"].interval[1]


def test_k_settings_and_too_few_samples(digits_ctx):
    from dataclasses import replace

    ctx = replace(digits_ctx, fake=digits_ctx.test[:4], fake_labels=None, _memo={})
    with pytest.raises(ValueError, match="k=5 needs at least k\\+1=6 .*n_fake=4"):
        mreg.get_metric("prdc").fn(replace(ctx, settings={"k_prc": 5}, _memo={}))
    assert not mreg.get_metric("class_acc").applies(ctx)


def test_mixture_mode_collapse_and_not_applicable_metrics():
    from bench import data

    ds = data.load("ring8")
    ctx = EvalContext(
        data_info=ds.info, fake=ds.test_x, real=ds.train_x[:3000], extractor=get_extractor("raw"), train=ds.train_x[:3000], test=ds.test_x
    )
    for m in ("is", "class_kl", "class_acc"):
        assert not mreg.get_metric(m).applies(ctx), m
    out = _run(ctx, ["mode_collapse"])
    assert set(out) == {"modes", "hq_pct", "reverse_kl"}
    assert out["modes"].value == 8 and out["hq_pct"].value > 97 and out["reverse_kl"].value < 0.01
    assert out["modes"].settings["n_fake"] == 2500 and out["modes"].settings["protocol_n_ok"]


def test_stacked_digits_mode_collapse():
    from bench import data

    ds = data.load("stacked-digits")
    ext = get_extractor("digits-cnn")
    ctx = EvalContext(data_info=ds.info, fake=ds.test_x[:1500], real=ds.train_x, extractor=ext, train=ds.train_x, test=ds.test_x)
    for m in ("is", "class_kl"):
        assert not mreg.get_metric(m).applies(ctx), m
    out = _run(ctx, ["mode_collapse"])
    assert set(out) == {"modes", "kl_uniform"}
    # 1500 draws over 1000 equally likely modes cover about 1000 (1 - e^-1.5) = 777 of them
    assert 700 < out["modes"].value < 850
    collapsed = ds.test_x[:1500].clone()
    collapsed[:, 0] = ds.test_x[0, 0]  # first channel fixed -> at most 100 modes
    out2 = _run(EvalContext(data_info=ds.info, fake=collapsed, real=ds.train_x, extractor=ext), ["mode_collapse"])
    assert out2["modes"].value <= 100 and out2["kl_uniform"].value > out["kl_uniform"].value + 1.5
    # decided by metadata, not by the name: renamed data with channel classes still counts modes ...
    renamed = replace(ds.info, name="my-stacked-set")
    assert mreg.get_metric("mode_collapse").applies(EvalContext(data_info=renamed, fake=collapsed, real=ds.train_x, extractor=ext))
    # ... and a data set called "stacked-digits" without them does not
    plain = replace(ds.info, channel_classes=False)
    assert not mreg.get_metric("mode_collapse").applies(EvalContext(data_info=plain, fake=collapsed, real=ds.train_x, extractor=ext))


def test_prdc_full_reference_when_asked(digits_ctx):
    ctx = replace(digits_ctx, settings={"prdc_equal_n": False}, _memo={})
    full = mreg.get_metric("prdc").fn(ctx)
    assert full["coverage"].settings["n_real"] == 1437 and "real_subset" not in full["coverage"].settings
    # 360 fakes cannot cover 1437 real balls: the reason for the equal-N default
    assert full["coverage"].value < 0.75


def test_metrics_leave_the_global_rng_alone(digits_ctx):
    """#11: a metric that draws from the global RNG makes resumed runs differ; every draw is seeded from the job."""
    ctx = replace(digits_ctx, settings={**digits_ctx.settings, "bootstrap": 5}, _memo={})
    state = torch.get_rng_state()
    first = _run(ctx, NEW + ["fid", "fd_inf"])
    assert torch.equal(torch.get_rng_state(), state)
    torch.rand(7)  # elsewhere in the global stream: same values
    again = _run(replace(ctx, _memo={}), NEW + ["fid", "fd_inf"])
    assert {k: v.value for k, v in first.items()} == {k: v.value for k, v in again.items()}
    assert first["fd_inf"].settings["draws"] == 3 and first["fid"].interval is not None
