"""VQ-VAE and its priors (baselines/vq.py, vq_quantizer.py, vq_priors.py): quantizer, MaskGIT decoding, exact AR code likelihood, the VQ bound."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from baselines import token_samplers, vq, vq_priors, vq_quantizer
from baselines.protocol import Budget, DataInfo, HeldOutReference, LabeledSampler, LikelihoodBound, SamplerChoice, TrainData

TINY = DataInfo(name="tiny", shape=(1, 4, 4), kind="image", levels=5)  # n_down=1 -> 2x2 code grid, L = 4


def _tiny_data(n: int = 64) -> TrainData:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 5, (n, 1, 4, 4), generator=g).float() / 4
    return TrainData(x, TINY)


# ----------------------------------------------------------------------------- quantizer
def test_quantizer_picks_the_nearest_code():
    q = vq_quantizer.VectorQuantizer(3, 2).eval()
    q.embed.data = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[0.9, 0.2], [0.1, 0.1], [0.2, 0.7], [0.6, 0.55]])  # nearest: 1, 0, 2, 1 (0.16+0.3025 < 0.36+0.2025)
    assert q.nearest(z).tolist() == [1, 0, 2, 1]
    # against brute force on random points and codes
    q2 = vq_quantizer.VectorQuantizer(17, 5).eval()
    q2.embed.data = torch.randn(17, 5)
    pts = torch.randn(500, 5)
    assert torch.equal(q2.nearest(pts), torch.cdist(pts, q2.embed.data).argmin(1))


def test_quantizer_forward_returns_code_vectors_and_passes_gradients_straight_through():
    q = vq_quantizer.VectorQuantizer(4, 3, beta=0.25).eval()
    q.embed.data = torch.randn(4, 3)
    z_e = torch.randn(2, 3, 2, 2, requires_grad=True)
    out = q(z_e)
    expected_codes = torch.cdist(z_e.detach().permute(0, 2, 3, 1).reshape(-1, 3), q.embed.data).argmin(1).reshape(2, 2, 2)
    assert torch.equal(out.codes, expected_codes)
    assert torch.allclose(out.z_q, q.lookup(out.codes))  # forward value: the code vectors
    out.z_q.mul(torch.arange(24.0).reshape(2, 3, 2, 2)).sum().backward()
    assert torch.allclose(z_e.grad, torch.arange(24.0).reshape(2, 3, 2, 2))  # identity gradient
    # commitment gradient: d/dz_e beta * mean((z_e - e)^2) = 2 beta (z_e - e) / numel
    z2 = z_e.detach().clone().requires_grad_(True)
    o2 = q(z2)
    (0.25 * o2.commitment).backward()
    e = q.lookup(o2.codes)
    assert torch.allclose(z2.grad, 2 * 0.25 * (z2.detach() - e) / z2.numel(), atol=1e-7)
    # codebook loss moves the codebook, not the encoder output
    assert o2.codebook.requires_grad and torch.allclose(o2.loss, o2.codebook + 0.25 * o2.commitment)


def test_ema_codebook_converges_to_the_mean_of_its_vectors():
    q = vq_quantizer.VectorQuantizer(2, 2, ema=True, decay=0.5, eps=1e-9).train()
    z = torch.tensor([[10.0, 0.0], [12.0, 0.0], [0.0, -5.0], [0.0, -7.0]]).reshape(1, 2, 2, 2).permute(0, 3, 1, 2)
    q(z)  # first call initialises the codebook from the batch
    q.embed.copy_(torch.tensor([[9.0, 0.0], [0.0, -4.0]]))
    q.embed_sum.copy_(q.embed)
    q.cluster_size.fill_(1.0)
    for _ in range(60):
        q(z)
    assert torch.allclose(q.embed, torch.tensor([[11.0, 0.0], [0.0, -6.0]]), atol=1e-4)


def test_dead_codes_are_restarted_on_encoder_outputs():
    q = vq_quantizer.VectorQuantizer(4, 2).train()
    z = torch.tensor([[1.0, 1.0], [1.1, 1.0], [0.9, 1.0], [1.0, 0.9]]).reshape(1, 2, 2, 2).permute(0, 3, 1, 2)
    q(z)
    q.embed.data = torch.tensor([[1.0, 1.0], [50.0, 50.0], [-50.0, 50.0], [50.0, -50.0]])
    for _ in range(5):
        q(z)
    assert q.restart_dead(z, after=3) == 3
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    assert torch.cdist(q.embed.data[1:], flat).min(1).values.max() < 0.01  # every restarted code sits on an encoder output
    assert q.restart_dead(z, after=3) == 0


def test_code_statistics():
    s = vq_quantizer.code_statistics(torch.tensor([0, 1, 2, 3] * 5), 8)
    assert s == {"codebook_size": 8, "usage": 0.5, "perplexity": pytest.approx(4.0), "dead_codes": 4}
    s = vq_quantizer.code_statistics(torch.tensor([0, 0, 0, 1]), 2)
    p = torch.tensor([0.75, 0.25])
    assert s["perplexity"] == pytest.approx(math.exp(-(p * p.log()).sum().item()))


# ----------------------------------------------------------------------------- MaskGIT decoding
class _CountingNet:
    def __init__(self, k: int, mask_id: int) -> None:
        self.k, self.mask_id, self.calls, self.seen = k, mask_id, 0, []

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.seen.append(tokens.clone())
        return torch.randn(*tokens.shape, self.k)


@pytest.mark.parametrize("T", [1, 2, 4, 8, 16])
def test_maskgit_makes_T_calls_and_unmasks_every_token(T):
    L, K = 16, 10
    net = _CountingNet(K, mask_id=K)
    s = token_samplers.MaskGITSampler(T, choice_temperature=1.0)
    out = s(net, 5, L, K, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    assert net.calls == T and s.nfe == T
    assert out.shape == (5, L) and (out != K).all() and out.max() < K
    masked = [int((t == K).sum(1)[0]) for t in net.seen] + [0]
    assert masked[0] == L
    assert all(a > b for a, b in zip(masked, masked[1:]))  # every step fixes at least one token
    for t in range(1, T):  # tokens left masked after step t: floor(L cos(pi t / 2T)), at most one fewer than before
        assert masked[t] == min(masked[t - 1] - 1, math.floor(L * math.cos(math.pi / 2 * t / T)))
    states = net.seen + [out]
    for a, b in zip(states, states[1:]):  # a fixed token never changes again
        fixed = a != K
        assert torch.equal(a[fixed], b[fixed])


def test_maskgit_rejects_more_steps_than_tokens():
    with pytest.raises(ValueError, match="at most the number of tokens"):
        token_samplers.MaskGITSampler(5)(_CountingNet(3, 3), 2, 4, 3, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="steps"):
        token_samplers.MaskGITSampler(0)


def test_bidirectional_prior_learns_to_copy_by_position():
    """A masked token equal to the token 4 positions away (sequences [a b c d a b c d], one of each pair
    masked) can only be found through the positions; the content is the same for every candidate. With
    token and position embeddings at the same scale the prior solves it (cross-entropy near 0 nats); with
    the token embeddings at nn.Embedding's default std 1, 50x the positions, it stayed near 1.2 nats."""
    torch.manual_seed(0)
    net = vq_priors.CodeTransformer(8, 8, dim=32, depth=1, heads=2, dropout=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        half = torch.randint(0, 8, (n, 4))
        first = torch.randint(0, 2, (n, 4)).bool()
        return torch.cat([half, half], 1), torch.cat([first, ~first], 1)

    def loss(codes: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        logits = net(torch.where(masked, torch.full_like(codes, net.special), codes))
        return torch.nn.functional.cross_entropy(logits[masked], codes[masked])

    for _ in range(150):
        opt.zero_grad()
        loss(*batch(64)).backward()
        opt.step()
    with torch.no_grad():
        assert float(loss(*batch(512))) < 0.2


def test_cosine_mask_ratio():
    assert float(token_samplers.cosine_mask_ratio(0.0)) == 1.0
    assert float(token_samplers.cosine_mask_ratio(0.5)) == pytest.approx(math.sqrt(0.5))
    assert float(token_samplers.cosine_mask_ratio(1.0)) == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- priors and the bound
def _all_code_grids(k: int, length: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(k), repeat=length)))


def test_ar_code_likelihood_sums_to_one_over_all_code_grids():
    m = vq_priors.VQAutoregressive(TINY, num_codes=3, code_dim=4, width=8, prior_dim=16, prior_heads=2)
    assert m.length == 4
    with torch.no_grad():
        for p in m.prior.parameters():  # a non-trivial random prior
            p.add_(0.3 * torch.randn_like(p))
    lp = m.code_log_prob(_all_code_grids(3, 4))
    assert lp.shape == (81,)
    assert torch.logsumexp(lp.double(), 0).item() == pytest.approx(0.0, abs=1e-5)
    assert lp.std() > 0.01  # not uniform: the test would pass trivially otherwise


def test_ar_sampler_draws_from_the_prior_one_call_per_token():
    m = vq_priors.VQAutoregressive(TINY, num_codes=2, code_dim=4, width=8, prior_dim=16, prior_heads=2)
    calls = []
    net = lambda t: (calls.append(t.shape[1]), m.prior(t))[1]  # noqa: E731
    s = token_samplers.AutoregressiveSampler()
    with torch.no_grad():
        codes = s(net, 4000, 4, 2, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
        p = m.code_log_prob(_all_code_grids(2, 4)).exp()
    assert calls == [1, 2, 3, 4] and s.nfe == 4
    idx = (codes * torch.tensor([8, 4, 2, 1])).sum(1)
    freq = torch.bincount(idx, minlength=16).double() / 4000
    assert (freq - p.double()).abs().max() < 0.03  # sampling matches the exact likelihood


def test_independent_prior_sums_to_one_and_bound_decomposes():
    m = vq.VQVAE(TINY, num_codes=3, code_dim=4, width=8)
    data = _tiny_data()
    m.fit(data, Budget(steps=5, batch_size=32))
    lp = m.code_log_prob(_all_code_grids(3, 4))
    assert torch.logsumexp(lp.double(), 0).item() == pytest.approx(0.0, abs=1e-5)
    x = data.x[:7]
    codes = m.encode_codes(x)
    with torch.no_grad():
        rec = m.net.log_px(x, m.net.quantizer.lookup(codes))
    expected = rec + m.code_log_prob(codes.reshape(7, -1))
    assert torch.allclose(m.elbo(x), expected, atol=1e-4)
    assert (m.elbo(x) < 0).all()


# ----------------------------------------------------------------------------- the generators
@pytest.mark.parametrize("cls", [vq.VQVAE, vq_priors.VQAutoregressive, vq_priors.VQMaskGIT])
def test_generators_fit_sample_and_round_trip(digits, cls):
    torch.manual_seed(0)
    m = cls(digits.info, width=16, prior_dim=32) if cls is not vq.VQVAE else cls(digits.info, width=16)
    rep = m.fit(TrainData(digits.train_x, digits.info, digits.train_y), Budget(steps=20, batch_size=64))
    for key in ("codebook_size", "usage", "perplexity", "dead_codes", "restarts", "recon_nats", "recon_mae", "code_grid"):
        assert key in rep.extra
    assert rep.extra["codebook_size"] == 32 and 0 < rep.extra["usage"] <= 1 and 1 <= rep.extra["perplexity"] <= 32
    assert rep.extra["dead_codes"] == round(32 * (1 - rep.extra["usage"]))
    x = m.sample(12, generator=torch.Generator().manual_seed(3))
    assert x.shape == (12, 1, 8, 8) and x.dtype == torch.float32
    assert torch.allclose(x * 16, (x * 16).round())  # on the K = 17 levels
    assert isinstance(m, SamplerChoice)
    assert isinstance(m, LikelihoodBound) == (cls is not vq_priors.VQMaskGIT)
    expected_nfe = {vq.VQVAE: 1, vq_priors.VQAutoregressive: 16, vq_priors.VQMaskGIT: 8}[cls]
    assert m.last_nfe == expected_nfe
    m2 = cls(digits.info, width=16, prior_dim=32) if cls is not vq.VQVAE else cls(digits.info, width=16)
    m2.load_state_dict(m.state_dict())
    assert torch.equal(m2.sample(12, generator=torch.Generator().manual_seed(3)), x)


def test_maskgit_steps_and_sampler_objects(digits):
    m = vq_priors.VQMaskGIT(digits.info, width=16, prior_dim=32)
    m.fit(TrainData(digits.train_x, digits.info), Budget(steps=6, batch_size=64))
    for T in (1, 4, 16):
        m.sample(3, steps=T)
        assert m.last_nfe == T and m.info.iterative
    s = m.make_sampler(steps=2, temperature=0.5)
    m.sample(3, sampler=s)
    assert m.last_nfe == 2
    with pytest.raises(ValueError, match="unknown sampler"):
        m.make_sampler(sampler="ddim")
    with pytest.raises(ValueError, match="at most the number of tokens"):
        m.sample(2, steps=17)


def test_errors_are_clear(digits):
    with pytest.raises(ValueError, match="needs image data"):
        vq.VQVAE(DataInfo(name="ring8", shape=(2,), kind="points"))
    with pytest.raises(ValueError, match="divisible"):
        vq.VQVAE(digits.info, n_down=4)
    m = vq_priors.VQAutoregressive(digits.info, width=8)
    with pytest.raises(RuntimeError, match="fit"):
        m.sample(2)
    m.fit(TrainData(digits.train_x[:64], digits.info), Budget(steps=2, batch_size=32))
    with pytest.raises(ValueError, match="unconditional"):
        m.sample(2, labels=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="one network evaluation per token"):
        m.sample(2, steps=3)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        m.elbo(digits.test_x[:4] * 3)


def test_reconstruction_row_is_a_held_out_reference(digits):
    r = vq.VQReconstruction(digits.info, width=16)
    assert isinstance(r, HeldOutReference) and isinstance(r, LabeledSampler) and not isinstance(r, LikelihoodBound)
    r.use_pool(digits.test_x[:50], digits.test_y[:50])
    r.fit(TrainData(digits.train_x, digits.info), Budget(steps=10, batch_size=64))
    g = torch.Generator().manual_seed(0)
    x, y = r.sample_labeled(20, generator=g)
    idx = torch.randperm(50, generator=torch.Generator().manual_seed(0))[:20]
    assert torch.equal(y, digits.test_y[:50][idx])
    assert torch.equal(x, r.decode_codes(r.encode_codes(digits.test_x[:50][idx])))


def test_registered_with_descriptions():
    from baselines.registry import available

    entries = available()
    for name in ("vqvae", "vq-ar", "vq-maskgit", "vqvae-recon"):
        assert name in entries and entries[name].description and entries[name].kinds == ("image",)


def test_latent_arithmetic_figure_works(digits, tmp_path):
    from bench.figures import vae_latent_figure

    m = vq.VQVAE(digits.info, width=8)
    m.fit(TrainData(digits.train_x, digits.info), Budget(steps=3, batch_size=64))
    z = m.encode(digits.test_x[:3])
    assert z.shape == (3, 16 * 16) and torch.equal(m.decode(z), m.decode(z.reshape(3, 16, 4, 4)))
    assert vae_latent_figure(m, digits, tmp_path / "vq.png").stat().st_size > 0


def test_default_code_grid_keeps_the_prior_short_on_28x28():
    """One downsampling left 28x28 MNIST a 14x14 grid (L = 196 tokens: ~290 CPU-s of AR sampling per 1,000
    images and a prior that learned little in the suite's budget); the default now picks 7x7, digits keep 4x4."""
    mnist = DataInfo(name="mnist-like", shape=(1, 28, 28), kind="image", levels=256)
    digits = DataInfo(name="digits-like", shape=(1, 8, 8), kind="image", levels=17)
    assert vq_priors.VQAutoregressive(mnist).latent_shape == (7, 7) and vq_priors.VQAutoregressive(mnist).length == 49
    assert vq_priors.VQMaskGIT(mnist).latent_shape == (7, 7)
    assert vq.VQVAE(digits).latent_shape == (4, 4)
    assert vq.VQVAE(mnist, n_down=1).latent_shape == (14, 14)  # an explicit n_down still wins
    assert [vq.default_n_down(s, s) for s in (4, 8, 28, 32, 64)] == [1, 1, 2, 2, 3]
