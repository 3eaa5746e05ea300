"""Scale (#16): device-dependent settings, mixed precision as a suite setting, the mnist and cifar10 suites.

Everything here runs on CPU: bf16 autocast works on CPU, so the precision
plumbing (autocast during fit and sample, float32 features outside autocast,
separate cache entries per precision) is tested with a tiny model. The CUDA
and fp16 paths are in ``tests/test_gpu.py`` (skipped without CUDA).
"""

from __future__ import annotations

import pickle
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from baselines import registry as greg
from bench.cli import main
from bench.runner import plan, run_suite
from bench.store import ResultStore
from bench.suite import SuiteError, load_suite, validate_names
from genbench.precision import PrecisionError, autocast, budget_for, current_scaler, settings_for
from genbench.protocol import GeneratorInfo, TrainReport
from metrics.extractors import Extractor, register_extractor

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ settings per device
def test_cuda_table_read_only_on_cuda():
    s = {"sample_batch": 100, "precision": "fp32", "cuda": {"sample_batch": 5000, "precision": "bf16"}, "cpu": {"latency_batch": 8}}
    on_cpu, on_gpu = settings_for(s, "cpu"), settings_for(s, "cuda:1")
    assert on_cpu == {"sample_batch": 100, "precision": "fp32", "latency_batch": 8}
    assert on_gpu == {"sample_batch": 5000, "precision": "bf16"}


def test_bad_device_settings_name_the_problem():
    with pytest.raises(PrecisionError, match="precision must be one of fp32, bf16, fp16, got 'fp8'"):
        settings_for({"precision": "fp8"}, "cpu")
    with pytest.raises(PrecisionError, match="settings.cuda must be a table"):
        settings_for({"cuda": 3}, "cuda")
    with pytest.raises(PrecisionError, match="unknown budget keys \\['stepz'\\]"):
        budget_for({}, {"budget": {"stepz": 3}}, "vae")
    with pytest.raises(PrecisionError, match="settings.budgets.vae.batch_size must be an integer >= 1"):
        budget_for({}, {"budgets": {"vae": {"batch_size": 0}}}, "vae")


def test_budget_precedence_row_then_all_rows_then_this_row():
    row = {"steps": 100, "batch_size": 32, "lr": 1e-3}
    s = {"budget": {"batch_size": 256}, "budgets": {"vae": {"steps": 5000}}}
    assert budget_for(row, s, "vae") == {"steps": 5000, "batch_size": 256, "lr": 1e-3}
    assert budget_for(row, s, "gan") == {"steps": 100, "batch_size": 256, "lr": 1e-3}
    assert budget_for(row, {}, "gan") == row


# ------------------------------------------------------------------------------ autocast
def test_autocast_bf16_on_cpu_and_fp32_untouched():
    lin = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with autocast("cpu", "bf16"):
        assert lin(x).dtype == torch.bfloat16
        assert current_scaler() is None  # loss scaling only for fp16 on CUDA
    with autocast("cpu", "fp32"):
        assert lin(x).dtype == torch.float32
    assert lin(x).dtype == torch.float32
    with pytest.raises(PrecisionError, match="precision must be one of"):
        with autocast("cpu", "half"):
            pass


# ------------------------------------------------------------------------------ the pipeline under bf16
SEEN: dict[str, list] = {"fit": [], "sample": [], "features": []}


class SpyGen(nn.Module):
    """Records whether autocast (and which dtype) is on when the harness trains and samples it."""

    def __init__(self, info):
        super().__init__()
        self._data = info
        self.lin = nn.Linear(8, int(np.prod(info.shape)))

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo("spy-gen", "test", self._data.shape)

    def _state(self) -> tuple[bool, torch.dtype]:
        return torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")

    def fit(self, data, budget) -> TrainReport:
        SEEN["fit"].append((*self._state(), budget.steps, budget.batch_size))
        return TrainReport(steps=budget.steps)

    def sample(self, n, *, labels=None, prompts=None, steps=None, generator=None):
        SEEN["sample"].append((*self._state(), n))
        z = torch.randn(n, 8, generator=generator)
        out = torch.sigmoid(self.lin(z))
        SEEN["sample"][-1] += (out.dtype,)
        return out.reshape(n, *self._data.shape)


class SpyExtractor(Extractor):
    name = "spy-fp32"
    dim = 4
    weights_hash = "spy"

    def _features(self, x):
        SEEN["features"].append((x.dtype, torch.is_autocast_enabled("cpu")))
        return x.flatten(1)[:, :4]


greg.register("spy-gen", family="test", kinds=("image",))(SpyGen)
register_extractor("spy-fp32", kinds=("image",))(SpyExtractor)

SPY_SUITE = """
name = "spy"
seeds = [0]
[settings]
precision = "{precision}"
sample_batch = 30
[settings.cpu]
budgets = {{ spy = {{ steps = 7 }} }}
[[datasets]]
name = "digits"
extractor = "spy-fp32"
n_fake = 50
metrics = ["fid"]
[[generators]]
name = "spy"
model = "spy-gen"
budget = {{ steps = 3, batch_size = 16 }}
"""


def _spy_run(tmp_path: Path, precision: str) -> list[dict]:
    p = tmp_path / f"spy-{precision}.toml"
    p.write_text(SPY_SUITE.format(precision=precision))
    s = run_suite(load_suite(str(p)), results_dir=tmp_path / "r", device="cpu", progress=False)
    assert not s.failed, s.failed
    return [r for r in ResultStore(tmp_path / "r" / "spy").records() if r["job"] == "digits/spy/seed0"]


def test_bf16_autocast_in_fit_and_sample_features_fp32_outside(tmp_path):
    for v in SEEN.values():
        v.clear()
    recs = _spy_run(tmp_path, "bf16")
    # training: under bf16 autocast, with the [settings.cpu] budget for the row merged over the row's own
    assert SEEN["fit"] == [(True, torch.bfloat16, 7, 16)]
    # sampling: under autocast in batches of sample_batch (30 + 20); the network really ran in bf16
    assert [s[:3] for s in SEEN["sample"]] == [(True, torch.bfloat16, 30), (True, torch.bfloat16, 20)]
    assert all(s[3] == torch.bfloat16 for s in SEEN["sample"])
    # features: float32 input, autocast off, for the fake set and the real reference set
    assert SEEN["features"] and all(f == (torch.float32, False) for f in SEEN["features"])
    train = next(r for r in recs if r["metric"] == "train_s")
    assert train["settings"]["budget"] == {"steps": 7, "batch_size": 16}
    fid = next(r for r in recs if r["metric"] == "fid")
    assert np.isfinite(fid["value"])


def test_precision_is_part_of_the_model_and_sample_keys(tmp_path):
    for v in SEEN.values():
        v.clear()
    _spy_run(tmp_path, "fp32")
    assert [f[0] for f in SEEN["fit"]] == [False]  # fp32: no autocast
    assert all(s[3] == torch.float32 for s in SEEN["sample"])
    n_fit = len(SEEN["fit"])
    # the same row in bf16 is a different model: trained again, not read from the fp32 cache
    (tmp_path / "r" / "spy").rename(tmp_path / "r" / "spy-fp32-run")
    _spy_run(tmp_path, "bf16")
    assert len(SEEN["fit"]) == n_fit + 1 and SEEN["fit"][-1][:2] == (True, torch.bfloat16)


def test_bf16_with_a_real_family_on_cpu(tmp_path):
    """A tiny VAE trained and sampled under bf16 autocast; digits-cnn features and FID as usual."""
    p = tmp_path / "vae.toml"
    p.write_text(
        textwrap.dedent("""
        name = "vae-bf16"
        seeds = [0]
        [settings]
        precision = "bf16"
        [[datasets]]
        name = "digits"
        extractor = "digits-cnn"
        n_fake = 100
        metrics = ["fid", "nll"]
        [[generators]]
        name = "vae"
        budget = { steps = 20, batch_size = 32 }
        """)
    )
    s = run_suite(load_suite(str(p)), results_dir=tmp_path / "r", device="cpu", progress=False)
    assert not s.failed, s.failed
    recs = {r["metric"]: r for r in ResultStore(tmp_path / "r" / "vae-bf16").records()}
    assert np.isfinite(recs["fid"]["value"]) and recs["fid"]["value"] > 0
    assert np.isfinite(recs["nll"]["value"]) and recs["nll"]["value"] > 0


# ------------------------------------------------------------------------------ --device
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_device_cuda_without_cuda_is_a_usage_error(tmp_path, capsys):
    assert main(["run", "--suite", "smoke", "--device", "cuda", "--results", str(tmp_path / "r"), "--no-leaderboard"]) == 2
    err = capsys.readouterr().err
    assert "device 'cuda' requested but CUDA is not available" in err
    assert not (tmp_path / "r" / "smoke" / "records.jsonl").exists()


# ------------------------------------------------------------------------------ built-in suites
@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_suite_settings_resolve_on_both_devices(name):
    s = load_suite(name)
    validate_names(s)
    for d in s.datasets:
        for dev in ("cpu", "cuda"):
            st = settings_for(d.settings, dev)
            for g in s.generators_for(d.name):
                budget_for(g.budget, st, g.name)  # every override is a valid budget
    cuda = settings_for(s.datasets[0].settings, "cuda")
    assert cuda.get("sample_batch", 0) > settings_for(s.datasets[0].settings, "cpu").get("sample_batch", 1000)


def test_mnist_suite_protocol():
    s = load_suite("mnist")
    validate_names(s)
    (d,) = s.datasets
    assert d.name == "mnist5k" and d.extractor == "mnist-cnn" and d.n_fake == 1000 and s.seeds == (0, 1, 2)
    assert d.settings.get("reference", "train") == "train" and "nll" in d.metrics
    kinds = greg.available()
    assert all(g.model in kinds for g in s.generators)
    jobs = plan(s, None)
    assert len(jobs) == sum(len(g.seeds or s.seeds) for g in s.generators)  # every row applies to 28x28 images, at its own seeds
    quoted = {q["label"].split(" ")[0]: q["values"]["nll"] for q in s.quoted}
    assert quoted == {"RealNVP": 1.06, "Glow": 1.05, "FFJORD": 0.99}
    assert all("not run here" in q["label"] and "60k" in q["label"] for q in s.quoted)
    # the GPU budgets are larger than the CPU ones for every trained row they name
    cpu, gpu = settings_for(d.settings, "cpu"), settings_for(d.settings, "cuda")
    for g in s.generators:
        if g.budget:
            assert budget_for(g.budget, gpu, g.name)["steps"] >= budget_for(g.budget, cpu, g.name)["steps"]


# ------------------------------------------------------------------------------ cifar10 from the user's files
def _fake_cifar(root: Path, per_batch: int = 2, n_test: int = 4) -> None:
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        with open(root / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [int(i % 10) for i in range(n)]}, f)


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """A randomly initialised inception-v3-compat state dict (the real architecture, not the real weights)."""
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


@pytest.mark.slow
def test_cifar10_suite_reduced_end_to_end(tmp_path, random_inception_weights):
    """The built-in cifar10 suite with its data root and extractor weights pointed at small local files, 2 rows, tiny N."""
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    _fake_cifar(root)
    raw = tomllib.loads((REPO / "bench" / "suites" / "cifar10.toml").read_text())
    assert raw["datasets"][0]["extractor"] == "inception-v3-compat"
    raw["seeds"] = [0]
    raw["settings"].update(extractor_weights=str(random_inception_weights), precision="bf16", kid_subsets=5)
    raw["datasets"][0].update(params={"root": str(tmp_path)}, n_fake=4, metrics=["kid", "memorization"])  # no FID: 2048-D eigen solves cost seconds each
    ddpm = next(g for g in raw["generators"] if g["name"] == "ddpm")
    ddpm.update(params={**ddpm["params"], "width": 8}, budget={"steps": 2, "batch_size": 4}, steps=[2])
    raw["generators"] = [{"name": "data"}, ddpm]
    p = tmp_path / "cifar10-small.toml"
    p.write_text(_toml(raw))
    suite = load_suite(str(p))
    s = run_suite(suite, results_dir=tmp_path / "r", device="cpu", progress=False)
    assert not s.failed, s.failed
    recs = ResultStore(tmp_path / "r" / "cifar10").records()
    fids = {r["generator"]: r for r in recs if r["metric"] == "kid"}
    assert set(fids) == {"data", "ddpm@2"}
    assert all(r["extractor"] == "inception-v3-compat" and np.isfinite(r["value"]) for r in fids.values())
    assert all(r["n_fake"] == 4 for r in fids.values())


def _toml(d: dict, prefix: str = "") -> str:
    """A minimal TOML writer for the suite dict above (tables, arrays of tables, scalars, lists, inline tables)."""

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f'"{k}" = {val(x)}' for k, x in v.items()) + " }"
        raise TypeError(type(v))

    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict) and k in ("settings",):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            tables.extend((f"[{k}]", x) for x in v)
        else:
            lines.append(f'"{k}" = {val(v)}')
    for name, t in tables:
        lines.append(f"[{name}]")
        lines.extend(f'"{k}" = {val(v)}' for k, v in t.items())
    return "\n".join(lines) + "\n"


def test_bad_precision_fails_at_suite_load(tmp_path):
    p = tmp_path / "bad.toml"
    for bad, msg in (('precision = "bf61"', "precision must be one of"), ("cuda = { budgets = { vae = { stepz = 1 } } }", "unknown budget keys")):
        p.write_text(SPY_SUITE.format(precision="fp32").replace('precision = "fp32"', bad))
        with pytest.raises(SuiteError, match=msg):
            load_suite(str(p))
