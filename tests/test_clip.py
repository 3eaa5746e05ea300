"""The embedded digits CLIP, pretrained open_clip loading, prompt -> label mapping.

The first test trains digits-clip once (about 20-60 s on one CPU thread) unless
it is already cached under $GENBENCH_CACHE / ~/.cache/genbench.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import bench.data  # noqa: F401  (registers the digits training data)
from genbench.cache import read_artifact
from metrics.clip import (
    MIN_ZERO_SHOT_ACCURACY,
    ClipError,
    DigitsClip,
    class_captions,
    load_clip,
    prompts_to_labels,
    train_digits_clip,
    training_captions,
)


def _digits_split():
    """The digits split (stratified 80/20, seed 0), rebuilt from scikit-learn."""
    d = load_digits()
    x, y = d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)


@pytest.fixture(scope="module")
def clip() -> DigitsClip:
    return load_clip()


def test_zero_shot_accuracy_recorded_and_above_threshold(clip):
    acc = clip.report["zero_shot_accuracy"]
    assert acc >= MIN_ZERO_SHOT_ACCURACY
    assert clip.report["zero_shot_split"] == "test" and clip.report["zero_shot_n"] == 360
    # recompute from the cached weights: the stored number is the model's
    from bench.data import load

    d = load("digits")
    again = clip.zero_shot_report(d.test_x, d.test_y)["zero_shot_accuracy"]
    assert again == pytest.approx(acc, abs=1e-6)
    assert clip.settings()["clip_model"] == "digits-clip"
    assert len(clip.weights_hash) == 16


def test_class_captions_are_the_data_set_captions():
    from bench.data import load

    assert class_captions() == load("digits").info.captions
    assert "seven" in training_captions(7) and "the number 7" in training_captions(7)
    with pytest.raises(ValueError):
        training_captions(10)


def test_embeddings_are_unit_vectors_and_match_their_class(clip):
    from bench.data import load

    d = load("digits")
    img = clip.encode_images(d.test_x[:40])
    assert img.shape == (40, 64)
    torch.testing.assert_close(img.norm(dim=1), torch.ones(40))
    txt = clip.encode_text(list(class_captions()))
    own = (img * txt[d.test_y[:40]]).sum(1)
    other = (img @ txt.T).sum(1) - own
    assert own.mean() > other.mean() / 9 + 0.3


def test_cache_is_reused(clip, tmp_path):
    """The memoized model is the stored artifact's: the packaged weights when shipped, else the trained cache file.

    (It used to look only at ~/.cache, which exists only on machines that trained digits-clip
    before its weights were packaged, so it failed on a fresh machine.)
    """
    path = Path(clip.weights_path)
    assert path.exists()
    meta = read_artifact(path)["report"]  # one checksummed genbench.cache artifact: weights + report
    assert meta["weights_hash"] == clip.weights_hash
    assert load_clip() is clip  # memoized per process
    missing = tmp_path / "nope.pt"
    with pytest.raises(ClipError, match="not found"):
        load_clip("digits-clip", pretrained=missing)


def test_training_is_deterministic():
    a, tok_a, rep_a = train_digits_clip(steps=3, batch_size=16, train_data=_digits_split)
    b, tok_b, rep_b = train_digits_clip(steps=3, batch_size=16, train_data=_digits_split)
    assert tok_a.bpe_ids == tok_b.bpe_ids
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    assert rep_a["zero_shot_accuracy"] == rep_b["zero_shot_accuracy"]


def test_prompts_to_labels(clip):
    caps = class_captions()
    assert prompts_to_labels(list(caps), caps).tolist() == list(range(10))
    prompts = ["the number 7", "seven", "a picture of a 3", "a handwritten digit nine", "a drawing of the digit two"]
    assert prompts_to_labels(prompts, caps).tolist() == [7, 7, 3, 9, 2]
    assert prompts_to_labels([], caps).numel() == 0
    with pytest.raises(ValueError, match="captions"):
        prompts_to_labels(["seven"], [])
    with pytest.raises(TypeError, match="single string"):
        prompts_to_labels("seven", caps)


def test_bad_images_rejected(clip):
    with pytest.raises(ValueError, match="1x8x8"):
        clip.encode_images(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clip.encode_images(torch.rand(2, 1, 8, 8) * 2)
    with pytest.raises(ValueError, match="NaN"):
        clip.encode_images(torch.full((1, 1, 8, 8), float("nan")))


# ------------------------------------------------------------------------------ pretrained open_clip
def test_pretrained_model_without_weights_says_how_to_provide_them(monkeypatch):
    monkeypatch.delenv("GENBENCH_CLIP_WEIGHTS", raising=False)
    with pytest.raises(ClipError, match=r"pretrained=/path/to/weights.*never downloads"):
        load_clip("ViT-B-32")
    with pytest.raises(ClipError, match="not found"):
        load_clip("ViT-B-32", pretrained="/nonexistent/open_clip_pytorch_model.bin")
    with pytest.raises(ClipError, match="unknown open_clip model"):
        load_clip("ViT-Nope-1")


def test_pretrained_model_from_local_checkpoint(tmp_path):
    """A tiny open_clip config registered at runtime, saved and loaded back from a file."""
    import open_clip

    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / "genbench-test-tiny.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path)
    torch.manual_seed(0)
    ref = open_clip.create_model("genbench-test-tiny")
    ckpt = tmp_path / "tiny.pt"
    torch.save(ref.state_dict(), ckpt)
    model = load_clip("genbench-test-tiny", pretrained=ckpt)
    for k, v in ref.state_dict().items():
        assert torch.equal(model.model.state_dict()[k], v), k
    emb = model.encode_images(torch.rand(3, 1, 8, 8))  # grey 8x8 -> 3x16x16
    assert emb.shape == (3, 16)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    assert model.encode_text(["a handwritten digit nine"]).shape == (1, 16)
    assert model.name == "genbench-test-tiny:tiny.pt"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ClipError, match="could not load"):
        load_clip("genbench-test-tiny", pretrained=bad)
