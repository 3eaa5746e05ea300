"""docs/architecture.md's example: a new family is a network, a loss and ``sample`` in one module.

``examples/toy_family.py`` (a learned-mean Gaussian on 2-D points) subclasses
``baselines.base.Family``, registers itself when imported (as ``bench run
--import`` does), trains through the one loop, passes the protocol checklist
and runs through a suite like any built-in family. The docs quote the module;
a test keeps the quote and the module equal. If the module needs more than 40
lines, the architecture has regressed.
"""

import re
import sys
from pathlib import Path

import pytest

from baselines.registry import GENERATORS
from bench.check import check_generator
from bench.runner import run_suite
from bench.store import ResultStore
from bench.suite import load_suite
from genbench.plugins import import_user_module

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "toy_family.py"

SUITE = """
name = "toy"
seeds = [0]
[[datasets]]
name = "ring8"
extractor = "raw"
n_fake = 500
metrics = ["fid"]
[[generators]]
name = "toy"
budget = { steps = 200, batch_size = 256 }
"""


@pytest.fixture
def toy():
    module = import_user_module(str(EXAMPLE))
    try:
        yield module
    finally:
        GENERATORS.unregister("toy")
        sys.modules.pop(module.__name__, None)


def test_the_example_is_short_and_quoted_by_the_docs():
    source = EXAMPLE.read_text()
    assert len(source.splitlines()) <= 40
    quoted = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "architecture.md").read_text().split("## Adding a family")[1], re.S)
    assert quoted, "docs/architecture.md's 'Adding a family' section has no python block"
    body = source[source.index("import torch") :]
    assert quoted.group(1) == body, "docs/architecture.md quotes examples/toy_family.py from 'import torch' on: keep them equal"


def test_a_toy_family_runs_through_a_suite(toy, tmp_path):
    (tmp_path / "toy.toml").write_text(SUITE)
    summary = run_suite(load_suite(str(tmp_path / "toy.toml")), results_dir=tmp_path / "res", progress=False)
    assert summary.ran == 1 and not summary.failed
    records = ResultStore(tmp_path / "res" / "toy").records()
    fid = [r for r in records if r["metric"] == "fid"][0]
    # ring8: mean 0, covariance ~0.5 I. N(0, I) has FID 2 (1.5 - 2 sqrt(0.5)) = 0.17; the untrained mu = (3, 3)
    # adds |mu|^2 = 18. Training must have moved mu to the data mean.
    assert 0.0 < fid["value"] < 0.6, fid["value"]
    assert fid["label"] == "FID" and fid["direction"] == "min"
    assert any(r["metric"] == "train_s" for r in records)


def test_the_toy_family_passes_the_protocol_checklist(toy):
    """Shape, range, seeded reproducibility, the state round trip ... (``bench check toy``), all from the base class."""
    report = check_generator("toy")
    assert report.ok, report.format()
    assert GENERATORS.load("toy") is toy.ToyGaussian


def test_the_base_class_checks_sample_arguments_before_the_family_draws(toy):
    """``Family.sample`` refuses an unfitted model, a negative or fractional ``n`` and text prompts with a message
    that names the family, so no family's ``draw`` sees them; numpy integers are accepted."""
    import numpy as np
    import torch

    from genbench.protocol import DataInfo

    m = toy.ToyGaussian(DataInfo(name="pts", shape=(2,), kind="points"))
    with pytest.raises(RuntimeError, match="toy: call fit"):
        m.sample(3)
    m._fitted = True  # as after fit() or load_state_dict()
    for bad in (-1, 2.5, "3"):
        with pytest.raises(ValueError, match="toy: n must be a non-negative int"):
            m.sample(bad)
    with pytest.raises(ValueError, match="toy: text prompts are not supported"):
        m.sample(2, prompts=["a point"])
    x = m.sample(np.int64(4), generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 2) and m.sample(0).shape == (0, 2)
