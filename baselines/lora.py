"""LoRA: low-rank adapters for ``nn.Linear`` and ``nn.Conv2d`` (Hu et al. 2021).

A frozen base weight W gets a trainable low-rank residual ("personalized
residuals": W' = W + ΔW, ΔW = B A of rank r):

    y = base(x) + (alpha / r) * B(A(x))

* Linear(d_in -> d_out): A is (r, d_in), B is (d_out, r).
* Conv2d(c_in -> c_out, k x k): A is a (r, c_in, k, k) convolution with the
  base's stride / padding / dilation, B a 1x1 (c_out, r) convolution, so
  ΔW[o, i] = sum_j B[o, j] A[j, i] (as in peft / LoCon). Grouped convolutions
  and padding modes other than ``zeros`` are rejected.

B starts at zero (so an adapted model equals the base model at init) and A
from Kaiming-uniform (a = sqrt(5), like ``nn.Linear``'s default). ``merge()``
folds ΔW into the base weight (no extra cost at inference); ``unmerge()``
subtracts it again (exact up to float rounding).

Hand-rolled (torch only); peft is not needed. :func:`parameter_report` prints
counts in peft's format ``trainable params: X || all params: Y || trainable%: Z``.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "LoRALinear",
    "LoRAConv2d",
    "inject_lora",
    "lora_layers",
    "lora_state_dict",
    "load_lora_state_dict",
    "merge_lora",
    "unmerge_lora",
    "remove_lora",
    "parameter_report",
    "parameter_counts",
]


class _LoRABase(nn.Module):
    base: nn.Module
    lora_A: nn.Parameter
    lora_B: nn.Parameter

    def __init__(self, base: nn.Module, r: int, alpha: float) -> None:
        super().__init__()
        if not isinstance(r, int) or r < 1:
            raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}")
        if not alpha > 0:
            raise ValueError(f"LoRA alpha must be > 0, got {alpha!r}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.r = r
        self.alpha = float(alpha)
        self.scale = self.alpha / r
        self.merged = False

    def _init(self, generator: torch.Generator | None) -> None:
        fan_in = self.lora_A[0].numel()
        bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) bound = sqrt(6 / ((1 + 5) fan_in))
        with torch.no_grad():
            a = torch.rand(self.lora_A.shape, generator=generator) * 2 * bound - bound
            self.lora_A.copy_(a.to(self.lora_A))
            self.lora_B.zero_()

    def delta_weight(self) -> Tensor:
        """ΔW = (alpha / r) B A with the base weight's shape."""
        raise NotImplementedError

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + ΔW; the adapter branch is then skipped in forward."""
        if self.merged:
            raise RuntimeError("LoRA layer is already merged")
        self.base.weight.add_(self.delta_weight().to(self.base.weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - ΔW (undo :meth:`merge`)."""
        if not self.merged:
            raise RuntimeError("LoRA layer is not merged")
        self.base.weight.sub_(self.delta_weight().to(self.base.weight.dtype))
        self.merged = False

    def _lora(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if self.merged:
            return y
        return y + self.scale * self._lora(x)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, merged={self.merged}"


class LoRALinear(_LoRABase):
    """``nn.Linear`` with a rank-r residual; see the module docstring."""

    def __init__(self, base: nn.Linear, r: int = 4, alpha: float = 4.0, generator: torch.Generator | None = None) -> None:
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps nn.Linear, got {type(base).__name__}")
        super().__init__(base, r, alpha)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.empty(base.out_features, r, device=w.device, dtype=w.dtype))
        self._init(generator)

    def delta_weight(self) -> Tensor:
        return (self.lora_B @ self.lora_A) * self.scale

    def _lora(self, x: Tensor) -> Tensor:
        return nn.functional.linear(nn.functional.linear(x, self.lora_A), self.lora_B)


class LoRAConv2d(_LoRABase):
    """``nn.Conv2d`` with a rank-r residual (k x k down-projection, 1x1 up)."""

    def __init__(self, base: nn.Conv2d, r: int = 4, alpha: float = 4.0, generator: torch.Generator | None = None) -> None:
        if not isinstance(base, nn.Conv2d):
            raise TypeError(f"LoRAConv2d wraps nn.Conv2d, got {type(base).__name__}")
        if base.groups != 1:
            raise ValueError(f"LoRAConv2d supports groups=1 only, got groups={base.groups}")
        if base.padding_mode != "zeros":
            raise ValueError(f"LoRAConv2d supports padding_mode='zeros' only, got {base.padding_mode!r}")
        if isinstance(base.padding, str):
            raise ValueError(f"LoRAConv2d needs numeric padding, got padding={base.padding!r}")
        super().__init__(base, r, alpha)
        w = base.weight
        kh, kw = base.kernel_size
        self.lora_A = nn.Parameter(torch.empty(r, base.in_channels, kh, kw, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.empty(base.out_channels, r, 1, 1, device=w.device, dtype=w.dtype))
        self._init(generator)

    def delta_weight(self) -> Tensor:
        return torch.einsum("or,rikl->oikl", self.lora_B[:, :, 0, 0], self.lora_A) * self.scale

    def _lora(self, x: Tensor) -> Tensor:
        b = self.base
        h = nn.functional.conv2d(x, self.lora_A, None, b.stride, b.padding, b.dilation)
        return nn.functional.conv2d(h, self.lora_B)


_WRAPPERS: dict[type, type[_LoRABase]] = {nn.Linear: LoRALinear, nn.Conv2d: LoRAConv2d}

Targets = Sequence[str] | Callable[[str, nn.Module], bool] | None


def _matches(targets: Targets, name: str, module: nn.Module) -> bool:
    if targets is None:
        return True
    if callable(targets):
        return bool(targets(name, module))
    return any(name == t or name.endswith("." + t) for t in targets)


def inject_lora(
    module: nn.Module,
    targets: Targets = None,
    r: int = 4,
    alpha: float | None = None,
    *,
    freeze: bool = True,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Replace the targeted ``nn.Linear`` / ``nn.Conv2d`` layers of ``module`` by
    LoRA layers, in place. Returns the names of the adapted layers.

    Args:
        module: the model to adapt.
        targets: which layers: ``None`` = every Linear and Conv2d; a list of
            names (a layer matches ``"t"`` when its qualified name is ``t`` or
            ends with ``".t"``, peft's rule); or ``fn(name, layer) -> bool``.
            Targets of another layer type raise ``TypeError``.
        r: rank; alpha: scale numerator (default ``r``, i.e. scale 1).
        freeze: make every non-LoRA parameter of ``module`` non-trainable.
        generator: CPU generator for A's initialisation (reproducibility).
    """
    alpha = float(r if alpha is None else alpha)
    if isinstance(targets, str):
        targets = [targets]
    chosen: list[tuple[str, nn.Module]] = []
    for name, sub in module.named_modules():
        if not name or isinstance(sub, _LoRABase) or any(name.startswith(c + ".") for c, _ in chosen):
            continue
        if "base" in name.split(".") and isinstance(_parent(module, name), _LoRABase):
            continue
        if not _matches(targets, name, sub):
            continue
        if type(sub) in _WRAPPERS:
            chosen.append((name, sub))
        elif targets is not None and not callable(targets) and any(name == t or name.endswith("." + t) for t in targets):
            raise TypeError(f"LoRA target {name!r} is a {type(sub).__name__}; only nn.Linear and nn.Conv2d can be adapted")
    if not chosen:
        names = [n for n, m in module.named_modules() if type(m) in _WRAPPERS]
        raise ValueError(f"no LoRA target matched {targets!r}; adaptable layers: {names[:20]}{' ...' if len(names) > 20 else ''}")
    if freeze:
        for p in module.parameters():
            p.requires_grad_(False)
    for name, sub in chosen:
        parent = _parent(module, name)
        setattr(parent, name.rsplit(".", 1)[-1], _WRAPPERS[type(sub)](sub, r=r, alpha=alpha, generator=generator))
    return [n for n, _ in chosen]


def _parent(module: nn.Module, name: str) -> nn.Module:
    parent = module
    for part in name.split(".")[:-1]:
        parent = getattr(parent, part)
    return parent


def lora_layers(module: nn.Module) -> dict[str, _LoRABase]:
    """All LoRA layers of ``module`` by qualified name."""
    return {n: m for n, m in module.named_modules() if isinstance(m, _LoRABase)}


def lora_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """Adapter-only tensors (``<layer>.lora_A`` / ``.lora_B``), detached CPU copies:
    what a saved adapter file holds."""
    out: dict[str, Tensor] = {}
    for n, m in lora_layers(module).items():
        out[f"{n}.lora_A"] = m.lora_A.detach().cpu().clone()
        out[f"{n}.lora_B"] = m.lora_B.detach().cpu().clone()
    if not out:
        raise ValueError("module has no LoRA layers (call inject_lora first)")
    return out


def load_lora_state_dict(module: nn.Module, state: dict[str, Tensor]) -> None:
    """Load adapter tensors saved by :func:`lora_state_dict` (layers must be unmerged)."""
    layers = lora_layers(module)
    expected = {f"{n}.{k}" for n in layers for k in ("lora_A", "lora_B")}
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise KeyError(f"LoRA state mismatch: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    with torch.no_grad():
        for n, m in layers.items():
            if m.merged:
                raise RuntimeError(f"LoRA layer {n} is merged; unmerge before loading adapter weights")
            m.lora_A.copy_(state[f"{n}.lora_A"])
            m.lora_B.copy_(state[f"{n}.lora_B"])


def merge_lora(module: nn.Module) -> int:
    """Merge every unmerged LoRA layer; returns how many were merged."""
    n = 0
    for m in lora_layers(module).values():
        if not m.merged:
            m.merge()
            n += 1
    return n


def unmerge_lora(module: nn.Module) -> int:
    """Unmerge every merged LoRA layer; returns how many were unmerged."""
    n = 0
    for m in lora_layers(module).values():
        if m.merged:
            m.unmerge()
            n += 1
    return n


def remove_lora(module: nn.Module, merge: bool = True) -> list[str]:
    """Put the plain layers back (with ΔW merged into them when ``merge``)."""
    names = list(lora_layers(module))
    for name in names:
        layer = _parent(module, name)._modules[name.rsplit(".", 1)[-1]]
        if merge and not layer.merged:
            layer.merge()
        elif not merge and layer.merged:
            layer.unmerge()
        setattr(_parent(module, name), name.rsplit(".", 1)[-1], layer.base)
    return names


def parameter_counts(module: nn.Module | Iterable[nn.Parameter]) -> tuple[int, int]:
    """(trainable, all) parameter counts (each shared tensor counted once)."""
    params = module.parameters() if isinstance(module, nn.Module) else module
    seen, trainable, total = set(), 0, 0
    for p in params:
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def parameter_report(module: nn.Module) -> str:
    """peft's format: ``trainable params: X || all params: Y || trainable%: Z``."""
    trainable, total = parameter_counts(module)
    pct = 100 * trainable / total if total else 0.0
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {pct:.4f}"
