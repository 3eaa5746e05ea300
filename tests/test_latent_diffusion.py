"""Latent diffusion (baselines/latent_diffusion.py): the pixel samplers run unchanged in latent space."""

from __future__ import annotations

import pytest
import torch

from baselines import latent_diffusion as ld
from baselines import samplers
from baselines.diffusion import DDPM, NoiseSchedule
from baselines.protocol import Autoencoding, Budget, DataInfo, HeldOutReference, LabeledSampler, SamplerChoice, TrainData


@pytest.fixture(scope="module")
def fitted(digits):
    torch.manual_seed(0)
    m = ld.LatentDiffusion(digits.info, objective="eps", width=8, ae_width=8)
    rep = m.fit(TrainData(digits.train_x, digits.info, digits.train_y), Budget(steps=12, batch_size=64))
    return m, rep


@pytest.mark.parametrize("name, cls, objective", [("ddpm", samplers.DDPMSampler, "eps"), ("ddim", samplers.DDIMSampler, "eps"),
                                                  ("euler", samplers.EulerSampler, "velocity"), ("heun", samplers.HeunSampler, "velocity")])  # fmt: skip
def test_sampler_is_the_pixel_sampler_class(digits, name, cls, objective):
    m = ld.LatentDiffusion(digits.info, objective=objective, width=8, ae_width=8)
    s = m.make_sampler(sampler=name)
    assert type(s) is cls  # the very class the pixel models use, not a subclass or copy
    if objective == "eps":
        assert type(DDPM(digits.info, width=8).make_sampler(name)) is cls


def test_pixel_sampler_runs_unchanged_on_latents(fitted, monkeypatch):
    m, _ = fitted
    seen = []
    original = samplers.DDIMSampler.step

    def spy(self, denoiser, x, t, t_next, y, generator):
        seen.append(tuple(x.shape))
        return original(self, denoiser, x, t, t_next, y, generator)

    monkeypatch.setattr(samplers.DDIMSampler, "step", spy)
    x = m.sample(6, steps=5, sampler=m.make_sampler(sampler="ddim"))
    assert len(seen) == 5 and set(seen) == {(6, 2, 4, 4)}  # every step on the (2, 4, 4) latent, none in pixel space
    assert m.last_nfe == 5
    assert x.shape == (6, 1, 8, 8) and torch.allclose(x * 16, (x * 16).round())


def test_eps_samplers_clip_x0_to_the_latent_bound(fitted, monkeypatch):
    """The bound fit() sets must reach the denoiser the eps samplers read it from (it was left at None, so the
    x_0 estimate at abar ~ 0 went unclipped), and every x_0 estimate stays inside it."""
    m, _ = fitted
    assert m.x0_bound is not None and m.x0_bound > 0
    clips, x0s = [], []
    original = samplers.DDIMSampler.x0_eps

    def spy(self, denoiser, x, i, y):
        clips.append(denoiser.x0_clip)
        x0, eps, ab = original(self, denoiser, x, i, y)
        x0s.append(float(x0.abs().max()))
        return x0, eps, ab

    monkeypatch.setattr(samplers.DDIMSampler, "x0_eps", spy)
    m.sample(8, steps=4, sampler=m.make_sampler(sampler="ddim"), generator=torch.Generator().manual_seed(0))
    assert clips == [m.x0_bound] * 4
    assert max(x0s) <= m.x0_bound + 1e-6


def test_latent_schedule_is_the_pixel_cosine_schedule(digits):
    ours, pixel = ld.LatentDiffusion(digits.info, objective="eps", T=1000).schedule, NoiseSchedule("cosine", 1000)
    assert all(ours.abar(i) == pixel.abar(i) for i in (-1, 0, 10, 500, 998, 999))


def test_compression_and_report(fitted, digits):
    m, rep = fitted
    assert m.latent_shape == (2, 4, 4)
    assert rep.extra["latent_shape"] == [2, 4, 4] and rep.extra["downsampling"] == 2 and rep.extra["compression"] == 2.0
    assert rep.extra["ae_steps"] + rep.extra["denoiser_steps"] == 12 == rep.steps
    assert {"rec_nats", "kl_nats", "denoiser_mse"} <= set(rep.losses)
    assert m.info.iterative and m.info.default_steps == 50
    z = m.encode(digits.test_x[:20])
    assert z.shape == (20, 32) and torch.equal(m.decode(z), m.decode(z.reshape(20, 2, 4, 4))) and isinstance(m, Autoencoding) and isinstance(m, SamplerChoice)
    # the denoiser sees unit-std latents: scale = 1 / std of the training posterior means
    with torch.no_grad():
        mu = m.ae.encode(digits.train_x)[0]
    assert m.scale == pytest.approx(1 / float(mu.std()), rel=1e-4)


def test_state_round_trip_reproduces_samples(fitted, digits):
    m, _ = fitted
    x = m.sample(5, steps=3, generator=torch.Generator().manual_seed(1))
    m2 = ld.LatentDiffusion(digits.info, objective="eps", width=8, ae_width=8)
    m2.load_state_dict(m.state_dict())
    assert torch.equal(m2.sample(5, steps=3, generator=torch.Generator().manual_seed(1)), x)


def test_classifier_free_guidance_as_in_pixel_space(digits):
    torch.manual_seed(0)
    m = ld.LatentDiffusion(digits.info, objective="eps", conditional=True, width=8, ae_width=8)
    m.fit(TrainData(digits.train_x, digits.info, digits.train_y), Budget(steps=6, batch_size=64))
    m.sample(10, labels=torch.arange(10), steps=4, sampler=m.make_sampler(sampler="ddim", guidance_scale=2.0))
    assert m.last_nfe == 8  # two evaluations per step, as for pixel DDPM
    m.sample(10, labels=torch.arange(10), steps=4, sampler=m.make_sampler(sampler="ddim", guidance_scale=1.0))
    assert m.last_nfe == 4
    assert m.info.conditioning == "class"
    with pytest.raises(ValueError, match="labels must be in"):
        m.sample(2, labels=torch.tensor([0, 10]))
    unc = ld.LatentDiffusion(digits.info, objective="eps", width=8, ae_width=8)
    with pytest.raises(ValueError, match="conditional=True"):
        unc.make_sampler(sampler="ddim", guidance_scale=2.0)


def test_flow_matching_objective_with_euler(digits, monkeypatch):
    seen = []
    original = samplers.EulerSampler.step

    def spy(self, denoiser, x, t, t_next, y, generator):
        seen.append((tuple(x.shape), t))
        return original(self, denoiser, x, t, t_next, y, generator)

    monkeypatch.setattr(samplers.EulerSampler, "step", spy)
    torch.manual_seed(0)
    m = ld.LatentDiffusion(digits.info, width=8, ae_width=8)  # velocity is the default objective
    m.fit(TrainData(digits.train_x, digits.info), Budget(steps=6, batch_size=64))
    m.sample(4, steps=7)
    assert m.last_nfe == 7 and isinstance(m._sampler, samplers.EulerSampler)
    assert [s for s, _ in seen] == [(4, 2, 4, 4)] * 7 and [t for _, t in seen] == pytest.approx([k / 7 for k in range(7)])
    with pytest.raises(ValueError, match="unknown sampler"):
        m.make_sampler(sampler="ddim")


def test_reconstruction_floor_row(digits):
    torch.manual_seed(0)
    r = ld.LatentReconstruction(digits.info, ae_width=8)
    assert isinstance(r, HeldOutReference) and isinstance(r, LabeledSampler)
    r.use_pool(digits.test_x[:40], digits.test_y[:40])
    rep = r.fit(TrainData(digits.train_x, digits.info), Budget(steps=10, batch_size=64))
    assert rep.extra["compression"] == 2.0 and "recon_mae" in rep.extra
    x, y = r.sample_labeled(15, generator=torch.Generator().manual_seed(0))
    idx = torch.randperm(40, generator=torch.Generator().manual_seed(0))[:15]
    assert torch.equal(y, digits.test_y[:40][idx])
    with torch.no_grad():
        mu, _ = r.model.ae.encode(digits.test_x[:40][idx])
        expected = r.model.ae.log_probs(mu).argmax(-1).float() / 16
    assert torch.equal(x, expected)


def test_errors_are_clear(digits):
    with pytest.raises(ValueError, match="needs image data"):
        ld.LatentDiffusion(DataInfo(name="ring8", shape=(2,), kind="points"))
    with pytest.raises(ValueError, match="objective"):
        ld.LatentDiffusion(digits.info, objective="x0")
    with pytest.raises(ValueError, match="fewer mults"):
        ld.LatentDiffusion(digits.info, mults=(1, 2, 2, 2))
    with pytest.raises(RuntimeError, match="fit"):
        ld.LatentDiffusion(digits.info, width=8, ae_width=8).sample(2)
    with pytest.raises(ValueError, match="conditional=True needs a labelled"):
        ld.LatentDiffusion(DataInfo(name="u", shape=(1, 8, 8), kind="image", levels=17), conditional=True)


def test_registered_with_descriptions():
    from baselines.registry import available

    entries = available()
    for name in ("latent-diffusion", "ldm-recon"):
        assert name in entries and entries[name].description and entries[name].kinds == ("image",)


def test_latent_arithmetic_figure_works(fitted, digits, tmp_path):
    from bench.figures import vae_latent_figure

    m, _ = fitted
    assert vae_latent_figure(m, digits, tmp_path / "ldm.png").stat().st_size > 0
