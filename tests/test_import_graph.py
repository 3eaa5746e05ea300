"""The project's modules import one another without a cycle, counting every import (module level and inside
functions) and every registry's lazy ``"module:attr"`` target as an edge: a registry that names a module which
imports the registry back is a cycle the interpreter only hides by importing lazily."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("genbench", "baselines", "metrics", "bench")
LAZY_TARGET = re.compile(r"^([a-z_][\w.]*):([A-Za-z_]\w*)$")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _imported(module: str, path: Path, node: ast.Import | ast.ImportFrom, mods: dict[str, Path]) -> set[str]:
    """The project modules an import statement names (``from pkg import sub`` names ``pkg`` and ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        if node.level:
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        names = [target] + [f"{target}.{a.name}" for a in node.names]
    out = set()
    for name in names:
        while name and name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]  # an attribute of a module: the module
        if name in mods and name != module:
            out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its file or names as a lazy registry target."""
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges[m] |= _imported(m, path, node, mods)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                hit = LAZY_TARGET.match(node.value)
                if hit and hit.group(1) in mods and hit.group(1) != m:
                    edges[m].add(hit.group(1))
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_constructed_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_lazy_targets_and_function_level_imports():
    edges = import_graph()
    assert "metrics.extractors.digits_cnn" in edges["metrics.extractors"]  # EXTRACTORS.register("digits-cnn", "metrics...:...")
    assert "bench.sections.claims" in edges["bench.sections"]  # SECTIONS' lazy target
    assert "baselines.registry" in edges["bench.report.core"]  # imported inside a function


def test_no_import_cycle_among_the_project_modules():
    found = cycles(import_graph())
    assert not found, "import cycles (each: modules that reach one another): " + "; ".join(" <-> ".join(c) for c in found)
