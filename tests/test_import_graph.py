"""The project's import graph has no cycles, and the command-line layer sits above every package.

Every module of ``sw``, ``hw``, ``sim`` and ``bitstreams`` is parsed with ``ast`` (no imports run), every
import statement counts (also those inside functions), relative imports are resolved, and
``from X import Y`` is an edge to ``X.Y`` when that is a module, else to ``X``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sw", "hw", "sim", "bitstreams")
# The command-line layer: who may import each of these modules (nobody else in the packages may).
APP_LAYER = {"sw.cli": set(), "sw.main_job": {"sw.cli"}, "sw.workflow": {"sw.cli", "sw.main_job"}}


def module_files(root: Path = ROOT, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``packages`` under ``root``."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that ``module`` (source file ``path``) imports, anywhere in its body."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, is_package, node.level, node.module)
            names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                     for alias in node.names]
        else:
            continue
        for name in names:
            # `import a.b.c` names a.b.c; keep the longest prefix that is a project module.
            parts = name.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts and ".".join(parts) != module:
                found.add(".".join(parts))
    return found


def import_graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    files = module_files(root, packages)
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def cycles(edges) -> list[list[str]]:
    """Strongly connected components with more than one module, from ``(importer, imported)`` pairs
    or an adjacency dict (Tarjan's algorithm, iterative)."""
    graph: dict[str, set[str]] = {}
    pairs = [(a, b) for a, bs in edges.items() for b in bs] if isinstance(edges, dict) else list(edges)
    for a, b in pairs:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(found)


def test_cycle_finder_on_synthetic_graphs():
    assert cycles([("a", "b"), ("b", "c")]) == []
    assert cycles([("a", "b"), ("b", "a"), ("b", "c")]) == [["a", "b"]]
    assert cycles([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e"), ("e", "d")]) == [["a", "b", "c"],
                                                                                                  ["d", "e"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


def test_graph_sees_function_level_and_relative_imports(tmp_path):
    """A planted cycle through a relative import inside a function is found."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("def f():\n    from ..top import g\n    return g\n")
    (pkg / "top.py").write_text("import pkg.sub.leaf as leaf\ng = 1\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.sub"] == {"pkg.sub.leaf"}
    assert graph["pkg.sub.leaf"] == {"pkg.top"}
    assert cycles(graph) == [["pkg.sub.leaf", "pkg.top"]]


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_command_line_layer_is_imported_by_no_package_module():
    graph = import_graph()
    wrong = sorted(f"{importer} imports {module}" for importer, imported in graph.items()
                   for module, allowed in APP_LAYER.items() if module in imported and importer not in allowed)
    assert not wrong, "\n".join(wrong)
