"""The leaderboard's asset folder (sample grids, figures): where it may be, and the manifest of the files the
harness wrote there, so that only those are ever removed (a user's own files, links and folders are left alone)."""

from __future__ import annotations

import json
from pathlib import Path

from genbench import safeio
from genbench.registry import check_name

__all__ = ["MANIFEST", "check_output"]

MANIFEST = ".genbench-assets.json"  # names of the files the harness wrote into an assets folder


def _inside(root: Path, p: Path) -> bool:
    try:
        return p.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def check_output(out_dir: str | Path, suite_name: str) -> None:
    """``ValueError`` when the leaderboard of ``suite_name`` could not be written inside ``out_dir``
    (e.g. its assets folder is a link leading elsewhere); checked by ``bench run`` before any work."""
    _assets_dir(Path(out_dir), suite_name)


def _assets_dir(out_dir: Path, suite_name: str) -> Path:
    check_name(suite_name, "suite name")
    assets = out_dir / "assets" / suite_name
    if not _inside(out_dir, assets):
        raise ValueError(f"assets folder {assets} for suite {suite_name!r} leads outside the output directory {out_dir} (a link?); refusing to write or delete there")
    return assets


def _read_manifest(assets: Path) -> list[str]:
    try:
        names = json.loads((assets / MANIFEST).read_text())
    except (OSError, ValueError):
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def _remove_generated(assets: Path, names: set[str]) -> None:
    """Delete ``names`` (files a previous render listed in the manifest): plain files directly in ``assets``, nothing else."""
    for name in sorted(names):
        try:
            check_name(name, "asset file name")
        except ValueError:
            continue
        p = assets / name
        if p.is_file() and not p.is_symlink() and p.parent == assets:
            p.unlink()


def _sig(p: Path) -> tuple[int, int]:
    """(inode, mtime in ns) of a file: changes when it is rewritten (atomic writes make a new inode)."""
    st = p.stat()
    return st.st_ino, st.st_mtime_ns


def _write_manifest(assets: Path, before: dict[str, tuple[int, int]], copied: set[str], also: set[str] = frozenset()) -> set[str]:
    """Write the manifest: the assets this render wrote (returned), plus ``also`` (old ones not yet removed)."""
    names = set(copied)
    for p in assets.iterdir():
        if p.name == MANIFEST or not p.is_file() or p.is_symlink():
            continue
        if p.name not in before or _sig(p) != before[p.name]:
            names.add(p.name)
    safeio.atomic_write(assets / MANIFEST, json.dumps(sorted(names | set(also)), indent=0) + "\n", root=assets)
    return names
