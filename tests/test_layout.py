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
# what each layer may import of ours (forgetting/__init__.py states the rule)
ALLOWED = {
    "core": {"core"},
    "runs": {"core", "runs"},
    "analysis": {"core", "runs", "analysis"},
    "bench": {"core", "runs", "bench"},
    "hydra_plugins": {"core", "runs", "hydra_plugins"},
}


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


def test_core_knows_nothing_of_hydra():
    wrong = [f"{p.relative_to(REPO)}" for p in (PACKAGE / "core").rglob("*.py")
             if any(isinstance(n, (ast.Import, ast.ImportFrom)) and any(
                 name.split(".")[0] == "hydra" for name in
                 ([a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]))
                 for n in ast.walk(ast.parse(p.read_text())))]
    assert wrong == []


def test_the_rule_catches_a_back_edge(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text("import torch\n\n\ndef f():\n    from forgetting.runs import results\n")
    assert our_imports(bad) == [(5, "runs"), (5, "runs")]
    assert layer_of(PACKAGE / "core" / "probe.py") == "core" and "runs" not in ALLOWED["core"]


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
