"""LoRA adapters: zero init, merge/unmerge, counts by hand, state dicts."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from baselines.lora import (
    LoRAConv2d,
    LoRALinear,
    inject_lora,
    load_lora_state_dict,
    lora_layers,
    lora_state_dict,
    merge_lora,
    parameter_counts,
    parameter_report,
    remove_lora,
    unmerge_lora,
)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.SiLU(), nn.Linear(16, 5))

    def forward(self, x):
        return self.head(self.norm(self.down(torch.relu(self.conv(x)))))


def _perturb_b(model: nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora_layers(model).values():
            m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * 0.1)


def test_zero_init_leaves_outputs_unchanged():
    torch.manual_seed(0)
    model = Tiny()
    x = torch.randn(4, 3, 8, 8)
    before = model(x)
    names = inject_lora(model, None, r=4, alpha=8)
    assert names == ["conv", "down", "head.1", "head.3"]
    assert torch.equal(model(x), before)
    # A is random (not zero), B is zero
    for m in lora_layers(model).values():
        assert m.lora_A.abs().sum() > 0
        assert torch.count_nonzero(m.lora_B) == 0
        assert m.scale == pytest.approx(2.0)


def test_merge_then_unmerge_restores_weights_and_merged_forward_matches():
    torch.manual_seed(0)
    model = Tiny()
    originals = {n: p.detach().clone() for n, p in model.state_dict().items()}
    x = torch.randn(5, 3, 8, 8)
    base_out = model(x)
    inject_lora(model, ["conv", "down", "head.1"], r=2, alpha=3)
    _perturb_b(model)
    unmerged = model(x)
    assert (unmerged - base_out).abs().max() > 1e-3  # the adapters change the function
    assert merge_lora(model) == 3
    merged_w = model.conv.base.weight.detach().clone()
    assert not torch.allclose(merged_w, originals["conv.weight"])  # ΔW was added
    torch.testing.assert_close(model(x), unmerged, rtol=1e-5, atol=1e-5)
    assert unmerge_lora(model) == 3
    for layer, key in (("conv", "conv.weight"), ("down", "down.weight"), ("head.1", "head.1.weight")):
        base = dict(model.named_modules())[layer].base
        torch.testing.assert_close(base.weight, originals[key], rtol=0, atol=1e-6)
    torch.testing.assert_close(model(x), unmerged, rtol=1e-6, atol=1e-6)
    with pytest.raises(RuntimeError, match="not merged"):
        model.conv.unmerge()


def test_delta_weight_equals_functional_branch():
    """The merged ΔW of a strided conv reproduces the unmerged branch exactly."""
    torch.manual_seed(0)
    base = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1)
    layer = LoRAConv2d(base, r=3, alpha=6)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(2, 4, 9, 9)
    branch = layer(x) - base(x)
    direct = nn.functional.conv2d(x, layer.delta_weight(), None, 2, 1)
    torch.testing.assert_close(branch, direct, rtol=1e-5, atol=1e-5)


def test_counts_by_hand():
    lin = nn.Linear(10, 7)  # 77 params
    conv = nn.Conv2d(3, 5, 3)  # 5*3*9 + 5 = 140
    model = nn.Sequential(lin, nn.ReLU(), conv)
    assert parameter_counts(model) == (217, 217)
    inject_lora(model, None, r=2)
    # Linear: A 2x10 + B 7x2 = 34; Conv: A 2x3x3x3 = 54 + B 5x2x1x1 = 10 -> 64
    trainable, total = parameter_counts(model)
    assert trainable == 34 + 64
    assert total == 217 + 98
    assert parameter_report(model) == f"trainable params: 98 || all params: 315 || trainable%: {100 * 98 / 315:.4f}"
    assert parameter_report(model) == "trainable params: 98 || all params: 315 || trainable%: 31.1111"
    # only the adapter tensors are saved
    sd = lora_state_dict(model)
    assert set(sd) == {"0.lora_A", "0.lora_B", "2.lora_A", "2.lora_B"}
    assert sum(v.numel() for v in sd.values()) == 98


def test_training_moves_only_adapters():
    torch.manual_seed(0)
    model = Tiny()
    inject_lora(model, ["head.1", "head.3"], r=4)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,))
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    assert all(torch.count_nonzero(m.lora_B) > 0 for m in lora_layers(model).values())


def test_state_dict_roundtrip_and_file_size():
    torch.manual_seed(0)
    a, b = Tiny(), Tiny()
    b.load_state_dict(a.state_dict())
    inject_lora(a, None, r=4, generator=torch.Generator().manual_seed(0))
    inject_lora(b, None, r=4, generator=torch.Generator().manual_seed(1))
    _perturb_b(a)
    buf = io.BytesIO()
    torch.save(lora_state_dict(a), buf)
    n_floats = sum(m.lora_A.numel() + m.lora_B.numel() for m in lora_layers(a).values())
    assert buf.tell() >= 4 * n_floats  # float32 payload is in the file
    buf.seek(0)
    load_lora_state_dict(b, torch.load(buf, weights_only=True))
    x = torch.randn(3, 3, 8, 8)
    torch.testing.assert_close(a(x), b(x))
    with pytest.raises(KeyError, match="mismatch"):
        load_lora_state_dict(b, {"conv.lora_A": torch.zeros(1)})


def test_remove_lora_merges_into_plain_layers():
    torch.manual_seed(0)
    model = Tiny()
    inject_lora(model, None, r=2)
    _perturb_b(model)
    x = torch.randn(2, 3, 8, 8)
    out = model(x)
    remove_lora(model)
    assert not lora_layers(model)
    assert isinstance(model.conv, nn.Conv2d)
    torch.testing.assert_close(model(x), out, rtol=1e-5, atol=1e-5)


def test_bad_input_messages():
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(nn.Linear(3, 3), r=0)
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="groups"):
        LoRAConv2d(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="no LoRA target matched"):
        inject_lora(Tiny(), ["nope"])
    with pytest.raises(TypeError, match="GroupNorm"):
        inject_lora(Tiny(), ["norm"])
    with pytest.raises(ValueError, match="no LoRA layers"):
        lora_state_dict(Tiny())
