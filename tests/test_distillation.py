"""Distillation students (reflow, consistency and progressive distillation) and the teacher plumbing of the pipeline."""

from __future__ import annotations

import json
import math

import pytest
import torch

from baselines.consistency import ConsistencyDistillation
from baselines.diffusion import DDPM
from baselines.distillation import EpsTeacher, abar_at, ddim_update, v_to_x0
from baselines.progressive import ProgressiveDistillation
from baselines.protocol import Budget, DataInfo, TrainData
from baselines.reflow import Reflow
from baselines.training import Batch
from bench import runner as runner_mod
from bench.suite import SuiteError, load_suite, validate_names

IMG = DataInfo("tiny-img", (1, 8, 8), "image", levels=17)
X_STAR = (torch.arange(64).reshape(1, 1, 8, 8) % 17).float() / 16  # a point mass in [0, 1]
Z_STAR = X_STAR * 2 - 1  # ... in the model space


def _point_mass_teacher(T: int = 50) -> DDPM:
    """A DDPM whose network is the exact eps of the point mass at X_STAR."""
    m = DDPM(IMG, T=T, width=8)
    ab = m.schedule.alphas_bar.float()

    class Oracle(torch.nn.Module):
        def forward(self, x, t, y=None):
            a = ab[t].view(-1, 1, 1, 1)
            return (x - a.sqrt() * Z_STAR) / (1 - a).sqrt()

    m.ema.module = Oracle()
    m._fitted = True
    return m


def _oracle_v(schedule):
    """The exact v of the point mass (x_0 = Z_STAR): v = (sqrt(ab) x - x0) / sqrt(1 - ab)."""
    ab = schedule.alphas_bar.float()

    class V(torch.nn.Module):
        def forward(self, x, t, y=None):
            a = ab[t].view(-1, 1, 1, 1)
            return (a.sqrt() * x - Z_STAR) / (1 - a).sqrt()

    return V()


# ----------------------------------------------------------------------------- the DDIM arithmetic
def test_ddim_update_and_v_parameterisation_agree_with_closed_forms():
    torch.manual_seed(0)
    x0, eps = torch.randn(5, 1, 8, 8), torch.randn(5, 1, 8, 8)
    ab_t, ab_s = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9]), torch.tensor([0.5, 0.6, 0.7, 0.8, 1.0])
    a_t, a_s = ab_t.view(-1, 1, 1, 1), ab_s.view(-1, 1, 1, 1)
    xt = a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps
    # the same x0 and eps, re-noised to ab_s: the deterministic DDIM step keeps the trajectory's noise
    assert torch.allclose(ddim_update(xt, x0, ab_t, ab_s), a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps, atol=1e-5)
    v = a_t.sqrt() * eps - (1 - a_t).sqrt() * x0
    assert torch.allclose(v_to_x0(xt, v, ab_t), x0, atol=1e-5)
    sched = DDPM(IMG, T=50, width=8).schedule
    assert abar_at(sched, torch.tensor([-1, 0, 49])).tolist() == pytest.approx([1.0, float(sched.alphas_bar[0]), float(sched.alphas_bar[49])])


def test_teacher_ode_equals_the_ddim_sampler():
    """EpsTeacher.sample is the DDPM's own DDIM sampler (eta 0, x_0 clipped) on the same noise."""
    torch.manual_seed(0)
    m = DDPM(IMG, T=50, width=8)
    for p in m.ema.module.parameters():
        p.data.normal_(0, 0.05)
    z = torch.randn(6, 1, 8, 8)
    ref = m.sample_internal(6, noise=z, steps=7, sampler=m.make_sampler("ddim"))
    assert torch.allclose(EpsTeacher(m).sample(z, 7, batch=4), ref, atol=1e-5)


# ----------------------------------------------------------------------------- the losses on a constructed case
def test_exact_students_of_a_point_mass_teacher_have_zero_loss():
    """For a point-mass teacher the ODE ends at x* from anywhere; a student that predicts x* exactly has loss 0,
    one that predicts something else does not."""
    teacher = _point_mass_teacher()
    batch = Batch(Z_STAR.expand(16, -1, -1, -1).clone(), None, 0)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    pd = ProgressiveDistillation(IMG, T=50, start_steps=8, width=8)
    assert pd.round_loss(_oracle_v(pd.schedule), EpsTeacher(teacher), 4, batch, g()).item() == pytest.approx(0.0, abs=1e-8)
    assert pd.round_loss(pd.net, EpsTeacher(teacher), 4, batch, g()).item() > 1e-2
    cd = ConsistencyDistillation(IMG, T=50, intervals=10, width=8)
    cd.ode = EpsTeacher(teacher)
    cd.before_fit(batch.x, Budget(steps=1))
    cd.target.module = _oracle_v(cd.schedule)
    assert cd.loss(batch, g(), net=_oracle_v(cd.schedule)).item() == pytest.approx(0.0, abs=1e-8)
    assert cd.loss(batch, g()).item() > 1e-2


def test_teacher_evaluations_are_counted():
    teacher = _point_mass_teacher()
    ode = EpsTeacher(teacher)
    ode.sample(torch.randn(10, 1, 8, 8), 5, batch=4)
    assert ode.evals == 10 * 5


# ----------------------------------------------------------------------------- fit, sample, state
def _data(n=64):
    torch.manual_seed(1)
    return TrainData(torch.rand(n, 1, 8, 8).round(), IMG)


@pytest.mark.parametrize("cls, kw", [(Reflow, {"pairs": 64, "teacher_steps": 4}), (ConsistencyDistillation, {"intervals": 5}), (ProgressiveDistillation, {"start_steps": 4})])
def test_students_fit_report_their_cost_and_round_trip(cls, kw):
    teacher = DDPM(IMG, T=50, width=8)
    teacher.fit(_data(), Budget(steps=2, batch_size=16))
    student = cls(IMG, **({"T": 50} if cls is not Reflow else {}), width=8, **kw)
    with pytest.raises(RuntimeError, match="set_teacher"):
        student.fit(_data(), Budget(steps=2, batch_size=16))
    student.set_teacher(teacher, train_s=12.5)
    rep = student.fit(_data(), Budget(steps=6, batch_size=16))
    assert rep.extra["teacher_train_s"] == 12.5 and rep.extra["teacher_evals"] > 0 and rep.extra["student_s"] > 0
    assert student.teacher is None  # released: the student samples on its own
    for k in (1, 2, 4):
        x = student.sample(5, steps=k, generator=torch.Generator().manual_seed(0))
        assert x.shape == (5, 1, 8, 8) and 0 <= x.min() and x.max() <= 1 and student.last_nfe == k
    again = cls(IMG, **({"T": 50} if cls is not Reflow else {}), width=8, **kw)
    again.load_state_dict(student.state_dict())
    for k in (1, 2):
        a = student.sample(4, steps=k, generator=torch.Generator().manual_seed(3))
        assert torch.equal(a, again.sample(4, steps=k, generator=torch.Generator().manual_seed(3)))


def test_clear_errors():
    teacher = DDPM(IMG, T=50, width=8)
    teacher.fit(_data(), Budget(steps=1, batch_size=16))
    with pytest.raises(ValueError, match="network size"):
        ConsistencyDistillation(IMG, T=50, width=16).set_teacher(teacher)
    with pytest.raises(ValueError, match="schedule"):
        ConsistencyDistillation(IMG, T=100, width=8).set_teacher(teacher)
    with pytest.raises(TypeError, match="ddpm"):
        Reflow(IMG, width=8).set_teacher(object())
    with pytest.raises(ValueError, match="not trained"):
        Reflow(IMG, width=8).set_teacher(DDPM(IMG, T=50, width=8))
    pd = ProgressiveDistillation(IMG, T=50, start_steps=4, keep=(1, 2), width=8)
    pd.set_teacher(teacher)
    pd.fit(_data(), Budget(steps=3, batch_size=16))
    with pytest.raises(ValueError, match=r"kept for steps \[1, 2\], not 4"):
        pd.sample(2, steps=4)
    with pytest.raises(ValueError, match="power of two"):
        ProgressiveDistillation(IMG, start_steps=6)


# ----------------------------------------------------------------------------- the pipeline: teacher rows
SUITE = """
name = "distill-tiny"
seeds = [0]
[[datasets]]
name = "digits"
n_fake = 40
metrics = ["fid"]
[[generators]]
name = "teach"
model = "ddpm"
params = { width = 8, T = 50 }
budget = { steps = 3, batch_size = 32 }
steps = [5]
sample_params = { sampler = "ddim" }
[[generators]]
name = "rf"
model = "reflow"
teacher = "teach"
params = { width = 8, pairs = 32, teacher_steps = 3 }
budget = { steps = 2, batch_size = 16 }
steps = [1, 2]
[[generators]]
name = "pd"
model = "progressive-distillation"
teacher = "teach"
params = { width = 8, T = 50, start_steps = 2, keep = [1, 2] }
budget = { steps = 2, batch_size = 16 }
steps = [1]
"""


def test_students_share_their_teacher_rows_network(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "distill-tiny.toml"
    p.write_text(SUITE)
    s = load_suite(str(p))
    validate_names(s)
    rf = next(g for g in s.generators if g.name == "rf")
    assert rf.teacher == {"name": "teach", "model": "ddpm", "params": {"width": 8, "T": 50}, "budget": {"steps": 3, "batch_size": 32}, "dataset_params": {}}
    res = tmp_path / "res"
    assert runner_mod.run_suite(s, results_dir=res, progress=False).ran == 3
    recs = [json.loads(x) for x in (res / "distill-tiny" / "records.jsonl").read_text().splitlines()]
    train = {r["generator"]: r for r in recs if r["metric"] == "train_s"}
    for row in ("rf", "pd"):
        extra = train[row]["extra"]["train_extra"]
        assert extra["teacher_train_s"] == pytest.approx(train["teach"]["value"])  # the teacher row's own network, trained once
        assert extra["teacher_evals"] > 0
    fids = {r["generator"]: r["value"] for r in recs if r["metric"] == "fid"}
    assert set(fids) == {"teach@5", "rf@1", "rf@2", "pd@1"} and all(math.isfinite(v) for v in fids.values())
    # a changed teacher is a new configuration for its students
    s2 = load_suite(str(_write(tmp_path, SUITE.replace("steps = 3, batch_size = 32", "steps = 4, batch_size = 32"))))
    assert next(g for g in s2.generators if g.name == "rf").teacher["budget"]["steps"] == 4


def _write(tmp_path, text, name="edited.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_teacher_references_are_checked(tmp_path):
    with pytest.raises(SuiteError, match=r"generators\[1\]\.teacher.*'nope'"):
        load_suite(str(_write(tmp_path, SUITE.replace('teacher = "teach"', 'teacher = "nope"', 1))))
    with pytest.raises(SuiteError, match="itself a student"):
        load_suite(str(_write(tmp_path, SUITE.replace('teacher = "teach"\nparams = { width = 8, T = 50, start', 'teacher = "rf"\nparams = { width = 8, T = 50, start'))))
