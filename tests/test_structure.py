"""The package's structure, held by tests: no import cycle, and imports that read top-down.

Layers (ARCHITECTURE.md): a package may import only packages below it. Stages in pass order sit
between the pipeline and the model; `files` (reading the repository) and `runtime` (cache,
workers, output folder) are services under the stages; `model` imports nothing of meshc but
itself. Imports inside functions count (grimp reads them); imports under TYPE_CHECKING do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "compiler" / "meshc"

# Top to bottom; each entry may import the entries after it (and itself), never one before it.
LAYERS = ("cli", "adopt", "diff", "api", "pipeline", "check", "proxy", "emit", "expand", "front",
          "runtime", "files", "model")
# meshc's own modules that are not in a layer: the package root, the entry point, the schema data.
OUTSIDE = {"meshc", "meshc.__main__", "meshc.schemas"}  # meshc.schemas: JSON package data


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("meshc", exclude_type_checking_imports=True)


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else module


def test_no_import_cycle(graph: grimp.ImportGraph) -> None:
    cycles = set()
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=imported, imported=module):
                chain = graph.find_shortest_chain(importer=imported, imported=module) or ()
                cycles.add(" -> ".join((module, *chain)))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))


def test_every_module_is_in_a_layer(graph: grimp.ImportGraph) -> None:
    stray = sorted(m for m in graph.modules if m not in OUTSIDE and _layer(m) not in LAYERS)
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"


def test_imports_read_top_down(graph: grimp.ImportGraph) -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = []
    for module in sorted(graph.modules - OUTSIDE):
        for imported in sorted(graph.find_modules_directly_imported_by(module) - OUTSIDE):
            a, b = _layer(module), _layer(imported)
            if rank[b] < rank[a]:
                upward.append(f"{module} ({a}) imports {imported} ({b})")
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


# Function-local imports of meshc modules are allowed only where they keep a heavy dependency
# out of commands that do not need it; each is listed with the reason.
LAZY = {
    ("meshc/cli/diff.py", "meshc.diff.run"): "deepdiff is loaded only when a diff runs",
    ("meshc/cli/drift.py", "meshc.adopt.drift"): "deepdiff is loaded only when a drift runs",
    ("meshc/cli/importer.py", "meshc.adopt.importer"): "deepdiff is loaded only when an import runs",
}


def test_no_function_local_import_of_meshc_dodges_the_graph() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = "meshc/" + path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("meshc"):
                    if (rel, node.module) not in LAZY:
                        found.append(f"{rel}:{node.lineno} imports {node.module} inside {fn.name}()")
    assert not found, "\n".join(found)


def test_the_pass_order_is_written_once_and_architecture_md_follows_it() -> None:
    from meshc.pipeline import PASSES, compile_passes

    names = [p.name for p in PASSES]
    assert names[:2] == ["load", "merge"] and names[-3:] == ["check", "waivers", "write"]
    assert [p.name for p in compile_passes()] == ["load", "merge", "templates", "units", "assemble", "proxy",
                                                   "bundle"]
    text = (PACKAGE.parents[1] / "ARCHITECTURE.md").read_text()
    table = [line.split("|")[1].strip() for line in text.splitlines()
             if line.startswith("| ") and line.count("|") == 5 and line.split("|")[2].strip() in
             ("estate", "unit", "env", "build")]
    assert table == names, table
