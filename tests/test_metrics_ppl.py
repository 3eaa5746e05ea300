"""Perceptual path length: closed form on a linear generator, slerp's geometry, torch-fidelity's PPL on a shared
generator and similarity, and the registered metric on a GAN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from metrics.ppl import lerp, path_lengths, slerp, trimmed_mean


def test_linear_generator_has_the_closed_form_path_length():
    """G(z) = A z with identity features: every step along a lerp path moves ||A (z1 - z0)|| eps, so d = ||A (z1 - z0)||^2."""
    torch.manual_seed(0)
    a = torch.randn(5, 3, dtype=torch.float64)
    z0, z1 = torch.randn(200, 3, dtype=torch.float64), torch.randn(200, 3, dtype=torch.float64)
    t = torch.rand(200, 1, dtype=torch.float64)
    d = path_lengths(lambda z, g: z @ a.T, lambda x: x, z0, z1, t, epsilon=1e-3, interp="lerp")
    assert torch.allclose(d, ((z1 - z0) @ a.T).pow(2).sum(1), rtol=1e-8)
    mean, std, kept = trimmed_mean(d)
    x = np.sort(d.numpy())
    assert kept == 198 and mean == pytest.approx(x[1:-1].mean())  # the smallest and the largest of 200 fall outside 1-99 %


def test_slerp_moves_along_the_great_circle():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    half = slerp(a, b, torch.tensor([[0.5]]))
    assert torch.allclose(half, torch.tensor([[math.sqrt(0.5), math.sqrt(0.5)]]), atol=1e-6)
    assert torch.allclose(slerp(a, b, torch.tensor([[0.0]])), a) and torch.allclose(slerp(a, b, torch.tensor([[1.0]])), b, atol=1e-6)
    assert torch.allclose(slerp(a, 2 * a, torch.tensor([[0.5]])), lerp(a, 2 * a, torch.tensor([[0.5]])))  # parallel: lerp


class _Gen(nn.Module):
    """A fixed small generator: z (N, 8) -> 1x8x8 images in (0, 1)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.fc = nn.Linear(8, 64)

    def forward(self, z):
        return torch.sigmoid(self.fc(z)).reshape(-1, 1, 8, 8)


def test_agrees_with_torch_fidelity_ppl_on_a_shared_generator_and_similarity():
    """torch-fidelity's PPL interpolates from z0 towards z1 only (t = 0), with lerp by default and latents from
    numpy's RandomState(rng_seed); given its latents and the same similarity (squared L2 of digits-cnn
    features), ours equals it. Its 1-99 % trimming is switched off on both sides: torch-fidelity 0.4.0 calls
    ``np.percentile(..., interpolation=)``, which numpy 2 no longer accepts (our trimming is tested above)."""
    torch_fidelity = pytest.importorskip("torch_fidelity")
    from torch_fidelity.generative_model_modulewrapper import GenerativeModelModuleWrapper
    from torch_fidelity.registry import SAMPLE_SIMILARITY_REGISTRY, register_sample_similarity
    from torch_fidelity.sample_similarity_base import SampleSimilarityBase

    from metrics.extractors import get_extractor

    ext = get_extractor("digits-cnn")

    class FeatureL2(SampleSimilarityBase):
        def __init__(self, name, **kwargs):
            super().__init__(name)

        def forward(self, x0, x1):
            return (ext.features(x0).double() - ext.features(x1).double()).pow(2).sum(1)

    if "genbench-digits-l2" not in SAMPLE_SIMILARITY_REGISTRY:
        register_sample_similarity("genbench-digits-l2", FeatureL2)
    g = _Gen().eval()
    n, eps, seed = 300, 1e-2, 7
    theirs = torch_fidelity.calculate_metrics(
        input1=GenerativeModelModuleWrapper(g, 8, "normal", 0), input1_model_num_samples=n, ppl=True, ppl_epsilon=eps,
        ppl_sample_similarity="genbench-digits-l2", ppl_z_interp_mode="lerp", rng_seed=seed, batch_size=n, cuda=False, verbose=False,
        ppl_discard_percentile_lower=None, ppl_discard_percentile_higher=None,
    )["perceptual_path_length_mean"]  # fmt: skip
    rng = np.random.RandomState(seed)
    z0, z1 = (torch.from_numpy(rng.randn(n, 8)).float() for _ in range(2))
    with torch.no_grad():
        d = path_lengths(lambda z, gen: g(z), ext.features, z0, z1, torch.tensor(0.0), eps, "lerp")
    assert float(d.mean()) == pytest.approx(theirs, rel=1e-3)


def test_registered_metric_on_a_gan(tmp_path):
    from baselines.registry import build
    from bench import data
    from genbench.protocol import Budget, LatentPath, TrainData
    from metrics.context import EvalContext
    from metrics.extractors import get_extractor
    from metrics.registry import get_metric

    ds = data.load("digits")
    torch.manual_seed(0)
    m = build("gan", ds.info, width=8)
    m.fit(TrainData(ds.train_x[:128], ds.info), Budget(steps=3, batch_size=32))
    assert isinstance(m, LatentPath) and m.latent_dim == 64
    x = m.from_latent(torch.randn(4, 64))
    assert x.shape == (4, 1, 8, 8) and not torch.allclose(x * 16, (x * 16).round())  # continuous, not on the levels
    ctx = EvalContext(ds.info, ds.test_x[:50], ds.train_x[:50], get_extractor("digits-cnn"), generator=m, settings={"ppl_pairs": 64}, seed=3)
    spec = get_metric("ppl")
    assert spec.applies(ctx)
    v = spec.fn(ctx)["ppl"]
    assert v.value > 0 and math.isfinite(v.value) and v.settings["pairs"] == 64 and v.settings["interp"] == "slerp"
    assert spec.fn(ctx)["ppl"].value == v.value  # seeded by the job's seed


@pytest.mark.parametrize("name, params", [("vae", {"latent_dim": 4, "width": 8}), ("realnvp", {})])
def test_vae_and_realnvp_have_a_latent_path(name, params):
    """The VAE's decoder mean and RealNVP's inverse flow, continuous in [0, 1], are the path PPL measures."""
    from baselines.registry import build
    from bench import data
    from genbench.protocol import Budget, LatentPath, TrainData

    ds = data.load("digits")
    torch.manual_seed(0)
    m = build(name, ds.info, **params)
    assert isinstance(m, LatentPath)
    with pytest.raises(RuntimeError, match="fit"):
        m.from_latent(torch.zeros(1, m.latent_dim))
    m.fit(TrainData(ds.train_x[:128], ds.info), Budget(steps=3, batch_size=32))
    z = torch.randn(5, m.latent_dim, generator=torch.Generator().manual_seed(0))
    x = m.from_latent(z)
    assert x.shape == (5, 1, 8, 8) and 0 <= float(x.min()) and float(x.max()) <= 1 and torch.equal(x, m.from_latent(z))
    assert not torch.allclose(x * 16, (x * 16).round())  # not rounded to the 17 levels


@pytest.mark.parametrize("name", ["ddpm", "flow-matching"])
def test_the_deterministic_sampler_gives_denoising_models_a_latent_path(name):
    """DDIM (eta 0) and the Euler ODE map initial noise to a sample deterministically: that map is the latent path
    (slerp-interpolated noise is how the DDIM paper interpolates)."""
    from baselines.registry import build
    from bench import data
    from genbench.protocol import LatentPath

    ds = data.load("digits")
    torch.manual_seed(0)
    m = build(name, ds.info, width=8)
    assert isinstance(m, LatentPath) and m.latent_dim == 64
    z = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    x = m.from_latent(z)
    assert x.shape == (3, 1, 8, 8) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal(x, m.from_latent(z, torch.Generator().manual_seed(5)))  # no noise beyond z
    internal = m.sample_internal(3, noise=z, sampler=m.make_sampler(m.deterministic_sampler))
    assert torch.allclose(x, ((internal + 1) / 2).clamp(0, 1))
    with pytest.raises(ValueError, match="conditional"):
        build(name, ds.info, width=8, conditional=True).from_latent(z)


def test_ppl_in_w_for_stylegan_only():
    """StyleGAN's w space: from_w(to_w(z)) is the image of z (same noise seed); ppl_w applies to it and not to a DCGAN."""
    from baselines.registry import build
    from bench import data
    from metrics.context import EvalContext
    from metrics.extractors import get_extractor
    from metrics.registry import get_metric

    ds = data.load("digits")
    torch.manual_seed(0)
    sg, gan = build("stylegan", ds.info, width=8, z_dim=16), build("gan", ds.info, width=8)
    z = torch.randn(4, 16)
    assert torch.allclose(sg.from_w(sg.to_w(z), torch.Generator().manual_seed(1)), sg.from_latent(z, torch.Generator().manual_seed(1)), atol=1e-6)
    spec = get_metric("ppl_w")
    ext = get_extractor("digits-cnn")
    ctx = EvalContext(ds.info, ds.test_x[:50], ds.train_x[:50], ext, generator=sg, settings={"ppl_pairs": 32}, seed=0)
    v = spec.fn(ctx)["ppl_w"]
    assert spec.applies(ctx) and v.value > 0 and v.settings["space"] == "w" and v.settings["interp"] == "lerp"
    assert not spec.applies(EvalContext(ds.info, ds.test_x[:50], ds.train_x[:50], ext, generator=gan))
    with pytest.raises(ValueError, match="w space"):
        gan.to_w(z)
