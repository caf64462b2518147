"""Pass `merge` (front/merge.py, `pipeline.merge_pass`): an Estate -> Merged, one ServiceDecl per
service and environment, base first, each overlay applied with its layer kept for provenance.

The overlay rules' estate is tests/cases/overlay-rules/ (shared with its golden, tests/test_cases.py).
"""

from __future__ import annotations

from meshc.files.tree import DiskTree
from meshc.pipeline import Merged, compile_estate, merge_pass

from ..conftest import REPO
from .estates import API, context, estate, upto


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
# --- the pass's contract (new) -------------------------------------------------------------------


def test_an_overlay_is_merged_over_the_base_and_both_layers_are_kept() -> None:
    files = estate(a=API, files={"environments/dev/x.yaml": "overrides:\n  - name: api\n    owner: other\n"})
    ctx, _ = context(files)
    step = merge_pass(ctx, upto("load", files))
    assert step.diagnostics == () and isinstance(step.value, Merged)
    (decl,) = step.value.decls["dev"]
    assert decl.name == "api" and decl.data["owner"] == "other" and decl.data["hosts"] == ["api.example.com"]
    assert [layer.file for layer in decl.layers] == ["environments/base/a.yaml", "environments/dev/x.yaml"]
    assert str(decl.position) == "./environments/base/a.yaml:2:5"


def test_an_override_of_an_unknown_service_is_m002_at_the_override() -> None:
    files = estate(a=API, files={"environments/dev/x.yaml": "overrides:\n  - name: apii\n    owner: x\n"})
    ctx, _ = context(files)
    step = merge_pass(ctx, upto("load", files))
    assert step.value is not None and [d.code for d in step.diagnostics] == ["M002"]
    pos = step.diagnostics[0].position
    assert pos is not None and (pos.file, pos.line) == ("environments/dev/x.yaml", 2)
    assert "did you mean 'api'" in step.diagnostics[0].message


def test_a_service_declared_twice_is_m001() -> None:
    files = estate(a=API, b=API)
    ctx, _ = context(files)
    step = merge_pass(ctx, upto("load", files))
    assert [d.code for d in step.diagnostics] == ["M001"]
