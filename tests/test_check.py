"""bench check and partial_capabilities: every registered generator passes; broken models fail with the problem named."""

from __future__ import annotations

import time

import pytest
import torch

from baselines import registry as greg
from bench.check import check_generator, partial_capabilities, suite_capability_errors
from bench.cli import main
from bench.suite import load_suite
from genbench.protocol import GeneratorInfo, TrainReport


# ----------------------------------------------------------------------------- small user models (module:factory targets)
class Good:
    """Independent Gaussian per pixel, sampled from the generator, clamped to [0, 1]."""

    def __init__(self, info) -> None:
        self.data_info = info
        self.mu = torch.zeros(info.shape)

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(name="good", family="test", shape=tuple(self.data_info.shape))

    def fit(self, data, budget) -> TrainReport:
        self.mu = data.x.mean(0)
        return TrainReport(steps=1)

    def sample(self, n, *, labels=None, prompts=None, steps=None, generator=None):
        return (self.mu + 0.1 * torch.randn((n, *self.mu.shape), generator=generator)).clamp(0, 1)

    def state_dict(self):
        return {"mu": self.mu}

    def load_state_dict(self, state) -> None:
        self.mu = state["mu"]


class NoState(Good):
    state_dict = None  # type: ignore[assignment]
    load_state_dict = None  # type: ignore[assignment]


class GlobalRNG(Good):
    def sample(self, n, *, labels=None, prompts=None, steps=None, generator=None):
        return (self.mu + 0.1 * torch.randn((n, *self.mu.shape))).clamp(0, 1)  # ignores `generator`


class OutOfRange(Good):
    def sample(self, n, *, labels=None, prompts=None, steps=None, generator=None):
        return super().sample(n, generator=generator) * 2 - 0.5


class WrongCount(Good):
    def sample(self, n, *, labels=None, prompts=None, steps=None, generator=None):
        return super().sample(n + 1, generator=generator)


class Float64(Good):
    def sample(self, n, *, labels=None, prompts=None, steps=None, generator=None):
        return super().sample(n, generator=generator).double()


class ForgetfulState(Good):
    def state_dict(self):
        return {}

    def load_state_dict(self, state) -> None:
        pass


class PickleState(Good):
    def state_dict(self):
        return {"mu": self.mu, "obj": Good}  # a class: refused by torch.load(weights_only=True)


class IgnoresLabels(Good):
    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(name="ign", family="test", shape=tuple(self.data_info.shape), conditioning="class")


class NoLabelsKeyword(Good):
    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(name="nolab", family="test", shape=tuple(self.data_info.shape), conditioning="class")

    def sample(self, n, *, prompts=None, steps=None, generator=None):  # type: ignore[override]
        return super().sample(n, generator=generator)


class BatchLogProb(Good):
    def log_prob(self, x):
        return torch.zeros(())  # one number for the batch instead of one per example


class NaNElbo(Good):
    def elbo(self, x):
        return torch.full((len(x),), float("nan"))


class EncodeOnly(Good):
    def encode(self, x):
        return x.flatten(1)


class SamplerNoKeyword(Good):
    def make_sampler(self, **params):
        return object()


class Upsampler(Good):
    """Image-to-image: nearest-neighbour 2x upsampling (digits-sr sources are 4x4, targets 8x8)."""

    def translate(self, x_source, *, generator=None):
        return x_source.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


class NoUpsampler(Upsampler):
    def translate(self, x_source, *, generator=None):
        return x_source  # the source shape, not the target's


def make(cls):
    return lambda info: cls(info)


good, no_state, global_rng, out_of_range, wrong_count, float64 = map(make, (Good, NoState, GlobalRNG, OutOfRange, WrongCount, Float64))
forgetful, pickle_state, ignores_labels, no_labels_kw = map(make, (ForgetfulState, PickleState, IgnoresLabels, NoLabelsKeyword))
batch_log_prob, nan_elbo = make(BatchLogProb), make(NaNElbo)
upsampler, no_upsampler = make(Upsampler), make(NoUpsampler)
upsampler.kinds = no_upsampler.kinds = ("paired",)


def _item(report, name):
    return next(i for i in report.items if i.name == name)


# ----------------------------------------------------------------------------- partial capabilities
def test_partial_capabilities_names_the_missing_methods():
    assert partial_capabilities(Good) == []
    msgs = partial_capabilities(NoState)
    assert len(msgs) == 1 and "fit()" in msgs[0] and "state_dict()" in msgs[0] and "load_state_dict()" in msgs[0]
    (msg,) = partial_capabilities(EncodeOnly)
    assert msg.startswith("encode() without decode()")
    (msg,) = partial_capabilities(SamplerNoKeyword)
    assert "make_sampler()" in msg and "sampler=" in msg


def test_partial_capabilities_conditioning_without_keyword(digits):
    (msg,) = partial_capabilities(NoLabelsKeyword(digits.info))
    assert "'class'" in msg and "labels=" in msg
    assert partial_capabilities(IgnoresLabels(digits.info)) == []


# ----------------------------------------------------------------------------- the checklist on user models
def test_good_model_passes():
    rep = check_generator(f"{__name__}:good")
    assert rep.ok, rep.format()
    assert [i.name for i in rep.items][:6] == ["build", "protocol", "capabilities", "fit", "sample", "reproducible"]
    assert _item(rep, "state_dict").status == "ok"
    assert "ms per batch of 16" in _item(rep, "latency").message


@pytest.mark.parametrize(
    "factory, item, words",
    [
        ("no_state", "capabilities", "fit() without state_dict(), load_state_dict()"),
        ("global_rng", "reproducible", "draw every random number from `generator`"),
        ("out_of_range", "sample", "must be in [0, 1]"),
        ("wrong_count", "sample", "returned shape (17, 1, 8, 8), expected (16, 1, 8, 8)"),
        ("float64", "sample", "expected torch.float32"),
        ("forgetful", "state_dict", "samples differently from the original"),
        ("pickle_state", "state_dict", "weights_only=True"),
        ("ignores_labels", "conditioning", "the conditioning is ignored"),
        ("no_labels_kw", "protocol", "labels"),
        ("batch_log_prob", "log_prob", "one log-likelihood per example, shape (16,)"),
        ("nan_elbo", "elbo", "non-finite"),
    ],
)
def test_broken_models_fail_with_the_problem_named(factory, item, words):
    rep = check_generator(f"{__name__}:{factory}")
    assert not rep.ok
    failed = {i.name: i.message for i in rep.failures}
    assert item in failed, rep.format()
    assert words in failed[item], failed[item]
    assert "FAIL" in rep.format().splitlines()[-1]


def test_translate_checked_on_a_translation_task():
    rep = check_generator(f"{__name__}:upsampler", dataset="digits-sr")
    assert rep.ok and _item(rep, "translate").status == "ok", rep.format()
    rep = check_generator(f"{__name__}:no_upsampler", dataset="digits-sr")
    assert not rep.ok and "translate(16) returned shape (16, 1, 4, 4), expected (16, 1, 8, 8)" in _item(rep, "translate").message
    rep = check_generator(f"{__name__}:no_upsampler")  # default data set for the "paired" kind: 8x8 -> 8x8, identity fits
    assert rep.dataset == "digits-complete" and rep.ok, rep.format()


def test_unknown_generator_and_bad_target():
    rep = check_generator("no-such-model")
    assert not rep.ok and "unknown generator 'no-such-model'" in rep.failures[0].message and "gaussian" in rep.failures[0].message
    rep = check_generator("tests.no_such_module:make")
    assert not rep.ok and "cannot import module" in rep.failures[0].message


def test_factory_errors_are_reported_not_raised():
    rep = check_generator("gmm", params={"n_components": -1})
    assert not rep.ok and rep.failures[0].name in ("build", "fit")


# ----------------------------------------------------------------------------- every registered generator
def test_bench_check_passes_on_every_registered_generator():
    """Each generator on its default data set (digits for images, ring8 for points), tiny budget."""
    t0 = time.perf_counter()
    failed = {}
    for name in greg.available():
        rep = check_generator(name, n=8, budget_steps=2)
        if not rep.ok:
            failed[name] = rep.format()
    assert not failed, "\n\n".join(failed.values())
    assert time.perf_counter() - t0 < 120


def test_points_generators_pass_on_ring8():
    names = [n for n, e in greg.available().items() if "points" in e.kinds]
    assert "gmm" in names
    for name in names:
        rep = check_generator(name, dataset="ring8", dataset_params={"n_train": 1000, "n_test": 200}, n=8, budget_steps=2)
        assert rep.ok, rep.format()


# ----------------------------------------------------------------------------- CLI
def test_cli_check_exit_codes(capsys):
    assert main(["check", "gaussian"]) == 0
    out = capsys.readouterr().out
    assert "bench check gaussian on digits" in out and out.strip().endswith("PASS")
    assert main(["check", f"{__name__}:no_state", "--dataset", "digits"]) == 1
    out = capsys.readouterr().out
    assert "fit() without state_dict(), load_state_dict()" in out
    assert main(["check", "gmm", "--dataset", "ring8", "--params", '{"n_components": 8}']) == 0
    assert main(["check", "gmm", "--params", "{not json"]) == 2
    assert "--params" in capsys.readouterr().err


# ----------------------------------------------------------------------------- plan time
@pytest.fixture
def register_generator():
    """Register test factories in the generator registry; removed afterwards."""
    added = []

    def add(name, factory):
        greg.register(name, family="test")(factory)
        added.append(name)

    yield add
    for name in added:
        greg.GENERATORS.unregister(name)


def test_suite_capability_errors_name_the_row(tmp_path, register_generator):
    register_generator("test-no-state", no_state)
    p = tmp_path / "s.toml"
    p.write_text(
        'name = "s"\nseeds = [0]\n[[datasets]]\nname = "digits"\nextractor = "digits-cnn"\nmetrics = ["fid"]\n'
        '[[generators]]\nname = "gaussian"\n[[generators]]\nname = "mine"\nmodel = "test-no-state"\n'
    )
    errs = suite_capability_errors(load_suite(str(p)))
    assert len(errs) == 1 and "'mine'" in errs[0] and "state_dict()" in errs[0] and "digits" in errs[0]
