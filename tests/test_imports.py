"""The import graph of lpa/ and stages/, read with `ast` (module-level and function-local imports
alike): it has no cycle, every import points down the layers declared in LAYERS, the config and
report packages run without torch, and each stage's dvc.yaml deps cover every repo file it runs."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers.run import REPO

PACKAGES = ("lpa", "stages")

# The layers, bottom first: a module may import its own layer and the layers below it, never one
# above. The one place the order is declared (lpa/__init__.py's docstring draws it).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("lpa", "lpa.errors", "lpa.files", "lpa.layout", "lpa.thumbnails"),  # leaves
    ("lpa.config",),
    ("lpa.data",),
    ("lpa.models",),
    ("lpa.train",),
    ("lpa.experiments",),
    ("lpa.report",),
    ("lpa.tools",),
    ("lpa.predict", "stages"),                          # entry points
)
# packages whose every module must import without torch (they run first in every stage)
TORCH_FREE = ("lpa.config", "lpa.report")


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


def layer_of(module: str) -> int:
    """Index in LAYERS of the longest declared prefix of `module` (every module must have one)."""
    best, rank = "", None
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, i
    if rank is None:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS")
    return rank


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


def test_layer_rule_names_an_upward_import():
    assert upward_imports({"lpa.config.run": {"lpa.train.engine"}, "lpa.train.engine": {"lpa.config.run"}}) \
        == ["lpa.config.run -> lpa.train.engine"]
    assert upward_imports({"stages.train": {"lpa.tools.launch", "lpa.errors"}}) == []


def test_every_import_points_down_the_layers():
    upward = upward_imports(import_graph())
    assert not upward, "imports that point up the layers (LAYERS in this file):\n" + "\n".join(upward)


def test_config_and_report_packages_import_without_torch():
    names = sorted(n for n in repo_modules() if n.startswith(TORCH_FREE) and not n.endswith("__main__"))
    code = ("import importlib, sys\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"torch imported by {TORCH_FREE}: {proc.stdout.strip()}"


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
