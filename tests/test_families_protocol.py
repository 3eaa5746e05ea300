"""Protocol checks over every built-in generator in the registry: registration
metadata, fit report, sample shape/range/levels, reproducibility given a
generator, capabilities consistent with ``info``, sampler objects, the
state_dict round trip through torch.save / torch.load(weights_only=True) and
the training time limit. The cases come from ``registry.available()``, not from
a hand-written list; ``TINY`` only shrinks networks so the run stays fast."""

from __future__ import annotations

import io

import pytest
import torch

from baselines import registry
from baselines.protocol import (
    Adaptable,
    Autoencoding,
    Budget,
    Conditional,
    Distilled,
    ExactLikelihood,
    Generator,
    HeldOutReference,
    ImportanceBound,
    LabeledSampler,
    LikelihoodBound,
    SamplerChoice,
    Trainable,
    TrainData,
)
from bench import data

# Small networks per generator: (image hparams, 2-D hparams). Anything not listed uses its defaults.
_GAN = ({"width": 8, "z_dim": 8}, {"hidden": (16, 16)})
_DIFF = ({"width": 8, "T": 20}, {"hidden": (16, 16), "T": 20})
TINY: dict[str, tuple[dict, dict]] = {
    "autoencoder": ({"width": 8}, {"hidden": (16, 16)}),
    "dae": ({"width": 8}, {"hidden": (16, 16)}),
    "vae": ({"width": 8}, {"hidden": (16, 16)}),
    "realnvp": ({"hidden": (32,), "n_couplings": 4}, {"hidden": (16,), "n_couplings": 4}),
    "pixelcnn": ({"channels": 8, "n_layers": 2}, {}),
    "ebm": ({"hidden": (32,), "train_steps": 3, "buffer_size": 256, "default_steps": 5}, {"hidden": (16,), "train_steps": 3, "default_steps": 5}),
    "gan": _GAN,
    "wgan-gp": _GAN,
    "pacgan": _GAN,
    "cgan": _GAN,
    "ddpm": _DIFF,
    "flow-matching": ({"width": 8, "default_steps": 5}, {"hidden": (16, 16), "default_steps": 5}),
    "gmm": ({"n_components": 2}, {"n_components": 2}),
    "reflow": ({"width": 8, "pairs": 64, "teacher_steps": 4}, {}),
    "consistency-distillation": ({"width": 8, "T": 20, "intervals": 5}, {}),
    "progressive-distillation": ({"width": 8, "T": 20, "start_steps": 4}, {}),
    "ppca": ({"k": 4}, {"k": 1}),
}
# Known likelihood kinds (image, 2-D) of some families, checked on top of the generic consistency rules.
LIKELIHOOD = {"vae": ("elbo", "elbo"), "realnvp": ("dequantized", "exact"), "pixelcnn": ("exact", None), "ddpm": ("elbo", "elbo")}
# Families whose sample() refuses to run before fit() / load_state_dict().
NEEDS_FIT = {"autoencoder", "dae", "vae", "realnvp", "pixelcnn", "ebm"}
# Data kinds a generator may declare: images, 2-D points, and the translation tasks' paired / unpaired sets.
DATA_KINDS = {"image", "points", "paired", "unpaired"}
# Likelihood kinds that are lower bounds (LikelihoodBound).
BOUND_KINDS = ("elbo", "vq-bound")
# Families whose samples at this 25-step budget are one constant image, whatever the noise (their owner is told).
CONSTANT_WHEN_UNTRAINED = {"latent-diffusion", "vq-ar", "vq-maskgit", "vqvae", "ldm-recon", "vqvae-recon"}

# Every built-in generator, except the metric-sanity constructed sets (family "constructed": deliberately
# corrupted real images, off the K levels by design, built from splits the harness hands over; see their own tests).
BUILTIN = {
    name: e
    for name, e in registry.available().items()
    if getattr(e.factory, "func", e.factory).__module__.startswith("baselines.") and e.family != "constructed"
}
DATASETS = ("digits", "ring8")
CASES = [(n, d) for n, e in BUILTIN.items() for d in DATASETS if data.load(d).info.kind in e.kinds]
CASES += [(n, "stacked-digits") for n in ("vae", "realnvp", "pixelcnn") if n in BUILTIN]  # C = 3 channels


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _hp(name, ds):
    img, pts = TINY.get(name, ({}, {}))
    return dict(img if ds.info.kind == "image" else pts)


def _build(name, ds, seed=0):
    torch.manual_seed(seed)
    return registry.build(name, ds.info, device="cpu", **_hp(name, ds))


def _teach(m, ds, steps=25, seed=0):
    """A student (Distilled) gets a tiny DDPM teacher of its size, fitted like the student."""
    if isinstance(m, Distilled):
        torch.manual_seed(seed)
        teacher = registry.build("ddpm", ds.info, device="cpu", **m.teacher_params())
        teacher.fit(TrainData(ds.train_x[:512], ds.info), Budget(steps=steps, batch_size=32))
        m.set_teacher(teacher)


def _ready(name, ds, steps=25, seed=0):
    """Built, given its pool (reference rows) and fitted (trainable ones) on a small slice."""
    m = _build(name, ds, seed)
    rep = None
    if isinstance(m, HeldOutReference):
        m.use_pool(ds.test_x, ds.test_y)
    _teach(m, ds, steps, seed)
    if isinstance(m, Trainable):
        torch.manual_seed(seed)
        rep = m.fit(TrainData(ds.train_x[:512], ds.info, ds.train_y[:512] if ds.train_y is not None else None), Budget(steps=steps, batch_size=32))
    return m, rep


def test_builtin_families_are_found_by_scanning_the_package():
    """No list of modules to edit: every module file of baselines/ is imported, and every ``@register("name"``
    written in one of them is available."""
    import re
    from pathlib import Path

    import baselines

    root = Path(baselines.__file__).parent
    files = sorted(f"baselines.{p.stem}" for p in root.glob("*.py") if not p.stem.startswith("_"))
    assert registry.builtin_modules() == files
    written = {m for p in root.glob("*.py") for m in re.findall(r'^@register\("([^"]+)"', p.read_text(), flags=re.M)}
    assert written and written <= set(registry.available())


def test_every_builtin_module_registers_and_metadata_is_sane():
    modules = set(registry.builtin_modules())
    assert BUILTIN, "no generators registered"
    for name, e in BUILTIN.items():
        assert getattr(e.factory, "func", e.factory).__module__ in modules, name
        assert e.family and e.description, name
        assert set(e.kinds) <= DATA_KINDS and e.kinds, name
    fam = {"autoencoder": "autoencoder", "dae": "autoencoder", "vae": "vae", "realnvp": "flow", "pixelcnn": "autoregressive", "ebm": "ebm"}
    for name, family in fam.items():
        assert BUILTIN[name].family == family
    assert BUILTIN["pixelcnn"].kinds == ("image",)
    with pytest.raises(ValueError, match="does not support points"):
        registry.build("pixelcnn", data.load("ring8").info)
    with pytest.raises(registry.UnknownGeneratorError, match="valid: "):
        registry.get("no-such-model")


@pytest.mark.parametrize("name,dataset", CASES)
def test_fit_sample_shape_range_reproducible(name, dataset):
    ds = data.load(dataset)
    m, rep = _ready(name, ds)
    assert isinstance(m, Generator)
    if rep is not None:
        assert rep.steps >= 1 and rep.wall_time_s > 0 and rep.losses
        assert all(len(v) <= 200 for v in rep.losses.values())
    info = m.info
    assert info.shape == tuple(ds.info.shape)
    x = m.sample(6, generator=torch.Generator().manual_seed(1))
    assert x.dtype == torch.float32 and x.device.type == "cpu"
    assert x.shape == (6, *ds.info.shape)
    assert torch.isfinite(x).all()
    if ds.info.kind == "image":
        k = ds.info.levels
        assert x.min() >= 0 and x.max() <= 1
        assert torch.allclose(x * (k - 1), torch.round(x * (k - 1)), atol=1e-5), "samples must lie on the K levels"
    assert torch.equal(x, m.sample(6, generator=torch.Generator().manual_seed(1)))
    if name not in CONSTANT_WHEN_UNTRAINED:
        assert not torch.equal(x, m.sample(6, generator=torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("name,dataset", [c for c in CASES if c[1] != "stacked-digits"])
def test_capabilities_agree_with_info(name, dataset):
    ds = data.load(dataset)
    m, _ = _ready(name, ds, steps=3)
    info = m.info
    kind = info.likelihood
    assert kind in (None, "exact", "dequantized", *BOUND_KINDS)
    if kind in ("exact", "dequantized"):
        assert isinstance(m, ExactLikelihood)
        lp = m.log_prob(ds.test_x[:5])
        assert lp.shape == (5,) and torch.isfinite(lp).all()
    elif kind in BOUND_KINDS:
        assert isinstance(m, LikelihoodBound) and not isinstance(m, ExactLikelihood)
    else:
        assert not isinstance(m, ExactLikelihood) and not isinstance(m, LikelihoodBound)
    if name in LIKELIHOOD:
        assert kind == LIKELIHOOD[name][0 if ds.info.kind == "image" else 1]
    if isinstance(m, ImportanceBound):
        b = m.iwae_bound(ds.test_x[:3], 4)
        assert b.shape == (3,) and torch.isfinite(b).all()
    if isinstance(m, Autoencoding):
        z = m.encode(ds.test_x[:3])
        z = z[0] if isinstance(z, tuple) else z
        assert m.decode(z).shape == (3, *ds.info.shape)
    if isinstance(m, LabeledSampler):
        xs, ys = m.sample_labeled(4, generator=torch.Generator().manual_seed(0))
        assert xs.shape == (4, *ds.info.shape) and (ys is None or ys.shape == (4,))
    if info.conditioning == "class":
        assert isinstance(m, Conditional) and "labels" in m.accepts
        x = m.sample(3, labels=torch.tensor([0, 1, 1]), generator=torch.Generator().manual_seed(0))
        assert x.shape == (3, *ds.info.shape)
    if info.iterative:
        m.sample(2, steps=2, generator=torch.Generator().manual_seed(0))
    if isinstance(m, Adaptable):
        assert callable(m.adapt)


@pytest.mark.parametrize("name,dataset", [c for c in CASES if c[1] != "stacked-digits"])
def test_sampler_objects(name, dataset):
    """Models with sampling options build them with make_sampler; the default object reproduces plain sample()."""
    ds = data.load(dataset)
    m, _ = _ready(name, ds, steps=3)
    if not callable(getattr(m, "make_sampler", None)):
        assert not isinstance(m, SamplerChoice)
        return
    assert not hasattr(m, "set_sampler"), "sampling options are objects, not model state"
    s = m.make_sampler()
    assert isinstance(s.name, str) and s.name
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a = m.sample(4, generator=g(), sampler=s)
    assert isinstance(m.last_nfe, int) and m.last_nfe >= 1
    assert torch.equal(a, m.sample(4, generator=g()))
    assert s.nfe == m.last_nfe
    with pytest.raises(TypeError):
        m.make_sampler(no_such_option=1)


@pytest.mark.parametrize("name,dataset", [c for c in CASES if c[1] != "stacked-digits"])
def test_state_dict_round_trip(name, dataset):
    ds = data.load(dataset)
    m, _ = _ready(name, ds)
    if not isinstance(m, Trainable):
        return
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = _build(name, ds, seed=123)  # a different init: everything must come from the state
    if isinstance(fresh, HeldOutReference):
        fresh.use_pool(ds.test_x, ds.test_y)
    if name in NEEDS_FIT:
        with pytest.raises(RuntimeError, match="fit"):
            fresh.sample(2)
    fresh.load_state_dict(state)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(m.sample(4, generator=g()), fresh.sample(4, generator=g()))
    if isinstance(m, ExactLikelihood):  # (seeded: image densities may dequantize with the global RNG)
        torch.manual_seed(7)
        a = m.log_prob(ds.test_x[:4])
        torch.manual_seed(7)
        assert torch.allclose(a, fresh.log_prob(ds.test_x[:4]))


@pytest.mark.parametrize("name", [n for n in BUILTIN if n in TINY and n not in ("gaussian", "gmm", "ppca")])
def test_max_seconds_stops_training(name):
    ds = data.load("digits" if "points" not in BUILTIN[name].kinds else "ring8")
    m = _build(name, ds)
    if not isinstance(m, Trainable):
        pytest.skip(f"{name} is not trainable")
    _teach(m, ds, steps=3)
    y = ds.train_y[:256] if ds.train_y is not None else None
    rep = m.fit(TrainData(ds.train_x[:256], ds.info, y), Budget(steps=10_000, batch_size=16, max_seconds=0.2))
    assert 1 <= rep.steps < 10_000


def test_each_hyperparameter_is_declared_once_and_visible_to_the_registry():
    """DDPM, flow matching and the VQ priors declare only their own parameters and pass ``**kwargs`` up; the
    registry still sees (and checks a suite's params against) every parameter of the chain, once."""
    import inspect

    from bench import data

    info = data.load("digits").info
    maskgit = list(inspect.signature(registry.get("vq-maskgit").factory).parameters)
    assert {"default_steps", "prior_dim", "num_codes", "lr", "device"} <= set(maskgit) and len(maskgit) == len(set(maskgit))
    ddpm = set(inspect.signature(registry.get("ddpm").factory).parameters)
    assert {"T", "schedule", "width", "lr", "ema_decay"} <= ddpm and "t_scale" not in ddpm  # a class attribute, not a hyperparameter
    with pytest.raises(TypeError, match="prior_dimm"):
        registry.build("vq-maskgit", info, prior_dimm=8)
    m = registry.build("vq-maskgit", info, prior_dim=16, num_codes=8, width=8)
    assert m.num_codes == 8 and m._prior_cfg["dim"] == 16
