"""Command line: ``bench run | list | leaderboard | eval | check | compare``.

Exit codes: 0 success, 1 a job or evaluation failed (recorded, others kept),
2 bad usage (unknown suite/dataset/metric/generator names, bad flags, a device this
machine lacks), 130 interrupted (Ctrl-C). File-system errors are one line naming the path.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from baselines import registry as greg
from genbench.plugins import import_user_module
from metrics import extractors as freg
from metrics import registry as mreg

from . import data, folders
from .api import evaluate
from .check import check_generator
from .compare import compare_runs
from .evaluate import format_eval
from .leaderboard import check_output, export_text, write_leaderboard
from .provenance import resolve_device
from .runner import run_suite
from .suite import SuiteError, available_suites, load_suite

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


def _err(msg: str, code: int = EXIT_USAGE) -> int:
    print(f"bench: error: {msg}", file=sys.stderr)
    return code


def _import_modules(specs: list[str] | None) -> str | None:
    """Import the user's ``--import`` modules; the error message when one cannot be imported (None when all could)."""
    for spec in specs or ():
        try:
            import_user_module(spec)
        except ImportError as e:
            return f"--import {spec}: {e}"
    return None


def default_out(results: str | Path) -> Path:
    """Where ``bench run`` / ``bench leaderboard`` write a leaderboard without ``--out``: ``RESULTS/leaderboards``,
    beside the records and untracked, so a user's run never rewrites the committed tables in ``leaderboards/``."""
    return Path(results) / "leaderboards"


def cmd_run(args: argparse.Namespace) -> int:
    problem = _import_modules(args.imports)
    if problem:
        return _err(problem)
    try:
        suite = load_suite(args.suite)  # its names are checked once, by run_suite, before any work
    except SuiteError as e:
        return _err(str(e))
    out = args.out if args.out is not None else str(default_out(args.results))
    for flag, folder in (("--results", args.results), *(() if args.no_leaderboard else (("--out", out),))):
        problem = _unwritable(folder)
        if problem:
            return _err(f"{flag} {folder}: {problem}")
    if not args.no_leaderboard:
        try:
            check_output(out, suite.name)
        except ValueError as e:
            return _err(f"--out {out}: {e}")
    try:
        resolve_device(args.device)  # a device this machine lacks is a usage error, before any work
    except ValueError as e:
        return _err(f"--device: {e}")
    if args.seeds:
        args.seeds = list(dict.fromkeys(args.seeds))  # --seeds 0 0 runs seed 0 once
    try:
        summary = run_suite(
            suite, seeds=args.seeds, results_dir=args.results, device=args.device, progress=_bars(args),
            executor=args.executor, workers=args.jobs, threads=args.threads, ray_address=args.ray_address, imports=tuple(args.imports or ()),
            job_lines=not args.no_progress, **({"save_samples": True} if args.save_samples else {}), retime=args.retime,
        )  # fmt: skip
    except (ValueError, RuntimeError) as e:  # e.g. --device cuda without CUDA, ray not installed
        return _err(str(e))
    threads = f" x {summary.threads} thread(s)" if summary.threads else ""
    print(
        f"suite {suite.name}: {summary.planned} jobs planned, {summary.ran} ran, {summary.skipped} already done, "
        f"{summary.records_added} records added in {summary.wall_s:.1f}s ({summary.executor}, {summary.workers} worker(s){threads}) "
        f"-> {Path(args.results) / suite.name / 'records.jsonl'}"
    )
    if summary.na_errors:
        print(f"  {summary.na_errors} metric value(s) are n/a because a precondition failed; the reasons are in the records (na_reason) "
              "and under the leaderboard's tables", file=sys.stderr)  # fmt: skip
    for job, msg in summary.failed:
        print(f"  FAILED {job}: {msg}", file=sys.stderr)
    if not args.no_leaderboard:
        try:
            written = write_leaderboard(suite, args.results, out)
            print(f"leaderboard: {written}")
        except (FileNotFoundError, ValueError) as e:  # the records are kept: `bench leaderboard` can write it later
            print(f"no leaderboard: {e}", file=sys.stderr)
    return EXIT_FAILED if summary.failed else 0


def _unwritable(folder: str) -> str | None:
    """Why ``folder`` cannot receive results (None when it can): checked before any work starts."""
    p = Path(folder)
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{probe} exists and is not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def _seed(text: str) -> int:
    """argparse type: a seed in [0, 2**32)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer in [0, 2**32), got {text!r}") from None
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"seed must be in [0, 2**32), got {v}")
    return v


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _non_negative(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "suites":
        for s in available_suites():
            print(f"{s:20s} {load_suite(s).description.strip().splitlines()[0] if load_suite(s).description else ''}")
    elif args.what == "generators":
        for name, e in greg.available().items():
            print(f"{name:20s} [{e.family}] {e.description}")
    elif args.what == "metrics":
        for name, spec in sorted(mreg.available().items()):
            print(f"{name:20s} -> {', '.join(o.name for o in spec.outputs):40s} {spec.description}")
    elif args.what == "datasets":
        for name in data.available():
            print(data.describe(name).line())
    elif args.what == "extractors":
        for name in freg.available():
            print(freg.describe(name))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    try:
        suite = load_suite(args.suite)
    except SuiteError as e:
        return _err(str(e))
    if args.out == "-":  # the tables as csv / json rows on stdout, for a pipe
        if args.format == "md":
            return _err("--out - writes csv or json to stdout: add --format csv (or json)")
        try:
            sys.stdout.write(export_text(suite, args.results, args.format))
        except FileNotFoundError as e:
            return _err(str(e), EXIT_FAILED)
        except ValueError as e:
            return _err(str(e))
        return 0
    out = args.out if args.out is not None else str(default_out(args.results))
    try:
        written = write_leaderboard(suite, args.results, out, fmt=args.format)
    except FileNotFoundError as e:
        return _err(str(e), EXIT_FAILED)
    except ValueError as e:
        return _err(str(e))
    print(f"leaderboard: {written}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.dataset not in data.available():
        return _err(f"unknown dataset {args.dataset!r}; valid: {', '.join(data.available())}")
    if args.device not in (None, "auto"):
        try:
            resolve_device(args.device)
        except (ValueError, RuntimeError) as e:
            return _err(str(e))
    device = None if args.device in (None, "auto") else args.device
    if args.extractor in freg.available():
        try:
            freg.check_extra(args.extractor)  # an optional extra to install: a usage error, before any work
        except freg.MissingExtraError as e:
            return _err(str(e))
    try:
        res = evaluate(
            args.samples, dataset=args.dataset, extractor=args.extractor, extractor_weights=args.extractor_weights, metrics=args.metrics,
            seed=args.seed, npz_key=args.npz_key, device=device, batch_size=args.batch_size,
        )  # fmt: skip
    except freg.MissingExtraError as e:  # an optional extra to install: a usage error
        return _err(str(e))
    except KeyError as e:
        return _err(str(e.args[0]) if e.args else str(e))
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        return _err(str(e), EXIT_FAILED)
    if args.json:
        payload = {"dataset": args.dataset, "extractor": res.values.extractor, "notes": res.values.notes, "records": res.records}
        print(json.dumps(_json_safe(payload), indent=1))
    else:
        print(format_eval(res.values))
    # exit 1 only for what the user asked for by name: a --metrics entry that came out n/a, or an --extractor that cannot load
    failed = [f"metric(s) {', '.join(res.values.requested_na)} n/a"] if res.values.requested_na else []
    if args.extractor and res.values.extractor_error:
        failed.append(f"extractor {args.extractor} could not load ({res.values.extractor_error})")
    if failed:
        print(f"bench: asked for by name: {'; '.join(failed)} (the reasons are in the table)", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _json_safe(v: object) -> object:
    """JSON-safe values: NaN/inf become null, tuples and sets lists, tensors and numpy scalars numbers."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_json_safe(x) for x in v]
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        return _json_safe(v.item())
    if v is None or isinstance(v, (str, int, bool)):
        return v
    return str(v)


def cmd_compare(args: argparse.Namespace) -> int:
    """``bench compare --suite S A B``: exit 0 when every non-timing record of S agrees within the tolerance, 1 otherwise."""
    try:
        suite = load_suite(args.suite)
    except SuiteError as e:
        return _err(str(e))
    try:
        report = compare_runs(args.first, args.second, suite, rtol=args.rtol, atol=args.atol)
    except ValueError as e:
        return _err(str(e))
    except FileNotFoundError as e:
        return _err(str(e), EXIT_FAILED)
    print(report.format())
    return 0 if report.ok else EXIT_FAILED


def cmd_check(args: argparse.Namespace) -> int:
    """``bench check GENERATOR``: the protocol checklist (bench/check.py); exit 0 when every check passes, 1 otherwise."""
    problem = _import_modules(args.imports)
    if problem:
        return _err(problem)
    try:
        params = json.loads(args.params) if args.params else {}
    except json.JSONDecodeError as e:
        return _err(f"--params is not valid JSON ({e}): give an object such as '{{\"width\": 32}}'")
    if not isinstance(params, dict):
        return _err(f"--params must be a JSON object, got {args.params!r}")
    try:
        resolve_device(args.device)
    except ValueError as e:
        return _err(f"--device: {e}")
    report = check_generator(args.generator, args.dataset, params, n=args.n, budget_steps=args.budget_steps, device=args.device, progress=_bars(args))
    print(report.format())
    return 0 if report.ok else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="genbench: benchmark and evaluation harness for generative image models")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run (or resume) a suite and write its leaderboard")
    r.add_argument("--suite", required=True, help="suite name (bench list suites) or path to a .toml")
    r.add_argument("--seeds", type=_seed, nargs="+", help="override the suite's seeds (integers in [0, 2**32); duplicates dropped)")
    r.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    r.add_argument("--results", default="results", help="results/cache directory (default: results)")
    r.add_argument("--out", default=None, help="leaderboard directory (default: RESULTS/leaderboards; the committed tables: --out leaderboards)")
    r.add_argument("--no-leaderboard", action="store_true", help="do not write the leaderboard after the run")
    r.add_argument("--retime", action="store_true",
                   help="time again the rows whose latency was flagged ⚠ (other processes used the CPU while it was measured); "
                        "a quiet measurement replaces the flagged one")  # fmt: skip
    r.add_argument("--no-progress", action="store_true", help="no progress lines (one per job start and end on stderr) and no bars")
    r.add_argument("--save-samples", action="store_true", help="keep each job's samples as .npz and a PNG grid under RESULTS/SUITE/samples/")
    r.add_argument("--jobs", type=_positive, default=None,
                   help="worker processes (default: one per usable core, each with --threads threads)")  # fmt: skip
    r.add_argument("--threads", type=_positive, default=None,
                   help="threads per worker (default: 1; with --jobs N: cores // N; OMP_NUM_THREADS counts when set)")  # fmt: skip
    r.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                   help="import MODULE (a module name or a path to a .py file) first, so the generators it registers are known; repeatable")  # fmt: skip
    r.add_argument("--executor", choices=["local", "process", "ray"], default=None, help="where jobs run (ray needs the [ray] extra)")
    r.add_argument("--ray-address", default=None, help="Ray cluster address for --executor ray (default: $RAY_ADDRESS, else a local cluster)")
    r.set_defaults(fn=cmd_run)

    lst = sub.add_parser("list", help="list suites, generators, metrics, datasets or extractors")
    lst.add_argument("what", choices=["suites", "generators", "metrics", "datasets", "extractors"])
    lst.set_defaults(fn=cmd_list)

    lb = sub.add_parser("leaderboard", help="write leaderboards/<suite>.md from the result store")
    lb.add_argument("--suite", required=True)
    lb.add_argument("--results", default="results")
    lb.add_argument("--out", default=None, help="directory (default: RESULTS/leaderboards; the committed tables: --out leaderboards); "
                    "- writes --format csv/json to stdout")  # fmt: skip
    lb.add_argument("--format", choices=["md", "csv", "json"], default="md", help="md (tables, figures), or the same tables as tidy csv / json rows")
    lb.set_defaults(fn=cmd_leaderboard)

    ev = sub.add_parser("eval", help="evaluate samples made elsewhere (folder of images or .npz) against a data set")
    ev.add_argument("--samples", required=True, help="folder of PNG/JPEG images or a .npz file")
    ev.add_argument("--dataset", required=True, help="reference data set (bench list datasets)")
    ev.add_argument("--extractor", default=None, help="feature extractor (default: the data set's, see bench list datasets)")
    ev.add_argument("--extractor-weights", default=None, help="local weights file for the extractor (machines without network)")
    ev.add_argument("--metrics", nargs="+", default=None,
                    help="metrics to compute (default: the full panel; exit 1 when one of these comes out n/a)")  # fmt: skip
    ev.add_argument("--seed", type=_seed, default=0, help="seed in [0, 2**32) (default 0)")
    ev.add_argument("--npz-key", default=None, help="the array to score when --samples is a .npz holding several")
    ev.add_argument("--device", default=None, help="where the extractor runs: auto, cpu, cuda, cuda:1 ... (default: its own choice)")
    ev.add_argument("--batch-size", type=_positive, default=None, help="samples per extractor forward pass (default 1024)")
    ev.add_argument("--json", action="store_true", help="print the records (value, interval, protocol, n/a reasons) as JSON")
    ev.set_defaults(fn=cmd_eval)

    folders.add_parser(sub)  # bench fid SAMPLES REFERENCE (bench/folders.py)

    cp = sub.add_parser("compare", help="do two results directories (two machines) agree on a suite's non-timing records? (exit 0 yes, 1 no)")
    cp.add_argument("--suite", required=True, help="suite name or .toml path (its records are RESULTS/<name>/records.jsonl)")
    cp.add_argument("first", help="results directory of the first run")
    cp.add_argument("second", help="results directory of the second run")
    cp.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0: bit-for-bit)")
    cp.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    cp.set_defaults(fn=cmd_compare)

    ck = sub.add_parser("check", help="check that a generator satisfies the protocol (checklist; exit 0 pass, 1 fail)")
    ck.add_argument("generator", help="registered generator name (bench list generators) or module:factory")
    ck.add_argument("--dataset", default=None, help="data set to build and train on (default: digits for images, ring8 for 2-D points)")
    ck.add_argument("--params", default=None, help="factory hyperparameters as a JSON object, e.g. '{\"width\": 32}'")
    ck.add_argument("--n", type=_positive, default=16, help="samples per check (default 16)")
    ck.add_argument("--budget-steps", type=_non_negative, default=5, help="training steps of the tiny fit check (default 5)")
    ck.add_argument("--device", default="cpu", help="device passed to factories that take one (default cpu)")
    ck.add_argument("--no-progress", action="store_true", help="no progress bars (none either when stderr is not a terminal)")
    ck.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                    help="import MODULE (a module name or a path to a .py file) first, so a generator it registers is known; repeatable")  # fmt: skip
    ck.set_defaults(fn=cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one ``bench`` command; returns its exit code. A file-system error (``OSError``) reaching here is one
    line naming the path (exit 1); Ctrl-C is one line and exit 130: no traceback either way."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("bench: interrupted; records written so far are kept (a re-run resumes)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        return _err(os_error_line(e), EXIT_FAILED)


def os_error_line(e: OSError) -> str:
    """``path: reason`` for a file-system error (both paths for a rename), without a traceback."""
    why = e.strerror or str(e) or type(e).__name__
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {why}" if paths else f"{type(e).__name__}: {why}"


def _bars(args: argparse.Namespace) -> bool:
    """Whether progress bars are drawn (on stderr): not with ``--no-progress``, ``GENBENCH_PROGRESS=0`` or a stderr that is not a terminal."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty() and os.environ.get("GENBENCH_PROGRESS", "1") != "0"


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
