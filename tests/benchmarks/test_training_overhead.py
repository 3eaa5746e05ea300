"""pytest-benchmark: what the one training loop costs on top of a plain PyTorch step.

For each trainable family at its mnist-suite size (28x28, K = 256, batch 64,
one thread), one training step through the harness (``model.fit``: the loop
of ``baselines/training.py`` with its minibatches, EMA, curves, warm-up,
clipping and progress) is timed against a minimal hand-written step of the
same networks, optimizer and batch: index a random minibatch, compute the
family's textbook loss in a few lines, ``zero_grad``/``backward``/``step``
(plus the EMA update and gradient clipping where the family has them, since
the plain recipe has them too).

The harness's per-step cost is ``(fit(2S) - fit(S)) / S``, which removes
``fit``'s fixed set-up (optimizer creation, the GAN's BatchNorm
re-estimation, the autoencoder's latent GMM). Both sides are measured
interleaved, round-robin, and compared by medians; the ratio must stay at or
below :data:`MAX_OVERHEAD`. Run with
``pytest tests/benchmarks/test_training_overhead.py --benchmark-only -s``
(``-s`` prints each family's ratio).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from baselines import registry
from baselines.protocol import Budget, TrainData, dequantize
from baselines.training import EMA
from bench import data

MAX_OVERHEAD = 1.15
S = 6  # steps per timed fit (the difference of fit(2S) and fit(S) is S steps)
ROUNDS = 5

SIZES = {
    "gan": {"width": 32, "ema": 0.999},
    "vae": {"likelihood": "logistic"},
    "autoencoder": {"latent_prior": "gaussian"},
    "ddpm": {"width": 16, "schedule": "cosine", "T": 1000},
}


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


def _batch(x: torch.Tensor, g: torch.Generator, b: int = 64) -> torch.Tensor:
    return x[torch.randint(0, len(x), (b,), generator=g)]


def _plain_gan(m, x: torch.Tensor, g: torch.Generator) -> Callable[[], None]:
    opt_g = torch.optim.Adam(m.G.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
    opt_d = torch.optim.Adam(m.D.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
    ema = EMA(m.G, 0.999)
    k = m.data_info.levels

    def step() -> None:
        real = dequantize(_batch(x, g), k, g)
        z = torch.randn(64, m.z_dim, generator=g)
        with torch.no_grad():
            fake = m.G(z)
        d_loss = F.softplus(-m.D(real)).mean() + F.softplus(m.D(fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = F.softplus(-m.D(m.G(torch.randn(64, m.z_dim, generator=g)))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        ema.update()

    return step


def _plain_vae(m, x: torch.Tensor, g: torch.Generator) -> Callable[[], None]:
    opt = torch.optim.Adam(m.net.parameters(), lr=1e-3)

    def step() -> None:
        xb = _batch(x, g)
        mu, logvar = m.net.encode(xb)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        loss = -(m.net.log_px_given_z(xb, z) - kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _plain_autoencoder(m, x: torch.Tensor, g: torch.Generator) -> Callable[[], None]:
    opt = torch.optim.Adam(m.net.parameters(), lr=1e-3)

    def step() -> None:
        target = _batch(x, g) * 2 - 1
        recon = torch.sigmoid(m.net.decoder(m.net.encoder(target))) * 2 - 1
        loss = ((recon - target) ** 2).flatten(1).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _plain_ddpm(m, x: torch.Tensor, g: torch.Generator) -> Callable[[], None]:
    opt = torch.optim.Adam(m.net.parameters(), lr=2e-3)
    ema = EMA(m.net, 0.999)
    abar = m.schedule.alphas_bar.float()

    def step() -> None:
        x0 = _batch(x, g) * 2 - 1
        t = torch.randint(0, m.T, (64,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        a = abar[t].view(-1, 1, 1, 1)
        loss = F.mse_loss(m.net(a.sqrt() * x0 + (1 - a).sqrt() * eps, t), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.net.parameters(), 1.0)
        opt.step()
        ema.update()

    return step


PLAIN = {"gan": _plain_gan, "vae": _plain_vae, "autoencoder": _plain_autoencoder, "ddpm": _plain_ddpm}


def _median_step_times(name: str, ds, train: TrainData) -> tuple[float, float]:
    """Median seconds per step of (harness, plain), measured interleaved."""
    torch.manual_seed(0)
    m = registry.build(name, ds.info, device="cpu", **SIZES[name])
    m.fit(train, Budget(steps=2, batch_size=64))  # warm-up: first-call allocations
    g = torch.Generator().manual_seed(0)
    plain = PLAIN[name](m, train.x, g)
    for _ in range(2):
        plain()
    harness, hand = [], []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        m.fit(train, Budget(steps=S, batch_size=64))
        t1 = time.perf_counter()
        m.fit(train, Budget(steps=2 * S, batch_size=64))
        t2 = time.perf_counter()
        harness.append(((t2 - t1) - (t1 - t0)) / S)
        t3 = time.perf_counter()
        for _ in range(S):
            plain()
        hand.append((time.perf_counter() - t3) / S)
    return statistics.median(harness), statistics.median(hand)


@pytest.mark.parametrize("name", list(SIZES))
def test_harness_step_overhead(benchmark, mnist, name):
    ds, train = mnist
    harness, plain = benchmark.pedantic(_median_step_times, args=(name, ds, train), rounds=1, iterations=1)
    ratio = harness / plain
    benchmark.extra_info.update({"harness_ms_per_step": 1e3 * harness, "plain_ms_per_step": 1e3 * plain, "ratio": ratio})
    print(f"\n{name}: harness {1e3 * harness:.1f} ms/step, plain {1e3 * plain:.1f} ms/step, ratio {ratio:.3f}")
    assert ratio <= MAX_OVERHEAD, f"{name}: the harness step costs {ratio:.2f}x a plain PyTorch step (limit {MAX_OVERHEAD}x)"
