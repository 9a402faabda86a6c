"""The package's layout is a contract with its readers: stages in layers, imports one way.

Every module of shadowdiff/ is parsed (not imported), its `import` statements (at any
depth, TYPE_CHECKING blocks included: a cycle there still ties two files together) are
resolved to modules of the package, and the graph must have no cycle and no edge that
climbs the layers of docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from testpaths import REPO

PACKAGE = REPO / "shadowdiff"

#: Layers, lowest first: a module may import its own package and the layers below, never
#: a package beside it or above it. (`core` is the top-level modules every stage shares.)
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"core"}),
    frozenset({"protocols", "demo"}),
    frozenset({"capture", "compare"}),
    frozenset({"replay", "rank", "report", "nightly"}),
    frozenset({"live", "load"}),
    frozenset({"config"}),
    frozenset({"pipeline"}),
    frozenset({"cli"}),
    frozenset({"__main__"}),
)
CORE = frozenset({"shadowdiff", "model", "errors", "paths", "redact", "scrub", "files", "tables"})


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module and package of `root`."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imported(node: ast.AST, module: str, is_package: bool, names: dict[str, Path]
              ) -> Iterator[str]:
    """The modules an import statement names: `from pkg import mod` is pkg.mod (not pkg's
    __init__, which Python runs anyway for every submodule), `from pkg import name` is pkg."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = module.split(".") if is_package else module.split(".")[:-1]
        if node.level:
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        for alias in node.names:
            yield f"{target}.{alias.name}" if f"{target}.{alias.name}" in names else target


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports."""
    names = module_names(root)
    graph: dict[str, set[str]] = {}
    for module, path in names.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[module] = {n for node in ast.walk(tree)
                         for n in _imported(node, module, is_package, names)
                         if n in names and n != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None. Iterative DFS (no recursion limit)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def stage_of(module: str) -> str:
    parts = module.split(".")
    return "core" if len(parts) == 1 or parts[1] in CORE else parts[1]


def layer_of(stage: str) -> int:
    for i, layer in enumerate(LAYERS):
        if stage in layer:
            return i
    raise AssertionError(f"package {stage!r} is in no layer: add it to LAYERS and to "
                         "docs/ARCHITECTURE.md")


def climbing_edges(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a package beside or above the importer's layer."""
    bad = []
    for module, deps in sorted(graph.items()):
        here = stage_of(module)
        for dep in sorted(deps):
            there = stage_of(dep)
            if there != here and layer_of(there) >= layer_of(here):
                bad.append(f"{module} ({here}) imports {dep} ({there})")
    return bad


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_run_down_the_layers() -> None:
    assert climbing_edges(import_graph()) == []


def test_every_package_has_a_layer() -> None:
    for module in import_graph():
        layer_of(stage_of(module))


# -- the checker itself must catch what it is for ------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "shadowdiff" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "shadowdiff"


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "__init__.py": "",
        "rank/__init__.py": "",
        "rank/a.py": "from shadowdiff.rank.b import x\n",
        "rank/b.py": "def x():\n    from shadowdiff.rank import c\n",
        "rank/c.py": "import shadowdiff.rank.a\n",
    })
    assert find_cycle(import_graph(root)) == [
        "shadowdiff.rank.a", "shadowdiff.rank.b", "shadowdiff.rank.c", "shadowdiff.rank.a"]


def test_relative_imports_and_packages_resolve(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "__init__.py": "from .model import M\n",
        "model.py": "",
        "compare/__init__.py": "from . import judge\n",
        "compare/judge.py": "from ..model import M\nfrom .. import errors\n",
        "errors.py": "",
    })
    graph = import_graph(root)
    assert graph["shadowdiff"] == {"shadowdiff.model"}
    assert graph["shadowdiff.compare"] == {"shadowdiff.compare.judge"}
    assert graph["shadowdiff.compare.judge"] == {"shadowdiff.model", "shadowdiff.errors"}
    assert find_cycle(graph) is None


@pytest.mark.parametrize(("importer", "imported", "climbs"), [
    ("rank/tally.py", "shadowdiff.compare.judge", False),     # down a layer
    ("compare/judge.py", "shadowdiff.rank.tally", True),      # up
    ("rank/tally.py", "shadowdiff.replay.runner", True),      # beside, same layer
    ("capture/har.py", "shadowdiff.cli.main", True),          # a stage importing the CLI
    ("capture/har.py", "shadowdiff.capture.jsonl", False),    # its own package
])
def test_a_climbing_import_is_reported(tmp_path: Path, importer: str, imported: str,
                                       climbs: bool) -> None:
    target = imported.replace(".", "/").removeprefix("shadowdiff/") + ".py"
    files = {"__init__.py": "", target: "", importer: f"import {imported}\n"}
    for name in list(files):
        for parent in Path(name).parents:
            if str(parent) != ".":
                files.setdefault(f"{parent}/__init__.py", "")
    root = _write(tmp_path, files)
    assert bool(climbing_edges(import_graph(root))) is climbs
