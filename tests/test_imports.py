"""The import graph of lpa/ and stages/, read with `ast` (module-level and function-local imports
alike): it has no cycle, and each stage's dvc.yaml deps cover every repo file the stage runs."""
from __future__ import annotations

import ast
from pathlib import Path

import yaml

from tests.conftest import REPO

PACKAGES = ("lpa", "stages")


def repo_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module under lpa/ and stages/."""
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Repo modules that `name` imports anywhere in its file (an import of a name from a package
    is an edge to the package's __init__; of a submodule, to the submodule)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    found.add(sub)
                elif target in modules:
                    found.add(target)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = repo_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), as a cycle path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    """Modules run when `start` runs: its imports, theirs, and every parent package's __init__."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in graph:
            continue
        seen.add(name)
        todo.extend(graph[name])
        parts = name.split(".")
        todo.extend(".".join(parts[:k]) for k in range(1, len(parts)))  # packages' __init__ run first
    return seen


def test_find_cycles_names_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _stage_module(cmd: str) -> str:
    words = cmd.split()
    assert words[:2] == ["python", "-m"], f"stage command {cmd!r} is not `python -m <module>`"
    return words[2]


def test_dvc_deps_cover_every_file_a_stage_runs():
    modules = repo_modules()
    graph = import_graph()
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    problems = []
    for stage, spec in stages.items():
        body = spec.get("do", spec)
        deps = [d for d in body.get("deps", []) if "${" not in d]
        needed = {modules[m].relative_to(REPO).as_posix() for m in closure(graph, _stage_module(body["cmd"]))}
        uncovered = sorted(f for f in needed
                           if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))
        if uncovered:
            problems.append(f"{stage}: add {', '.join(uncovered)}")
        stale = sorted(d for d in deps if d.endswith(".py") and d not in needed)
        if stale:
            problems.append(f"{stage}: {', '.join(stale)} is listed but not run")
    assert not problems, "dvc.yaml deps vs import closure:\n" + "\n".join(problems)
