"""pytest-benchmark: what the one training loop costs on top of a plain PyTorch step.

For every trainable family of the mnist suite, at its mnist-suite size and
params (``bench/suites/mnist.toml``; 28x28, K = 256, batch 64, one thread),
one training step through the harness (``model.fit``: the loop of
``baselines/training.py`` with its minibatches, EMA, curves, warm-up,
clipping and progress) is timed against a minimal hand-written step of the
same networks (taken from the built model), optimizer settings and batch:
index a random minibatch, compute the family's textbook loss in a few lines,
``zero_grad``/``backward``/``step`` (plus the EMA update, gradient clipping,
critic steps, gradient penalty or Langevin chain where the family has them,
since the plain recipe has them too). Each twin puts its networks in training
mode before its steps (``fit`` leaves them in eval mode; BatchNorm and dropout
cost differently in the two).

What one step is, per entry (the plain twin does the same work):

* gan, cgan: one discriminator update (real + fake batch) and one generator
  update, EMA of the generator; cgan with the batch's labels.
* wgan-gp: ``n_critic`` = 2 critic updates (each on a fresh real batch, with
  the gradient penalty on interpolates) and one generator update, EMA.
* vae, autoencoder, realnvp: one Adam step on the ELBO / reconstruction /
  dequantized NLL (realnvp: the multi-scale conv flow, clipping at 100).
* ddpm, flow-matching: one Adam step on the eps / velocity regression, clipping
  at 1, EMA.
* ebm: one PCD update: a 60-step Langevin chain (clamped gradient) from the
  replay buffer (5% restarted from noise), written back, then the contrastive
  loss on data and chain ends.
* vqvae: one step of the VQ autoencoder (stage 1 of the VQ family; vq-ar and
  vq-maskgit train the same network with the same loss for their first 300
  steps): straight-through nearest-code quantizer, codebook + 0.25 commitment
  loss, categorical decoder, clipping at 1.
* vq-ar, vq-maskgit: one step of the prior (stage 2, 1,500 of their 1,800
  mnist steps) on the frozen codes: next-code / masked-code cross-entropy,
  AdamW, clipping at 1, dropout on.
* latent-diffusion-ae, latent-diffusion: the two stages of latent diffusion
  (300 + 700 mnist steps): a step of the KL autoencoder (clipping at 1), and a
  step of the latent flow-matching denoiser (clipping at 1, EMA).

Staged families get one entry per stage: their ``ae_fraction`` is pushed to
an edge so that ``fit(S)`` and ``fit(2S)`` differ only in steps of the timed
stage (the other stage runs the same number of steps in both).

The harness's per-step cost is ``(fit(2S) - fit(S)) / S``, which removes
``fit``'s fixed set-up (optimizer creation, the GAN's BatchNorm
re-estimation, the autoencoder's latent GMM, the VQ/latent encodings of the
training set); S is chosen per entry so that S plain steps cost twice that
set-up (within :data:`MIN_S` .. :data:`MAX_S`), since its noise does not
cancel in the difference. Both sides are measured interleaved, round-robin
(which side goes first, and which of the two fits, cycles from round to
round), in CPU seconds of this process when torch runs one thread (waiting
for a core on a shared machine is not counted), with as many
rounds as fit in :data:`TARGET_SECONDS` (cheap families get more). The ratio
is the median of the per-round ratios (each round's harness and plain times
are taken back to back, so slow changes of the machine's load cancel); it
must stay at or below :data:`MAX_OVERHEAD`. Run with
``pytest tests/benchmarks/test_training_overhead.py --benchmark-only -s``
(``-s`` prints each family's ratio).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines import registry
from baselines.protocol import Budget, TrainData, dequantize
from baselines.training import EMA
from bench import data

MAX_OVERHEAD = 1.15
# Steps per timed fit (the difference of fit(2S) and fit(S) is S steps): as many as cost twice fit's fixed
# set-up, whose noise does not cancel in the difference, within these bounds.
MIN_S, MAX_S = 6, 48
MIN_ROUNDS, MAX_ROUNDS = 5, 31
TARGET_SECONDS = 30.0  # measuring time per entry: rounds = TARGET_SECONDS / (one round's time), within the bounds above

# entry -> params of the mnist suite's row (bench/suites/mnist.toml)
SIZES: dict[str, dict] = {
    "gan": {"width": 32, "ema": 0.999},
    "vae": {"likelihood": "bernoulli", "latent_dim": 16, "width": 32},
    "autoencoder": {"latent_prior": "gmm", "recon_loss": "bce"},
    "ddpm": {"width": 16, "schedule": "cosine", "T": 1000, "mults": [1, 2, 2]},
    "wgan-gp": {"width": 32, "ema": 0.999, "n_critic": 2, "lr": 2e-4},
    "cgan": {"width": 32, "ema": 0.999},
    "flow-matching": {"width": 16, "mults": [1, 2, 2]},
    "realnvp": {"conditioner": "conv", "squeeze": 2, "n_couplings": 4, "width": 16},
    "ebm": {"arch": "conv", "width": 16, "reinit": 0.05, "train_steps": 60, "step_size": 10.0, "noise": 0.005, "grad_clamp": 0.03},
    "vqvae": {"num_codes": 64},  # no prior to train: every fit step is an autoencoder step
    # the suite's ae_fraction is 0.1667; here fit(n) = 1 autoencoder step + n - 1 prior steps
    "vq-ar": {"num_codes": 64, "ae_fraction": 1e-9},
    "vq-maskgit": {"num_codes": 64, "ae_fraction": 1e-9},
    # the suite's row uses the defaults (ae_fraction 0.3); here fit(n) = n - 1 autoencoder steps + 1 denoiser step ...
    "latent-diffusion-ae": {"ae_fraction": 0.999},
    # ... and 1 autoencoder step + n - 1 denoiser steps
    "latent-diffusion": {"ae_fraction": 1e-9},
}
MODEL = {"latent-diffusion-ae": "latent-diffusion"}  # entry -> registry name, where they differ
BATCH: dict[str, int] = {}  # the suite's batch size, where it is not 64
# Training images (default 1024). The VQ and latent-diffusion fits encode and reconstruct the whole training set
# after their autoencoder stage (~5 s for 1024 images): a fixed cost that the difference of fits removes but whose
# noise swamps a prior step of ~60 ms; 256 images (4 minibatches) keep it near 1 s. A step costs the same.
TRAIN_SIZE = {"vqvae": 256, "vq-ar": 256, "vq-maskgit": 256, "latent-diffusion-ae": 256, "latent-diffusion": 256}

PlainStep = tuple[Callable[[], None], Sequence[nn.Module]]  # a step and the networks it trains


@pytest.fixture(autouse=True, scope="module")
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("GENBENCH_BENCH_THREADS", "1")))
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def mnist():
    ds = data.load("mnist5k")
    return ds, TrainData(ds.train_x[:1024], ds.info, ds.train_y[:1024])


def _index(n: int, g: torch.Generator, b: int = 64) -> torch.Tensor:
    return torch.randint(0, n, (b,), generator=g)


def _batch(x: torch.Tensor, g: torch.Generator, b: int = 64) -> torch.Tensor:
    return x[_index(len(x), g, b)]


def _adam_step(opt: torch.optim.Optimizer, loss: torch.Tensor, clip: tuple[Sequence[nn.Parameter], float] | None = None) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(*clip)
    opt.step()


# ----------------------------------------------------------------------------- GANs
def _gan_setup(m, beta2: float) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer, EMA, int]:
    """The GAN families' Adam pair (lr 2e-4, betas (0.5, beta2), foreach), the generator's EMA and K levels."""
    opt_g = torch.optim.Adam(m.G.parameters(), lr=2e-4, betas=(0.5, beta2), foreach=True)
    opt_d = torch.optim.Adam(m.D.parameters(), lr=2e-4, betas=(0.5, beta2), foreach=True)
    return opt_g, opt_d, EMA(m.G, 0.999), m.data_info.levels


def _plain_gan(m, d: TrainData, g: torch.Generator) -> PlainStep:
    opt_g, opt_d, ema, k = _gan_setup(m, beta2=0.999)

    def step() -> None:
        real = dequantize(_batch(d.x, g), k, g)
        z = torch.randn(64, m.z_dim, generator=g)
        with torch.no_grad():
            fake = m.G(z)
        d_loss = F.softplus(-m.D(real)).mean() + F.softplus(m.D(fake)).mean()
        _adam_step(opt_d, d_loss)
        g_loss = F.softplus(-m.D(m.G(torch.randn(64, m.z_dim, generator=g)))).mean()
        _adam_step(opt_g, g_loss)
        ema.update()

    return step, (m.G, m.D)


def _plain_wgan_gp(m, d: TrainData, g: torch.Generator) -> PlainStep:
    """n_critic (2) critic updates with the gradient penalty (weight 10), then one generator update."""
    opt_g, opt_d, ema, k = _gan_setup(m, beta2=0.9)

    def step() -> None:
        for _ in range(2):
            real = dequantize(_batch(d.x, g), k, g)
            with torch.no_grad():
                fake = m.G(torch.randn(64, m.z_dim, generator=g))
            a = torch.rand(64, 1, 1, 1, generator=g)
            x_hat = (a * real + (1 - a) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(m.D(x_hat).sum(), x_hat, create_graph=True)
            gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            _adam_step(opt_d, m.D(fake).mean() - m.D(real).mean() + 10.0 * gp)
        _adam_step(opt_g, -m.D(m.G(torch.randn(64, m.z_dim, generator=g))).mean())
        ema.update()

    return step, (m.G, m.D)


def _plain_cgan(m, d: TrainData, g: torch.Generator) -> PlainStep:
    """The non-saturating step with class labels (one-hot input and conditional BatchNorm in G, one-hot planes and projection in D); fakes take the batch's labels."""
    opt_g, opt_d, ema, k = _gan_setup(m, beta2=0.999)
    labels = d.y.long()

    def step() -> None:
        idx = _index(len(d.x), g)
        real, y = dequantize(d.x[idx], k, g), labels[idx]
        with torch.no_grad():
            fake = m.G(torch.randn(64, m.z_dim, generator=g), y)
        d_loss = F.softplus(-m.D(real, y)).mean() + F.softplus(m.D(fake, y)).mean()
        _adam_step(opt_d, d_loss)
        g_loss = F.softplus(-m.D(m.G(torch.randn(64, m.z_dim, generator=g), y), y)).mean()
        _adam_step(opt_g, g_loss)
        ema.update()

    return step, (m.G, m.D)


# ----------------------------------------------------------------------------- latent-variable models
def _plain_vae(m, d: TrainData, g: torch.Generator) -> PlainStep:
    opt = torch.optim.Adam(m.net.parameters(), lr=1e-3)

    def step() -> None:
        xb = _batch(d.x, g)
        mu, logvar = m.net.encode(xb)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        _adam_step(opt, -(m.net.log_px_given_z(xb, z) - kl).mean())

    return step, (m.net,)


def _plain_autoencoder(m, d: TrainData, g: torch.Generator) -> PlainStep:
    opt = torch.optim.Adam(m.net.parameters(), lr=1e-3)

    def step() -> None:
        xb = _batch(d.x, g)  # cross-entropy of the decoder's logits on [0, 1] intensities (the suite's recon_loss "bce")
        logits = m.net.decoder(m.net.encoder(xb * 2 - 1))
        _adam_step(opt, F.binary_cross_entropy_with_logits(logits, xb, reduction="none").flatten(1).sum(1).mean())

    return step, (m.net,)


def _plain_realnvp(m, d: TrainData, g: torch.Generator) -> PlainStep:
    """-log p(y) of dequantized y: logit transform, per-dimension affine, the affine couplings, N(0, I) base."""
    params = [p for p in m.net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    k, a, net = m.data_info.levels, m.net.alpha, m.net
    b = BATCH.get("realnvp", 64)

    def step() -> None:
        s = a + (1 - 2 * a) * dequantize(_batch(d.x, g, b), k, g)
        h = (torch.log(s) - torch.log1p(-s) - net.shift) * torch.exp(-net.log_scale)
        logdet = (math.log(1 - 2 * a) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1) - net.log_scale.sum()
        for layer in net.layers:
            h, ld = layer(h)
            logdet = logdet + ld
        nll = 0.5 * (h**2 + math.log(2 * math.pi)).flatten(1).sum(1) - logdet
        _adam_step(opt, nll.mean(), (params, 100.0))

    return step, (m.net,)


def _plain_ebm(m, d: TrainData, g: torch.Generator) -> PlainStep:
    """PCD with a replay buffer (Du & Mordatch 2019), the suite's row: 5% of the chains restart from uniform noise,
    60 Langevin steps (step 10.0 on the input gradient clamped to +-0.03, noise 0.005, clamped to [-1, 1]), written
    back, then E(data) - E(chain end) + 0.1 (E(data)^2 + E(chain end)^2); Adam 1e-4, betas (0, 0.999)."""
    opt = torch.optim.Adam(m.net.parameters(), lr=1e-4, betas=(0.0, 0.999))
    energy = m.net
    buffer = torch.rand(10000, *m.data_info.shape, generator=g) * 2 - 1

    def step() -> None:
        pos = _batch(d.x, g) * 2 - 1
        idx = torch.randint(0, len(buffer), (len(pos),), generator=g)
        h = buffer[idx]
        fresh = torch.rand(len(pos), generator=g) < 0.05
        h[fresh] = torch.rand(int(fresh.sum()), *h.shape[1:], generator=g) * 2 - 1
        energy.requires_grad_(False)  # the chain needs input gradients only
        for _ in range(60):
            h.requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(h).sum(), h)
            h = (h.detach() - 10.0 * grad.clamp(-0.03, 0.03) + 0.005 * torch.randn(h.shape, generator=g)).clamp(-1, 1)
        energy.requires_grad_(True)
        buffer[idx] = h.detach()
        e_pos, e_neg = energy(pos), energy(h)
        _adam_step(opt, e_pos.mean() - e_neg.mean() + 0.1 * (e_pos**2 + e_neg**2).mean())

    return step, (m.net,)


# ----------------------------------------------------------------------------- diffusion and flow matching
def _plain_ddpm(m, d: TrainData, g: torch.Generator) -> PlainStep:
    opt = torch.optim.Adam(m.net.parameters(), lr=2e-3)
    ema = EMA(m.net, 0.999)
    abar = m.schedule.alphas_bar.float()

    def step() -> None:
        x0 = _batch(d.x, g) * 2 - 1
        t = torch.randint(0, m.T, (64,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        a = abar[t].view(-1, 1, 1, 1)
        _adam_step(opt, F.mse_loss(m.net(a.sqrt() * x0 + (1 - a).sqrt() * eps, t), eps), (m.net.parameters(), 1.0))
        ema.update()

    return step, (m.net,)


def _fm_loss(net: nn.Module, x1: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """||v(x_t, t) - (x_1 - x_0)||^2 on the straight path x_t = (1 - t) x_0 + t x_1 from Gaussian x_0."""
    x0 = torch.randn(x1.shape, generator=g)
    t = torch.rand(len(x1), generator=g)
    tb = t.view(-1, 1, 1, 1)
    return F.mse_loss(net((1 - tb) * x0 + tb * x1, t), x1 - x0)


def _plain_flow_matching(m, d: TrainData, g: torch.Generator) -> PlainStep:
    """||v(x_t, t) - (x_1 - x_0)||^2 on the straight path x_t = (1 - t) x_0 + t x_1; clipping at 1, EMA."""
    opt = torch.optim.Adam(m.net.parameters(), lr=2e-3)
    ema = EMA(m.net, 0.999)

    def step() -> None:
        _adam_step(opt, _fm_loss(m.net, _batch(d.x, g) * 2 - 1, g), (m.net.parameters(), 1.0))
        ema.update()

    return step, (m.net,)


# ----------------------------------------------------------------------------- VQ family
def _plain_vqvae(m, d: TrainData, g: torch.Generator) -> PlainStep:
    """Stage 1: -log p(x | z_q) / D + ||sg[z_e] - e||^2 + 0.25 ||z_e - sg[e]||^2, straight-through z_q."""
    opt = torch.optim.Adam(m.net.parameters(), lr=2e-3)
    codebook, dim_x = m.net.quantizer.embed, m.data_info.dim

    def step() -> None:
        xb = _batch(d.x, g)
        z_e = m.net.encode(xb)
        n, c, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, c)
        e = codebook[torch.cdist(flat.detach(), codebook.detach()).argmin(1)]
        vq = F.mse_loss(e, flat.detach()) + 0.25 * F.mse_loss(flat, e.detach())
        z_q = (flat + (e - flat).detach()).reshape(n, h, w, c).permute(0, 3, 1, 2)
        _adam_step(opt, -m.net.log_px(xb, z_q).mean() / dim_x + vq, (m.net.parameters(), 1.0))

    return step, (m.net,)


def _codes(m, d: TrainData) -> torch.Tensor:
    return m.encode_codes(d.x).reshape(len(d.x), -1)


def _plain_vq_ar(m, d: TrainData, g: torch.Generator) -> PlainStep:
    """Stage 2: next-code cross-entropy of the causal transformer on [BOS, c_1 .. c_{L-1}]; AdamW 1e-3, wd 0.01."""
    codes = _codes(m, d)
    opt = torch.optim.AdamW(m.prior.parameters(), lr=1e-3, weight_decay=0.01)
    k = m.num_codes

    def step() -> None:
        cb = _batch(codes, g)
        inputs = torch.cat([torch.full((64, 1), k, dtype=torch.long), cb[:, :-1]], 1)
        loss = F.cross_entropy(m.prior(inputs).reshape(-1, k), cb.reshape(-1))
        _adam_step(opt, loss, (m.prior.parameters(), 1.0))

    return step, (m.prior,)


def _plain_vq_maskgit(m, d: TrainData, g: torch.Generator) -> PlainStep:
    """Stage 2: cross-entropy on masked codes, ceil(cos(pi r / 2) L) random positions masked, r ~ U(0, 1)."""
    codes = _codes(m, d)
    opt = torch.optim.AdamW(m.prior.parameters(), lr=1e-3, weight_decay=0.01)
    k, length = m.num_codes, codes.shape[1]

    def step() -> None:
        cb = _batch(codes, g)
        n_mask = torch.ceil(torch.cos(torch.rand(64, generator=g) * math.pi / 2) * length).clamp(1, length)
        masked = torch.rand(64, length, generator=g).argsort(1).argsort(1) < n_mask[:, None]
        logits = m.prior(torch.where(masked, torch.full_like(cb, k), cb))
        _adam_step(opt, F.cross_entropy(logits[masked], cb[masked]), (m.prior.parameters(), 1.0))

    return step, (m.prior,)


# ----------------------------------------------------------------------------- latent diffusion
def _plain_latent_diffusion_ae(m, d: TrainData, g: torch.Generator) -> PlainStep:
    """Stage 1: (-log p(x | z) + 1e-3 KL(q(z | x) || N(0, I))) / D with z ~ q(z | x); clipping at 1."""
    opt = torch.optim.Adam(m.ae.parameters(), lr=2e-3)
    dim_x = m.data_info.dim

    def step() -> None:
        xb = _batch(d.x, g)
        mu, logvar = m.ae.encode(xb)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)
        _adam_step(opt, (-m.ae.log_px(xb, z) + 1e-3 * kl).mean() / dim_x, (m.ae.parameters(), 1.0))

    return step, (m.ae,)


def _plain_latent_diffusion(m, d: TrainData, g: torch.Generator) -> PlainStep:
    """Stage 2: flow matching on scaled latents z ~ q(z | x) of the frozen autoencoder; clipping at 1, EMA."""
    with torch.no_grad():
        mu_all, logvar_all = m.ae.encode(d.x)
    opt = torch.optim.Adam(m.net.parameters(), lr=2e-3)
    ema = EMA(m.net, 0.999)

    def step() -> None:
        idx = _index(len(d.x), g)
        mu, logvar = mu_all[idx], logvar_all[idx]
        z1 = (mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g)) * m.scale
        _adam_step(opt, _fm_loss(m.net, z1, g), (m.net.parameters(), 1.0))
        ema.update()

    return step, (m.net,)


PLAIN: dict[str, Callable[..., PlainStep]] = {
    "gan": _plain_gan,
    "vae": _plain_vae,
    "autoencoder": _plain_autoencoder,
    "ddpm": _plain_ddpm,
    "wgan-gp": _plain_wgan_gp,
    "cgan": _plain_cgan,
    "flow-matching": _plain_flow_matching,
    "realnvp": _plain_realnvp,
    "ebm": _plain_ebm,
    "vqvae": _plain_vqvae,
    "vq-ar": _plain_vq_ar,
    "vq-maskgit": _plain_vq_maskgit,
    "latent-diffusion-ae": _plain_latent_diffusion_ae,
    "latent-diffusion": _plain_latent_diffusion,
}
assert set(PLAIN) == set(SIZES)


def _median_step_times(entry: str, ds, train: TrainData) -> tuple[float, float, float, int, int]:
    """Median seconds per step of (harness, plain), the median of the per-round ratios, the rounds and S, measured interleaved."""
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    b = BATCH.get(entry, 64)
    n = TRAIN_SIZE.get(entry, len(train))
    train = TrainData(train.x[:n], train.info, train.y[:n])
    torch.manual_seed(0)
    m = registry.build(MODEL.get(entry, entry), ds.info, device="cpu", **SIZES[entry])
    m.fit(train, Budget(steps=2, batch_size=b))  # warm-up: first-call allocations
    g = torch.Generator().manual_seed(0)
    plain, nets = PLAIN[entry](m, train, g)

    def fit_time(steps: int) -> float:
        t0 = clock()
        m.fit(train, Budget(steps=steps, batch_size=b))
        return clock() - t0

    def plain_time(steps: int) -> float:
        for net in nets:
            net.train()
        t0 = clock()
        for _ in range(steps):
            plain()
        return clock() - t0

    plain_time(1)  # warm-up
    step = plain_time(2) / 2
    fixed = fit_time(2) - 2 * step
    s = max(MIN_S, min(MAX_S, math.ceil(2 * fixed / step)))

    def harness_time(short_first: bool = True) -> float:
        if short_first:
            t1 = fit_time(s)
            return (fit_time(2 * s) - t1) / s
        t2 = fit_time(2 * s)
        return (t2 - fit_time(s)) / s

    t0 = clock()
    harness_time(), plain_time(s)  # one unrecorded round: warm-up, and sizes the number of rounds
    rounds = max(MIN_ROUNDS, min(MAX_ROUNDS, math.ceil(TARGET_SECONDS / max(clock() - t0, 1e-9))))
    harness, hand = [], []
    for i in range(rounds):  # the order of the plain steps and the two fits cycles through all four combinations
        if i % 2 == 0:
            harness.append(harness_time(i % 4 == 0))
            hand.append(plain_time(s) / s)
        else:
            hand.append(plain_time(s) / s)
            harness.append(harness_time(i % 4 == 1))
    ratio = statistics.median(h / p for h, p in zip(harness, hand))
    return statistics.median(harness), statistics.median(hand), ratio, rounds, s


@pytest.mark.parametrize("name", list(SIZES))
def test_harness_step_overhead(benchmark, mnist, name):
    ds, train = mnist
    harness, plain, ratio, rounds, s = benchmark.pedantic(_median_step_times, args=(name, ds, train), rounds=1, iterations=1)
    benchmark.extra_info.update(
        {
            "harness_ms_per_step": 1e3 * harness,
            "plain_ms_per_step": 1e3 * plain,
            "ratio": ratio,
            "ratio_of_medians": harness / plain,
            "rounds": rounds,
            "steps_per_fit": s,
        }
    )
    print(
        f"\n{name}: harness {1e3 * harness:.1f} ms/step, plain {1e3 * plain:.1f} ms/step, ratio {ratio:.3f} "
        f"(median of {rounds} rounds of S = {s}; ratio of medians {harness / plain:.3f})"
    )
    assert ratio <= MAX_OVERHEAD, f"{name}: the harness step costs {ratio:.2f}x a plain PyTorch step (limit {MAX_OVERHEAD}x)"
