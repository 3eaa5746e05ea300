"""The metric registry: one genbench Registry, outputs with label/direction/unit, optional modules, capabilities."""

from __future__ import annotations

import pytest
import torch

from genbench.protocol import DataInfo
from genbench.registry import Registry, UnknownNameError
from metrics import registry as mreg
from metrics.context import EvalContext
from metrics.extractors import get_extractor
from metrics.likelihood import bits_per_dim, nll_nats


def test_registry_is_the_shared_type():
    assert isinstance(mreg.METRICS, Registry)
    assert "fid" in mreg.METRICS and "nll" in mreg.available()
    with pytest.raises(UnknownNameError, match="valid: .*fid"):
        mreg.get_metric("no-such-metric")
    with pytest.raises(KeyError):  # callers that catch KeyError keep working
        mreg.get_metric("no-such-metric")


def test_outputs_carry_label_direction_unit():
    outs = mreg.all_outputs()
    assert outs["latency_ms"].unit == "ms" and outs["latency_ms"].direction == "min"
    assert outs["fid"].unit is None and outs["fid"].label == "FID"
    assert outs["class_kl"].unit == "nats"
    with pytest.raises(ValueError, match="direction"):
        mreg.Output("x", "X", "up")


def test_output_meta_value_unit_wins():
    o = mreg.Output("nll", "NLL", "min")
    assert mreg.output_meta(o, mreg.MetricValue(1.0, unit="bits/dim"))["unit"] == "bits/dim"
    assert mreg.output_meta(o, mreg.MetricValue(1.0, settings={"unit": "nats/point"}))["unit"] == "nats/point"
    assert mreg.output_meta(mreg.Output("t", "t", "min", unit="ms"))["unit"] == "ms"


def test_register_metric_signature_and_description():
    @mreg.register_metric("toy-metric-xyz", [mreg.Output("toy_xyz", "Toy", "max", unit="bits/dim")], applies=lambda ctx: False)
    def toy(ctx):
        """A toy metric for the registry test."""
        return {"toy_xyz": mreg.MetricValue(1.0)}

    try:
        spec = mreg.get_metric("toy-metric-xyz")
        assert spec.fn is toy and spec.description == "A toy metric for the registry test."
        assert spec.outputs[0].unit == "bits/dim" and not spec.applies(None)
        with pytest.raises(TypeError, match="Output"):
            mreg.register_metric("bad", ["not an output"])
        with pytest.raises(ValueError, match="phase"):
            mreg.register_metric("bad", [mreg.Output("bad", "Bad", "min")], phase="later")
        assert spec.phase == "measure" and "toy-metric-xyz" not in mreg.timing_metrics()
    finally:
        mreg.METRICS.unregister("toy-metric-xyz")


def test_timing_metrics_come_from_their_registration():
    """The timing phase's metrics and the records each writes are read from the registry (``phase="timing"``), with
    the label, direction and unit the registration declares."""
    table = mreg.timing_metrics()
    assert set(table) == {"latency", "latency_b1", "cost"}
    assert table["latency"] == ("latency_ms", "ms_per_nfe") and table["latency_b1"] == ("latency_b1_ms",)
    assert set(table["cost"]) == {"flops_per_sample", "params", "peak_mem_mb"}
    outs = mreg.all_outputs()
    assert mreg.output_meta(outs["ms_per_nfe"]) == {"label": "ms/NFE", "direction": "min", "unit": "ms", "per_extractor": False}
    assert all(mreg.get_metric(m).phase == "measure" for m in ("fid", "kid", "nll", "prdc"))


def test_builtin_metrics_are_found_by_listing_the_package():
    """No module list to edit: every metric module of metrics/ is imported, and every ``@register_metric("name"``
    (or ``register_metric("name"``) written in one of them is available."""
    import re
    from pathlib import Path

    root = Path(mreg.__file__).parent
    files = sorted(f"metrics.{p.stem}" for p in root.glob("*.py") if not p.stem.startswith("_") and p.stem != "registry")
    assert list(mreg.METRIC_MODULES) == files
    written = {m for p in root.glob("*.py") for m in re.findall(r'register_metric\(\s*"([^"]+)"', p.read_text())}
    assert {"fid", "prdc", "latency", "cost", "vendi"} <= written <= set(mreg.available())


class _NoisyLikelihood:
    """log_prob draws dequantization-like noise from the global RNG (as the flows do)."""

    def log_prob(self, x):
        return -(x**2).sum(1) - torch.rand(len(x))


class _ElboOnly:
    def elbo(self, x):
        return -(x**2).sum(1)


def _ctx(gen, seed=0):
    info = DataInfo(name="toy", shape=(2,), kind="points")
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    return EvalContext(data_info=info, fake=x, real=x, extractor=get_extractor("raw"), test=x, generator=gen, seed=seed)


def test_capabilities_by_protocol():
    assert mreg.get_metric("nll").applies(_ctx(_NoisyLikelihood()))
    assert not mreg.get_metric("nll").applies(_ctx(object()))
    assert mreg.get_metric("nll").applies(_ctx(_ElboOnly()))
    assert mreg.get_metric("nll").fn(_ctx(_ElboOnly()))["nll"].settings["kind"] == "elbo"
    assert not mreg.get_metric("nll_iwae").applies(_ctx(_ElboOnly()))


def test_nll_is_seeded_by_the_job_and_leaves_global_rng_alone():
    """#11: nll drew from the global RNG, so a resumed run could give another value."""
    spec = mreg.get_metric("nll")
    torch.manual_seed(123)
    a = spec.fn(_ctx(_NoisyLikelihood(), seed=7))["nll"]
    state = torch.get_rng_state()
    torch.rand(5)  # move the global RNG: a "resumed" process is elsewhere in its stream
    b = spec.fn(_ctx(_NoisyLikelihood(), seed=7))["nll"]
    c = spec.fn(_ctx(_NoisyLikelihood(), seed=8))["nll"]
    assert a.value == b.value and a.value != c.value
    assert a.unit == "nats/point" and a.settings["unit"] == "nats/point"
    torch.set_rng_state(state)
    before = torch.rand(3)
    torch.set_rng_state(state)
    spec.fn(_ctx(_NoisyLikelihood(), seed=7))
    assert torch.equal(torch.rand(3), before)  # scoring did not consume the caller's stream


def test_bits_per_dim_rejects_empty_and_nan():
    assert bits_per_dim(torch.tensor([64 * 2.0 * 0.6931471805599453]), 64) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="empty"):
        bits_per_dim(torch.tensor([]), 64)
    with pytest.raises(ValueError, match="NaN"):
        bits_per_dim(torch.tensor([1.0, float("nan")]), 64)
    with pytest.raises(ValueError, match="empty"):
        nll_nats(lambda x: x.sum(1), torch.zeros(0, 2))


def test_each_registry_declares_the_metadata_its_entries_carry():
    """A registry states its metadata keys and their types; an unknown key or a value of the wrong type is refused
    at registration, naming the registry, the entry and the key; every built-in entry passes."""
    reg = Registry("widget", meta={"kind": str, "extra": (str, type(None))})
    reg.register("a", object(), kind="x", extra=None)
    with pytest.raises(TypeError, match=r"widget 'b': unknown metadata \['colour'\]; a widget takes: extra, kind"):
        reg.register("b", object(), colour="red")
    with pytest.raises(TypeError, match=r"widget 'c': metadata kind=3 must be str"):
        reg.register("c", object(), kind=3)
    from baselines import registry as greg
    from baselines.samplers import SAMPLERS
    from bench.data.core import DATASETS
    from metrics.extractors import EXTRACTORS

    for r, keys in ((greg.GENERATORS, {"family", "kinds"}), (SAMPLERS, {"kind"}), (DATASETS, {"kind", "source", "extractor"}),
                    (EXTRACTORS, {"kinds", "weights"}), (mreg.METRICS, {"outputs", "applies", "phase"})):  # fmt: skip
        greg.available() if r is greg.GENERATORS else None
        assert keys <= set(r.meta_types), r.kind
        for name, e in r.entries().items():
            r._check_meta(name, e.meta)  # the built-ins satisfy their registry's declaration
