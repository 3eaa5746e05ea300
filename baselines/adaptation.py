"""Parameter-efficient adaptation of a trained class-conditional network.

The personalization methods compared by ``bench/personalization.py`` (Textual Inversion /
DreamBooth / Custom Diffusion / LoRA), as model surgery on a network that has
a class-embedding table (``nets.UNet``, ``nets.TimeMLP``):

* ``full``: every weight trains (DreamBooth-like);
* ``embedding``: only a new row of the class table (Textual-Inversion-like,
  :class:`NewRowEmbedding`);
* ``kv``: the K/V projections of attention layers (Custom Diffusion); not
  applicable to networks without attention;
* ``cond-proj``: the Linear layers that project the conditioning embedding into
  every residual block (``*.emb``) plus the new row;
* ``lora``: LoRA adapters of rank r (:mod:`baselines.lora`), everything else frozen.

:func:`prepare_method` sets a network up (in place) and says which parameters
train; the families' ``adapt`` methods (e.g. :meth:`baselines.diffusion.DDPM.adapt`)
run the one training loop on their own public loss.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .lora import inject_lora, lora_state_dict

__all__ = [
    "ADAPT_METHODS",
    "DEFAULT_LR",
    "AdaptationError",
    "NewRowEmbedding",
    "NotApplicable",
    "attention_kv_layers",
    "conditioning_projections",
    "find_class_embedding",
    "not_applicable_reason",
    "prepare_method",
    "state_bytes",
]

ADAPT_METHODS = ("full", "embedding", "kv", "cond-proj", "lora")
DEFAULT_LR = {"full": 1e-4, "embedding": 5e-3, "kv": 1e-3, "cond-proj": 1e-3, "lora": 1e-3}
"""Adam learning rates used when the budget gives none (the personalization suite's defaults)."""


class AdaptationError(ValueError):
    """A bad adaptation request (unknown method, missing class table ...); the message names the problem."""


class NotApplicable(Exception):
    """The method does not apply to this network (recorded as n/a with the reason)."""


class NewRowEmbedding(nn.Module):
    """An ``nn.Embedding`` whose row ``row`` is a separate trainable vector and
    every other row is frozen: the "new token" of Textual Inversion."""

    def __init__(self, base: nn.Embedding, row: int) -> None:
        super().__init__()
        if not 0 <= row < base.num_embeddings:
            raise ValueError(f"row {row} outside the embedding table (0..{base.num_embeddings - 1})")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.row = row
        self.new_row = nn.Parameter(base.weight[row].detach().clone())

    @property
    def weight(self) -> Tensor:
        w = self.base.weight.clone()
        w[self.row] = self.new_row
        return w

    def forward(self, y: Tensor) -> Tensor:
        out = self.base(y)
        mask = (y == self.row).unsqueeze(-1)
        return torch.where(mask, self.new_row.to(out.dtype).expand_as(out), out)


def find_class_embedding(net: nn.Module, num_classes: int) -> tuple[nn.Module, str, nn.Embedding]:
    """(parent, attribute, embedding) of the class table (``num_classes`` or
    ``num_classes + 1`` rows, the extra one being the null label)."""
    for name, mod in net.named_modules():
        if isinstance(mod, nn.Embedding) and mod.num_embeddings in (num_classes, num_classes + 1):
            parent = net
            parts = name.split(".")
            for part in parts[:-1]:
                parent = getattr(parent, part)
            return parent, parts[-1], mod
    raise AdaptationError(f"no class-embedding table with {num_classes} (+1) rows found in {type(net).__name__}")


def attention_kv_layers(net: nn.Module) -> list[str]:
    """Names of attention K/V projections (MultiheadAttention or Linear named
    to_k / to_v / k_proj / v_proj / key / value); empty when there is no attention."""
    names = []
    for name, mod in net.named_modules():
        last = name.rsplit(".", 1)[-1]
        if isinstance(mod, nn.MultiheadAttention) or (
            isinstance(mod, nn.Linear) and last in ("to_k", "to_v", "k_proj", "v_proj", "key", "value")
        ):
            names.append(name)
    return names


def conditioning_projections(net: nn.Module) -> list[str]:
    """Linear layers that project the (time + class) embedding into a block:
    named ``emb`` (``nets.ResBlock.emb``)."""
    return [n for n, m in net.named_modules() if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] == "emb"]


def prepare_method(
    net: nn.Module, method: dict[str, Any], concept: int, num_classes: int, generator: torch.Generator | None = None
) -> tuple[list[nn.Parameter], Callable[[], dict[str, Tensor]], dict[str, Any]]:
    """Set up ``net`` (in place) for ``method``; returns (trainable parameters,
    a function giving the adapter state to save, info). Raises
    :class:`NotApplicable` when the method does not apply to this network."""
    kind = method["method"]
    for p in net.parameters():
        p.requires_grad_(False)
    info: dict[str, Any] = {}
    if kind == "none":
        return [], dict, info
    if kind == "full":
        for p in net.parameters():
            p.requires_grad_(True)
        return list(net.parameters()), lambda: {k: v.detach().clone() for k, v in net.state_dict().items()}, info
    if kind in ("embedding", "cond-proj"):
        parent, attr, emb = find_class_embedding(net, num_classes)
        new = NewRowEmbedding(emb, concept)
        setattr(parent, attr, new)
        params = [new.new_row]
        names = []
        if kind == "cond-proj":
            names = conditioning_projections(net)
            if not names:
                raise NotApplicable("the network has no conditioning projections (Linear layers named 'emb')")
            mods = dict(net.named_modules())
            for n in names:
                for p in mods[n].parameters():
                    p.requires_grad_(True)
                    params.append(p)
        info["layers"] = names

        def state() -> dict[str, Tensor]:
            mods = dict(net.named_modules())
            out = {"new_row": new.new_row.detach().clone()}
            for n in names:
                out.update({f"{n}.{k}": v.detach().clone() for k, v in mods[n].state_dict().items()})
            return out

        return params, state, info
    if kind == "kv":
        names = attention_kv_layers(net)
        if not names:
            raise NotApplicable(
                "the U-Net has no attention layers, so there are no K/V projections to train (Custom Diffusion's K/V-only method does not apply; see cond-proj)"
            )
        mods = dict(net.named_modules())
        params = [p for n in names for p in mods[n].parameters()]
        for p in params:
            p.requires_grad_(True)
        info["layers"] = names
        return params, lambda: {f"{n}.{k}": v.detach().clone() for n in names for k, v in mods[n].state_dict().items()}, info
    if kind == "lora":
        names = inject_lora(net, method.get("targets"), r=int(method["r"]), alpha=method.get("alpha"), generator=generator)
        info["layers"] = names
        return [p for p in net.parameters() if p.requires_grad], lambda: lora_state_dict(net), info
    raise AdaptationError(f"unknown method {kind!r}")


def not_applicable_reason(net: nn.Module, method: str) -> str | None:
    """Why ``method`` cannot adapt ``net`` (None when it can), without touching the network."""
    if method == "kv" and not attention_kv_layers(net):
        return "the U-Net has no attention layers, so there are no K/V projections to train (Custom Diffusion's K/V-only method does not apply; see cond-proj)"
    if method == "cond-proj" and not conditioning_projections(net):
        return "the network has no conditioning projections (Linear layers named 'emb')"
    return None


def state_bytes(state: dict[str, Tensor]) -> int:
    """Bytes of ``torch.save(state)`` (the size of an adapter file)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.tell()
