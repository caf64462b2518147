"""Small estates and helpers shared by the pass tests (tests/passes/test_<pass>.py).

`upto(name, files)` runs the passes of `pipeline.compile_passes()` on an in-memory estate up to and
including the pass `name` and returns that pass's value, so a test can hand it to the next pass
directly: ``pipeline.assemble_pass(Context(tree), upto("units", files))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshc.files.tree import MemoryTree
from meshc.model.diagnostics import has_errors
from meshc.pipeline import Context, compile_passes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "passes"

ENV = "name: dev\nnamespace: egress\n"
VM = """services:
  - name: db
    owner: team
    hosts: [db.example.com]
    addresses: [10.9.0.1]
    location: internal
    resolution: static
    endpointsAs: workloadEntries
    selector: {app: SELECTOR}
    ports:
      - {number: 5432, protocol: TCP}
    endpoints:
      - {address: 10.9.1.1, labels: {role: primary}, serviceAccount: db}
    subsets:
      - {name: primary, labels: {role: primary}}
      - {name: replica, labels: {role: replica}}
"""
API = """services:
  - name: api
    owner: team
    hosts: [api.example.com]
    resolution: dns
    ports:
      - number: 443
        protocol: HTTPS
"""


def estate(files: dict[str, str] | None = None, **base: str) -> dict[str, str]:
    """environments/dev/env.yaml, environments/base/<name>.yaml for each `name=text`, and `files`."""
    return {"environments/dev/env.yaml": ENV, **{f"environments/base/{k}.yaml": v for k, v in base.items()},
            **(files or {})}


def context(files: dict[str, str], templates: tuple[Path, ...] = ()) -> tuple[Context, MemoryTree]:
    tree = MemoryTree(files)
    return Context(tree, templates=templates), tree


def upto(name: str, files: dict[str, str], templates: tuple[Path, ...] = ()) -> Any:
    """The value the pass `name` gives on `files` (every pass before it must leave no error)."""
    ctx, value = context(files, templates)
    for p in compile_passes():
        assert p.run is not None
        step = p.run(ctx, value)
        assert step.value is not None and not has_errors(step.diagnostics), [str(d) for d in step.diagnostics]
        value = step.value
        if p.name == name:
            return value
    raise AssertionError(f"{name} is not a pass compile_passes() runs")
