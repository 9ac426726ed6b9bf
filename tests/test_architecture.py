"""The layout holds: no import circle anywhere in simplechat/, the floors of .importlinter kept
(an upward import fails with the line that made it), packages small, create_app short."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("simplechat", include_external_packages=False, cache_dir=None)


def circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every group of modules that import each other round a circle (strongly connected
    components of more than one module), imports inside functions included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_of_simplechat_is_in_an_import_circle(graph):
    assert circles(graph) == []


def test_a_circle_is_found_when_there_is_one():
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert circles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_the_import_contracts_are_kept():
    result = subprocess.run([str(LINT_IMPORTS)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_import_up_a_floor_breaks_the_contract_and_names_its_line(tmp_path):
    """The contract is not a formality: infrastructure importing the send path fails it."""
    shutil.copytree(ROOT / "simplechat", tmp_path / "simplechat",
                    ignore=shutil.ignore_patterns("static", "templates", "__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    ids = tmp_path / "simplechat" / "infra" / "ids.py"
    lines = ids.read_text().splitlines()
    lines.insert(5, "from simplechat.messaging.send import send_message  # noqa")
    ids.write_text("\n".join(lines) + "\n")
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={"PYTHONPATH": str(tmp_path),
                                                         "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1, result.stdout
    assert "simplechat.infra.ids -> simplechat.messaging.send (l.6)" in result.stdout


def test_no_package_holds_more_than_fifteen_modules():
    sizes = {package.name: len(list(package.glob("*.py")))
             for package in (ROOT / "simplechat").iterdir() if (package / "__init__.py").exists()}
    assert sizes and max(sizes.values()) <= 15, sizes


def test_no_function_of_the_app_factory_is_over_sixty_lines():
    tree = ast.parse((ROOT / "simplechat" / "app.py").read_text())
    lengths = {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(tree)
               if isinstance(node, ast.FunctionDef)}
    assert "create_app" in lengths and max(lengths.values()) <= 60, lengths
