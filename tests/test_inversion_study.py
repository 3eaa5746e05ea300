"""The inversion experiment (bench/inversion_study.py) and its leaderboard section, on a tiny suite."""

from __future__ import annotations

import json

import pytest
import torch

from bench import api
from bench import data as dreg
from bench.inversion_study import run_inversion

SUITE = """
name = "inv-tiny"
experiment = "inversion"
seeds = [0]
sections = ["inversion", "claims"]

[inversion]
dataset = "digits"
n_images = 24
rows = [
  { name = "identity", method = "identity" },
  { name = "nearest-train", method = "nearest-train" },
  { name = "gan-optimize", method = "optimize", model = "gan", params = { width = 8, z_dim = 8 }, budget = { steps = 5, batch_size = 32 }, options = { restarts = 2, steps = 5 } },
  { name = "gan-hybrid", method = "hybrid", model = "gan", params = { width = 8, z_dim = 8 }, budget = { steps = 5, batch_size = 32 }, options = { steps = 5, encoder_steps = 5 } },
  { name = "vae-encoder", method = "autoencoder", model = "vae", params = { width = 8 }, budget = { steps = 5, batch_size = 32 } },
  { name = "ddpm-ddim", method = "ddim", model = "ddpm", params = { width = 8, T = 20 }, budget = { steps = 5, batch_size = 32 }, options = { steps = 10, spacing = "trailing" } },
]

[[claims]]
claim = "hybrid beats optimization"
dataset = "digits"
metric = "inversion_mse"
a = "gan-hybrid"
b = "gan-optimize"
"""


def test_inversion_experiment_records_and_section(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "inv-tiny.toml"
    p.write_text(SUITE)
    run = api.run_suite(p, results_dir=tmp_path / "res", device="cpu", leaderboard=True, out_dir=tmp_path / "lb")
    assert run.ok
    recs = [json.loads(x) for x in (tmp_path / "res" / "inv-tiny" / "records.jsonl").read_text().splitlines()]
    val = {(r["generator"], r["metric"]): r for r in recs if str(r["metric"]).startswith("inversion_")}
    # the input itself: zero error, capped PSNR, SSIM 1, every class kept as the classifier sees it
    assert val[("identity", "inversion_mse")]["value"] == 0.0 and val[("identity", "inversion_psnr")]["value"] == pytest.approx(100.0)
    assert val[("identity", "inversion_ssim")]["value"] == pytest.approx(1.0) and val[("identity", "inversion_class_agree")]["value"] == 1.0
    # the nearest training image, computed here by brute force
    ds = dreg.load("digits")
    x, train = ds.test_x[:24].double().flatten(1), ds.train_x.double().flatten(1)
    nearest = train[torch.cdist(x, train).argmin(1)]
    assert val[("nearest-train", "inversion_mse")]["value"] == pytest.approx(float(((nearest - x) ** 2).mean(1).mean()), rel=1e-9)
    assert val[("nearest-train", "inversion_mse")]["reference"] is True and val[("gan-optimize", "inversion_mse")]["reference"] is False
    # the typicality of a latent with an N(0, I) prior: the GAN's z and the ODE's noise, not the reference rows
    assert ("ddpm-ddim", "inversion_latent_norm") in val and ("gan-optimize", "inversion_latent_norm") in val
    assert ("identity", "inversion_latent_norm") not in val and val[("ddpm-ddim", "inversion_latent_norm")]["direction"] == "one"
    for row in ("gan-optimize", "gan-hybrid", "vae-encoder", "ddpm-ddim"):
        r = val[(row, "inversion_mse")]
        assert 0 <= r["lo"] <= r["value"] <= r["hi"] and r["settings"]["n_images"] == 24
    md = (tmp_path / "lb" / "inv-tiny.md").read_text()
    assert "## Inversion of held-out images" in md and "| identity (reference) " in md and "| gan-hybrid " in md and "## Claims" in md


def test_inversion_table_is_checked():
    from bench.suite import SuiteError

    with pytest.raises(SuiteError, match="needs a dataset and rows"):
        run_inversion({"inversion": {"dataset": "digits"}}, None, None, "cpu", [0])
    with pytest.raises(SuiteError, match="n_images"):
        run_inversion({"inversion": {"dataset": "digits", "n_images": 10**6, "rows": [{"name": "i", "method": "identity"}]}}, None, None, "cpu", [0])
