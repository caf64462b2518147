"""Focused golden cases: one per resolution mode, overlay rule and TLS mode (tests/cases/<case>/).

Each case holds an environments/ tree; its expected bundles live in tests/goldens/cases/<case>/.
Regenerate with `make goldens` (MESHC_UPDATE_GOLDENS=1; one case: `make goldens CASE=<case>`) and
review the diff like code.
"""

from __future__ import annotations

import pytest

from meshc.files.tree import DiskTree
from meshc.pipeline import compile_estate

from .conftest import REPO, check_golden_dir

CASES = sorted(p.name for p in (REPO / "tests" / "cases").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES)
def test_case_golden(case: str) -> None:
    result = compile_estate(DiskTree(REPO / "tests" / "cases" / case))
    assert result.ok, [f"{d.position} {d.code} {d.message}" for d in result.diagnostics]
    files = {f"{env}/{path}": data for env, r in sorted(result.envs.items())
             for path, data in r.bundle.files.items()}  # type: ignore[union-attr]
    check_golden_dir(REPO / "tests" / "goldens" / "cases" / case, files)


