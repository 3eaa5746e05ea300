"""The timing phase and its measurements: interleaving, stable medians, machine load, FLOPs, peak memory."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch

from bench import timing
from metrics import flops as fl
from metrics import latency as lat

# ---------------------------------------------------------------- latency


def test_round_robin_interleaves_after_warmup_and_stops_when_stable():
    calls: list[str] = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "ABC"}
    res = lat.measure_round_robin(fns, batch_size=4, warmup=2, min_repeats=5, max_repeats=8, rel_tol=1e9, max_seconds=None)
    assert calls[:6] == list("ABCABC")  # warm-up, interleaved
    assert calls[6:9] == list("ABC") and calls[9:12] == list("ABC")  # timed rounds, interleaved
    assert all(r.repeats == 5 and r.stable for r in res.values())  # infinite tolerance: stable as soon as allowed (5 repeats)
    assert len(calls) == 2 * 3 + 5 * 3


def test_round_robin_caps_unstable_rows():
    seq = iter([0.001, 0.01] * 100)
    fns = {"jitter": lambda: time.sleep(next(seq)), "flat": lambda: None}
    res = lat.measure_round_robin(fns, batch_size=1, warmup=0, min_repeats=3, max_repeats=12, rel_tol=0.0, max_seconds=None, window=3)
    assert res["jitter"].repeats == 12 and not res["jitter"].stable  # rel_tol 0: never settles, capped at max_repeats
    capped = lat.measure_round_robin({"slow": lambda: time.sleep(0.02)}, batch_size=1, warmup=0, min_repeats=5, max_repeats=50, rel_tol=0.0, max_seconds=0.01)
    assert capped["slow"].repeats == 2  # max_seconds: at least 2 kept


def test_latency_stats_per_sample_and_quartiles():
    s = lat.latency_stats([0.1, 0.2, 0.3, 0.4, 0.5], batch_size=10)
    assert s.median_s == pytest.approx(0.3) and s.per_sample_ms == pytest.approx(30.0)
    assert s.q25_ms == pytest.approx(20.0) and s.q75_ms == pytest.approx(40.0) and s.per_sample_iqr_ms == pytest.approx(20.0)
    with pytest.raises(ValueError, match="at least one"):
        lat.latency_stats([], 1)


def test_load_monitor_arithmetic(monkeypatch):
    """Other processes' CPU = machine busy time minus our own, per wall second (constructed counters)."""
    busy = iter([100.0, 103.0])  # machine busy seconds before/after
    own = iter([10.0, 11.0])  # this process's CPU seconds before/after
    monkeypatch.setattr(lat, "_proc_busy_s", lambda: next(busy))
    monkeypatch.setattr(lat, "_self_cpu_s", lambda: next(own))
    clock = iter([0.0, 2.0])
    monkeypatch.setattr(lat.time, "perf_counter", lambda: next(clock))
    with lat.LoadMonitor(threshold_cores=0.25) as mon:
        pass
    assert mon.result.other_cpu_cores == pytest.approx((3.0 - 1.0) / 2.0) and mon.result.loaded
    assert mon.result.own_cpu_s == pytest.approx(1.0)


def test_load_monitor_fallback_without_proc(monkeypatch):
    monkeypatch.setattr(lat, "_proc_busy_s", lambda: None)
    monkeypatch.setattr(lat, "_loadavg", lambda: 3.0)
    with lat.LoadMonitor(threshold_cores=0.25, own_threads=1) as mon:
        pass
    assert mon.result.other_cpu_cores is None and mon.result.loaded and "load average" in mon.result.method


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_load_monitor_sees_a_busy_neighbour_not_itself():
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.5: pass"])
    try:
        time.sleep(0.2)
        with lat.LoadMonitor(threshold_cores=0.25) as mon:
            time.sleep(1.0)
    finally:
        spin.wait()
    assert mon.result.other_cpu_cores > 0.5 and mon.result.loaded  # the child burned ~1 core


# ---------------------------------------------------------------- FLOPs and memory


def test_flops_closed_form_linear_and_conv():
    lin = torch.nn.Linear(30, 20)
    x = torch.randn(7, 30)
    assert fl.count_flops(lambda: lin(x)) == 2 * 7 * 30 * 20
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    im = torch.randn(2, 3, 10, 10)
    assert fl.count_flops(lambda: conv(im)) == 2 * 2 * 8 * 10 * 10 * 3 * 3 * 3


def test_peak_memory_cpu_constructed():
    before = torch.zeros(1000)  # live before the call: not counted

    def fn():
        a = torch.empty(250_000)  # 1 MB
        b = torch.empty(500_000)  # 2 MB, both alive: 3 MB
        del a, b
        c = torch.empty(100_000)  # 0.4 MB after the peak
        return c

    peak, how = fl.peak_memory(fn, "cpu")
    assert peak == 3_000_000 and "profiler" in how
    assert before.numel() == 1000


def test_count_params_prefers_info_then_modules():
    net = torch.nn.Linear(3, 2)
    assert fl.count_params(SimpleNamespace(info=SimpleNamespace(n_params=0), net=net)) == 8
    assert fl.count_params(SimpleNamespace(info=SimpleNamespace(n_params=99), net=net)) == 99


# ---------------------------------------------------------------- the phase, on a fake runner


class ToyGen:
    """Sleeps ``ms_per_nfe`` ms per network evaluation per sample; one Linear layer per evaluation for the FLOP count."""

    def __init__(self, ms_per_nfe: float, log: list[str], name: str) -> None:
        self.net = torch.nn.Linear(4, 4, bias=False)
        self.info = SimpleNamespace(n_params=0, iterative=True, conditioning="none")
        self.ms, self.log, self.name = ms_per_nfe, log, name
        self.last_nfe = None

    def sample(self, n, *, steps=None, generator=None, labels=None, sampler=None):
        steps = steps or 1
        self.log.append(f"{self.name}{steps}")
        x = torch.zeros(n, 4)
        for _ in range(steps):
            x = self.net(x)
        time.sleep(self.ms * steps * n / 1000)
        self.last_nfe = steps
        return x


@dataclass
class FakeStore:
    recs: list = field(default_factory=list)

    failed: set = field(default_factory=set)

    def keys(self):
        return {(r["job"], r["generator"], r["metric"]) for r in self.recs}

    def done_jobs(self):
        return {f"toy/{n}/seed0" for n in ("a", "b", "bad")} - self.failed

    loaded: set = field(default_factory=set)

    def loaded_keys(self):
        return self.loaded


class FakeRunner:
    def __init__(self, suite, models):
        self.suite, self.models, self.store, self.device = suite, models, FakeStore(), "cpu"

    def load_model(self, job):
        return self.models[job.gen.name]

    def sampler_for(self, job):
        return None

    def append(self, job, row, metric, fields, steps=None):
        self.store.recs.append({"job": job.id, "generator": row, "metric": metric, "steps": steps, **fields})


def _job(name, steps, metrics=("latency", "latency_b1", "cost"), seed=0):
    gen = SimpleNamespace(name=name, model="toy", metrics=None, steps=list(steps), row_label=lambda s, n=name: n if s is None else f"{n}@{s}")
    ds = SimpleNamespace(name="toy", metrics=list(metrics), settings={})
    return SimpleNamespace(id=f"toy/{name}/seed{seed}", gen=gen, dataset=ds, seed=seed)


def test_timing_phase_records_and_resume():
    log: list[str] = []
    models = {"a": ToyGen(0.5, log, "a"), "b": ToyGen(0.5, log, "b")}
    suite = SimpleNamespace(settings={"latency_batch": 4, "latency_repeats": 3, "timing_max_repeats": 6, "latency_max_seconds": 2.0}, raw={})
    jobs = [_job("a", [2, 4]), _job("b", [None])]
    r = FakeRunner(suite, models)
    timing.run_timing_phase(r, jobs)
    recs = {(x["generator"], x["metric"]): x for x in r.store.recs}
    for row in ("a@2", "a@4", "b"):
        for m in ("latency_ms", "latency_b1_ms", "ms_per_nfe", "flops_per_sample", "params", "peak_mem_mb"):
            assert (row, m) in recs, (row, m)
    # ms per NFE = latency / NFE, NFE from the model's last_nfe
    for row, nfe in (("a@2", 2), ("a@4", 4), ("b", 1)):
        assert recs[(row, "ms_per_nfe")]["value"] == pytest.approx(recs[(row, "latency_ms")]["value"] / nfe)
        assert recs[(row, "latency_ms")]["nfe"] == nfe
    # a toy that sleeps 0.5 ms per NFE per sample: sleep never returns early, so ms/NFE >= 0.5 for every row
    # (no upper bound here: a loaded machine only adds; speed targets live in tests/benchmarks)
    assert all(recs[(row, "ms_per_nfe")]["value"] >= 0.5 for row in ("a@2", "a@4", "b"))
    assert recs[("a@4", "flops_per_sample")]["value"] == 4 * 2 * 4 * 4  # 4 evaluations of a 4x4 matmul per sample
    assert recs[("a@2", "params")]["value"] == 16
    st = recs[("a@2", "latency_ms")]["settings"]
    assert st["phase"] == "timing" and st["threads"] == 1 and st["batch_size"] == 4 and st["interleaved_rows"] == 3
    assert isinstance(recs[("a@2", "latency_ms")]["loaded"], bool) and "other_cpu_cores" in st["load"]
    assert recs[("a@2", "latency_ms")]["label"] == "ms/sample" and recs[("a@2", "ms_per_nfe")]["unit"] == "ms"
    # interleaved: the timed calls at one batch size alternate between the models
    assert "a2a4b1a2a4b1" in "".join(log)
    assert torch.get_num_threads() >= 1
    n = len(r.store.recs)
    timing.run_timing_phase(r, jobs)  # resume: everything exists, nothing is timed again
    assert len(r.store.recs) == n
    # --retime: only the rows whose timing was flagged loaded are measured again
    r.store.loaded = {("toy/a/seed0", "a@4", "latency_ms")}
    timing.run_timing_phase(r, jobs)
    assert len(r.store.recs) == n
    r.retime = True
    timing.run_timing_phase(r, jobs)
    assert {(x["generator"], x["metric"]) for x in r.store.recs[n:]} == {("a@4", "latency_ms")}


def test_timing_phase_skips_rows_without_timing_metrics_and_reports_bad_settings():
    r = FakeRunner(SimpleNamespace(settings={}, raw={}), {"a": ToyGen(0.0, [], "a")})
    timing.run_timing_phase(r, [_job("a", [None], metrics=("fid",))])
    assert r.store.recs == []
    r.store.failed.add("toy/a/seed0")  # a job that failed is not timed (its model was never trained)
    timing.run_timing_phase(r, [_job("a", [None], metrics=("latency",))])
    assert r.store.recs == []
    with pytest.raises(ValueError, match="timing_threads"):
        timing.TimingSettings.from_settings({"timing_threads": 0})
    with pytest.raises(ValueError, match="latency_batch"):
        timing.TimingSettings.from_settings({"latency_batch": "many"})
    with pytest.raises(ValueError, match="timing_seeds"):
        timing.TimingSettings.from_settings({"timing_seeds": 0})


def test_timing_seeds_times_only_the_named_seeds_models():
    log: list[str] = []
    settings = {"latency_repeats": 2, "timing_max_repeats": 3, "latency_max_seconds": 1.0, "timing_seeds": [0]}
    r = FakeRunner(SimpleNamespace(settings=settings, raw={}), {"a": ToyGen(0.0, log, "a")})
    r.store.done_jobs = lambda: {"toy/a/seed0", "toy/a/seed1"}
    timing.run_timing_phase(r, [_job("a", [None], seed=0), _job("a", [None], seed=1)])
    assert {x["job"] for x in r.store.recs} == {"toy/a/seed0"}
    assert {x["metric"] for x in r.store.recs} >= {"latency_ms", "latency_b1_ms", "flops_per_sample"}


def test_timing_phase_leaves_out_a_broken_row(capsys):
    class Broken(ToyGen):
        def sample(self, n, **kw):
            raise RuntimeError("boom")

    log: list[str] = []
    r = FakeRunner(SimpleNamespace(settings={"latency_repeats": 2, "timing_max_repeats": 3}, raw={}),
                   {"a": ToyGen(0.0, log, "a"), "bad": Broken(0.0, log, "bad")})  # fmt: skip
    timing.run_timing_phase(r, [_job("a", [None], metrics=("latency",)), _job("bad", [None], metrics=("latency",))])
    assert {x["generator"] for x in r.store.recs} == {"a"}
    err = capsys.readouterr().err
    assert "toy/bad/seed0" in err and "boom" in err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_peak_memory_and_round_robin_on_cuda():
    def fn():
        a = torch.empty(1 << 20, device="cuda")  # 4 MiB (a multiple of the allocator's 512-byte blocks)
        b = torch.empty(1 << 19, device="cuda")  # 2 MiB
        return a.sum() + b.sum()

    peak, how = fl.peak_memory(fn, "cuda")
    assert (1 << 22) + (1 << 21) <= peak <= (1 << 22) + (1 << 21) + 4096 and "cuda" in how
    res = lat.measure_round_robin({"a": fn, "b": fn}, batch_size=2, min_repeats=3, max_repeats=5, device="cuda")
    assert all(r.repeats >= 3 for r in res.values())


def test_a_row_failing_inside_the_block_loses_only_itself(capsys):
    class BigBatchFails(ToyGen):
        def sample(self, n, **kw):
            if n > 1:
                raise RuntimeError("out of memory")
            return super().sample(n, **kw)

    log: list[str] = []
    r = FakeRunner(SimpleNamespace(settings={"latency_batch": 4, "latency_repeats": 2, "timing_max_repeats": 3}, raw={}),
                   {"a": ToyGen(0.0, log, "a"), "bad": BigBatchFails(0.0, log, "bad")})  # fmt: skip
    timing.run_timing_phase(r, [_job("a", [None], metrics=("latency",)), _job("bad", [None], metrics=("latency",))])
    got = {(x["generator"], x["metric"]) for x in r.store.recs}
    assert got == {("a", "latency_ms"), ("a", "ms_per_nfe")}
    assert "out of memory" in capsys.readouterr().err


def test_a_row_without_an_nfe_gets_an_na_ms_per_nfe_and_is_not_planned_again():
    """An iterative model that reports no NFE (and no suite nfe table entry): ms per NFE is recorded n/a with its
    reason, so the next run's timing phase has nothing left to do for the row (it used to load, or retrain, the
    model in every run to try again)."""

    class NoNFE(ToyGen):
        def sample(self, n, **kw):
            out = super().sample(n, **kw)
            self.last_nfe = None
            return out

    loads = []
    r = FakeRunner(SimpleNamespace(settings={"latency_batch": 4, "latency_repeats": 2, "timing_max_repeats": 3}, raw={}), {"b": NoNFE(0.0, [], "b")})
    real_load = r.load_model
    r.load_model = lambda job: loads.append(job.id) or real_load(job)
    jobs = [_job("b", [None], metrics=("latency",))]
    timing.run_timing_phase(r, jobs)
    recs = {x["metric"]: x for x in r.store.recs}
    assert recs["latency_ms"]["value"] > 0
    na = recs["ms_per_nfe"]
    assert na["na"] is True and na["value"] is None and "NFE unknown" in na["na_reason"] and na["loaded"] is False
    assert na["settings"]["definition"] == "median ms per sample at the suite batch / NFE"  # the protocol line stays whole
    timing.run_timing_phase(r, jobs)
    assert loads == ["toy/b/seed0"] and len(r.store.recs) == 2
