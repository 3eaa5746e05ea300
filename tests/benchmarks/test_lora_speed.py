"""pytest-benchmark: the inference cost of an unmerged LoRA against a merged one.

An unmerged LoRA layer runs two extra small matmuls / convolutions per adapted
layer (x -> A -> B); merging folds ΔW = (alpha/r) B A into the base weight,
so a merged model costs exactly what the base model costs. Measured on the
digits U-Net (``nets.UNet``, width 16, class-conditional, every Conv2d and
Linear adapted, rank 4 and 16): one network forward of a batch of 64, and a
10-step DDIM sampling run of 64 digits through ``ddpm`` when the diffusion
family is available. The merged and unmerged outputs are checked to agree.

One compute thread (``GENBENCH_BENCH_THREADS=N`` sets another count, 0 keeps
the defaults). Run: ``pytest tests/benchmarks/test_lora_speed.py --benchmark-only``.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

from baselines.lora import inject_lora, lora_layers, merge_lora
from baselines.nets import UNet

BATCH = 64


@pytest.fixture(scope="module", autouse=True)
def _threads():
    threads = int(os.environ.get("GENBENCH_BENCH_THREADS", "1"))
    if threads <= 0:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(threads)
    yield
    torch.set_num_threads(n)


def _adapted(r: int, merged: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    net = UNet(1, width=16, num_classes=10).eval()
    inject_lora(net, None, r=r, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in lora_layers(net).values():
            m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * 0.01)
    if merged:
        merge_lora(net)
    return net


def _inputs():
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(BATCH, 1, 8, 8, generator=g),
        torch.randint(0, 1000, (BATCH,), generator=g),
        torch.randint(0, 10, (BATCH,), generator=g),
    )


@pytest.mark.parametrize("r", [4, 16])
@pytest.mark.parametrize("merged", [False, True], ids=["unmerged", "merged"])
def test_unet_forward_batch64(benchmark, r, merged):
    net = _adapted(r, merged)
    x, t, y = _inputs()
    with torch.no_grad():
        out = benchmark(lambda: net(x, t, y))
        ref = _adapted(r, not merged)(x, t, y)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    benchmark.extra_info.update({"rank": r, "merged": merged, "adapted_layers": len(lora_layers(net)), "batch": BATCH})


@pytest.mark.parametrize("merged", [False, True], ids=["unmerged", "merged"])
def test_ddim10_sampling_batch64(benchmark, merged):
    from baselines.registry import available, build
    from bench.data import load

    if "ddpm" not in available():
        pytest.skip("baselines.diffusion (ddpm) is not available")
    info = load("digits").info
    torch.manual_seed(0)
    model = build("ddpm", info, conditional=True, width=16)
    ddim = model.make_sampler(sampler="ddim")
    net = copy.deepcopy(model.ema.module)
    inject_lora(net, None, r=4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for m in lora_layers(net).values():
            m.lora_B.normal_(0, 0.01)
    if merged:
        merge_lora(net)
    model.ema.module = net
    labels = torch.arange(BATCH) % 10
    x = benchmark(lambda: model.sample(BATCH, labels=labels, steps=10, generator=torch.Generator().manual_seed(0), sampler=ddim))
    assert x.shape == (BATCH, 1, 8, 8)
    benchmark.extra_info.update({"rank": 4, "merged": merged, "steps": 10, "batch": BATCH})
