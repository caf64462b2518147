"""Focused golden cases: one per resolution mode, overlay rule and TLS mode (tests/cases/<case>/).

Each case holds an environments/ tree; its expected bundles live in tests/goldens/cases/<case>/.
Regenerate with `make goldens` (MESHC_UPDATE_GOLDENS=1; one case: `make goldens CASE=<case>`) and
review the diff like code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshc.pipeline import compile_estate
from meshc.files.tree import DiskTree

from .conftest import REPO, check_golden_dir

CASES = sorted(p.name for p in (REPO / "tests" / "cases").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES)
def test_case_golden(case: str) -> None:
    result = compile_estate(DiskTree(REPO / "tests" / "cases" / case))
    assert result.ok, [f"{d.position} {d.code} {d.message}" for d in result.diagnostics]
    files = {f"{env}/{path}": data for env, r in sorted(result.envs.items())
             for path, data in r.bundle.files.items()}  # type: ignore[union-attr]
    check_golden_dir(REPO / "tests" / "goldens" / "cases" / case, files)


def test_overlay_rules_behave_as_documented() -> None:
    result = compile_estate(DiskTree(REPO / "tests" / "cases" / "overlay-rules"))
    prod = {(a.identity.kind, a.identity.name): a.body for a in result.envs["prod"].artifacts}
    se = prod[("ServiceEntry", "api")]["spec"]
    assert se["hosts"] == ["api.example.com"]
    assert se["ports"] == [{"name": "http", "number": 80, "protocol": "HTTP", "targetPort": 8000}]
    assert [e["address"] for e in se["endpoints"]] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert se["endpoints"][1]["weight"] == 5 and se["endpoints"][1]["labels"] == {"v": "two"}
    drs = [a.body for a in result.envs["prod"].artifacts if a.identity.kind == "DestinationRule"]
    assert len(drs) == 1
    assert drs[0]["spec"]["trafficPolicy"]["connectionPool"]["tcp"] == {"maxConnections": 50, "connectTimeout": "1s"}
    assert [s["name"] for s in drs[0]["spec"]["subsets"]] == ["two"]
    names = {name for _, name in prod}
    assert "gone-in-prod" not in names and "prod-only" in names
    dev = {a.identity.name for a in result.envs["dev"].artifacts}
    assert "gone-in-prod" in dev and "prod-only" not in dev
