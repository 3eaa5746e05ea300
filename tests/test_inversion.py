"""Inversion methods (baselines/inversion.py) and their measures (metrics/inversion_measures.py).

Acceptance: DDIM inversion then DDIM sampling of a trained DDPM returns its input within 1e-3 (max abs error,
[0, 1] pixels) at 100 steps, the Euler inversion of flow matching likewise, and RealNVP's inversion is exact to
float precision.
"""

from __future__ import annotations

import math

import pytest
import torch

from baselines.inversion import INVERSIONS, InversionError, InversionResult, applicable_methods, invert, latent_spaces, train_encoder
from baselines.registry import build
from bench import data
from genbench.protocol import Budget, TrainData
from genbench.registry import UnknownNameError
from metrics.inversion_measures import Summary, inversion_measures, per_image_measures, summarize

ROUND_TRIP_TOL = 1e-3  # max abs error, [0, 1] pixels, of inversion + sampling at 100 steps (measured: about 2e-5)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks: intra-op threads only add contention on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def _trained(name, ds, steps, seed=0, batch_size=64, **hp):
    torch.manual_seed(seed)
    m = build(name, ds.info, device="cpu", **hp)
    m.fit(TrainData(ds.train_x, ds.info), Budget(steps=steps, batch_size=batch_size, progress=False))
    return m


@pytest.fixture(scope="module")
def gan(digits):
    return _trained("gan", digits, 50, width=8, z_dim=8)


def _g(seed):
    return torch.Generator().manual_seed(seed)


def test_registry_holds_every_method_with_what_it_applies_to():
    assert INVERSIONS.names() == ["autoencoder", "ddim", "encoder", "exact", "hybrid", "optimize"]
    for name, entry in INVERSIONS.entries().items():
        assert entry.meta["applies_to"] and entry.description, name
        assert entry.load().name == name


def test_methods_apply_by_capability(digits, gan):
    info = digits.info
    assert applicable_methods(gan) == ["encoder", "hybrid", "optimize"]
    assert applicable_methods(build("ddpm", info, width=8, T=20)) == ["ddim"]
    assert applicable_methods(build("flow-matching", info, width=8)) == ["ddim"]
    assert applicable_methods(build("realnvp", info, hidden=(16,), n_couplings=2)) == ["encoder", "exact", "hybrid", "optimize"]
    assert applicable_methods(build("vqvae", info)) == ["autoencoder"]
    assert applicable_methods(build("cgan", info, width=8, z_dim=8)) == []  # conditional: no latent path without labels
    assert latent_spaces(gan) == ("z",)
    assert latent_spaces(build("stylegan", info, width=8, z_dim=16)) == ("z", "w", "w+")


# ----------------------------------------------------------------------------- (a), (b) the ODE round trips
def test_ddim_inversion_then_sampling_returns_the_input_at_100_steps(digits):
    """A DDPM (cosine schedule, T = 1000) trained briefly; 32 test digits inverted to noise by the DDIM ODE run
    backwards and sampled forward with the same 100 DDIM steps (no x_0 clipping) come back within 1e-3."""
    m = _trained("ddpm", digits, 200, width=8)
    x = digits.test_x[:32]
    r = invert("ddim", m, x, steps=100)
    assert isinstance(r, InversionResult) and r.space == "noise" and r.latent.shape == x.shape
    assert r.options["steps"] == 100 and r.options["clip_denoised"] is False and r.options["spacing"] == "leading"
    err = (r.reconstruction - x).abs().max().item()
    assert err < ROUND_TRIP_TOL, err
    assert 0.8 < r.latent.std().item() < 1.25  # the latent is noise, not an image
    assert r.extra["nfe_reconstruction"] == 100 and r.extra["nfe_inversion"] >= 100
    assert r.seconds_per_image > 0
    # the reconstruction is the model's own DDIM sampler run from the latent found
    sampler = m.make_sampler("ddim", clip_denoised=False, spacing="leading")
    again = ((m.sample_internal(len(x), noise=r.latent, sampler=sampler, steps=100) + 1) / 2).clamp(0, 1)
    assert torch.allclose(again, r.reconstruction, atol=1e-6)
    # without the fixed-point refinement (Mokady et al.'s one-evaluation step) the round trip is far worse
    plain = invert("ddim", m, x, steps=100, fixed_point_iters=0)
    assert plain.extra["nfe_inversion"] == 100
    assert (plain.reconstruction - x).abs().max().item() > 10 * err


def test_flow_matching_euler_inversion_round_trip_at_100_steps(digits):
    m = _trained("flow-matching", digits, 100, width=8)
    x = digits.test_x[:32]
    r = invert("ddim", m, x, steps=100)
    assert r.options["sampler"] == "euler" and r.options["spacing"] is None
    err = (r.reconstruction - x).abs().max().item()
    assert err < ROUND_TRIP_TOL, err
    assert 0.7 < r.latent.std().item() < 1.3


def test_ddim_on_a_conditional_model_needs_labels(digits):
    m = build("ddpm", digits.info, width=8, T=20, conditional=True)
    x = digits.test_x[:4]
    with pytest.raises(InversionError, match="class-conditional; pass labels"):
        invert("ddim", m, x, steps=10)
    r = invert("ddim", m, x, steps=10, labels=digits.test_y[:4])
    assert r.reconstruction.shape == x.shape
    with pytest.raises(InversionError, match="unconditional; it takes no labels"):
        invert("ddim", build("ddpm", digits.info, width=8, T=20), x, steps=10, labels=digits.test_y[:4])


# ----------------------------------------------------------------------------- (c) exact inversion of RealNVP
def test_realnvp_inversion_is_exact_to_float_precision(digits):
    m = _trained("realnvp", digits, 30, hidden=(32,), n_couplings=4)
    x = digits.test_x[:64]
    r = invert("exact", m, x)
    assert r.space == "base" and r.latent.shape == x.shape
    assert (r.reconstruction - x).abs().max().item() < 1e-5
    assert r.extra["roundtrip_max_abs"] < 1e-5
    # the latent is the flow's own forward map of x, and from_latent (the inverse flow) maps it back
    assert torch.allclose(m.from_latent(r.latent.flatten(1)), x, atol=1e-5)
    # dequantized inputs (the bin centre, or uniform noise as in training) come back on the K levels exactly
    for mode in ("center", "uniform"):
        q = invert("exact", m, x, dequantize=mode, generator=_g(0))
        assert torch.equal(q.reconstruction, x), mode
    ring = data.load("ring8")
    pts = _trained("realnvp", ring, 10, hidden=(16,), n_couplings=4)
    xp = ring.test_x[:64]
    assert (invert("exact", pts, xp).reconstruction - xp).abs().max().item() < 1e-5
    with pytest.raises(InversionError, match="needs image data"):
        invert("exact", pts, xp, dequantize="center")


# ----------------------------------------------------------------------------- (d) optimization, encoder, hybrid
def test_optimize_recovers_a_generated_image_better_than_random_latents(gan):
    z_true = torch.randn(16, gan.latent_dim, generator=_g(1))
    target = gan.from_latent(z_true)
    r = invert("optimize", gan, target, generator=_g(2), steps=100, restarts=2)
    assert r.space == "z" and r.latent.shape == (16, gan.latent_dim)
    random_loss = ((gan.from_latent(torch.randn(16, gan.latent_dim, generator=_g(3))) - target) ** 2).flatten(1).mean(1)
    assert (r.extra["loss"] < random_loss).all()
    assert r.extra["loss"].mean() < random_loss.mean() / 10
    assert torch.allclose(gan.from_latent(r.latent), r.reconstruction, atol=1e-6)  # the reconstruction is G(latent found)


def test_hybrid_is_no_worse_than_its_encoder_start(gan):
    enc = train_encoder(gan, steps=100, batch_size=64, generator=_g(0))
    x = gan.from_latent(torch.randn(16, gan.latent_dim, generator=_g(4)))
    e = invert("encoder", gan, x, encoder=enc, generator=_g(5))
    h = invert("hybrid", gan, x, encoder=enc, generator=_g(5), steps=30)
    assert e.options["encoder"] == "given" and e.extra["setup_seconds"] == 0.0
    assert torch.allclose(e.latent, enc(x).detach())
    assert torch.allclose(h.extra["start_loss"], e.extra["loss"].float(), atol=1e-6)  # the hybrid starts at E(x)
    assert (h.extra["loss"] <= e.extra["loss"] + 1e-7).all()
    # trained inside the method when no encoder is given; the training time is reported apart
    own = invert("encoder", gan, x, encoder_steps=5, generator=_g(6))
    assert own.extra["setup_seconds"] > 0 and own.options["encoder_steps"] == 5 and own.extra["encoder"].space == "z"


def test_stylegan_inverts_in_z_w_and_w_plus(digits):
    m = _trained("stylegan", digits, 3, batch_size=16, width=8, z_dim=16)
    net = m._style_net()
    x = digits.test_x[:4]
    shapes = {"z": (4, 16), "w": (4, 16), "w+": (4, net.num_ws, 16)}
    for space, shape in shapes.items():
        r = invert("optimize", m, x, space=space, steps=5, restarts=1, generator=_g(0))
        assert r.space == space and r.latent.shape == shape
        assert (r.extra["loss"] <= r.extra["start_loss"]).all()
        h = invert("hybrid", m, x, space=space, steps=3, encoder_steps=3, encoder_batch_size=8, generator=_g(0))
        assert h.latent.shape == shape
    # with one start the batch layout is the caller's, so the reconstruction is from_w with the reported noise seed
    r = invert("optimize", m, x, space="w", steps=5, restarts=1, generator=_g(0))
    assert torch.allclose(m.from_w(r.latent, generator=_g(r.extra["noise_seed"])), r.reconstruction, atol=1e-5)


# ----------------------------------------------------------------------------- (e) the model's own autoencoder
@pytest.mark.parametrize("name, hp", [("vae", {"width": 8}), ("autoencoder", {"width": 8})])
def test_autoencoder_method_is_the_models_own_encode_decode(digits, name, hp):
    m = _trained(name, digits, 5, **hp)
    x = digits.test_x[:16]
    r = invert("autoencoder", m, x)
    code = m.encode(x)
    code = code[0] if isinstance(code, tuple) else code  # a VAE encodes to (mu, logvar): its mean
    assert r.space == "code" and torch.equal(r.latent, code)
    assert torch.equal(r.reconstruction, m.decode(code).clamp(0, 1))


# ----------------------------------------------------------------------------- (f) clear errors
def test_a_method_that_does_not_apply_names_the_model_and_the_valid_methods(digits, gan):
    x = digits.test_x[:2]
    with pytest.raises(
        InversionError, match=r"'exact' does not apply to model 'gan' \(family gan\); methods that apply: encoder, hybrid, optimize"
    ):
        invert("exact", gan, x)
    with pytest.raises(InversionError, match=r"'optimize' does not apply to model 'ddpm'.*methods that apply: ddim$"):
        invert("optimize", build("ddpm", digits.info, width=8, T=20), x)
    with pytest.raises(InversionError, match="methods that apply: none"):
        invert("ddim", build("cgan", digits.info, width=8, z_dim=8), x)
    with pytest.raises(
        UnknownNameError, match="unknown inversion method 'nope'; valid: autoencoder, ddim, encoder, exact, hybrid, optimize"
    ):
        invert("nope", gan, x)
    with pytest.raises(TypeError, match=r"unknown options \['stepz'\]; valid: \[.*'steps'"):
        invert("optimize", gan, x, stepz=3)
    with pytest.raises(InversionError, match="latent space 'w' is not available; valid: z"):
        invert("optimize", gan, x, space="w")


@pytest.mark.parametrize(
    "bad, err, match",
    [
        (torch.zeros(2, 8, 8), ValueError, r"shape \(2, 8, 8\); expected \(N, 1, 8, 8\)"),
        (torch.full((2, 1, 8, 8), math.nan), ValueError, "NaN/inf"),
        (torch.full((2, 1, 8, 8), 2.0), ValueError, r"images in \[0, 1\]"),
        (torch.zeros(0, 1, 8, 8), ValueError, "empty"),
        ([[0.0]], TypeError, "must be a torch.Tensor"),
    ],
)
def test_bad_inputs_are_refused_with_the_models_name(gan, bad, err, match):
    with pytest.raises(err, match=f"inversion of gan: .*{match}"):
        invert("optimize", gan, bad, steps=1)


def test_bad_options_are_refused(digits, gan):
    x = digits.test_x[:2]
    with pytest.raises(InversionError, match="restarts >= 1"):
        invert("optimize", gan, x, restarts=0)
    with pytest.raises(InversionError, match="unknown spacing 'middle'"):
        invert("ddim", build("ddpm", digits.info, width=8, T=20), x, spacing="middle")
    with pytest.raises(ValueError, match="steps must be in"):
        invert("ddim", build("ddpm", digits.info, width=8, T=20), x, steps=50)
    with pytest.raises(InversionError, match="dequantize must be"):
        invert("exact", build("realnvp", digits.info, hidden=(16,), n_couplings=2), x, dequantize="round")


# ----------------------------------------------------------------------------- measures
def test_measures_on_constructed_cases():
    x = 0.8 * torch.rand(5, 1, 8, 8, generator=_g(1))
    per = per_image_measures(x, x + 0.1)
    assert torch.allclose(per["mse"], torch.full((5,), 0.01, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(per["psnr"], torch.full((5,), 20.0, dtype=torch.float64), atol=1e-3)
    same = per_image_measures(x, x.clone())
    assert (same["psnr"] == 100.0).all() and torch.allclose(same["ssim"], torch.ones(5, dtype=torch.float64))
    # features and classifier callables: distance in feature space, arg-max agreement, true labels kept
    rec = x.clone()
    rec[0] += 0.1
    flat = lambda t: t.flatten(1)  # noqa: E731
    logits = lambda t: torch.stack([t.flatten(1).mean(1), torch.full((len(t),), 0.45)], 1)  # noqa: E731  class 0 iff mean > 0.45
    per = per_image_measures(x, rec, features=flat, classifier=logits, labels=torch.zeros(5, dtype=torch.long))
    assert per["feature_dist"][0].item() == pytest.approx(0.8, abs=1e-5) and (per["feature_dist"][1:] == 0).all()
    expected_agree = ((x.flatten(1).mean(1) > 0.45) == (rec.flatten(1).mean(1) > 0.45)).double()
    assert torch.equal(per["class_agree"], expected_agree)
    assert torch.equal(per["class_kept"], (rec.flatten(1).mean(1) > 0.45).double())
    pts = per_image_measures(torch.zeros(3, 2), torch.ones(3, 2))
    assert set(pts) == {"mse"} and torch.equal(pts["mse"], torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="same shape"):
        per_image_measures(x, x[:2])
    with pytest.raises(ValueError, match="NaN"):
        per_image_measures(x, torch.full_like(x, math.nan))


def test_ssim_and_psnr_match_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.image")
    g = _g(2)
    x = torch.rand(4, 1, 8, 8, generator=g)
    rec = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    per = per_image_measures(x, rec)
    assert torch.allclose(per["ssim"], tm.structural_similarity_index_measure(rec, x, data_range=1.0, reduction="none").double(), atol=1e-5)
    assert torch.allclose(
        per["psnr"], tm.peak_signal_noise_ratio(rec, x, data_range=1.0, reduction="none", dim=(1, 2, 3)).double(), atol=1e-3
    )


def test_summaries_give_intervals_over_images():
    v = torch.tensor([1.0, 2.0, 3.0, 4.0])
    s = summarize(v)
    half = 3.182446305284263 * v.std().item() / 2  # t_{0.975, 3} s / sqrt(4)
    assert s.mean == 2.5 and s.lo == pytest.approx(2.5 - half) and s.hi == pytest.approx(2.5 + half) and s.n == 4
    b = summarize(v, interval="bootstrap")
    assert b.lo <= 2.5 <= b.hi and "bootstrap" in b.interval
    assert summarize(torch.tensor([1.0])).lo is None
    with pytest.raises(ValueError, match="interval must be"):
        summarize(v, interval="normal")
    x = torch.rand(6, 1, 8, 8, generator=_g(3))
    result = InversionResult("fake", {}, x.clamp(0, 0.9), torch.zeros(6, 2), "z", 0.25)
    out = inversion_measures(x, result)
    assert set(out) == {"mse", "psnr", "ssim", "seconds_per_image"}
    assert isinstance(out["mse"], Summary) and out["mse"].lo <= out["mse"].mean <= out["mse"].hi
    assert out["seconds_per_image"].mean == 0.25 and out["seconds_per_image"].lo is None
