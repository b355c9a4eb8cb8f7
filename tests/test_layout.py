"""The package's architecture holds: imports go one way between its layers, the documented key
table (docs/configuration.md) is the schema's, and the code passes the linter."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from forgetting.core.config import markdown_table
from helpers import REPO

PACKAGE = REPO / "forgetting"
PLUGINS = REPO / "hydra_plugins"
# what each layer may import of ours (forgetting/__init__.py states the rule): core <- rundir
# (the run folder's format) <- tables (the sweep store) <- runs (running a point) <- analysis,
# bench, the Hydra plugins <- the commands
ALLOWED = {
    "core": {"core"},
    "rundir": {"core", "rundir"},
    "tables": {"core", "rundir", "tables"},
    "runs": {"core", "rundir", "tables", "runs"},
    "analysis": {"core", "rundir", "tables", "runs", "analysis"},
    "bench": {"core", "rundir", "tables", "runs", "bench"},
    "hydra_plugins": {"core", "rundir", "tables", "runs", "hydra_plugins"},
}
STORE = PACKAGE / "tables"  # reached from outside only through its face, its __init__


def layer_of(path: Path) -> str:
    """core, runs, analysis, bench, hydra_plugins, or "commands" (forgetting's top level)."""
    if path.is_relative_to(PLUGINS):
        return "hydra_plugins"
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "commands"


def our_imports(path: Path) -> list[tuple[int, str]]:
    """(line, layer) of every import of ours in a file, function-level imports included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "hydra_plugins" and len(parts) > 1 and parts[1].startswith("forgetting"):
                found.append((node.lineno, "hydra_plugins"))
            elif parts[0] == "forgetting" and len(parts) > 1:
                target = PACKAGE / parts[1]
                found.append((node.lineno, parts[1] if target.is_dir() else "commands"))
    return found


def python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py")) + sorted(PLUGINS.rglob("*.py"))


def test_imports_go_one_way():
    wrong = []
    for path in python_files():
        layer = layer_of(path)
        if layer == "commands":
            continue
        for line, target in our_imports(path):
            if target not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(REPO)}:{line}: {layer} imports {target}")
    assert wrong == []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports: every import, in functions and under
    TYPE_CHECKING too (`from package import submodule` is the submodule)."""
    modules = {module_name(p): p for p in python_files()}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if full in modules:
                        targets.add(full)
                    elif node.module in modules:
                        targets.add(node.module)
        graph[name] = targets - {name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_anywhere():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_the_store_is_reached_only_through_its_face():
    import forgetting.tables as store

    face = set(store.__all__)
    inner = {p.stem for p in STORE.glob("*.py")} - {"__init__"}
    wrong = []
    for path in python_files():
        if path.is_relative_to(STORE):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "forgetting.tables":
                    names = [f"forgetting.tables.{a.name}" for a in node.names
                             if a.name not in face or a.name in inner]
                else:
                    names = [node.module]
            wrong += [f"{path.relative_to(REPO)}:{node.lineno}: {name}" for name in names
                      if name.startswith("forgetting.tables.")]
    assert wrong == []
    assert face <= set(dir(store))


def test_core_knows_nothing_of_hydra():
    wrong = [f"{p.relative_to(REPO)}" for p in (PACKAGE / "core").rglob("*.py")
             if any(isinstance(n, (ast.Import, ast.ImportFrom)) and any(
                 name.split(".")[0] == "hydra" for name in
                 ([a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]))
                 for n in ast.walk(ast.parse(p.read_text())))]
    assert wrong == []


def test_the_rule_catches_a_back_edge(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text("import torch\n\n\ndef f():\n    from forgetting.runs import job\n")
    assert our_imports(bad) == [(5, "runs"), (5, "runs")]
    assert layer_of(PACKAGE / "core" / "probe.py") == "core" and "runs" not in ALLOWED["core"]
    assert "runs" not in ALLOWED["tables"] and "tables" not in ALLOWED["rundir"]


def test_no_module_is_a_stray_at_the_top():
    """The top level holds only the commands (python -m forgetting.NAME) and the layers."""
    top = sorted(p.name for p in PACKAGE.iterdir() if p.suffix == ".py")
    assert top == ["__init__.py", "__main__.py", "analyze.py", "collect.py", "plot.py",
                   "report.py", "run.py"]


def test_the_documented_key_table_is_the_schema():
    page = (REPO / "docs" / "configuration.md").read_text()
    begin, end = "<!-- keys:begin -->\n", "\n<!-- keys:end -->"
    assert begin in page and end in page
    table = page.split(begin, 1)[1].split(end, 1)[0]
    assert table == markdown_table(), (
        "docs/configuration.md's key table differs from the schema; paste the output of "
        "`python -m forgetting.core.config` between the keys:begin/end markers")
    assert "docs/configuration.md" in (REPO / "README.md").read_text()  # linked from the door


@pytest.mark.skipif(shutil.which("ruff") is None and
                    subprocess.run([sys.executable, "-m", "ruff", "--version"],
                                   capture_output=True).returncode != 0,
                    reason="ruff is not installed (pip install -e '.[test]')")
def test_code_passes_the_linter():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--quiet", "forgetting",
                           "hydra_plugins", "tests"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
