"""The style-based GAN: modulated convolutions, truncation, style mixing, R1, and the GAN family's loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from baselines.gan_nets import r1_penalty
from baselines.registry import available, build
from baselines.stylegan import STYLEGAN_SETTINGS
from baselines.stylegan_nets import ModulatedConv2d, StyleGenerator, style_upsamplings
from bench import data
from genbench.protocol import Budget, DataInfo, TrainData

DIGITS = DataInfo(name="d8", shape=(1, 8, 8), kind="image", levels=17, class_names=tuple("0123456789"))
MNIST = DataInfo(name="m28", shape=(1, 28, 28), kind="image", levels=256, class_names=tuple("0123456789"))


def test_registered_as_an_image_gan_preset():
    entry = available()["stylegan"]
    assert entry.family == "gan" and entry.kinds == ("image",)
    with pytest.raises(ValueError, match="unconditional images"):
        build("stylegan", DIGITS, conditional=True)


@pytest.mark.parametrize("info, start, n_up", [(DIGITS, (4, 4), 1), (MNIST, (7, 7), 2)])
def test_generator_layout_and_output_range(info, start, n_up):
    assert style_upsamplings(info.shape[1]) == n_up
    g = StyleGenerator(16, info.shape, width=8)
    assert tuple(g.const.shape[2:]) == start and len(g.blocks) == n_up + 1
    assert g.num_ws == 1 + 2 * n_up + (n_up + 1)  # style layers + "to image" layers, each with its own w
    x = g.eval()(torch.randn(3, 16), generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, *info.shape) and 0 < float(x.min()) and float(x.max()) < 1


def test_modulated_convolution_equals_a_convolution_with_per_sample_scaled_weights():
    torch.manual_seed(0)
    conv = ModulatedConv2d(3, 4, 3, w_dim=5, demodulate=False)
    x, w = torch.randn(2, 3, 6, 6), torch.randn(2, 5)
    s = conv.affine(w)
    for i in range(2):
        ref = F.conv2d(x[i : i + 1], conv.weight * s[i][None, :, None, None], padding=1)
        assert torch.allclose(conv(x, w)[i : i + 1], ref, atol=1e-5)
    conv.demodulate = True  # each output channel's weights scaled to unit L2 norm
    for i in range(2):
        wt = conv.weight * s[i][None, :, None, None]
        wt = wt / wt.pow(2).sum((1, 2, 3), keepdim=True).sqrt()
        assert torch.allclose(conv(x, w)[i : i + 1], F.conv2d(x[i : i + 1], wt, padding=1), atol=1e-4)


def test_truncation_moves_every_style_towards_the_tracked_mean():
    g = StyleGenerator(8, DIGITS.shape, width=8)
    g.w_avg.copy_(torch.randn(8))
    ws = torch.randn(4, g.num_ws, 8)
    assert torch.equal(g.truncate(ws, 1.0), ws)
    assert torch.allclose(g.truncate(ws, 0.25), g.w_avg + 0.25 * (ws - g.w_avg))
    g.train()
    before = g.w_avg.clone()
    w = g.mapping(torch.randn(64, 8))
    assert torch.allclose(g.w_avg, before + 0.005 * (w.mean(0).detach() - before), atol=1e-6)  # EMA, decay 0.995
    # psi -> 0 with the noise switched off: every z gives the image of w̄
    g.eval()
    for layer in (layer for block in g.blocks for layer in block):
        layer.noise_strength.data.zero_()
    a = g(torch.randn(3, 8), psi=1e-6)
    assert torch.allclose(a, a[:1].expand_as(a), atol=1e-4)


def test_style_mixing_draws_come_from_the_generator_and_only_in_training():
    g = StyleGenerator(8, DIGITS.shape, width=8, mixing=1.0)
    z = torch.randn(5, 8)
    g.train()
    a = g(z, generator=torch.Generator().manual_seed(3))
    b = g(z, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    g.eval()
    c = g(z, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(a, c)  # the second z replaced the styles after the crossover
    with pytest.raises(ValueError, match="mixing"):
        StyleGenerator(8, DIGITS.shape, width=8, mixing=1.5)


def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm():
    a = torch.randn(1, 2, 3, 3)
    x = torch.randn(7, 2, 3, 3, requires_grad=True)
    d = (x * a).sum((1, 2, 3))
    assert float(r1_penalty(d, x)) == pytest.approx(float(a.pow(2).sum()), rel=1e-6)


def test_trains_with_the_gan_loop_samples_reproducibly_and_round_trips():
    ds = data.load("digits")
    torch.manual_seed(0)
    m = build("stylegan", ds.info, width=8, z_dim=16)
    rep = m.fit(TrainData(ds.train_x[:256], ds.info), Budget(steps=6, batch_size=32))
    assert rep.steps == 6 and rep.extra["arch"] == "style" and rep.extra["r1_gamma"] == STYLEGAN_SETTINGS["r1_gamma"] > 0
    g = torch.Generator
    x = m.sample(10, generator=g().manual_seed(1))
    assert x.shape == (10, 1, 8, 8) and torch.equal(x, m.sample(10, generator=g().manual_seed(1)))
    levels = x * (ds.info.levels - 1)
    assert torch.allclose(levels, levels.round())
    assert not torch.equal(x, m.sample(10, generator=g().manual_seed(1), sampler=m.make_sampler(psi=0.5)))
    fresh = build("stylegan", ds.info, width=8, z_dim=16)
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh.sample(10, generator=g().manual_seed(1)), x)
    with pytest.raises(ValueError, match="psi must be in"):
        m.make_sampler(psi=0.0)


def test_dcgan_truncation_scales_z():
    torch.manual_seed(0)
    m = build("gan", DIGITS, width=8)
    m.G.eval()
    psi = 0.5
    x = m.sample(6, generator=torch.Generator().manual_seed(2), sampler=m.make_sampler(psi=psi))
    z = torch.randn(6, m.z_dim, generator=torch.Generator().manual_seed(2))
    assert torch.equal(x, m._to_output(m.G(psi * z)))
    assert m.make_sampler().options == {"weights": None}  # psi = 1 leaves the options (and the cache keys) as they were


def test_style_mixing_grid_takes_coarse_styles_from_rows_and_fine_from_columns():
    from baselines.stylegan import style_mixing_grid

    torch.manual_seed(0)
    m = build("stylegan", DIGITS, width=8, z_dim=16)
    net = m._sampling_net()
    a, b = torch.randn(2, 16), torch.randn(3, 16)
    grid = style_mixing_grid(m, a, b, crossover=2, generator=torch.Generator().manual_seed(0))
    assert grid.shape == (3, 4, 1, 8, 8)
    seed = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        wa, wb = net.mapping(a[1:2]), net.mapping(b[2:3])
        ws = torch.cat([wa[:, None].expand(1, 2, -1), wb[:, None].expand(1, net.num_ws - 2, -1)], 1)
        cell = net.synthesis(ws, torch.Generator().manual_seed(seed))
        plain_b = net.synthesis(wb[:, None].expand(1, net.num_ws, -1), torch.Generator().manual_seed(seed))
    assert torch.allclose(grid[2, 3], cell[0], atol=1e-6) and torch.allclose(grid[0, 3], plain_b[0], atol=1e-6)
    with pytest.raises(ValueError, match="crossover"):
        style_mixing_grid(m, a, b, crossover=net.num_ws)
    with pytest.raises(ValueError, match="style-based"):
        style_mixing_grid(build("gan", DIGITS, width=8), a, b, crossover=1)


def test_a_suite_run_writes_the_interpolation_and_style_mixing_figures(tmp_path):
    """The job of the first seed draws the latent figures of a freshly trained model: interpolation for any model
    with a latent path (here the GAN and StyleGAN), the style-mixing grid for StyleGAN; the leaderboard links them."""
    from bench.leaderboard import write_leaderboard
    from bench.runner import run_suite
    from bench.suite import load_suite

    (tmp_path / "sg.toml").write_text(
        'name = "sg"\nseeds = [0]\n[[datasets]]\nname = "digits"\nn_fake = 64\nmetrics = ["fid"]\n'
        '[[generators]]\nname = "stylegan"\nparams = { width = 8, z_dim = 16 }\nbudget = { steps = 2, batch_size = 16 }\n'
        '[[generators]]\nname = "gan"\nparams = { width = 8 }\nbudget = { steps = 2, batch_size = 16 }\n'
    )
    suite = load_suite(str(tmp_path / "sg.toml"))
    summary = run_suite(suite, results_dir=tmp_path / "res", progress=False)
    assert not summary.failed, summary.failed
    assets = tmp_path / "res" / "sg" / "assets"
    names = {p.name for p in assets.glob("*.png")}
    assert {"digits__stylegan_interpolation.png", "digits__stylegan_style-mixing.png", "digits__gan_interpolation.png"} <= names
    assert "digits__gan_style-mixing.png" not in names
    md = write_leaderboard(suite, tmp_path / "res", tmp_path / "lb").read_text()
    assert "digits__stylegan_style-mixing.png" in md and "digits__gan_interpolation.png" in md
