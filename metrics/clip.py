"""CLIP models for the CLIP score and for prompt conditioning.

Two kinds of model sit behind one small interface (:class:`ClipModel`:
``encode_images``, ``encode_text``, ``name``, ``weights_hash``):

* ``digits-clip`` (the offline default): a small CLIP built with
  open-clip-torch's own :class:`open_clip.model.CLIP` class (a 3-layer ViT with
  4x4 patches on the 8x8 digits, a 2-layer causal text transformer) and
  open_clip's BPE tokenizer. It is trained contrastively on the digits train
  split (the training data ``"digits"`` that ``bench.data`` registers, see
  :func:`metrics.extractors.training_data`), each image paired with varied
  captions of its class ("a handwritten digit seven", "the number 7", "a
  picture of a 7", "seven", ...). Training is deterministic (seed 0), takes
  about 20-50 s on one CPU thread, and is cached with its report as one
  checksummed :mod:`genbench.cache` artifact
  ``default_cache_dir()/extractors/digits-clip-v{VERSION}.pt`` (damage means
  a retrain, never use); the weights hash enters every record. Zero-shot
  classification accuracy of the real *test* digits from the class captions
  ("a handwritten digit {word}", the data set's captions) is recorded and must
  be at least :data:`MIN_ZERO_SHOT_ACCURACY` (0.90), else :class:`ClipError`.

  Vocabulary: the text encoder keeps one embedding row per BPE token that
  occurs in its training captions (about 30) instead of open_clip's 49,408;
  the BPE ids come from open_clip's ``SimpleTokenizer`` and are then mapped
  to that compact vocabulary, unknown tokens to ``<unk>``. (A full-size token
  table made the optimizer step 5x slower and held 3M untrained rows.)

* A pretrained open_clip model (``ViT-B-32`` ...), used when the user names a
  model *and* a local checkpoint: ``load_clip("ViT-B-32",
  pretrained="/path/open_clip_pytorch_model.bin")``. Nothing is downloaded;
  without a checkpoint :class:`ClipError` says how to provide one. Images are
  resized (bicubic) to the model's input size, grey images repeated to 3
  channels, and normalized with the model's mean/std.

Prompt conditioning: :func:`prompts_to_labels` maps free text to the class
whose caption is nearest (cosine) under the CLIP text encoder (wrapping a
class-conditional generator for ``sample(prompts=...)`` lives in
``baselines/prompting.py``).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genbench.cache import MAGIC as ARTIFACT_MAGIC
from genbench.cache import read_artifact, write_artifact

from .clip_model import ClipError, ClipModel
from .clip_open import OpenClipModel, load_open_clip
from .extractors import default_cache_dir, load_failure_reason, shipped_weights, state_hash, training_data

__all__ = [
    "ClipError",
    "ClipModel",
    "DigitsClip",
    "OpenClipModel",
    "load_clip",
    "prompts_to_labels",
    "class_captions",
    "training_captions",
    "DIGIT_WORDS",
    "CLIP_DIGITS_VERSION",
    "MIN_ZERO_SHOT_ACCURACY",
]

CLIP_DIGITS_VERSION = 1  # bump when the architecture, captions or recipe change
MIN_ZERO_SHOT_ACCURACY = 0.90
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Caption templates used in training: {w} is the number word, {d} the numeral.
TRAIN_TEMPLATES = (
    "a handwritten digit {w}",
    "the number {d}",
    "a picture of a {d}",
    "{w}",
    "the digit {d}",
    "a photo of the number {w}",
    "handwritten {w}",
    "an image of the digit {w}",
    "a {d}",
    "number {w}",
    "{d}",
    "a handwritten {d}",
    "the number {w}",
    "a picture of the digit {w}",
)
# Never seen in training ("drawing" is not in the vocabulary): reported as a
# generalization check beside the class-caption accuracy.
HELD_OUT_TEMPLATE = "a drawing of the digit {w}"
CONTEXT_LENGTH = 12


def class_captions() -> tuple[str, ...]:
    """The class captions of the digits data set ("a handwritten digit {word}")."""
    return tuple(TRAIN_TEMPLATES[0].format(w=w, d=i) for i, w in enumerate(DIGIT_WORDS))


def training_captions(label: int) -> list[str]:
    """All training captions of digit ``label`` (0-9)."""
    if not 0 <= int(label) <= 9:
        raise ValueError(f"digit label must be in 0..9, got {label}")
    return [t.format(w=DIGIT_WORDS[label], d=label) for t in TRAIN_TEMPLATES]


# ------------------------------------------------------------------------------ digits-clip
def _build_digits_clip(vocab_size: int):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=3, width=64, head_width=32, mlp_ratio=2.0, patch_size=4, image_size=8, pool_type="avg")
    text = CLIPTextCfg(context_length=CONTEXT_LENGTH, vocab_size=vocab_size, width=64, heads=2, layers=2, mlp_ratio=2.0)
    return CLIP(embed_dim=64, vision_cfg=vision, text_cfg=text)


class _CompactTokenizer:
    """open_clip's BPE tokenizer followed by a map to a compact vocabulary.

    ids: 0 pad, 1 <unk>, 2 <start_of_text>, 3.. the kept BPE tokens in order,
    ``len(bpe_ids) + 3`` <end_of_text> (the largest id: open_clip pools the
    text features at the argmax token, which must be the end token).
    """

    def __init__(self, bpe_ids: Sequence[int]) -> None:
        from open_clip.tokenizer import SimpleTokenizer

        self.bpe = SimpleTokenizer(context_length=CONTEXT_LENGTH)
        self.bpe_ids = [int(i) for i in bpe_ids]
        self.vocab_size = len(self.bpe_ids) + 4
        lut = torch.ones(max(self.bpe.vocab_size, self.bpe.eot_token_id + 1), dtype=torch.long)  # default <unk>
        lut[0] = 0
        lut[self.bpe.sot_token_id] = 2
        lut[self.bpe.eot_token_id] = self.vocab_size - 1
        for j, i in enumerate(self.bpe_ids):
            lut[i] = 3 + j
        self.lut = lut

    @classmethod
    def from_corpus(cls, texts: Sequence[str]) -> _CompactTokenizer:
        from open_clip.tokenizer import SimpleTokenizer

        bpe = SimpleTokenizer(context_length=CONTEXT_LENGTH)
        special = {0, bpe.sot_token_id, bpe.eot_token_id}
        ids = sorted(set(bpe(list(texts)).unique().tolist()) - special)
        return cls(ids)

    def __call__(self, texts: Sequence[str]) -> Tensor:
        raw = self.bpe(list(texts))  # (N, CONTEXT_LENGTH); long captions are truncated with an end token
        return self.lut[raw]


def _prep_digits(x: Tensor) -> Tensor:
    """[0, 1] grey 8x8 -> the 3-channel, zero-centred input of digits-clip."""
    return ((x - 0.5) / 0.5).expand(-1, 3, -1, -1)


def _shift(x: Tensor, g: torch.Generator) -> Tensor:
    pad = F.pad(x, (1, 1, 1, 1))
    dx, dy = torch.randint(0, 3, (2,), generator=g).tolist()
    return pad[:, :, dy : dy + 8, dx : dx + 8]


def _contrastive_loss(img: Tensor, txt: Tensor, y_img: Tensor, y_txt: Tensor, scale: Tensor) -> Tensor:
    """Symmetric InfoNCE with several positives (all captions/images of the same class)."""
    logits = scale * img @ txt.T
    pos = (y_img[:, None] == y_txt[None]).float()
    i2t = -(pos / pos.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    t2i = -(pos / pos.sum(0, keepdim=True).clamp(min=1) * logits.log_softmax(0)).sum(0).mean()
    return (i2t + t2i) / 2


def train_digits_clip(
    steps: int = 800, batch_size: int = 128, captions_per_class: int = 3, lr: float = 3e-3, seed: int = 0, train_data: Any = None
):
    """Deterministic contrastive training on the digits train split.

    Runs single-threaded (like digits-cnn): multi-threaded CPU reductions are
    not bit-stable across thread counts, and the weights hash must not depend
    on the machine.

    Each step: ``batch_size`` train images (random 1-pixel shifts) against
    ``captions_per_class`` random training captions of every class (10 *
    ``captions_per_class`` texts), symmetric InfoNCE where every caption of
    an image's class is a positive. AdamW, one-cycle learning rate.

    ``train_data``: the digits split (a :class:`~metrics.extractors.LabeledSplit`,
    a provider or a ``train_test_split`` 4-tuple); default: the registered
    training data ``"digits"`` (``bench.data`` registers it).

    Returns ``(model, tokenizer, report)``; ``report`` holds the zero-shot
    accuracies on the test split and the training time.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_digits_clip(steps, batch_size, captions_per_class, lr, seed, train_data)
    finally:
        torch.set_num_threads(threads)


def _train_digits_clip(steps: int, batch_size: int, captions_per_class: int, lr: float, seed: int, train_data: Any):
    data = training_data("digits", train_data, for_extractor="digits-clip")
    xtr, xte, ytr, yte = data.x_train, data.x_test, data.y_train, data.y_test
    n_templates = len(TRAIN_TEMPLATES)
    if not 1 <= captions_per_class <= n_templates:
        raise ValueError(f"captions_per_class must be in 1..{n_templates}")
    all_caps = [c for k in range(10) for c in training_captions(k)]
    tok = _CompactTokenizer.from_corpus(all_caps)
    tokens = tok(all_caps).view(10, n_templates, CONTEXT_LENGTH)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _build_digits_clip(tok.vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    xt, yt = torch.as_tensor(xtr)[:, None], torch.as_tensor(ytr)
    classes = torch.arange(10)
    y_txt = classes.repeat_interleave(captions_per_class)
    losses: list[float] = []
    t0 = time.perf_counter()
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (batch_size,), generator=g)
        pick = torch.stack([torch.randperm(n_templates, generator=g)[:captions_per_class] for _ in range(10)])
        txt_tokens = tokens[classes[:, None], pick].reshape(-1, CONTEXT_LENGTH)
        img = F.normalize(model.encode_image(_prep_digits(_shift(xt[idx], g))), dim=-1)
        txt = F.normalize(model.encode_text(txt_tokens), dim=-1)
        loss = _contrastive_loss(img, txt, yt[idx], y_txt, model.logit_scale.exp())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    train_s = time.perf_counter() - t0
    model.eval()
    clip = DigitsClip(model, tok)
    report = {
        "version": CLIP_DIGITS_VERSION,
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "captions_per_class": captions_per_class,
        "train_seconds": train_s,
        "torch_threads": torch.get_num_threads(),
        "final_loss": float(np.mean(losses[-50:])),
        **clip.zero_shot_report(torch.as_tensor(xte)[:, None], torch.as_tensor(yte)),
    }
    return model, tok, report


class DigitsClip(ClipModel):
    """The embedded digits CLIP (see module docstring); 1x8x8 images in [0, 1]."""

    name = "digits-clip"

    def __init__(
        self, model, tokenizer: _CompactTokenizer, report: dict[str, Any] | None = None, weights_path: str | None = None
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.report = report or {}
        self.weights_path = weights_path  # the artifact the weights came from (packaged, cache or user's file), like the extractors'
        self.weights_hash = state_hash({**model.state_dict(), "_vocab": torch.tensor(tokenizer.bpe_ids)})

    @property
    def zero_shot_accuracy(self) -> float | None:
        return self.report.get("zero_shot_accuracy")

    def settings(self) -> dict[str, Any]:
        acc = self.zero_shot_accuracy
        return {**super().settings(), "clip_zero_shot_accuracy": round(acc, 4) if acc is not None else None}

    def encode_images(self, x: Tensor, batch_size: int = 512) -> Tensor:
        x = self._check_images(x, self.name)
        if x.shape[1:] != (1, 8, 8):
            raise ValueError(
                f"{self.name} embeds 1x8x8 digits, got images of shape {tuple(x.shape[1:])}; use a pretrained open_clip model for other images"
            )
        with torch.no_grad():
            out = [self.model.encode_image(_prep_digits(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        return F.normalize(torch.cat(out) if out else torch.zeros(0, self.model.text_projection.shape[1]), dim=-1)

    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        prompts = self._check_prompts(prompts)
        with torch.no_grad():
            return F.normalize(self.model.encode_text(self.tokenizer(prompts)), dim=-1)

    def zero_shot_report(self, x: Tensor, y: Tensor) -> dict[str, Any]:
        """Zero-shot accuracies of images ``x`` with labels ``y`` (0-9)."""
        img = self.encode_images(x)
        y = torch.as_tensor(y)

        def acc(captions: Sequence[str]) -> float:
            return float(((img @ self.encode_text(captions).T).argmax(1) == y).float().mean())

        per_template = [acc([t.format(w=w, d=i) for i, w in enumerate(DIGIT_WORDS)]) for t in TRAIN_TEMPLATES]
        return {
            "zero_shot_accuracy": acc(class_captions()),
            "zero_shot_captions": TRAIN_TEMPLATES[0],
            "zero_shot_n": len(y),
            "zero_shot_split": "test",
            "zero_shot_accuracy_mean_over_templates": float(np.mean(per_template)),
            "zero_shot_accuracy_held_out_template": acc([HELD_OUT_TEMPLATE.format(w=w) for w in DIGIT_WORDS]),
        }


def _digits_clip_path(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "extractors" / f"digits-clip-v{CLIP_DIGITS_VERSION}.pt"


def _clip_from_state(state: dict[str, Tensor]):
    state = dict(state)
    tok = _CompactTokenizer(state.pop("_vocab").tolist())
    model = _build_digits_clip(tok.vocab_size)
    model.load_state_dict(state)
    return model, tok


def _load_cached_digits_clip(path: Path):
    """(model, tokenizer, report) from the checksummed artifact at ``path``, or None (absent, or damaged: warned)."""
    if not path.is_file():
        return None
    try:
        obj = read_artifact(path)
        model, tok = _clip_from_state(obj["state_dict"])
        return model, tok, dict(obj.get("report") or {})
    except Exception as e:  # checksum mismatch, old plain file, wrong keys: retrain
        warnings.warn(f"digits-clip: cached weights {path} are unreadable ({type(e).__name__}); retraining", stacklevel=3)
        return None


def _load_or_train_digits_clip(
    weights: str | Path | None = None, cache_dir: str | Path | None = None, train_data: Any = None
) -> DigitsClip:
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ClipError(f"digits-clip weights not found at {path}; omit weights= to train and cache them")
        try:
            with open(path, "rb") as f:
                is_artifact = f.read(len(ARTIFACT_MAGIC)) == ARTIFACT_MAGIC
            obj = read_artifact(path) if is_artifact else {"state_dict": torch.load(path, map_location="cpu", weights_only=True)}
            model, tok = _clip_from_state(obj["state_dict"])
        except Exception as e:
            raise ClipError(f"digits-clip: cannot load weights from {path} ({type(e).__name__}: {load_failure_reason(e)}); loaded with weights_only=True, no code runs") from e
        report = dict(obj.get("report") or {})
    else:
        path = shipped_weights("digits-clip", CLIP_DIGITS_VERSION) if train_data is None else None  # packaged: the same on every machine
        cached = _load_cached_digits_clip(path) if path is not None else None
        if cached is None:
            path = _digits_clip_path(cache_dir)
            cached = _load_cached_digits_clip(path)
        if cached is not None:
            model, tok, report = cached
        else:
            model, tok, report = train_digits_clip(train_data=train_data)
            report["weights_hash"] = DigitsClip(model, tok, report).weights_hash
            write_artifact(path, {"state_dict": {**model.state_dict(), "_vocab": torch.tensor(tok.bpe_ids)}, "report": report}, "torch")
    clip = DigitsClip(model, tok, report, weights_path=str(path))
    acc = report.get("zero_shot_accuracy")
    if acc is None or acc < MIN_ZERO_SHOT_ACCURACY:
        shown = "missing" if acc is None else f"{acc:.3f}"
        raise ClipError(
            f"digits-clip zero-shot accuracy on the test digits is {shown}, below the required {MIN_ZERO_SHOT_ACCURACY}; "
            f"delete {path} to retrain"
        )
    return clip


_MODELS: dict[tuple, ClipModel] = {}


def load_clip(
    model: str = "digits-clip", pretrained: str | Path | None = None, cache_dir: str | Path | None = None, device: str | None = None
) -> ClipModel:
    """The CLIP model ``model`` (built once per process and arguments).

    Args:
        model: ``"digits-clip"`` (embedded, offline default) or an open_clip
            model name such as ``"ViT-B-32"``.
        pretrained: for ``digits-clip``, an optional weights file; for open_clip
            models, the path of a local checkpoint (required; ``$GENBENCH_CLIP_WEIGHTS``
            is the fallback).
        cache_dir: genbench cache root (default :func:`default_cache_dir`).
        device: device of a pretrained model (the embedded one runs on CPU).
    """
    key = (model, str(pretrained), str(cache_dir or default_cache_dir()), str(device))
    if key not in _MODELS:
        if model == "digits-clip":
            _MODELS[key] = _load_or_train_digits_clip(pretrained, cache_dir)
        else:
            _MODELS[key] = load_open_clip(model, pretrained, device)
    return _MODELS[key]


# ------------------------------------------------------------------------------ prompts -> labels
def prompts_to_labels(prompts: Sequence[str], captions: Sequence[str], clip: ClipModel | None = None) -> Tensor:
    """Map each prompt to the class whose caption is nearest (cosine) under the
    CLIP text encoder. Returns labels (N,) long, indices into ``captions``.

    ``clip`` defaults to the embedded ``digits-clip``.
    """
    captions = list(captions)
    if not captions:
        raise ValueError("prompts_to_labels needs the class captions of the data set (DataInfo.captions is empty)")
    prompts = ClipModel._check_prompts(prompts)
    if not prompts:
        return torch.zeros(0, dtype=torch.long)
    clip = clip or load_clip()
    sim = clip.encode_text(prompts) @ clip.encode_text(captions).T
    return sim.argmax(1)
