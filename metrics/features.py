"""Feature extractors: a registry, with ``raw`` (identity, 2-D data), the
embedded ``digits-cnn`` (offline default for images) and, through
torch-fidelity, ``inception-v3-compat``, ``dinov2`` and ``clip`` (weights from a
local file with ``weights=PATH`` / ``--extractor-weights PATH`` where there is
no network). :func:`register_torch_fidelity` makes ``digits-cnn`` usable inside
``torch_fidelity.calculate_metrics``.

An extractor maps samples (float32 NCHW in [0, 1], or (N, 2) points) to
features (N, D) and, where it is a classifier, to logits (N, classes). Its
``weights_hash`` enters every feature-cache key, so features computed with
other weights are never reused.

``digits-cnn`` is a small CNN trained deterministically on the digits train
split (fixed stratified split, seed 0) and cached under the genbench cache
directory (``$GENBENCH_CACHE`` or ``~/.cache/genbench``). Its penultimate
layer (128-D) feeds FID/KID/PRDC and its logits feed IS and mode counting.
Images with 3 channels (stacked digits) are embedded channel by channel and
concatenated (3 x 128-D); logits are per channel (see ``channel_logits``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

_EXTRACTORS: dict[str, Callable[..., Extractor]] = {}
_INSTANCES: dict[tuple, Extractor] = {}


def default_cache_dir() -> Path:
    """Root of genbench's caches: ``$GENBENCH_CACHE`` or ``~/.cache/genbench``."""
    return Path(os.environ.get("GENBENCH_CACHE", Path.home() / ".cache" / "genbench"))


class ExtractorError(RuntimeError):
    """An extractor cannot run (e.g. missing weights); the message says how to fix it."""


class Extractor:
    """Base class. Subclasses set ``name``, ``dim`` and implement ``_features``."""

    name = "base"
    dim = 0
    has_logits = False
    num_classes = 0  # classes of the logits' classifier head
    weights_hash = "none"
    input_kind = "image"  # or "points"

    def classifier_classes(self, shape: tuple[int, ...]) -> int:
        """Classes of a single-head classifier on samples of ``shape`` (C, H, W), or 0 when the
        logits are not one classifier's (IS, class histograms and class accuracy need one)."""
        return self.num_classes if self.has_logits else 0

    def settings(self) -> dict:
        return {"extractor": self.name, "weights_hash": self.weights_hash, "dim": self.dim}

    # one-entry memo: features and logits of the same tensor come from one forward pass
    def _memo_get(self, x: Tensor, tag: tuple = ()):
        last = getattr(self, "_last", None)
        if last is not None and last[0]() is x and last[1] == (x._version, *tag):
            return last[2]
        return None

    def _memo_set(self, x: Tensor, out, tag: tuple = ()) -> None:
        self._last = (weakref.ref(x), (x._version, *tag), out)

    def _check(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{self.name}: expected a torch.Tensor, got {type(x).__name__}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{self.name}: samples contain {int((~torch.isfinite(x)).sum())} NaN/inf values")
        return x.float()

    def features(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        x = self._check(x)
        with torch.no_grad():
            return torch.cat([self._features(x[i : i + batch_size]).cpu() for i in range(0, len(x), batch_size)])

    def logits(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        raise ExtractorError(f"{self.name} has no classifier logits")

    def _features(self, x: Tensor) -> Tensor:
        raise NotImplementedError


def register_extractor(name: str) -> Callable:
    def deco(factory: Callable[..., Extractor]) -> Callable[..., Extractor]:
        _EXTRACTORS[name] = factory
        return factory

    return deco


def available() -> list[str]:
    return sorted(_EXTRACTORS)


def get_extractor(name: str, **kwargs) -> Extractor:
    """Build (once per process and kwargs) the extractor ``name``."""
    if name not in _EXTRACTORS:
        raise KeyError(f"unknown extractor {name!r}; valid: {', '.join(available())}")
    key = (name, tuple(sorted((k, str(v)) for k, v in kwargs.items())))
    if key not in _INSTANCES:
        _INSTANCES[key] = _EXTRACTORS[name](**kwargs)
    return _INSTANCES[key]


# ------------------------------------------------------------------------------ raw
class RawExtractor(Extractor):
    """Identity: the samples themselves, flattened (for 2-D data)."""

    name = "raw"
    input_kind = "points"
    weights_hash = "identity"

    def _features(self, x: Tensor) -> Tensor:
        return x.reshape(len(x), -1)


register_extractor("raw")(RawExtractor)


# ------------------------------------------------------------------------------ digits-cnn
DIGITS_CNN_VERSION = 2  # bump when the architecture or training recipe changes


def digits_split(test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn digits as ([0,1] float32 (N,8,8), labels), fixed stratified split.

    The single definition of the digits split, shared with ``bench.data``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)


class DigitsNet(nn.Module):
    """Small CNN for 1x8x8 digits: 128-D penultimate features, 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(256, 128), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.body(x)
        return f, self.head(f)


def _shift_augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Random integer shifts of up to 1 pixel (zero padding)."""
    pad = nn.functional.pad(x, (1, 1, 1, 1))
    dx, dy = torch.randint(0, 3, (2,), generator=g).tolist()
    return pad[:, :, dy : dy + 8, dx : dx + 8]


def train_digits_cnn(epochs: int = 40, seed: int = 0) -> tuple[DigitsNet, dict]:
    """Deterministic training on the digits train split; returns (net, report).

    Runs single-threaded: multi-threaded CPU reductions are not bit-stable
    across thread counts, and the weights hash must not depend on the machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_digits_cnn(epochs, seed)
    finally:
        torch.set_num_threads(threads)


def _train_digits_cnn(epochs: int, seed: int) -> tuple[DigitsNet, dict]:
    xtr, xte, ytr, yte = digits_split()
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = DigitsNet()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    xt, yt = torch.as_tensor(xtr)[:, None], torch.as_tensor(ytr)
    t0 = time.perf_counter()
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            _, logits = net(_shift_augment(xt[idx], g))
            loss = nn.functional.cross_entropy(logits, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(torch.as_tensor(xte)[:, None])[1].argmax(1) == torch.as_tensor(yte)).float().mean().item()
    return net, {
        "test_accuracy": acc,
        "epochs": epochs,
        "seed": seed,
        "train_seconds": time.perf_counter() - t0,
        "version": DIGITS_CNN_VERSION,
    }


def _hash_state(state: dict) -> str:
    buf = io.BytesIO()
    for k in sorted(state):
        buf.write(k.encode())
        buf.write(state[k].detach().cpu().contiguous().numpy().tobytes())
    return hashlib.sha256(buf.getvalue()).hexdigest()[:16]


class DigitsCNNExtractor(Extractor):
    """Embedded classifier-based extractor for 8x8 digits (offline default)."""

    name = "digits-cnn"
    dim = 128
    has_logits = True
    num_classes = 10
    MIN_ACCURACY = 0.95

    def classifier_classes(self, shape: tuple[int, ...]) -> int:
        """10 digit classes for 1-channel digits; 0 for stacked digits (logits are per channel)."""
        return 10 if tuple(shape)[:1] == (1,) else 0

    def __init__(self, weights: str | None = None, cache_dir: str | Path | None = None) -> None:
        self.net = DigitsNet()
        path = Path(weights) if weights else Path(cache_dir or default_cache_dir()) / "extractors" / f"digits-cnn-v{DIGITS_CNN_VERSION}.pt"
        meta_path = path.with_suffix(".json")
        if path.exists():
            self.net.load_state_dict(torch.load(path, weights_only=True))
            self.report = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        else:
            if weights:
                raise ExtractorError(f"digits-cnn weights not found at {path}")
            self.net, self.report = train_digits_cnn()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(self.net.state_dict(), tmp)
            os.replace(tmp, path)
            meta_path.write_text(json.dumps(self.report, indent=2))
        self.net.eval()
        self.weights_hash = _hash_state(self.net.state_dict())
        acc = self.report.get("test_accuracy")
        if acc is not None and acc < self.MIN_ACCURACY:
            raise ExtractorError(f"digits-cnn test accuracy {acc:.3f} is below {self.MIN_ACCURACY}; delete {path} to retrain")

    @property
    def test_accuracy(self) -> float | None:
        return self.report.get("test_accuracy")

    def settings(self) -> dict:
        return {**super().settings(), "test_accuracy": self.test_accuracy}

    def _check(self, x: Tensor) -> Tensor:
        x = super()._check(x)
        if x.ndim != 4 or x.shape[2:] != (8, 8):
            raise ValueError(f"digits-cnn expects (N, C, 8, 8) images, got shape {tuple(x.shape)}")
        if x.min() < 0 or x.max() > 1:
            raise ValueError(f"digits-cnn expects images in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
        return x

    def _per_channel(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n, c = x.shape[:2]
        f, lg = self.net(x.reshape(n * c, 1, 8, 8))
        return f.reshape(n, -1), lg.reshape(n, c, -1)

    def _features(self, x: Tensor) -> Tensor:
        return self._per_channel(x)[0]

    def _both(self, x: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
        """(features (N, C*128), channel logits (N, C, 10)) from one pass, memoised for the last tensor."""
        out = self._memo_get(x)
        if out is None:
            xc = self._check(x)
            with torch.no_grad():
                parts = [self._per_channel(xc[i : i + batch_size]) for i in range(0, len(xc), batch_size)]
            out = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
            self._memo_set(x, out)
        return out

    def features(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        return self._both(x, batch_size)[0]

    def channel_logits(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Logits per channel: (N, C, 10)."""
        return self._both(x, batch_size)[1]

    def logits(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Logits (N, 10) for single-channel digits; for C channels, (N, C*10)."""
        return self.channel_logits(x, batch_size).reshape(len(x), -1)


register_extractor("digits-cnn")(DigitsCNNExtractor)


# ------------------------------------------------------------------------------ torch-fidelity extractors
def to_uint8_rgb(x: Tensor) -> Tensor:
    """float NCHW in [0, 1] -> uint8 NCHW 0-255 with 3 channels (grey repeated): torch-fidelity's input."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, 1|3, H, W) images, got shape {tuple(x.shape)}")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"expected images in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
    u = (x * 255).round_().to(torch.uint8)
    return u.expand(-1, 3, -1, -1).contiguous() if u.shape[1] == 1 else u


_FILE_HASHES: dict[tuple, str] = {}


def file_hash(path: str | Path) -> str:
    """sha256 (first 16 hex digits) of a file, memoised per (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()[:16]
    return _FILE_HASHES[key]


def downloads_allowed() -> bool:
    """False when ``$GENBENCH_OFFLINE`` is set (to anything but 0/empty)."""
    return os.environ.get("GENBENCH_OFFLINE", "0") in ("", "0")


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


class FidelityExtractor(Extractor):
    """An extractor run through one of torch-fidelity's feature extractors.

    Images are given to it as torch-fidelity expects them: uint8 0-255, 3
    channels (grey repeated), resized inside the extractor (TF1-compatible
    bilinear). Weights: ``weights=PATH`` (the CLI's ``--extractor-weights``),
    else the file torch-fidelity expects in ``<torch hub dir>/checkpoints/``,
    else a download (unless ``$GENBENCH_OFFLINE`` is set or ``download=False``).
    Missing weights raise :class:`ExtractorError` saying where to get them.

    Subclasses set ``name``, ``variants`` (torch-fidelity names), ``default_variant``,
    ``feature_layer``, ``logits_layer`` and implement ``_weights_source`` and ``_build``.
    """

    variants: tuple[str, ...] = ()
    default_variant = ""
    feature_layer = ""
    logits_layer: str | None = None
    input_size = 0

    def __init__(self, weights: str | Path | None = None, variant: str | None = None, device: str | None = None,
                 batch_size: int = 64, download: bool = True) -> None:  # fmt: skip
        self.variant = variant or self.default_variant
        if self.variant not in self.variants:
            raise ExtractorError(f"{self.name}: unknown variant {self.variant!r}; valid: {', '.join(self.variants)}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size
        path = self._resolve_weights(weights, download)
        try:
            self.module = self._build(path)
        except ExtractorError:
            raise
        except Exception as e:  # a wrong or corrupt file: say which and how to get the right one
            raise ExtractorError(f"{self.name}: cannot load weights from {path} ({type(e).__name__}: {e}). {self.how_to()}") from e
        self.module.requires_grad_(False).eval().to(self.device)
        self.weights_path = str(path)
        self.weights_hash = file_hash(path)

    # --- weights
    def _weights_source(self) -> tuple[str, str]:
        """(url, file name in the torch hub checkpoints dir) of the variant's weights."""
        raise NotImplementedError

    def how_to(self) -> str:
        url, fname = self._weights_source()
        return (
            f"Get {fname} from {url} (on a machine with network), then either copy it to {_hub_checkpoints()}/ "
            f"or pass its path with --extractor-weights PATH (Python: get_extractor({self.name!r}, weights=PATH))."
        )

    def _resolve_weights(self, weights: str | Path | None, download: bool) -> Path:
        url, fname = self._weights_source()
        if weights is not None:
            p = Path(weights).expanduser()
            if not p.is_file():
                raise ExtractorError(f"{self.name}: weights file {p} not found. {self.how_to()}")
            return p
        cached = _hub_checkpoints() / fname
        if cached.is_file():
            return cached
        if not (download and downloads_allowed()):
            raise ExtractorError(f"{self.name}: weights {fname} are not in {cached.parent} and downloads are off. {self.how_to()}")
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{fname}.part{os.getpid()}")
        try:
            torch.hub.download_url_to_file(url, str(tmp), progress=False)
            os.replace(tmp, cached)
        except Exception as e:
            tmp.unlink(missing_ok=True)
            raise ExtractorError(
                f"{self.name}: weights {fname} missing and the download from {url} failed ({type(e).__name__}: {e}). {self.how_to()}"
            ) from e
        return cached

    def _build(self, path: Path) -> nn.Module:
        raise NotImplementedError

    # --- extraction
    def settings(self) -> dict:
        return {**super().settings(), "variant": self.variant, "input": "uint8 RGB 0-255 (grey repeated)",
                "resize": f"bilinear (TF1-compatible) to {self.input_size}"}  # fmt: skip

    def _check(self, x: Tensor) -> Tensor:
        x = super()._check(x)
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"{self.name} expects (N, 1|3, H, W) images, got shape {tuple(x.shape)}")
        if x.min() < 0 or x.max() > 1:
            raise ValueError(f"{self.name} expects images in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
        return x

    def _layers(self) -> list[str]:
        return [self.feature_layer] + ([self.logits_layer] if self.logits_layer else [])

    def _run(self, x: Tensor, batch_size: int | None = None) -> dict[str, Tensor]:
        out = self._memo_get(x)
        if out is not None:
            return out
        x_in, x = x, self._check(x)
        bs = batch_size or self.batch_size
        outs: dict[str, list[Tensor]] = {k: [] for k in self._layers()}
        with torch.no_grad():
            for i in range(0, len(x), bs):
                res = self.module(to_uint8_rgb(x[i : i + bs]).to(self.device))
                for k, v in zip(self._layers(), res):
                    outs[k].append(v.float().cpu())
        out = {k: torch.cat(v) for k, v in outs.items()}
        self._memo_set(x_in, out)
        return out

    def features(self, x: Tensor, batch_size: int | None = None) -> Tensor:
        return self._run(x, batch_size)[self.feature_layer]

    def logits(self, x: Tensor, batch_size: int | None = None) -> Tensor:
        if not self.logits_layer:
            raise ExtractorError(f"{self.name} has no classifier logits")
        return self._run(x, batch_size)[self.logits_layer]


class InceptionExtractor(FidelityExtractor):
    """torch-fidelity's ``inception-v3-compat``: the literature's FID/KID/IS network.

    2048-D pool features (FID, KID, PRDC), 1008 ``logits_unbiased`` (IS), input
    resized to 299 x 299.
    """

    name = "inception-v3-compat"
    variants = ("inception-v3-compat",)
    default_variant = "inception-v3-compat"
    feature_layer = "2048"
    logits_layer = "logits_unbiased"
    dim = 2048
    num_classes = 1008
    has_logits = True
    input_size = 299

    def _weights_source(self) -> tuple[str, str]:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

        return URL_INCEPTION_V3, URL_INCEPTION_V3.rsplit("/", 1)[1]

    def _build(self, path: Path) -> nn.Module:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        return FeatureExtractorInceptionV3(self.variant, self._layers(), feature_extractor_weights_path=str(path), verbose=False)


class ClipExtractor(FidelityExtractor):
    """torch-fidelity's CLIP image encoders (default ``clip-vit-b-32``); weights are OpenAI's TorchScript files."""

    name = "clip"
    variants = ("clip-rn50", "clip-rn101", "clip-rn50x4", "clip-rn50x16", "clip-rn50x64", "clip-vit-b-32",
                "clip-vit-b-16", "clip-vit-l-14", "clip-vit-l-14-336px")  # fmt: skip
    default_variant = "clip-vit-b-32"
    feature_layer = "clip"

    def _weights_source(self) -> tuple[str, str]:
        from torch_fidelity.feature_extractor_clip import MODEL_METADATA, MODEL_URLS

        return MODEL_URLS[self.variant], f"{self.variant}-{MODEL_METADATA[self.variant]['hash']}.pt"

    def _build(self, path: Path) -> nn.Module:
        from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP

        m = FeatureExtractorCLIP(self.variant, [self.feature_layer], feature_extractor_weights_path=str(path), verbose=False)
        self.dim = int(m.model.visual.output_dim)
        self.input_size = int(m.resolution)
        return m


_DINOV2_DIMS = {"dinov2-vit-s-14": 384, "dinov2-vit-b-14": 768, "dinov2-vit-l-14": 1024, "dinov2-vit-g-14": 1536}


class DinoV2Extractor(FidelityExtractor):
    """torch-fidelity's DINOv2 extractor (default ``dinov2-vit-l-14``, the FD_DINOv2 protocol), CLS features.

    The network code comes from the torch hub cache of ``facebookresearch/dinov2``
    when present (exactly torch-fidelity's model), else from timm's equivalent
    ViT (``arch`` in the settings says which; timm resamples the position
    embedding to 224 at load time, so values can differ slightly from the hub
    model's). Weights: the original ``dinov2_vit?14_pretrain.pth``.
    """

    name = "dinov2"
    variants = tuple(_DINOV2_DIMS)
    default_variant = "dinov2-vit-l-14"
    feature_layer = "dinov2"
    input_size = 224

    def _short(self) -> str:
        return "vit" + self.variant.split("-")[2] + "14"  # dinov2-vit-s-14 -> vits14

    def _weights_source(self) -> tuple[str, str]:
        s = self._short()
        return f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{s}/dinov2_{s}_pretrain.pth", f"dinov2_{s}_pretrain.pth"

    def settings(self) -> dict:
        return {**super().settings(), "arch": self.arch}

    def _build(self, path: Path) -> nn.Module:
        from torch_fidelity.feature_extractor_base import FeatureExtractorBase
        from torch_fidelity.feature_extractor_dinov2 import FeatureExtractorDinoV2

        state = torch.load(path, map_location="cpu", weights_only=True)
        hub_repo = Path(torch.hub.get_dir()) / "facebookresearch_dinov2_main"
        if (hub_repo / "hubconf.py").is_file():
            model = torch.hub.load(str(hub_repo), f"dinov2_{self._short()}", source="local", pretrained=False)
            model.load_state_dict(state)
            self.arch = "torch.hub facebookresearch/dinov2"
        else:
            import timm

            size = self.variant.split("-")[2]
            timm_name = {"s": "small", "b": "base", "l": "large", "g": "giant"}[size]
            model = timm.create_model(f"vit_{timm_name}_patch14_dinov2", pretrained=False, num_classes=0, img_size=self.input_size)
            from timm.models.vision_transformer import checkpoint_filter_fn

            model.load_state_dict(checkpoint_filter_fn(state, model))
            self.arch = f"timm vit_{timm_name}_patch14_dinov2"
        m = FeatureExtractorDinoV2.__new__(FeatureExtractorDinoV2)
        FeatureExtractorBase.__init__(m, self.variant, [self.feature_layer])
        m.feature_extractor_internal_dtype = torch.float32
        m.model = model
        self.dim = _DINOV2_DIMS[self.variant]
        return m

    def __init__(self, *args, **kwargs) -> None:
        self.arch = ""
        super().__init__(*args, **kwargs)
        # the network code is part of what the features depend on
        self.weights_hash = hashlib.sha256(f"{self.weights_hash}|{self.arch}".encode()).hexdigest()[:16]


register_extractor("inception-v3-compat")(InceptionExtractor)
register_extractor("clip")(ClipExtractor)
register_extractor("dinov2")(DinoV2Extractor)


# ------------------------------------------------------------------------------ digits-cnn inside torch-fidelity
_TF_DIGITS_CLS = None


def _tf_digits_class():
    """torch-fidelity ``FeatureExtractorBase`` subclass wrapping digits-cnn (built on first use)."""
    global _TF_DIGITS_CLS
    if _TF_DIGITS_CLS is not None:
        return _TF_DIGITS_CLS
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase
    from torch_fidelity.helpers import vassert

    class FidelityDigitsCNN(FeatureExtractorBase):
        """digits-cnn for torch-fidelity: uint8 (N, 1|3, 8, 8) -> "128" features, "logits" (10).

        3-channel input (torch-fidelity's RGB convention) is averaged to grey,
        i.e. grey images repeated over channels give the grey image back.
        """

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            ext = get_extractor("digits-cnn", **({"weights": feature_extractor_weights_path} if feature_extractor_weights_path else {}))
            self.net = DigitsNet()
            self.net.load_state_dict(ext.net.state_dict())
            self.net.eval()

        def forward(self, x):
            vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting image as torch.Tensor with dtype=torch.uint8")
            vassert(x.dim() == 4 and x.shape[1] in (1, 3) and tuple(x.shape[2:]) == (8, 8), f"Input is not Bx(1|3)x8x8: {tuple(x.shape)}")
            x = x.float() / 255.0
            if x.shape[1] == 3:
                x = x.mean(1, keepdim=True)
            f, logits = self.net(x)
            out = {"128": f, "logits": logits}
            return tuple(out[a] for a in self.features_list)

        @staticmethod
        def get_provided_features_list():
            return ("128", "logits")

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return {"isc": "logits", "fid": "128", "kid": "128", "prc": "128"}[metric]

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 1, 8, 8, dtype=torch.uint8)

    _TF_DIGITS_CLS = FidelityDigitsCNN
    return _TF_DIGITS_CLS


def register_torch_fidelity() -> None:
    """Register ``digits-cnn`` with torch-fidelity (idempotent), so that
    ``torch_fidelity.calculate_metrics(..., feature_extractor="digits-cnn")`` works.

    Not done at import time because importing torch-fidelity is slow.
    """
    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if "digits-cnn" not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor("digits-cnn", _tf_digits_class())


class Uint8ImageDataset(torch.utils.data.Dataset):
    """float images (N, 1|3, H, W) in [0, 1] as a torch Dataset of uint8 RGB tensors:
    an input for ``torch_fidelity.calculate_metrics(input1=..., input2=...)``."""

    def __init__(self, x: Tensor) -> None:
        self.x = to_uint8_rgb(torch.as_tensor(x).float())

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Tensor:
        return self.x[i]
