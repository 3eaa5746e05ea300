"""CLIP score: how well images match their prompts.

    CLIPScore = mean over samples of 100 * max(cos(E_img(x_i), E_txt(p_i)), 0)

(Hessel et al. 2021 use w = 2.5 instead of 100; torchmetrics and most text-to-
image papers use 100. The scale is written into every record.)

For a class-conditional generator the prompt of sample i is the data set's
caption of the label it was conditioned on (``DataInfo.captions[label]``).
Two reference values bracket the scale on the same images:

* ``clip_score`` on the ``data`` row (real held-out images, conditioned labels
  = their true labels): real images with their own captions, the ceiling a
  perfect generator reaches;
* ``clip_score_shuffled``: the same samples scored against a *derangement*
  of their labels (a permutation in which no sample keeps its class), i.e.
  every image with a wrong caption: the floor of a generator that ignores its
  conditioning.

The CLIP model is the embedded ``digits-clip`` unless the suite's settings name
another (``clip_model = "ViT-B-32"``, ``clip_pretrained = "/path/ckpt.bin"``);
see :mod:`metrics.clip`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .clip import ClipModel, load_clip
from .context import EvalContext
from .registry import MetricValue, Output, register_metric

SCALE = "100*max(cos,0)"

__all__ = ["clip_score", "clip_score_images", "derange_labels", "SCALE"]


def clip_score(image_emb: Tensor, text_emb: Tensor) -> tuple[Tensor, float]:
    """Per-sample ``100 * max(cos, 0)`` of paired rows, and their mean.

    Args:
        image_emb, text_emb: (N, D) embeddings, row i of one paired with row i
            of the other (normalized here; any scale is fine).
    Returns:
        (scores (N,) float32 in [0, 100], mean score).
    """
    if image_emb.ndim != 2 or text_emb.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    if image_emb.shape != text_emb.shape:
        raise ValueError(f"image and text embeddings must pair up row by row, got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    if len(image_emb) == 0:
        raise ValueError("clip_score of zero samples")
    for what, e in (("image", image_emb), ("text", text_emb)):
        bad = int((~torch.isfinite(e)).any(1).sum())
        if bad:
            raise ValueError(f"clip_score: {bad} of {len(e)} {what} embeddings contain NaN or inf")
    cos = torch.nn.functional.cosine_similarity(image_emb.float(), text_emb.float(), dim=1)
    scores = 100 * cos.clamp(min=0)
    return scores, float(scores.mean())


def clip_score_images(images: Tensor, prompts: Sequence[str], clip: ClipModel | None = None) -> tuple[Tensor, float]:
    """CLIP score of images (NCHW in [0, 1]) with one prompt each, or one prompt for all."""
    clip = clip or load_clip()
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if len(prompts) == 1 and len(images) != 1:
        prompts = prompts * len(images)
    if len(prompts) != len(images):
        raise ValueError(f"got {len(prompts)} prompts for {len(images)} images")
    img = clip.encode_images(images)
    txt_unique, inv = np.unique(np.array(prompts, dtype=object).astype(str), return_inverse=True)
    txt = clip.encode_text(list(txt_unique))[torch.as_tensor(inv.reshape(-1))]
    return clip_score(img, txt)


def derange_labels(labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A random permutation of ``labels`` in which no position keeps its class.

    Raises ``ValueError`` when impossible (one class holds more than half of
    the samples).
    """
    y = torch.as_tensor(labels).long().flatten()
    n = len(y)
    if n == 0:
        return y.clone()
    counts = torch.bincount(y - y.min())
    if int(counts.max()) * 2 > n:
        raise ValueError(
            f"cannot derange labels: class {int(counts.argmax() + y.min())} holds {int(counts.max())} of {n} samples (more than half)"
        )
    perm = torch.randperm(n, generator=generator)
    s = y[perm].tolist()
    t = y.tolist()
    order = torch.randperm(n, generator=generator).tolist()
    for i in range(n):
        if s[i] != t[i]:
            continue
        for j in order:  # swap with a position where both stay wrong
            if s[j] != t[i] and s[i] != t[j]:
                s[i], s[j] = s[j], s[i]
                break
        else:  # pragma: no cover - guaranteed by the counting condition above
            raise ValueError("could not find a derangement of the labels")
    return torch.tensor(s, dtype=torch.long)


def _clip_for(ctx: EvalContext) -> ClipModel:
    return load_clip(
        ctx.setting("clip_model", "digits-clip"),
        ctx.setting("clip_pretrained", None),
        device=None if ctx.setting("clip_model", "digits-clip") == "digits-clip" else ctx.device,
    )


def _applies(ctx: EvalContext) -> bool:
    info = ctx.data_info
    if ctx.fake_labels is None or not getattr(info, "captions", ()) or getattr(info, "kind", None) != "image":
        return False
    if ctx.setting("clip_model", "digits-clip") == "digits-clip":
        return tuple(info.shape) == (1, 8, 8)
    return True


def _value(ctx: EvalContext, labels: Tensor, prompt_rule: str, extra_settings: dict) -> MetricValue:
    captions = list(ctx.data_info.captions)
    labels = torch.as_tensor(labels).long().flatten()
    if len(labels) != ctx.n_fake:
        raise ValueError(f"clip_score: {len(labels)} labels for {ctx.n_fake} samples")
    if labels.min() < 0 or labels.max() >= len(captions):
        raise ValueError(
            f"clip_score: labels must be in 0..{len(captions) - 1} (one caption per class), got range [{int(labels.min())}, {int(labels.max())}]"
        )
    clip = _clip_for(ctx)
    scores, mean = clip_score_images(ctx.fake, [captions[i] for i in labels.tolist()], clip)
    n = len(scores)
    se = float(scores.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    interval = (mean - 1.96 * se, mean + 1.96 * se) if math.isfinite(se) else None
    settings = {**clip.settings(), "scale": SCALE, "n": n, "prompt": prompt_rule, "interval": "mean +- 1.96 s.e.", **extra_settings}
    return MetricValue(mean, interval, settings, {"std": float(scores.std(unbiased=True)) if n > 1 else 0.0})


@register_metric(
    "clip_score",
    [Output("clip_score", "CLIPScore", "max")],
    applies=_applies,
    description="CLIP score of the samples with the captions of their conditioning labels, 100*max(cos,0) (metrics/clip_score.py)",
)
def clip_score_metric(ctx: EvalContext) -> dict[str, MetricValue]:
    """CLIP score of the samples with the captions of their conditioning labels, 100*max(cos,0)."""
    return {"clip_score": _value(ctx, ctx.fake_labels, "caption of the conditioning label", {})}


@register_metric(
    "clip_score_shuffled",
    [Output("clip_score_shuffled", "CLIPScore (shuffled captions)", None)],
    applies=_applies,
    description="CLIP score of the same samples with deranged labels (every sample with a wrong caption): the floor of the scale",
)
def clip_score_shuffled_metric(ctx: EvalContext) -> dict[str, MetricValue]:
    """CLIP score of the samples against deranged labels (every caption wrong): the lower bracket."""
    g = torch.Generator().manual_seed(int(ctx.seed))
    wrong = derange_labels(ctx.fake_labels, g)
    return {
        "clip_score_shuffled": _value(
            ctx, wrong, "caption of a wrong label (derangement of the conditioning labels)", {"derangement_seed": int(ctx.seed)}
        )
    }
