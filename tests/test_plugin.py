"""The README's "Bring your own model", tested end to end through the command line.

* examples/plugin is pip-installed (``--target`` a temporary folder, put on
  PYTHONPATH: offline, no build isolation) and run through a two-generator suite
  with a built-in family, so the README's instructions cannot rot;
* a plug-in with ``fit`` but no ``state_dict`` (the failure of issue 17) is an
  error at plan time naming the missing methods, before any work runs;
* ``--no-progress`` and a non-TTY stderr silence every progress bar; progress
  never goes to stdout.
"""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from bench.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin"
BAR = re.compile(r"\d+%\||it/s|s/it|\r")

pytestmark = pytest.mark.slow


def _env(*paths: Path, progress: str | None = "0") -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    env.pop("GENBENCH_PROGRESS", None)
    if progress is not None:
        env["GENBENCH_PROGRESS"] = progress
    return env


def bench(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """examples/plugin installed with pip into a temporary site folder (a copy, so no build files land in the repo)."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = shutil.copytree(PLUGIN, tmp / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(src)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"pip install examples/plugin failed:\n{r.stdout}\n{r.stderr}"
    assert list(site.glob("genbench_plugin_example-*.dist-info/entry_points.txt"))
    return site


def _suite(
    path: Path, name: str, generators: str, dataset: str = 'name = "digits"\nextractor = "digits-cnn"\nmetrics = ["fid", "nll"]'
) -> Path:
    path.write_text(f'name = "{name}"\nseeds = [0]\n[[datasets]]\n{dataset}\n{generators}')
    return path


def test_plugin_is_listed_and_passes_bench_check(plugin_site, tmp_path):
    env = _env(plugin_site)
    r = bench("list", "generators", env=env, cwd=tmp_path)
    assert r.returncode == 0 and re.search(r"^independent-pixels\s+\[independent\]", r.stdout, re.M), r.stdout + r.stderr
    r = bench("check", "independent-pixels", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[ok]   state_dict" in r.stdout and r.stdout.strip().endswith("PASS")


def test_plugin_runs_in_a_two_generator_suite(plugin_site, tmp_path):
    suite = _suite(tmp_path / "byom.toml", "byom", '[[generators]]\nname = "independent-pixels"\n[[generators]]\nname = "gaussian"\n')
    r = bench("run", "--suite", str(suite), "--results", "res", "--out", "lb", "--save-samples", env=_env(plugin_site), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    recs = ResultStore(tmp_path / "res" / "byom").records()
    fid = {x["generator"]: x["value"] for x in recs if x["metric"] == "fid"}
    nll = {x["generator"]: x["value"] for x in recs if x["metric"] == "nll"}
    assert set(fid) == {"independent-pixels", "gaussian"} and all(v is not None and v > 0 for v in fid.values())
    # exact discrete NLL of per-pixel categoricals on 8x8 digits: well below the uniform log2(17) = 4.09 bits/dim, above 0
    assert 0 < nll["independent-pixels"] < np.log2(17)
    assert "independent-pixels" in (tmp_path / "lb" / "byom.md").read_text()
    # --save-samples: the generated samples as .npz and a PNG grid
    npz = np.load(tmp_path / "res" / "byom" / "samples" / "digits__independent-pixels__seed0.npz")
    assert npz["x"].shape == (360, 1, 8, 8) and npz["x"].dtype == np.float32 and 0 <= npz["x"].min() and npz["x"].max() <= 1
    assert (tmp_path / "res" / "byom" / "samples" / "digits__gaussian__seed0.png").stat().st_size > 0


BROKEN = '''
import torch
from genbench.protocol import GeneratorInfo, TrainReport


class Broken:
    """info, fit and sample as in issue 17: no state_dict / load_state_dict."""

    def __init__(self, info):
        self.data_info = info
        self.mu = torch.zeros(info.shape)

    @property
    def info(self):
        return GeneratorInfo(name="broken", family="user", shape=tuple(self.data_info.shape))

    def fit(self, data, budget):
        self.mu = data.x.mean(0)
        return TrainReport(steps=1)

    def sample(self, n, *, labels=None, prompts=None, steps=None, generator=None):
        return self.mu.expand(n, *self.mu.shape).clone()


def make(info):
    return Broken(info)
'''


@pytest.fixture
def broken_site(tmp_path) -> Path:
    """A plug-in published through the entry-point group by a hand-made dist-info folder (no pip)."""
    site = tmp_path / "broken-site"
    (site / "broken_gen-0.1.dist-info").mkdir(parents=True)
    (site / "broken_gen.py").write_text(BROKEN)
    (site / "broken_gen-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-gen\nVersion: 0.1\n")
    (site / "broken_gen-0.1.dist-info" / "entry_points.txt").write_text("[genbench.generators]\nbroken = broken_gen:make\n")
    return site


def test_plugin_missing_state_dict_fails_at_plan_time(broken_site, tmp_path):
    suite = _suite(tmp_path / "bad.toml", "bad", '[[generators]]\nname = "gaussian"\n[[generators]]\nname = "mine"\nmodel = "broken"\n')
    r = bench("run", "--suite", str(suite), "--results", "res", "--no-leaderboard", env=_env(broken_site), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "'mine' (broken) on digits: fit() without state_dict(), load_state_dict()" in r.stderr
    assert "nothing was run" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "res" / "bad" / "records.jsonl").exists()  # not even the built-in row ran
    r = bench("check", "broken", env=_env(broken_site), cwd=tmp_path)
    assert r.returncode == 1 and "fit() without state_dict(), load_state_dict()" in r.stdout


# ----------------------------------------------------------------------------- quiet progress
QUIET_SUITE = (
    '[[generators]]\nname = "vae"\nbudget = { steps = 100, batch_size = 64 }\n',
    'name = "ring8"\nextractor = "raw"\nn_fake = 200\nparams = { n_train = 1000, n_test = 200 }\nmetrics = ["fid"]',
)


def _run_with_pty_stderr(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (so tools believe a user watches) and stdout on a pipe."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    out, _ = proc.communicate(timeout=300)
    t.join(timeout=10)
    os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def test_progress_only_on_a_terminal_and_never_on_stdout(tmp_path):
    suite = _suite(tmp_path / "quiet.toml", "quiet", *QUIET_SUITE)
    env = _env(progress=None)  # as a user's shell: GENBENCH_PROGRESS unset
    common = ["run", "--suite", str(suite), "--no-leaderboard", "--device", "cpu"]
    # stderr a terminal: bars are drawn there (so the checks below can fail) and never on stdout
    rc, out, err = _run_with_pty_stderr([*common, "--results", "r1"], env, tmp_path)
    assert rc == 0, out + err
    assert BAR.search(err), f"expected progress bars on a terminal stderr, got {err!r}"
    assert not BAR.search(out), out
    # --no-progress on a terminal: no bar at all
    rc, out, err = _run_with_pty_stderr([*common, "--results", "r2", "--no-progress"], env, tmp_path)
    assert rc == 0 and not BAR.search(err) and not BAR.search(out), err
    # stderr not a terminal (a pipe, a log file): no bar either, without the flag
    r = bench(*common, "--results", "r3", env=env, cwd=tmp_path)
    assert r.returncode == 0 and not BAR.search(r.stderr) and not BAR.search(r.stdout), r.stderr
    assert "suite quiet: 1 jobs planned, 1 ran" in r.stdout
