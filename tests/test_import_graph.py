"""The package's import graph, read from the source (module-level and function-local imports
alike: a cycle hidden inside a function is still a cycle): no import cycles, and no module
imports a private name (``_x``) of another module."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

#: package -> folder of the repository it is built from (pyproject.toml's package-dir)
FOLDERS = {"curate": "curate", "curate.pipelines": "pipelines", "curate.filters": "filters", "curate.synth": "synth",
           "curate.annotation": "annotation"}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for f in sorted((ROOT / folder).rglob("*.py*")):
            if f.suffix not in (".py", ".pyi") or "__pycache__" in f.parts:
                continue
            parts = list(f.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.setdefault(".".join([package, *parts]), f)  # a .pyi names an extension module (curate._native)
    return found


def imported(module: str, path: Path, mods: dict[str, Path], node: ast.Import | ast.ImportFrom) -> list[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for one import statement, within the package."""
    if isinstance(node, ast.Import):
        return [(a.name, None) for a in node.names if a.name in mods]
    base = module.split(".") if path.stem == "__init__" else module.split(".")[:-1]
    target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else [])) if node.level else (node.module or "")
    out: list[tuple[str, str | None]] = []
    for a in node.names:
        if f"{target}.{a.name}" in mods:  # `from package import module`
            out.append((f"{target}.{a.name}", None))
        elif target in mods:
            out.append((target, a.name))
    return out


def graph() -> tuple[dict[str, set[str]], list[str]]:
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private: list[str] = []
    for m, path in mods.items():
        if path.suffix == ".pyi":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target, name in imported(m, path, mods, node):
                    if target != m:
                        edges[m].add(target)
                    if name and name.startswith("_") and not name.startswith("__") and target != m:
                        private.append(f"{m} imports {target}.{name} ({path.relative_to(ROOT)}:{node.lineno})")
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    edges, _ = graph()
    assert len(edges) > 80  # every module was read
    found = cycles(edges)
    detail = [f"{c}: " + "; ".join(f"{a} -> {b}" for a in c for b in sorted(edges[a] & set(c))) for c in found]
    assert not found, "\n".join(detail)


def test_no_module_imports_another_modules_private_names() -> None:
    _, private = graph()
    assert not private, "\n".join(private)
