"""Hostile inputs, third round: links, full disks, tampered caches, damaged records and suites, usage errors.

One test (or a few) per fault; each fails on the code before its fix. Nothing
here may write, truncate or remove anything outside the results, output and
cache folders it is given, or let a traceback reach the command line.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import cli
from bench import leaderboard as lb
from bench.data import files as data_files
from bench.data.core import DataError
from bench.plots import save_loss_curves
from bench.provenance import resolve_device
from bench.store import DamagedRecordWarning, ResultStore
from bench.suite import SuiteError, load_suite
from genbench import safeio
from genbench.cache import Cache
from genbench.registry import check_name

TINY = """
name = "tiny"
seeds = [0]
[[datasets]]
name = "ring8"
extractor = "raw"
n_fake = 200
metrics = ["fid"]
[[generators]]
name = "data"
"""

LB_SUITE = """
name = "lbtest"
seeds = [0]
[[datasets]]
name = "digits"
extractor = "digits-cnn"
metrics = ["fid"]
[[generators]]
name = "gmm"
[[generators]]
name = "vae"
"""


def _rec(gen: str, value: float, seed: int = 0, **kw) -> dict:
    return {"suite": "lbtest", "job": f"digits/{gen}/seed{seed}", "dataset": "digits", "generator": gen, "base": gen,
            "model": gen, "seed": seed, "steps": None, "metric": "fid", "value": value, "n_real": 1437, "n_fake": 360,
            "extractor": "digits-cnn", **kw}  # fmt: skip


@pytest.fixture
def lb_suite(tmp_path):
    p = tmp_path / "lbtest.toml"
    p.write_text(LB_SUITE)
    return load_suite(str(p))


def _lb_results(tmp_path: Path, recs: list[dict] | None = None) -> Path:
    res = tmp_path / "res"
    store = ResultStore(res / "lbtest")
    for r in recs or [_rec("gmm", 24.6), _rec("vae", 24.9)]:
        store.append(r)
    return res


def _outside(tmp_path: Path) -> Path:
    victim = tmp_path / "outside" / "victim.txt"
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text("line one\nline two without newline")
    return victim


# ---------------------------------------------------------------- 1. the store and its links
def test_store_refuses_a_linked_records_file(tmp_path):
    victim = _outside(tmp_path)
    (tmp_path / "res" / "tiny").mkdir(parents=True)
    (tmp_path / "res" / "tiny" / "records.jsonl").symlink_to(victim)
    with pytest.raises(safeio.UnsafePathError, match="symbolic link"):
        ResultStore(tmp_path / "res" / "tiny").append({"job": "j", "metric": "m", "generator": None, "value": 1.0})
    assert victim.read_text() == "line one\nline two without newline"  # not appended to, not cut by the tail repair


def test_store_refuses_a_linked_suite_folder_and_run_log(tmp_path):
    victim = _outside(tmp_path)
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "tiny").symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(safeio.UnsafePathError):
        ResultStore(tmp_path / "res" / "tiny").append({"job": "j", "metric": "m", "generator": None})
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.txt"]


def test_cli_run_with_a_linked_records_file_exits_cleanly(tmp_path, capsys):
    victim = _outside(tmp_path)
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    (tmp_path / "res" / "tiny").mkdir(parents=True)
    (tmp_path / "res" / "tiny" / "records.jsonl").symlink_to(victim)
    code = cli.main(["run", "--suite", str(suite), "--results", str(tmp_path / "res"), "--no-leaderboard", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert victim.read_text() == "line one\nline two without newline"


# ---------------------------------------------------------------- 2. cache and lock folders
@pytest.mark.parametrize("linked", ["samples", ".locks"])
def test_cache_folders_are_not_followed(tmp_path, linked):
    outside = tmp_path / "outside"
    outside.mkdir()
    cache = Cache(tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / linked).symlink_to(outside, target_is_directory=True)
    with pytest.raises(safeio.UnsafePathError):
        if linked == "samples":
            cache.put("samples", {"k": 1}, {"x": torch.zeros(2)})
        else:
            with cache.lock("samples", {"k": 1}):
                pass
    assert list(outside.iterdir()) == []


def test_store_lock_folder_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "res" / "tiny").mkdir(parents=True)
    (tmp_path / "res" / "tiny" / "locks").symlink_to(outside, target_is_directory=True)
    with pytest.raises(safeio.UnsafePathError):
        ResultStore(tmp_path / "res" / "tiny").try_claim("job-1")
    assert list(outside.iterdir()) == []


# ---------------------------------------------------------------- 3. leaderboard outputs through links
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_linked_csv_json_leaderboard_is_not_written_through(tmp_path, lb_suite, fmt):
    victim = _outside(tmp_path)
    res = _lb_results(tmp_path)
    out = tmp_path / "lb"
    out.mkdir()
    (out / f"lbtest.{fmt}").symlink_to(victim)
    p = lb.write_leaderboard(lb_suite, res, out, fmt=fmt)
    assert victim.read_text() == "line one\nline two without newline"
    assert not p.is_symlink() and "gmm" in p.read_text()


def test_linked_assets_and_manifest_are_not_written_through(tmp_path, lb_suite):
    res = _lb_results(tmp_path)
    src = res / "lbtest" / "assets"
    src.mkdir(parents=True)
    (src / "digits__gmm.png").write_bytes(b"png-gmm")
    out = tmp_path / "lb"
    assets = out / "assets" / "lbtest"
    assets.mkdir(parents=True)
    grid_victim, manifest_victim = tmp_path / "grid-victim", tmp_path / "manifest-victim"
    grid_victim.write_text("keep grid")
    manifest_victim.write_text("keep manifest")
    (assets / "digits__gmm.png").symlink_to(grid_victim)
    (assets / lb.MANIFEST).symlink_to(manifest_victim)
    lb.write_leaderboard(lb_suite, res, out)
    assert grid_victim.read_text() == "keep grid" and manifest_victim.read_text() == "keep manifest"
    assert (assets / "digits__gmm.png").read_bytes() == b"png-gmm" and not (assets / "digits__gmm.png").is_symlink()


def test_loss_plot_is_not_written_through_a_link(tmp_path):
    victim = _outside(tmp_path)
    link = tmp_path / "assets" / "losses__digits.png"
    link.parent.mkdir()
    link.symlink_to(victim)
    save_loss_curves({"vae": {"loss": [3.0, 2.0, 1.0]}}, link)
    assert victim.read_text() == "line one\nline two without newline"
    assert link.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- 4. names ending in a newline
@pytest.mark.parametrize("name", ["tiny\n", "tiny\r\n", "a\nb"])
def test_names_must_match_in_full(name):
    with pytest.raises(ValueError):
        check_name(name, "suite name")


def test_suite_name_with_final_newline_is_refused(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(TINY.replace('name = "tiny"', 'name = "tiny\\n"'))
    with pytest.raises(SuiteError, match="name"):
        load_suite(str(p))


# ---------------------------------------------------------------- 5. outputs written atomically
FULL_DISK = """
import resource, signal, sys
from bench import cli
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("fmt", ["csv", "json", "md"])
def test_full_disk_leaves_the_previous_leaderboard_whole(tmp_path, lb_suite, fmt):
    """A real short write (file-size limit of 64 bytes in a child process) while the leaderboard is rewritten:
    the previous file stays whole, no temporary file is left, and the error is one line naming the path."""
    import subprocess
    import sys

    res = _lb_results(tmp_path)
    out = tmp_path / "lb"
    before = lb.write_leaderboard(lb_suite, res, out, fmt=fmt).read_bytes()
    assert len(before) > 64
    argv = ["leaderboard", "--suite", str(lb_suite.path), "--results", str(res), "--out", str(out), "--format", fmt]
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, *argv], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(out) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert (out / f"lbtest.{fmt}").read_bytes() == before
    assert [p.name for p in out.rglob("*.tmp")] == []


# ---------------------------------------------------------------- 6. a killed render never refers to a missing asset
def test_interrupted_render_keeps_the_markdown_and_its_assets_consistent(tmp_path, lb_suite, monkeypatch):
    res = _lb_results(tmp_path)
    src = res / "lbtest" / "assets"
    src.mkdir(parents=True)
    (src / "digits__gmm.png").write_bytes(b"png-gmm")
    (src / "digits__vae.png").write_bytes(b"png-vae")
    out = tmp_path / "lb"
    md = lb.write_leaderboard(lb_suite, res, out)
    (src / "digits__vae.png").unlink()  # the next render drops the vae grid
    real = lb.dataset_table

    def killed(*a, **kw):  # Ctrl-C while the tables are rendered: assets are being replaced, the markdown is not yet
        raise KeyboardInterrupt

    monkeypatch.setattr(lb, "dataset_table", killed)
    with pytest.raises(KeyboardInterrupt):
        lb.write_leaderboard(lb_suite, res, out)
    monkeypatch.setattr(lb, "dataset_table", real)
    for ref in __import__("re").findall(r"\]\((assets/[^)]+)\)", md.read_text()):
        assert (out / ref).exists(), f"{md} refers to {ref}, which is gone"
    lb.write_leaderboard(lb_suite, res, out)  # a complete render then removes the stale grid
    assert not (out / "assets" / "lbtest" / "digits__vae.png").exists()
    assert "digits__vae.png" not in md.read_text()


# ---------------------------------------------------------------- 7. file-system errors, short writes
def test_short_write_is_an_error_and_leaves_no_cut_record(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "res" / "tiny")
    store.append({"job": "j0", "metric": "m", "generator": None, "value": 1.0})
    before = store.path.read_bytes()
    real = os.write
    monkeypatch.setattr(safeio, "_write_fd", lambda fd, data: real(fd, bytes(data)[:10]) if len(data) > 10 else 0)
    with pytest.raises(OSError):
        store.append({"job": "j1", "metric": "m", "generator": None, "value": 2.0})
    monkeypatch.setattr(safeio, "_write_fd", real)
    assert store.path.read_bytes() == before


def test_write_all_checks_the_count(monkeypatch, tmp_path):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        monkeypatch.setattr(safeio, "_write_fd", lambda fd, data: 0)
        with pytest.raises(OSError, match="short write"):
            safeio.write_all(fd, b"abc")
    finally:
        os.close(fd)


def test_cli_file_system_errors_are_one_line(tmp_path, lb_suite, capsys):
    res = _lb_results(tmp_path)
    out_file = tmp_path / "lb-is-a-file"
    out_file.write_text("x")
    code = cli.main(["leaderboard", "--suite", str(lb_suite.path), "--results", str(res), "--out", str(out_file)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and str(out_file) in err and len(err.strip().splitlines()) == 1
    (res / "lbtest" / "records.jsonl").unlink()
    (res / "lbtest" / "records.jsonl").mkdir()  # records.jsonl a folder
    code = cli.main(["leaderboard", "--suite", str(lb_suite.path), "--results", str(res), "--out", str(tmp_path / "lb")])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and "records.jsonl" in err


def test_cli_run_on_a_file_where_the_suite_folder_goes(tmp_path, capsys):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "tiny").write_text("a file")
    code = cli.main(["run", "--suite", str(suite), "--results", str(tmp_path / "res"), "--no-leaderboard", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and "tiny" in err


# ---------------------------------------------------------------- 8. damaged store lines
BAD_LINES = [
    b"[" * 200_000 + b"]" * 200_000,
    json.dumps({"job": "digits/vae/seed0", "metric": "fid", "generator": "vae", "value": 0}).encode().replace(b'"value": 0', b'"value": ' + b"9" * 400),
    b'{"job": "digits/vae/seed0", "metric": "fid", "generator": "vae", "seed": 1e400, "value": 1.0}',
    b'{"job": "digits/vae/seed0", "metric": "train_s", "generator": "vae", "seed": 0, "value": "slow"}',
    b'{"job": "digits/vae/seed0", "metric": "fid", "generator": "vae", "seed": "abc", "value": 1.0}',
    b'{"job": "digits/vae/seed0", "metric": "fid", "generator": "vae", "seed": 0, "value": 1.0, "n_fake": "lots"}',
    b'{"job": "digits/vae/seed0", "metric": "fid", "generator": "vae", "seed": 0, "value": 1.0, "extra": ' + b'{"a": ' * 100 + b"1" + b"}" * 101,
]


@pytest.mark.parametrize("bad", BAD_LINES, ids=["nested-200k", "400-digit-value", "seed-1e400", "value-slow", "seed-abc", "n_fake-lots", "nested-100"])
def test_a_damaged_line_is_skipped_and_named(tmp_path, lb_suite, bad):
    res = _lb_results(tmp_path, [_rec("gmm", 24.6)])
    path = res / "lbtest" / "records.jsonl"
    with open(path, "ab") as f:
        f.write(bad + b"\n")
    with pytest.warns(DamagedRecordWarning, match=r"records\.jsonl:2"):
        recs = ResultStore(res / "lbtest").records()
    assert [r["generator"] for r in recs] == ["gmm"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedRecordWarning)
        md = lb.write_leaderboard(lb_suite, res, tmp_path / "lb").read_text()  # no reader crashes on it
        assert "gmm" in md
        store = ResultStore(res / "lbtest")
        store.append(_rec("vae", 24.9))  # and the folder still takes new records
        assert {r["generator"] for r in store.records()} == {"gmm", "vae"}


# ---------------------------------------------------------------- 9 and 10. suite files
def test_deeply_nested_suite_is_a_suite_error(tmp_path, capsys):
    p = tmp_path / "deep.toml"
    p.write_text(TINY + "[settings]\nx = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(SuiteError, match="deep"):
        load_suite(str(p))
    assert cli.main(["run", "--suite", str(p), "--results", str(tmp_path / "res"), "--no-leaderboard"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_moderately_nested_suite_is_bounded(tmp_path):
    p = tmp_path / "deep.toml"
    p.write_text(TINY.replace('name = "data"', 'name = "data"\nparams = { a = ' + "[" * 40 + "1" + "]" * 40 + " }"))
    with pytest.raises(SuiteError, match="nested deeper"):
        load_suite(str(p))


@pytest.mark.parametrize(
    "line,field",
    [("sample_batch = 0", "sample_batch"), ("sample_batch = -5", "sample_batch"), ('sample_batch = "big"', "sample_batch"),
     ("sample_batch = 0.5", "sample_batch"), ('reference = "bogus"', "reference"), ("k_prc = 0", "k_prc"),
     ("bootstrap = -1", "bootstrap"), ('bootstrap = "many"', "bootstrap"), ("kid_subsets = 0", "kid_subsets")],
)  # fmt: skip
def test_suite_settings_are_checked_at_load(tmp_path, capsys, line, field):
    p = tmp_path / "s.toml"
    p.write_text(TINY.replace("[[datasets]]", f"[settings]\n{line}\n[[datasets]]", 1))
    with pytest.raises(SuiteError, match=rf"{p.name}.*settings\.{field}"):
        load_suite(str(p))
    assert cli.main(["run", "--suite", str(p), "--results", str(tmp_path / "res"), "--no-leaderboard"]) == 2
    assert not (tmp_path / "res").exists()  # refused before any work
    capsys.readouterr()


def test_dataset_settings_are_checked_at_load(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(TINY.replace("n_fake = 200", "n_fake = 200\nsettings = { k_prc = 0 }"))
    with pytest.raises(SuiteError, match=r"datasets\[0\] \(ring8\)\.settings\.k_prc"):
        load_suite(str(p))


def test_quoted_row_needs_a_label(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(TINY + '[[quoted]]\ndataset = "ring8"\nvalues = { fid = 1.0 }\n')
    with pytest.raises(SuiteError, match=r"quoted\[0\]\.label"):
        load_suite(str(p))


# ---------------------------------------------------------------- 11. .npz members and image sizes
def test_npz_member_not_named_npy_is_size_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(data_files, "MAX_BYTES", 1 << 20)
    buf = io.BytesIO()
    np.save(buf, np.zeros((64, 1, 64, 64), np.float32))  # 1 MiB of zeros: deflates to a few KiB
    p = tmp_path / "bomb.npz"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x", buf.getvalue())  # no .npy suffix
    assert p.stat().st_size < 50_000
    with pytest.raises(DataError, match="limit"):
        data_files.load_npz(p)


def test_image_folder_size_is_checked_before_decoding(tmp_path, monkeypatch):
    for i in range(3):
        Image.new("L", (256, 256)).save(tmp_path / f"{i}.png")
    monkeypatch.setattr(data_files, "MAX_BYTES", 3 * 256 * 256 * 4 - 1)
    decoded = []
    real = data_files._decode
    monkeypatch.setattr(data_files, "_decode", lambda f: decoded.append(f) or real(f))
    with pytest.raises(DataError, match="limit"):
        data_files.read_image_folder(tmp_path)
    assert decoded == []


# ---------------------------------------------------------------- 12. a tampered cache
def test_an_artifact_copied_under_another_key_is_damage(tmp_path, caplog):
    cache = Cache(tmp_path / "cache")
    a, b = {"row": "gmm"}, {"row": "vae"}
    cache.put("samples", a, {"x": torch.ones(3)})
    cache.put("samples", b, {"x": torch.zeros(3)})
    shutil.copyfile(cache.path("samples", a), cache.path("samples", b))  # valid checksum, wrong content
    with caplog.at_level("WARNING", "genbench.cache"):
        assert cache.get("samples", b) is None
    assert any("another cache key" in r.getMessage() for r in caplog.records)
    out = cache.cached("samples", b, lambda: {"x": torch.zeros(3)})
    assert torch.equal(out["x"], torch.zeros(3))
    assert torch.equal(cache.get("samples", a)["x"], torch.ones(3))


def test_swapped_shipped_weights_are_reported(tmp_path, monkeypatch):
    import metrics.extractors.base as ext_mod

    swapped = tmp_path / "weights"
    swapped.mkdir()
    shutil.copyfile(ext_mod.SHIPPED_WEIGHTS_DIR / "mnist-cnn-v1.pt", swapped / "digits-cnn-v2.pt")  # another valid artifact
    monkeypatch.setattr(ext_mod, "SHIPPED_WEIGHTS_DIR", swapped)
    with pytest.warns(ext_mod.ShippedWeightsWarning, match="digits-cnn-v2.pt"):
        assert ext_mod.shipped_weights("digits-cnn", 2) is None
    monkeypatch.setattr(ext_mod, "SHIPPED_WEIGHTS_DIR", Path(ext_mod.__file__).with_name("weights"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ext_mod.ShippedWeightsWarning)
        assert ext_mod.shipped_weights("digits-cnn", 2) is not None  # the real shipped file matches its pin


# ---------------------------------------------------------------- 13. Ctrl-C
def test_ctrl_c_is_exit_130_without_traceback(monkeypatch, capsys, tmp_path):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_list", interrupted)
    try:
        code = cli.main(["list", "suites"])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped bench's main (a traceback on the command line)")
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err and "interrupted" in err


# ---------------------------------------------------------------- 14. Ray address
def test_unreachable_ray_address_fails_fast():
    from bench.executors import RAY_CONNECT_TIMEOUT_S, check_ray_address

    t = time.monotonic()
    with pytest.raises(RuntimeError, match=r"--ray-address 127\.0\.0\.1:1"):
        check_ray_address("127.0.0.1:1")
    assert time.monotonic() - t < RAY_CONNECT_TIMEOUT_S + 1


# ---------------------------------------------------------------- 15. usage errors
@pytest.mark.parametrize("device", ["meta", "mps", "cuda:99", "garbage"])
def test_devices_this_machine_lacks_are_refused(device):
    if device == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    if device == "cuda:99" and torch.cuda.device_count() > 99:
        pytest.skip("this machine has 100 GPUs")
    with pytest.raises(ValueError, match="device"):
        resolve_device(device)


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    assert cli.main(["run", "--suite", str(suite), "--results", str(tmp_path / "res"), "--device", "meta"]) == 2
    assert not (tmp_path / "res").exists()
    for argv in (["eval", "--samples", "x.npz", "--dataset", "digits", "--seed", "-1"], ["check", "gaussian", "--n", "0"],
                 ["check", "gaussian", "--n", "-3"], ["check", "gaussian", "--budget-steps", "-1"]):  # fmt: skip
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2, argv
    assert cli.main(["check", "gaussian", "--device", "meta"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_atomic_outputs_get_the_usual_file_mode(tmp_path):
    """A temporary file is created 0600; the renamed output gets what ``open`` would give (0666 less the umask)."""
    p = safeio.atomic_write(tmp_path / "out" / "board.md", "x")
    assert p.stat().st_mode & 0o777 == safeio.FILE_MODE
