"""The artifact cache (genbench.cache) and the staged pipeline (bench.pipeline)."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
import torch

from genbench.cache import (
    ArtifactError,
    Cache,
    atomic_write,
    content_hash,
    file_hash,
    key_hash,
    read_artifact,
    write_artifact,
)


def test_file_hash_is_sha256_of_bytes(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"hello genbench")
    assert file_hash(p, 64) == hashlib.sha256(b"hello genbench").hexdigest()
    assert file_hash(p) == hashlib.sha256(b"hello genbench").hexdigest()[:16]


def test_content_hash_ignores_key_order():
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    p = atomic_write(tmp_path / "sub" / "x.txt", "abc")
    assert p.read_text() == "abc"
    assert sorted(q.name for q in p.parent.iterdir()) == ["x.txt"]


def test_artifact_round_trip_and_header(tmp_path):
    obj = {"w": torch.arange(6.0).reshape(2, 3), "n": 3}
    p = write_artifact(tmp_path / "a.pt", obj)
    back = read_artifact(p)
    assert torch.equal(back["w"], obj["w"]) and back["n"] == 3
    head, payload = p.read_bytes().split(b"\n", 1)
    assert head.split(b" ")[2].decode() == hashlib.sha256(payload).hexdigest()
    j = write_artifact(tmp_path / "a.json", {"x": [1, 2]}, "json")
    assert read_artifact(j) == {"x": [1, 2]}


@pytest.mark.parametrize("suffix", [".pt", ".json"])
def test_flipped_bytes_are_reported_once_and_recomputed(tmp_path, suffix, caplog):
    cache = Cache(tmp_path)
    key = {"k": 1}
    if suffix == ".pt":
        cache.put("models", key, {"w": torch.ones(1000)})
    else:
        cache.put_json("models", key, {"loss": list(range(100))})
    p = cache.path("models", key, suffix)
    blob = bytearray(p.read_bytes())
    for i in range(len(blob) - 64, len(blob)):
        blob[i] ^= 0xFF
    p.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="checksum"):
        read_artifact(p)
    with caplog.at_level(logging.WARNING, "genbench.cache"):
        got = cache.get("models", key) if suffix == ".pt" else cache.get_json("models", key)
    assert got is None
    assert len(caplog.records) == 1 and str(p) in caplog.records[0].getMessage() and "recomputing" in caplog.records[0].getMessage()
    assert not p.exists()  # removed, so the next run recomputes without warning again
    calls = []
    assert cache.cached("models", key, lambda: calls.append(1) or {"w": torch.zeros(2)})["w"].shape == (2,)
    assert calls == [1]


def _warned(caplog, fn, match):
    caplog.clear()
    with caplog.at_level(logging.WARNING, "genbench.cache"):
        out = fn()
    assert any(match in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    return out


def test_truncated_and_foreign_files_are_not_trusted(tmp_path, caplog):
    cache = Cache(tmp_path)
    cache.put_json("models", {"k": 2}, {"wall_time_s": 1.5})
    p = cache.path("models", {"k": 2}, ".json")
    p.write_bytes(p.read_bytes()[:-3])
    assert _warned(caplog, lambda: cache.get_json("models", {"k": 2}), "checksum") is None
    q = cache.path("samples", {"k": 3})
    q.parent.mkdir(parents=True)
    torch.save({"x": torch.zeros(2)}, q)  # a plain torch file (e.g. planted) has no checksum header
    assert _warned(caplog, lambda: cache.get("samples", {"k": 3}), "header") is None
    r = cache.path("features", {"k": 4}, ".json")
    r.parent.mkdir(parents=True)
    r.write_bytes(b"GENBENCH-ARTIFACT 1 " + hashlib.sha256(b"{not json").hexdigest().encode() + b" json " + key_hash({"k": 4}).encode() + b"\n{not json")
    assert _warned(caplog, lambda: cache.get_json("features", {"k": 4}), "cannot be parsed") is None


def test_cached_revalidates_hits(tmp_path, caplog):
    cache = Cache(tmp_path)
    cache.put("samples", {"k": 5}, {"x": torch.full((3, 2), float("nan"))})

    def validate(obj):
        if not torch.isfinite(obj["x"]).all():
            raise ValueError("non-finite samples")

    out = _warned(caplog, lambda: cache.cached("samples", {"k": 5}, lambda: {"x": torch.zeros(3, 2)}, validate=validate), "non-finite")
    assert torch.equal(out["x"], torch.zeros(3, 2))
    assert torch.equal(cache.get("samples", {"k": 5})["x"], torch.zeros(3, 2))


def test_cache_kind_cannot_escape_root(tmp_path):
    with pytest.raises(ValueError, match="invalid cache kind"):
        Cache(tmp_path).path("../x", {"k": 1})
    p = Cache(tmp_path).path("models", {"name": "../../etc/passwd"})
    assert p.resolve().is_relative_to(tmp_path.resolve())
    json.dumps(str(p))


# ================================================================================================ the pipeline
import subprocess  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402

from baselines import registry as greg  # noqa: E402
from bench import executors  # noqa: E402
from bench import runner as runner_mod  # noqa: E402
from bench.pipeline import Job  # noqa: E402
from bench.store import (  # noqa: E402
    JOB_DONE,
    ResultStore,
    _config_hash,  # noqa: E402
)
from bench.suite import load_suite  # noqa: E402
from genbench.protocol import GeneratorInfo, HeldOutReference, LabeledSampler, SamplerChoice  # noqa: E402

TINY = """
name = "pipe"
seeds = [0, 5]
[[datasets]]
name = "ring8"
extractor = "raw"
n_fake = 200
metrics = ["fid", "nll"]
[[generators]]
name = "data"
[[generators]]
name = "gmm"
params = { n_components = 8 }
"""


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "pipe.toml"
    p.write_text(TINY)
    return load_suite(str(p))


def test_job_is_plain_data_and_round_trips(tiny):
    jobs = runner_mod.plan(tiny)
    assert [(j.gen.name, j.seed) for j in jobs] == [("data", 0), ("data", 5), ("gmm", 0), ("gmm", 5)]
    j = jobs[-1]
    d = json.loads(json.dumps(j.to_dict()))  # JSON-able: a worker needs nothing else
    assert Job.from_dict(d) == j and Job.from_dict(d).id == "ring8/gmm/seed5"
    assert j.figure_seeds == (0,) and j.latent_seed == 0


def test_a_row_may_list_its_own_seeds(tmp_path, tiny):
    p = tmp_path / "rows.toml"
    p.write_text(TINY.replace("params = { n_components = 8 }", "params = { n_components = 8 }\nseeds = [5, 9, 0, 9]"))
    suite = load_suite(str(p))
    jobs = runner_mod.plan(suite)
    # gmm's seeds replace the suite's (order kept, duplicates dropped); data keeps the suite's
    assert [(j.gen.name, j.seed) for j in jobs] == [("data", 0), ("data", 5), ("gmm", 5), ("gmm", 9), ("gmm", 0)]
    assert all(j.figure_seeds == (0,) and j.latent_seed == 0 for j in jobs)  # figures come from the suite's seeds
    assert [(j.gen.name, j.seed) for j in runner_mod.plan(suite, seeds=[3])] == [("data", 3), ("gmm", 3)]  # --seeds: every row
    j = jobs[-1]
    assert Job.from_dict(json.loads(json.dumps(j.to_dict()))) == j
    # the list of seeds is not part of a job's configuration: the record's config_hash is the one without it
    plain = next(x for x in runner_mod.plan(tiny) if x.gen.name == "gmm" and x.seed == 0)
    assert _config_hash(j) == _config_hash(plain)


def test_no_import_cycle_between_runner_executors_experiments():
    """Each module imports cleanly on its own, first, in a fresh interpreter (a cycle hidden by
    function-level imports used to need runner imported first)."""
    for mod in ("bench.executors", "bench.experiments", "bench.pipeline", "bench.runner", "bench.job", "bench.stages", "bench.measure", "bench.artifacts",
                "bench.report", "bench.leaderboard"):
        r = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
    assert set(executors.EXECUTORS.names()) >= {"local", "process", "ray"}


def test_records_carry_label_direction_unit(tmp_path, tiny):
    runner_mod.run_suite(tiny, results_dir=tmp_path / "r", progress=False, seeds=[0])
    recs = {(r["generator"], r["metric"]): r for r in ResultStore(tmp_path / "r" / "pipe").records()}
    assert recs[("gmm", "fid")]["label"] == "FID" and recs[("gmm", "fid")]["direction"] == "min"
    assert recs[("gmm", "nll")]["unit"] == "nats/point"  # 2-D data: nats per point, from the registration
    assert recs[("data", "nll")]["na"] is True and recs[("data", "nll")]["label"] == "NLL"
    done = [r for r in ResultStore(tmp_path / "r" / "pipe").records(include_internal=True) if r["metric"] == JOB_DONE]
    assert {r["n_records"] for r in done} == {2, 3}  # data: fid, nll; gmm: + train_s


class _Pool:
    """A held-out reference row that only gets its pool through use_pool (no factory kwargs)."""

    def __init__(self, info):
        self.data_info, self.pool, self.labels = info, None, None

    @property
    def info(self):
        return GeneratorInfo("pool-row", "reference", tuple(self.data_info.shape))

    def use_pool(self, x, labels=None):
        self.pool, self.labels = x, labels

    def sample_labeled(self, n, *, generator=None):
        idx = torch.randperm(len(self.pool), generator=generator)[:n]
        return self.pool[idx], None

    def sample(self, n, *, labels=None, prompts=None, steps=None, generator=None):
        return self.sample_labeled(n, generator=generator)[0]


class _Sampled:
    """A SamplerChoice model: make_sampler(**sample_params) -> sampler object passed back to sample(); last_nfe reported."""

    made: list = []

    def __init__(self, info):
        self.data_info, self.last_nfe = info, 0

    @property
    def info(self):
        return GeneratorInfo("sampled", "test", tuple(self.data_info.shape))

    def make_sampler(self, **params):
        _Sampled.made.append(params)
        return types.SimpleNamespace(scale=params["scale"], nfe=0)

    def sample(self, n, *, labels=None, prompts=None, steps=None, generator=None, sampler=None):
        self.last_nfe = 2 * (steps or 1)
        s = 1.0 if sampler is None else sampler.scale
        return s * torch.randn(n, 2, generator=generator)


def test_capabilities_drive_reference_rows_and_sampler_choice(tmp_path):
    assert isinstance(_Pool(None), HeldOutReference) and isinstance(_Pool(None), LabeledSampler)
    assert isinstance(_Sampled(None), SamplerChoice)
    for name, cls in (("pool-row", _Pool), ("sampled", _Sampled)):
        greg.GENERATORS.unregister(name)
        greg.register(name, family="test")(cls)
    try:
        p = tmp_path / "cap.toml"
        p.write_text(TINY.replace("seeds = [0, 5]", "seeds = [0]") + '[[generators]]\nname = "pool-row"\n'
                     '[[generators]]\nname = "sampled"\nsample_params = { scale = 0.5 }\nsteps = [3]\n')  # fmt: skip
        s = runner_mod.run_suite(load_suite(str(p)), results_dir=tmp_path / "r", progress=False)
        assert not s.failed, s.failed
    finally:
        greg.GENERATORS.unregister("pool-row")
        greg.GENERATORS.unregister("sampled")
    recs = {(r["generator"], r["metric"]): r for r in ResultStore(tmp_path / "r" / "pipe").records()}
    assert recs[("pool-row", "fid")]["value"] == pytest.approx(recs[("data", "fid")]["value"], rel=0.5)  # drew from the test split
    assert _Sampled.made == [{"scale": 0.5}]
    assert recs[("sampled@3", "fid")]["nfe"] == 6  # the model's last_nfe, recorded on each metric record of the row
    assert "nfe" not in recs[("gmm", "fid")]


def test_ray_workers_return_records_to_the_driver(tmp_path, tiny, monkeypatch):
    """With a stand-in ``ray`` module: workers collect records and PNG bytes, the driver alone appends and writes them."""
    calls = {"init": None}

    class _Ref:
        def __init__(self, value):
            self.value = value

    def remote(**kw):
        calls["remote"] = kw

        def wrap(fn):
            return types.SimpleNamespace(remote=lambda *a: _Ref(fn(*a)))

        return wrap

    fake = types.SimpleNamespace(
        is_initialized=lambda: False, init=lambda address=None, **kw: calls.update(init=address),
        remote=remote, wait=lambda refs, num_returns=1: (refs[:1], refs[1:]), get=lambda ref: ref.value,
        shutdown=lambda: calls.update(shutdown=True),
    )  # fmt: skip
    monkeypatch.setitem(sys.modules, "ray", fake)
    appended_by = []
    real_append = ResultStore.append

    def spy(self, rec):
        appended_by.append(rec["job"])
        real_append(self, rec)

    run_in_worker = executors.run_in_worker

    def worker_must_not_append(job, cfg, have, collect=False, label=""):
        assert collect, "ray workers must collect, not append"
        monkeypatch.setattr(ResultStore, "append", lambda self, rec: pytest.fail("a worker appended to the store"))
        try:
            return run_in_worker(job, cfg, have, collect, label=label)
        finally:
            monkeypatch.setattr(ResultStore, "append", spy)

    monkeypatch.setattr(executors, "run_in_worker", worker_must_not_append)
    monkeypatch.setattr(ResultStore, "append", spy)
    monkeypatch.setattr(executors, "check_ray_address", lambda address: None)  # the stand-in cluster has no socket
    s = runner_mod.run_suite(tiny, results_dir=tmp_path / "r", progress=False, executor="ray", ray_address="ray://head:10001")
    assert calls["init"] == "ray://head:10001" and calls["remote"]["max_retries"] >= 1
    assert calls.get("shutdown")  # the run started Ray, so it stops it
    assert s.ran == 4 and not s.failed and s.records_added == 2 * 2 + 2 * 3
    assert len(ResultStore(tmp_path / "r" / "pipe").done_jobs()) == 4
    assert (tmp_path / "r" / "pipe" / "assets" / "ring8__gmm.png").stat().st_size > 0  # PNG bytes returned and written by the driver
    monkeypatch.setattr(ResultStore, "append", real_append)
    monkeypatch.setattr(executors, "run_in_worker", run_in_worker)
    local = tmp_path / "l"
    runner_mod.run_suite(tiny, results_dir=local, progress=False)
    strip = lambda rs: sorted((r["job"], r["generator"], r["metric"], r.get("value")) for r in rs if r["metric"] != "train_s")  # noqa: E731
    assert strip(ResultStore(tmp_path / "r" / "pipe").records()) == strip(ResultStore(local / "pipe").records())


def test_latent_figure_decided_from_metadata():
    from bench import data as dreg
    from bench.figures import latent_figure_applies

    assert latent_figure_applies(dreg.load("digits"))
    assert not latent_figure_applies(dreg.load("ring8"))
    d = dreg.load("digits")
    keep = d.train_y != 7
    d2 = types.SimpleNamespace(info=d.info, train_x=d.train_x[keep], train_y=d.train_y[keep], test_x=d.test_x, test_y=d.test_y)
    assert not latent_figure_applies(d2)  # a class the figure needs is missing: no figure, no special case on num_classes


def test_cache_lock_excludes_other_holders(tmp_path):
    """Cache.lock: a second holder of the same artifact's lock waits until the first lets go; other keys do not."""
    import threading
    import time

    cache = Cache(tmp_path)
    got = threading.Event()

    def second():
        with cache.lock("models", {"k": 1}):
            got.set()

    with cache.lock("models", {"k": 1}):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        assert not got.is_set()  # still waiting
        with cache.lock("models", {"k": 2}):  # another artifact: free
            pass
    t.join(timeout=10)
    assert got.is_set()


def test_rows_sharing_a_network_train_it_once(tmp_path, tiny, monkeypatch):
    """Two jobs whose rows share a trained network (same model, params, budget, seed; e.g. ddpm and ddim rows)
    running at once: one trains, the other waits for the cache and loads it (before, both trained)."""
    import threading
    import time

    from bench.pipeline import JobContext, load_data
    from bench.pipeline import train as train_stage

    p = tmp_path / "twin.toml"
    p.write_text(TINY.replace('name = "gmm"', 'name = "gmm"\nmodel = "gmm"') + '[[generators]]\nname = "gmm-b"\nmodel = "gmm"\nparams = { n_components = 8 }\n')
    jobs = [j for j in runner_mod.plan(load_suite(str(p)), seeds=[0]) if j.gen.model == "gmm"]
    assert [j.gen.name for j in jobs] == ["gmm", "gmm-b"]
    fits = []
    cls = type(greg.build("gmm", load_data(JobContext(jobs[0], Cache(tmp_path), "cpu", tmp_path, print)).info, n_components=8))
    real_fit = cls.fit

    def slow_fit(self, *a, **k):
        fits.append(1)
        time.sleep(0.5)  # the other job starts while this one trains
        return real_fit(self, *a, **k)

    monkeypatch.setattr(cls, "fit", slow_fit)
    cache, out = Cache(tmp_path / "cache"), {}

    def run(job):
        ctx = JobContext(job, cache, "cpu", tmp_path, lambda r: None)
        load_data(ctx)
        out[job.gen.name] = train_stage(ctx)

    threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join(timeout=60)
    assert len(fits) == 1
    assert sorted(r["extra"]["cached"] for r in out.values()) == [False, True]
    budgets = [r.get("settings", {}).get("budget") for r in out.values()]  # the cached model's record says its budget too
    assert None not in budgets and budgets[0] == budgets[1]


def test_code_hash_follows_partial_factories_to_their_module():
    """GAN presets are registered as functools.partial of the GAN class; their models' cache key must still carry
    the hash of baselines/gan.py, or editing the GAN code would silently reuse models trained by the old code."""
    from bench.pipeline import _code_hash

    hashes = {name: _code_hash(greg.get(name).factory) for name in ("gan", "cgan", "wgan-gp", "vae")}
    assert hashes["gan"] == hashes["cgan"] == hashes["wgan-gp"] != hashes["vae"]
    assert "unknown" not in hashes.values()


def test_code_hash_covers_the_modules_a_family_imports(tmp_path):
    """Editing a family's base class (or the training loop) retrains its cached models: the hash covers the
    package modules the family imports, transitively, and nothing else; a self-contained module hashes as its file."""
    import importlib
    import sys

    from bench.pipeline import _code_hash
    from genbench.cache import file_hash

    pkg = tmp_path / "famtmp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "loop.py").write_text("STEPS = 1\n")
    (pkg / "base.py").write_text("from .loop import STEPS\n")
    (pkg / "fam.py").write_text("from famtmp.base import STEPS\n\ndef make(info):\n    return STEPS\n")
    (pkg / "other.py").write_text("X = 1\n")
    (pkg / "alone.py").write_text("def make(info):\n    return 0\n")
    sys.path.insert(0, str(tmp_path))
    try:
        fam, alone = importlib.import_module("famtmp.fam"), importlib.import_module("famtmp.alone")
        h0 = _code_hash(fam.make)
        assert _code_hash(alone.make) == file_hash(pkg / "alone.py")
        (pkg / "other.py").write_text("X = 2\n")  # not imported by fam: same hash
        assert _code_hash(fam.make) == h0
        (pkg / "loop.py").write_text("STEPS = 2\n")  # imported through base.py: a new hash
        h1 = _code_hash(fam.make)
        assert h1 != h0
        (pkg / "fam.py").write_text((pkg / "fam.py").read_text() + "# edited\n")
        assert _code_hash(fam.make) not in (h0, h1)
    finally:
        sys.path.remove(str(tmp_path))
        for m in [m for m in sys.modules if m == "famtmp" or m.startswith("famtmp.")]:
            del sys.modules[m]
