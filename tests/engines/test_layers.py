"""The package layers: `engines` is the bottom, `monitor` and `train` sit on it and never import each other,
and the monitor's modules import one another without a cycle. Read from the sources (no import runs), so a
lazy import inside a function counts too."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _package(name: str) -> dict[str, set[str]]:
    return {f"{name}.{p.relative_to(REPO / name).with_suffix('').as_posix().replace('/', '.')}": _imports(p)
            for p in sorted((REPO / name).rglob("*.py"))}


def _top(module: str) -> str:
    return module.split(".")[0]


def test_engines_imports_neither_monitor_nor_train():
    bad = {m: sorted(i for i in imps if _top(i) in ("monitor", "train")) for m, imps in _package("engines").items()}
    assert {m: i for m, i in bad.items() if i} == {}


def test_monitor_never_imports_train():
    bad = {m: sorted(i for i in imps if _top(i) == "train") for m, imps in _package("monitor").items()}
    assert {m: i for m, i in bad.items() if i} == {}


def test_monitor_modules_import_each_other_without_a_cycle():
    graph = {m: {i for i in imps if _top(i) == "monitor" and i != m} for m, imps in _package("monitor").items()}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join(path + (module,))}"
        if module in done:
            return
        for dep in graph.get(module, ()):
            visit(dep, path + (module,))
        done.add(module)

    for module in graph:
        visit(module, ())
