"""Real extractors through torch-fidelity, exercised without the real weights
(error messages, download failure, tiny or random stand-in weights files), and
digits-cnn inside torch-fidelity's calculate_metrics."""

from __future__ import annotations

import hashlib
import urllib.error

import numpy as np
import pytest
import timm
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from bench import data as bench_data
from genbench.cache import read_artifact
from genbench.registry import Registry
from metrics.extractors import (
    EXTRACTORS,
    TRAINING_DATA,
    ExtractorError,
    LabeledSplit,
    available,
    get_extractor,
    shipped_weights,
    to_uint8_rgb,
    training_data,
)
from metrics.extractors.digits_cnn import REFERENCE_WEIGHTS_HASH, DigitsCNNExtractor
from metrics.extractors.dinov2 import DinoV2Extractor
from metrics.extractors.fidelity import ClipExtractor, InceptionExtractor, hub_checkpoints
from metrics.extractors.fidelity_bridge import Uint8ImageDataset, register_torch_fidelity
from metrics.extractors.mnist_cnn import REFERENCE_WEIGHTS_HASH as MNIST_REFERENCE_HASH
from metrics.extractors.mnist_cnn import MnistCNNExtractor
from metrics.extractors.thick_digits_cnn import ThickDigitsCNNExtractor


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small-op loops (KID subsets, k-NN blocks) crawl with several threads on a busy small machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub dir, so no real cached weights are found."""
    d = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(d))
    return d


def test_to_uint8_rgb():
    x = torch.tensor([0.0, 0.5, 1.0, 1 / 16]).reshape(1, 1, 2, 2)
    u = to_uint8_rgb(x)
    assert u.dtype == torch.uint8 and u.shape == (1, 3, 2, 2)
    assert u[0, 0].flatten().tolist() == [0, 128, 255, 16] and torch.equal(u[0, 0], u[0, 2])
    with pytest.raises(ValueError, match="range"):
        to_uint8_rgb(x * 2)
    with pytest.raises(ValueError, match="shape"):
        to_uint8_rgb(torch.rand(1, 2, 4, 4))


@pytest.mark.parametrize("cls,fname", [(InceptionExtractor, "weights-inception-2015-12-05-6726825d.pth"),
                                       (ClipExtractor, "clip-vit-b-32-"), (DinoV2Extractor, "dinov2_vitl14_pretrain.pth")])  # fmt: skip
def test_missing_weights_offline_says_how_to_get_them(cls, fname, hub, monkeypatch):
    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    with pytest.raises(ExtractorError) as e:
        cls()
    msg = str(e.value)
    assert fname in msg and "https://" in msg and "--extractor-weights" in msg and str(hub / "checkpoints") in msg


def test_missing_explicit_weights_file(tmp_path):
    with pytest.raises(ExtractorError, match="not found.*--extractor-weights"):
        InceptionExtractor(weights=tmp_path / "nope.pth")


def test_failed_download_is_an_extractor_error(hub, monkeypatch):
    monkeypatch.delenv("GENBENCH_OFFLINE", raising=False)

    def fail(url, dst, *a, **k):
        open(dst, "wb").write(b"partial")
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    with pytest.raises(ExtractorError, match="download from https://github.com/toshas/torch-fidelity.*failed.*no network"):
        InceptionExtractor()
    assert not list((hub / "checkpoints").glob("*part*"))  # no partial file left behind


def test_corrupt_weights_file(tmp_path):
    p = tmp_path / "bad.pth"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(ExtractorError, match="cannot load weights from .*bad.pth"):
        InceptionExtractor(weights=p)


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """A randomly initialised inception-v3-compat state dict (the real architecture, no real weights)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fi

    mp = pytest.MonkeyPatch()
    mp.setattr(fi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, strict=True: None)
    mp.setattr(fi, "load_state_dict_from_url", lambda *a, **k: {})
    torch.manual_seed(0)
    m = fi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    mp.undo()
    p = tmp_path_factory.mktemp("inc") / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(m.state_dict(), p)
    return p


def test_inception_with_weights_file_matches_torch_fidelity(random_inception_weights):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    e = InceptionExtractor(weights=random_inception_weights, device="cpu")
    x = torch.rand(3, 1, 8, 8)
    f, lg = e.features(x), e.logits(x)
    assert f.shape == (3, 2048) and lg.shape == (3, 1008) and e.dim == 2048 and e.has_logits
    ref = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(random_inception_weights)
    )
    rf, rl = ref(to_uint8_rgb(x))
    assert torch.allclose(f, rf, atol=1e-5) and torch.allclose(lg, rl, atol=1e-4)
    assert e.weights_hash == hashlib.sha256(random_inception_weights.read_bytes()).hexdigest()[:16]
    s = e.settings()
    assert s["extractor"] == "inception-v3-compat" and "299" in s["resize"] and s["weights_hash"] == e.weights_hash
    with pytest.raises(ValueError, match="range"):
        e.features(x * 3)


def test_inception_weights_found_in_hub_checkpoints(random_inception_weights, hub, monkeypatch):
    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    (hub / "checkpoints").mkdir(parents=True)
    (hub / "checkpoints" / random_inception_weights.name).symlink_to(random_inception_weights)
    e = InceptionExtractor(device="cpu")
    assert e.weights_path.startswith(str(hub))


def test_clip_with_tiny_torchscript_weights(tmp_path):
    from torch import nn
    from torch_fidelity.feature_extractor_clip import CLIPVisual

    class TinyClip(nn.Module):  # the keys of an OpenAI CLIP archive, at toy size
        def __init__(self):
            super().__init__()
            self.visual = CLIPVisual(16, 32, 1, 64, 16).visual
            self.text_projection = nn.Parameter(torch.randn(64, 16))

        def forward(self, x):
            return x

    p = tmp_path / "tiny-clip.pt"
    with pytest.warns(FutureWarning):
        torch.jit.script(TinyClip()).save(str(p))
    e = ClipExtractor(weights=p, device="cpu")
    assert e.dim == 16 and e.input_size == 32 and not e.has_logits
    f = e.features(torch.rand(4, 3, 8, 8))
    assert f.shape == (4, 16) and torch.isfinite(f).all()
    with pytest.raises(ExtractorError, match="no classifier logits"):
        e.logits(torch.rand(2, 3, 8, 8))


def _random_dinov2_checkpoint(path):
    torch.manual_seed(0)
    m = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0)  # img_size 518 like the original
    state = dict(m.state_dict())
    state["mask_token"] = torch.zeros(1, 384)  # original DINOv2 checkpoints carry it
    torch.save(state, path)
    return m


def test_dinov2_with_random_original_format_checkpoint(tmp_path, hub):
    p = tmp_path / "dinov2_vits14_pretrain.pth"
    ref = _random_dinov2_checkpoint(p).eval()
    e = DinoV2Extractor(weights=p, variant="dinov2-vit-s-14", device="cpu")
    assert e.dim == 384 and "DinoV2Net" in e.arch and e.settings()["arch"] == e.arch
    f = e.features(torch.rand(2, 1, 8, 8))
    assert f.shape == (2, 384) and torch.isfinite(f).all()
    # on the training grid (518 px, no position interpolation) our forward is timm's, CLS token
    x = torch.randn(1, 3, 518, 518)
    net = e.module.net
    assert torch.allclose(net(x), ref.forward_features(x)[:, 0], atol=1e-4)
    with pytest.raises(ExtractorError, match="unknown variant"):
        DinoV2Extractor(weights=p, variant="dinov2-vit-x-14")


def test_dinov2_never_runs_hubconf(tmp_path, hub):
    """#12: a hubconf.py in the torch hub cache was imported (arbitrary code) when present."""
    repo = hub / "facebookresearch_dinov2_main"
    repo.mkdir(parents=True)
    marker = tmp_path / "pwned"
    (repo / "hubconf.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\ndependencies = []\n")
    p = tmp_path / "dinov2_vits14_pretrain.pth"
    _random_dinov2_checkpoint(p)
    DinoV2Extractor(weights=p, variant="dinov2-vit-s-14", device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize("payload", [b"garbage, not a checkpoint", b"PK\x03\x04truncated zip"])
def test_dinov2_corrupt_weights_file_is_a_clear_error(tmp_path, payload):
    p = tmp_path / "dinov2_vits14_pretrain.pth"
    p.write_bytes(payload)
    with pytest.raises(ExtractorError, match=r"dinov2: cannot load weights from .*dinov2_vits14_pretrain\.pth"):
        DinoV2Extractor(weights=p, variant="dinov2-vit-s-14", device="cpu")


def test_dinov2_pickle_payload_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    p = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save({"x": Evil()}, p)
    with pytest.raises(ExtractorError, match="cannot load weights"):
        DinoV2Extractor(weights=p, variant="dinov2-vit-s-14", device="cpu")


def test_digits_cnn_bad_weights_file_names_it(tmp_path):
    p = tmp_path / "digits.pt"
    p.write_bytes(b"nope")
    with pytest.raises(ExtractorError, match=r"digits-cnn: cannot load weights from .*digits\.pt"):
        DigitsCNNExtractor(weights=p)
    with pytest.raises(ExtractorError, match="not found"):
        DigitsCNNExtractor(weights=tmp_path / "missing.pt")


@pytest.mark.skipif(not (torch.hub.get_dir() and (hub_checkpoints() / "weights-inception-2015-12-05-6726825d.pth").is_file()),
                    reason="needs the real inception-v3-compat weights")  # fmt: skip
def test_real_inception_weights_give_sane_is():
    e = InceptionExtractor()
    from bench import data

    x = data.load("digits").test_x[:50]
    lg = e.logits(x)
    assert lg.shape == (50, 1008)


def test_digits_cnn_inside_torch_fidelity(digits):
    import torch_fidelity

    from metrics.fid import fid_from_features, kid_from_features
    from metrics.inception_score import inception_score
    from metrics.prdc import prdc

    register_torch_fidelity()
    register_torch_fidelity()  # idempotent
    real, fake = digits.train_x[:400], digits.test_x[:300]
    out = torch_fidelity.calculate_metrics(
        input1=Uint8ImageDataset(fake), input2=Uint8ImageDataset(real), feature_extractor="digits-cnn",
        fid=True, kid=True, prc=True, isc=True, kid_subset_size=200, kid_subsets=10, cuda=False, cache=False,
        verbose=False, save_cpu_ram=True, samples_shuffle=True, rng_seed=2020,
    )  # fmt: skip
    # ours on the same (uint8-quantized) images
    e = get_extractor("digits-cnn")
    q = lambda x: to_uint8_rgb(x)[:, :1].float() / 255  # noqa: E731
    fr, ff = e.features(q(real)), e.features(q(fake))
    assert fid_from_features(fr, ff).value == pytest.approx(out["frechet_inception_distance"], rel=1e-4)
    assert kid_from_features(fr, ff, 10, 200, seed=2020).value == pytest.approx(out["kernel_inception_distance_mean"], rel=1e-3)
    r = prdc(fr, ff)
    assert r.precision == pytest.approx(out["precision"], abs=1e-6) and r.recall == pytest.approx(out["recall"], abs=1e-6)
    assert inception_score(e.logits(q(fake)), 10, seed=2020).value == pytest.approx(out["inception_score_mean"], rel=1e-5)


# ------------------------------------------------------------------------------ registry and trained extractors
def _sklearn_digits_split():
    """The digits split, rebuilt here from scikit-learn (stratified 80/20, seed 0)."""
    d = load_digits()
    x, y = d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)


def test_extractor_registry():
    assert {"raw", "digits-cnn", "mnist-cnn", "inception-v3-compat", "clip", "dinov2"} <= set(available())
    assert isinstance(EXTRACTORS, Registry) and EXTRACTORS.get("digits-cnn").is_lazy in (True, False)
    with pytest.raises(KeyError, match="valid: .*digits-cnn"):
        get_extractor("no-such-extractor")


def test_digits_cnn_recipe_is_deterministic_on_one_machine(tmp_path):
    """Same data, same order, same recipe -> the same weights, twice on this machine.

    Across machines the recipe is not bit-stable (other CPUs run other SIMD kernels: bbd7b8abd39db1d7 on the
    machine that first trained it, 244bf800a4a63d8c on an AVX2 AMD EPYC), which is why the weights ship with
    the package (next test). The cache starts with a corrupt file: it is retrained with a warning, never used.
    """
    cached = tmp_path / "a" / "extractors" / "digits-cnn-v2.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"flipped bytes")
    with pytest.warns(UserWarning, match="unreadable"):
        e = DigitsCNNExtractor(cache_dir=tmp_path / "a", train_data=_sklearn_digits_split)
    again = DigitsCNNExtractor(cache_dir=tmp_path / "b", train_data=_sklearn_digits_split)
    assert e.weights_hash == again.weights_hash and e.test_accuracy == again.test_accuracy
    assert e.test_accuracy >= 0.95
    assert read_artifact(cached)["report"]["weights_hash"] == e.weights_hash  # a checksummed genbench.cache artifact
    assert DigitsCNNExtractor(cache_dir=tmp_path / "a", train_data=_sklearn_digits_split).weights_hash == e.weights_hash  # from the cache


@pytest.mark.parametrize("cls", [DigitsCNNExtractor, ThickDigitsCNNExtractor, MnistCNNExtractor], ids=lambda c: c.name)
def test_embedded_extractors_load_the_shipped_weights(tmp_path, cls):
    """With an empty cache, the packaged weights are used (no training), and their recorded accuracy holds on the test split."""
    shipped = shipped_weights(cls.name, cls.version)
    assert shipped is not None, f"{cls.name} weights are not shipped: run python -m bench.ship_weights"
    e = cls(cache_dir=tmp_path)
    assert e.weights_path == str(shipped) and not (tmp_path / "extractors").exists()
    assert e.weights_hash == read_artifact(shipped)["report"]["weights_hash"]
    if cls is DigitsCNNExtractor:
        assert e.weights_hash == REFERENCE_WEIGHTS_HASH
    if cls is MnistCNNExtractor:
        assert e.weights_hash == MNIST_REFERENCE_HASH
    split = training_data(cls.data_name)
    acc = float((e.logits(torch.as_tensor(split.x_test)[:, None]).argmax(1) == torch.as_tensor(split.y_test)).double().mean())
    assert acc == pytest.approx(e.test_accuracy, abs=1e-6) and acc >= cls.MIN_ACCURACY


def test_damaged_shipped_weights_fall_back_to_the_recipe(tmp_path, monkeypatch):
    import metrics.extractors.base as ext_mod

    bad = tmp_path / "weights"
    bad.mkdir()
    (bad / "digits-cnn-v2.pt").write_bytes((ext_mod.SHIPPED_WEIGHTS_DIR / "digits-cnn-v2.pt").read_bytes()[:-64] + b"\0" * 64)
    monkeypatch.setattr(ext_mod, "SHIPPED_WEIGHTS_DIR", bad)
    with pytest.warns(UserWarning, match="unreadable"):
        e = DigitsCNNExtractor(cache_dir=tmp_path / "cache")
    assert e.weights_path == str(tmp_path / "cache" / "extractors" / "digits-cnn-v2.pt") and e.test_accuracy >= 0.95


def test_missing_training_data_is_a_clear_error(tmp_path, monkeypatch):
    import metrics.extractors.base as ext_mod

    monkeypatch.setattr(ext_mod, "SHIPPED_WEIGHTS_DIR", tmp_path / "no-shipped-weights")  # else the packaged weights need no data
    monkeypatch.setattr(TRAINING_DATA, "_entries", {})
    monkeypatch.setattr(TRAINING_DATA, "_loaded", True)
    with pytest.raises(ExtractorError, match="no training data 'digits' is registered.*register_training_data"):
        DigitsCNNExtractor(cache_dir=tmp_path)


def test_training_data_validation():
    xtr, xte, ytr, yte = _sklearn_digits_split()
    s = training_data("x", (xtr, xte, ytr, yte))
    assert isinstance(s, LabeledSplit) and s.x_train.dtype == np.float32 and len(s.y_test) == 360
    u8 = training_data("x", ((xtr * 255).astype(np.uint8), xte, ytr, yte))
    assert u8.x_train.max() <= 1.0
    with pytest.raises(ExtractorError, match=r"\[0, 1\]"):
        training_data("x", (xtr * 16, xte, ytr, yte))


def test_mnist_cnn_trained_on_mnist5k():
    """#16: mnist-cnn, trained deterministically on the mnist5k train split (4000), >= 97% on its 1000 test digits.

    Trains once (about a minute on one thread) into the genbench cache, then loads from there.
    """
    ds = bench_data.load("mnist5k")
    e = get_extractor("mnist-cnn")
    assert e.weights_hash == MNIST_REFERENCE_HASH and e.test_accuracy >= 0.97
    acc = float((e.logits(ds.test_x).argmax(1) == ds.test_y).double().mean())
    assert acc == pytest.approx(e.test_accuracy, abs=1e-6)  # the recorded accuracy is the one on mnist5k's test split
    f = e.features(ds.test_x[:10])
    assert f.shape == (10, 128) and e.classifier_classes((1, 28, 28)) == 10
    with pytest.raises(ValueError, match="28, 28"):
        e.features(torch.rand(2, 1, 8, 8))
