"""The layering the README promises, checked on the source itself: `engines` at the bottom, `monitor` and
`train` above it and never importing each other, no import cycle anywhere among the three packages, none
among the sub-packages of `engines` and `train` either, and argparse only at mask-train's command line.

Every `import` statement counts, also the ones inside functions (a lazy import still couples two modules);
"module:attr" strings in engines.formats are not imports and are resolved only where they are used.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("engines", "monitor", "train")


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imported_modules(path: Path, known: set[str], root: Path = REPO) -> set[str]:
    """The project modules that `path` imports: `from a.b import c` counts as a.b.c when c is a module."""
    return {n for n in imported_names(path, known, root) if n.split(".")[0] in PACKAGES}


def imported_names(path: Path, known: set[str], root: Path = REPO) -> set[str]:
    """Every module that `path` imports, the project's as imported_modules names them, others as written
    (`import argparse`, `from torch.distributed.run import parse_args` -> torch.distributed.run)."""
    found: set[str] = set()
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(names)
    return found


@functools.cache
def all_imports() -> dict[str, set[str]]:
    """Every project module -> every module it imports (the project's and others), scanned once in a child
    process of its own. CPython 3.11's AST
    constructor keeps its recursion depth in per-interpreter state, so `ast.parse` can fail spuriously with
    "SystemError: AST constructor recursion depth mismatch" while other threads run (gh-106905; the test
    session has broker, server and capture threads of earlier tests): the child runs nothing else."""
    code = (
        "import json, tests.test_architecture as a; "
        "print(json.dumps({k: sorted(v) for k, v in a.scan().items()}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {k: set(v) for k, v in json.loads(out.stdout).items()}


def import_graph() -> dict[str, set[str]]:
    """The project's import graph: module -> the project modules it imports."""
    return {k: {t for t in v if t.split(".")[0] in PACKAGES} for k, v in all_imports().items()}


def scan() -> dict[str, set[str]]:
    mods = project_modules()
    known = set(mods)
    graph = {}
    for name, path in mods.items():
        targets = imported_names(path, known)
        unknown = {t for t in targets if t.split(".")[0] in PACKAGES and t not in known}
        assert not unknown, f"{path.relative_to(REPO)} imports modules that do not exist: {sorted(unknown)}"
        graph[name] = targets - {name}
    return graph


def package_graph(graph: dict[str, set[str]], top: str) -> dict[str, set[str]]:
    """The graph of `top`'s sub-packages (and top-level modules): top.a.x importing top.b.y is an edge
    top.a -> top.b; `top` itself (its __init__) is left out."""

    def room(mod: str) -> str | None:
        parts = mod.split(".")
        return ".".join(parts[:2]) if parts[0] == top and len(parts) > 1 else None

    out: dict[str, set[str]] = {}
    for mod, deps in graph.items():
        src = room(mod)
        if src is None:
            continue
        out.setdefault(src, set()).update(d for d in map(room, deps) if d is not None and d != src)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_scanner_sees_lazy_relative_and_submodule_imports(tmp_path):
    pkg = tmp_path / "monitor"
    pkg.mkdir()
    (pkg / "x.py").write_text(
        "import os\ndef f():\n    from train.fit import run\n    import engines.labels\n"
        "from . import ui\nfrom .tracker import Track\n"
    )
    known = {"train.fit", "engines.labels", "monitor.ui", "monitor.tracker"}
    assert imported_modules(pkg / "x.py", known, tmp_path) == known


def test_there_is_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_package_graph_sees_a_cycle_the_module_graph_does_not():
    graph = {"train.a.x": {"train.b.y"}, "train.b.z": {"train.a.w"}, "train.a.w": set(), "train.b.y": set()}
    assert find_cycle(graph) is None
    assert package_graph(graph, "train") == {"train.a": {"train.b"}, "train.b": {"train.a"}}
    assert find_cycle(package_graph(graph, "train")) == ["train.a", "train.b", "train.a"]


@pytest.mark.parametrize("top", ["engines", "train"])
def test_the_packages_import_each_other_one_way_only(top):
    """train.data, train.fitting, train.evaluation, train.export, ...: no two of them import each other,
    directly or round a loop (train.measures sits below fitting and evaluation, train.workflows above)."""
    cycle = find_cycle(package_graph(import_graph(), top))
    assert cycle is None, f"cycle among {top}'s packages: " + " -> ".join(cycle or [])


# the command-line edge of mask-train: the only modules that see argparse; below them options are typed values
TRAIN_CLI_EDGE = ("train.cli", "train.options", "train.commands")


def test_only_the_command_line_edge_of_train_imports_argparse():
    wrong = sorted(
        mod
        for mod, deps in all_imports().items()
        if mod.split(".")[0] == "train"
        and not any(mod == edge or mod.startswith(edge + ".") for edge in TRAIN_CLI_EDGE)
        and any(d == "argparse" or d.startswith("argparse.") for d in deps)
    )
    assert not wrong, "imports argparse below the command line: " + ", ".join(wrong)


@pytest.mark.parametrize(
    "package, forbidden",
    [("engines", ("monitor", "train")), ("monitor", ("train",)), ("train", ("monitor",))],
)
def test_layering(package, forbidden):
    wrong = sorted(
        f"{mod} imports {dep}"
        for mod, deps in import_graph().items()
        if mod.split(".")[0] == package
        for dep in deps
        if dep.split(".")[0] in forbidden
    )
    assert not wrong, "\n".join(wrong)


def test_no_mask_train_command_imports_another():
    graph = import_graph()
    wrong = sorted(
        f"{mod} imports {dep}"
        for mod, deps in graph.items()
        if mod.startswith("train.commands.")
        for dep in deps
        if dep.startswith("train.commands.") and dep != "train.commands"
    )
    assert not wrong, "\n".join(wrong)


def test_only_monitor_cli_reads_the_command_line():
    """Flags become typed options values in monitor/cli.py: nothing below it imports argparse."""
    wrong = []
    for path in sorted((REPO / "monitor").rglob("*.py")):
        if path == REPO / "monitor" / "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.split(".")[0] == "argparse" for n in names):
                wrong.append(str(path.relative_to(REPO)))
    assert not wrong, "imports argparse: " + ", ".join(wrong)


@pytest.mark.parametrize("cli", ["train.cli", "monitor.cli"])
def test_building_a_clis_parser_loads_no_heavy_runtime(cli):
    """`--help` and a bad flag answer at once: the parser is built without torch, optuna and friends."""
    code = (
        f"import sys, {cli} as c; c.build_parser(); "
        "print(sorted(m for m in ('torch', 'optuna', 'albumentations', 'onnxruntime', 'facenet_pytorch', "
        "'paho') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
