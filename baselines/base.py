"""The family base class: what every trainable family shares, written once.

A family subclasses :class:`Family` and supplies a network (``self.net``, built
in ``__init__`` after ``super().__init__``), a ``loss(batch, generator)`` and
``sample``. The base class gives it:

* ``info`` (a :class:`~genbench.protocol.GeneratorInfo` from the class
  attributes and the network's parameter count; :meth:`Family.info_fields`
  adds or overrides fields);
* input checks (:meth:`Family.check_x`: a tensor of the data set's shape,
  finite, images in [0, 1]) and :meth:`Family.require_fitted`;
* a template ``fit``: check and prepare the data (:meth:`Family.prepare`),
  build the optimizer (:meth:`Family.make_optimizer`), run the one training
  loop (:func:`baselines.training.train`) with the family's ``loss`` and the
  class's loop options (curves, random source, gradient clipping, warm-up,
  EMA), then :meth:`Family.after_fit`;
* an EMA-aware ``state_dict``/``load_state_dict`` (the network, its weight
  average when the family keeps one, the fitted flag and
  :meth:`Family.extra_state`), tensors and plain Python only.

The two-stage families (VQ, latent diffusion) subclass it for ``info``, the
checks and ``require_fitted`` and write their own ``fit`` and state. Models
with more than one optimizer (GANs, image-to-image translation) write their
own ``fit`` and pass a whole ``step`` to the loop instead.
"""

from __future__ import annotations

import inspect
import operator
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from .nets import pick_device
from .protocol import Budget, DataInfo, GeneratorInfo, TrainData, TrainReport, count_parameters
from .training import EMA, Batch, train

__all__ = ["Family", "check_images", "with_base_keywords"]


def with_base_keywords(cls: type) -> type:
    """Class decorator for a family that declares only its own hyperparameters and passes ``**kwargs`` on: its
    signature (what the registry checks a suite's ``params`` against and ``bench list`` shows) becomes its own
    ``__init__``'s parameters followed by the keyword parameters of each ``__init__`` up the class hierarchy
    that its ``**kwargs`` reach (each base ``__init__`` that takes ``**kwargs`` passes them further up)."""
    params: list[inspect.Parameter] = []
    names: set[str] = set()
    for c in cls.__mro__:
        if "__init__" not in vars(c) or c is object:
            continue
        sig = list(inspect.signature(vars(c)["__init__"]).parameters.values())[1:]
        for p in sig:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in names:
                names.add(p.name)
                if params and params[-1].kind is p.KEYWORD_ONLY:
                    p = p.replace(kind=p.KEYWORD_ONLY)  # nothing positional after a keyword-only parameter
                params.append(p)
        if not any(p.kind is p.VAR_KEYWORD for p in sig):
            break
    cls.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return cls


def check_images(name: str, x: Any, info: DataInfo, what: str = "x") -> Tensor:
    """``x`` as float32 (N, *info.shape) on the CPU, or a clear error naming ``name`` and ``what``.

    ``TypeError`` unless ``x`` is a tensor; rows of the right number of values
    are reshaped (flattened images are accepted); ``ValueError`` for any other
    shape, for NaN/inf, and for image values outside [0, 1].
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: {what} must be a torch.Tensor, got {type(x).__name__}")
    x = x.float()
    shape = tuple(info.shape)
    if x.dim() >= 1 and tuple(x.shape[1:]) != shape and len(x) and x[0].numel() == info.dim:
        x = x.reshape(len(x), *shape)
    if x.dim() < 1 or tuple(x.shape[1:]) != shape:
        raise ValueError(f"{name}: {what} has shape {tuple(x.shape)}; expected (N, {', '.join(map(str, shape))})")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: {what} contains NaN/inf values")
    if info.is_image and len(x) and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name}: {what} must be images in [0, 1]; got values in [{float(x.min()):.3g}, {float(x.max()):.3g}]")
    return x.cpu()


class Sampling:
    """The protocol's ``sample``, written once: checks its arguments, then runs the class's :meth:`draw`.

    Class attribute ``sample_needs_fit`` (default True): ``sample`` first calls ``require_fitted``. Used by
    :class:`Family` and by the GAN (which trains two networks its own way).
    """

    name: ClassVar[str] = ""
    sample_needs_fit: ClassVar[bool] = True  # False: ``sample`` runs on the initial network too (e.g. an oracle set in tests)

    def require_fitted(self) -> None:
        """``RuntimeError`` unless the model was fitted or loaded (``self._fitted``)."""
        if not getattr(self, "_fitted", False):
            raise RuntimeError(f"{self.name}: call fit() (or load_state_dict) first")

    def sample(
        self,
        n: int,
        *,
        labels: Tensor | None = None,
        prompts: Sequence[str] | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        sampler: Any = None,
    ) -> Tensor:
        """Draw ``n`` samples (the :class:`~genbench.protocol.Generator` protocol): checks that the model is
        fitted (unless ``sample_needs_fit`` is False) and ``n`` >= 0 and refuses text prompts (class labels only;
        :mod:`baselines.prompting` maps prompts to labels), then runs the family's :meth:`draw`. ``labels`` (N,)
        in 0..C-1 for conditional families; ``steps``: sampler steps of iterative families (None: their
        default); ``sampler``: an object from the family's ``make_sampler`` (None: its default); noise comes
        from ``generator``. Returns float32 on the CPU: images NCHW on the K levels of [0, 1], 2-D data (n, 2)."""
        if self.sample_needs_fit:
            self.require_fitted()
        if prompts is not None:
            raise ValueError(f"{self.name}: text prompts are not supported (class labels only)")
        try:
            n = operator.index(n)  # an int, numpy's included; not a float
        except TypeError:
            raise ValueError(f"{self.name}: n must be a non-negative int, got {n!r}") from None
        if n < 0:
            raise ValueError(f"{self.name}: n must be a non-negative int, got {n}")
        return self.draw(n, labels, steps, generator, sampler)

    def draw(self, n: int, labels: Tensor | None, steps: int | None, generator: torch.Generator | None, sampler: Any) -> Tensor:
        """The family's sampling algorithm, called by :meth:`sample` after its checks (same arguments and result)."""
        raise NotImplementedError


class Family(Sampling):
    """Base class of a trainable family (see the module docstring).

    Class attributes a family sets: ``name`` (registry name; an instance may
    set its own, e.g. a preset), ``family``, ``curves`` (the loss-dict entries
    recorded as loss curves; None: all), ``rng`` (``"global"``: the global torch
    RNG draws the minibatches and the loss's noise, ``"generator"``: one seeded
    generator, see :func:`~baselines.training.train`), ``clip_grad`` (gradient
    norm limit or None), ``betas`` (Adam's). Instance attributes: ``net`` (the
    network), ``ema`` (an :class:`~baselines.training.EMA` of it, or None),
    ``lr`` (Adam's learning rate, ``budget.lr`` overrides it),
    ``weight_decay``, ``data_info``, ``device``, ``last_nfe`` (network
    evaluations per sample of the last ``sample`` call; None where not counted).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    curves: ClassVar[tuple[str, ...] | None] = None
    rng: ClassVar[Literal["generator", "global"]] = "generator"
    clip_grad: ClassVar[float | None] = None
    betas: ClassVar[tuple[float, float]] = (0.9, 0.999)

    net: nn.Module
    ema: EMA | None = None
    last_nfe: int | None = None  # set by ``sample`` where the family counts its network evaluations

    def __init__(self, info: DataInfo, *, lr: float = 1e-3, weight_decay: float = 0.0, device: str | torch.device | None = None) -> None:
        self.data_info = info
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = pick_device(device)
        self._fitted = False

    # -- identity ---------------------------------------------------------------------
    def info_fields(self) -> dict[str, Any]:
        """Fields of :attr:`info` beyond name, family, shape and the parameter counts (e.g. ``likelihood``)."""
        return {}

    @property
    def info(self) -> GeneratorInfo:
        n, t = count_parameters(self.net)
        fields: dict[str, Any] = {"name": self.name, "family": self.family, "shape": tuple(self.data_info.shape), "n_params": n, "n_trainable": t}
        return GeneratorInfo(**{**fields, **self.info_fields()})

    # -- checks -----------------------------------------------------------------------
    def check_x(self, x: Any, what: str = "x") -> Tensor:
        """``x`` as float32 (N, *shape) on the CPU, checked (:func:`check_images`)."""
        return check_images(self.name, x, self.data_info, what)

    # -- training ---------------------------------------------------------------------
    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> Tensor | dict[str, Tensor]:
        """The training objective on one minibatch: a scalar, or a dict whose ``"loss"`` is minimised."""
        raise NotImplementedError

    def prepare(self, data: TrainData) -> tuple[Tensor, Tensor | None]:
        """The training examples and labels the loop draws minibatches from (default: the checked data, no labels).
        A family that standardizes its data sets the statistics here."""
        return self.check_x(data.x, "training data"), None

    def parameters(self) -> list[nn.Parameter]:
        """The parameters training updates (those of ``net`` that require a gradient)."""
        return [p for p in self.net.parameters() if p.requires_grad]

    def make_optimizer(self, budget: Budget) -> torch.optim.Optimizer:
        """Adam on :meth:`parameters` with ``budget.lr`` (else ``lr``), ``betas`` and ``weight_decay``."""
        return torch.optim.Adam(self.parameters(), lr=budget.lr or self.lr, betas=self.betas, weight_decay=self.weight_decay)

    def warmup(self, budget: Budget) -> int:
        """Steps of linear LR warm-up (default none)."""
        return 0

    def before_fit(self, x: Tensor, budget: Budget) -> None:
        """Hook before the loop starts (e.g. a replay buffer, a schedule that depends on ``budget.steps``)."""

    def after_fit(self, x: Tensor) -> None:
        """Hook after the loop, the network in eval mode (e.g. fit a latent density); runs even on an empty budget."""

    def cleanup_fit(self) -> None:
        """Hook that runs after the loop whether or not it raised (e.g. free a replay buffer)."""

    def fit(self, data: TrainData, budget: Budget) -> TrainReport:
        """Train with the one loop on :meth:`loss`; ``wall_time_s`` counts from the call, :meth:`after_fit` included."""
        t0 = time.perf_counter()
        x, y = self.prepare(data)
        self.before_fit(x, budget)
        opt = self.make_optimizer(budget)
        self.net.train()
        try:
            report = train(
                self.name, budget, x, y, loss=self.loss, optimizer=opt, params=self.parameters() if self.clip_grad else None,
                clip_grad=self.clip_grad, warmup=self.warmup(budget), ema=self.ema, curves=self.curves, rng=self.rng, started=t0,
            )  # fmt: skip
        finally:
            self.cleanup_fit()
            self.net.eval()
        self.after_fit(x)
        self._fitted = True
        report.wall_time_s = time.perf_counter() - t0
        return report

    # -- state ------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """State beyond the network and its average (tensors and plain Python)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""

    def state_dict(self) -> dict[str, Any]:
        """The network's weights, the weight average (with its update count) when the family keeps one, whether
        the model was fitted, and :meth:`extra_state`: CPU tensors and plain Python (``torch.load(weights_only=True)``)."""
        cpu = lambda sd: {k: v.detach().cpu() for k, v in sd.items()}  # noqa: E731
        state: dict[str, Any] = {"net": cpu(self.net.state_dict()), "fitted": self._fitted}
        if self.ema is not None:
            state.update(ema=cpu(self.ema.module.state_dict()), ema_n=self.ema.n)
        return {**state, **self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state.get("ema", state["net"]))
            self.ema.n = int(state.get("ema_n", 0))
        self.load_extra_state(state)
        self._fitted = bool(state.get("fitted", True))
        self.net.eval()
