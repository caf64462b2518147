"""The Istio release target: `istio:` in meshc.yaml (a release or a fleet's list of them), the
release table (compiler/meshc/data/istio-releases.yaml) and the `release` check layer (R001, R002).

* meshc.yaml: a quoted or unquoted release, a list (sorted, deduplicated), the lowest release as
  `Project.istio`, C005 at the line of a release outside the table, C001 for a value that is none;
* the table: releases 1.22..1.31, every row with a source, every path in the shipped 1.31 CRDs,
  the modes agreeing with their field rows;
* R001: every field row fires on an object that uses it when the lowest target is older, at the
  field, and not from its release on (per data plane where the row says); through a compiled
  estate, at the declaration's file:line:col;
* R002: a fleet spanning a behaviour change (1.29..1.31 with retryBudget) is warned about, at
  the field; not when the fleet is on one side, nor when the value that changed is set.
"""

from __future__ import annotations

import cProfile
import pstats
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from meshc import api
from meshc.check.common import LAYERS, CheckOptions
from meshc.check.release import _plan, findings_for, release_findings
from meshc.front.project import load_project
from meshc.model.diagnostics import Diagnostic, Severity
from meshc.model.release import (
    DEFAULT_ISTIO,
    EACH,
    FieldRow,
    Match,
    PathElem,
    known_releases,
    parse_path,
    release_key,
    release_table,
    shipped_crds,
)

TABLE = release_table()
RELEASES = known_releases()
# a value matching each row pattern of the table (a new pattern needs an example here)
PATTERN_EXAMPLES = {"configmap://.*": "configmap://corp-ca", ".*/[0-9]+": "10.20.0.0/16",
                    "~(?!/\\*$).*": "~/internal.example.com", "\\*.*": "*.example.com"}


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _where(diag: Diagnostic, root: Path) -> str:
    pos = diag.position
    assert pos is not None, diag
    file = pos.file
    for base in (str(root) + "/", str(root.resolve()) + "/", "./"):
        file = file.removeprefix(base)
    return f"{file}:{pos.line}:{pos.col}"


# --- meshc.yaml istio: -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, releases", [
    ('istio: "1.29"\n', ("1.29",)),
    ("istio: 1.31\n", ("1.31",)),
    ("istio: 1.30\n", ("1.30",)),  # YAML's number 1.3: read back as written
    ("istio: 1.22\n", ("1.22",)),
    ('istio: ["1.31", "1.29"]\n', ("1.29", "1.31")),
    ('istio: [1.30, "1.24", 1.30]\n', ("1.24", "1.30")),
    ("templates: templates\n", (DEFAULT_ISTIO,)),
], ids=["string", "number", "number-trailing-zero", "oldest", "list", "list-mixed-duplicate", "default"])
def test_istio_takes_a_release_or_a_list(tmp_path: Path, text: str, releases: tuple[str, ...]) -> None:
    (tmp_path / "meshc.yaml").write_text(text)
    project, problems = load_project(tmp_path)
    assert not problems, problems
    assert project.releases == releases
    assert project.istio == releases[0]  # existing callers read the release fields are gated on
    assert project.crd_file() == shipped_crds()  # every release is validated against the shipped 1.31 schemas


@pytest.mark.parametrize("text, code, where, says", [
    ('istio: "1.19"\n', "C005", "meshc.yaml:1:8", "istio: '1.19' is not a release"),
    ("istio: 1.3\n", "C005", "meshc.yaml:1:8", "istio: '1.3' is not a release"),
    ('policies: policies\nistio: ["1.29", "1.40"]\n', "C005", "meshc.yaml:2:17", "istio: '1.40' is not a release"),
    ("istio:\n  - 1.31\n  - 1.21\n", "C005", "meshc.yaml:3:5", "istio: '1.21'"),
    ("istio: []\n", "C001", "meshc.yaml:1:8", "must be an Istio release or a non-empty list"),
    ("istio: {release: 1.31}\n", "C001", "meshc.yaml:1:8", "must be an Istio release"),
    ("istio: [[1.31]]\n", "C001", "meshc.yaml:1:9", "must be an Istio release"),
], ids=["unknown", "number-not-a-release", "list-item", "block-list-item", "empty-list", "mapping", "nested"])
def test_a_release_outside_the_table_is_an_error_at_its_line(tmp_path: Path, text: str, code: str, where: str,
                                                              says: str) -> None:
    (tmp_path / "meshc.yaml").write_text(text)
    _, problems = load_project(tmp_path)
    hits = [p for p in problems if p.code == code]
    assert hits, problems
    assert {h.severity for h in hits} == {Severity.ERROR}
    assert _where(hits[0], tmp_path) == where and says in hits[0].message
    assert hits[0].hint


def test_the_release_list_comes_from_the_table() -> None:
    assert RELEASES == tuple(f"1.{n}" for n in range(22, 32))
    assert DEFAULT_ISTIO == RELEASES[-1]
    assert list(RELEASES) == sorted(RELEASES, key=release_key)


# --- the table ------------------------------------------------------------------------------------

def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(group, kind) -> the openAPIV3Schema of the storage version, from the shipped file."""
    out = {}
    for crd in orjson.loads(shipped_crds().read_bytes())["items"]:
        spec = crd["spec"]
        version = next((v for v in spec["versions"] if v.get("storage")), spec["versions"][0])
        out[(spec["group"], spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return out


def _schema_at(schema: dict[str, Any], path: tuple[PathElem, ...]) -> dict[str, Any] | None:
    """The schema of `path`, or None when it does not exist. Under `metadata` (ObjectMeta, not in
    the CRD schemas) labels and annotations are free maps."""
    node = schema
    for i, elem in enumerate(path):
        if i == 0 and elem == "metadata":
            rest = path[1:]
            return {} if len(rest) == 2 and rest[0] in ("labels", "annotations") and rest[1] else None
        if elem is EACH:
            if node.get("type") != "array" or "items" not in node:
                return None
            node = node["items"]
            continue
        props = node.get("properties") or {}
        if elem not in props:
            return None
        node = props[elem]
    return node


def _all_matches() -> list[tuple[str, Match]]:
    rows: list[tuple[str, Match]] = [(f"fields: {r.feature} {r.match.path}", r.match) for r in TABLE.fields]
    rows += [(f"behaviour: {r.release} {r.match.path}", r.match) for r in TABLE.behaviour]
    return rows


@pytest.mark.parametrize("match", [m for _, m in _all_matches()], ids=[n for n, _ in _all_matches()])
def test_every_row_path_is_in_the_shipped_crd_schema(match: Match) -> None:
    schemas = _crd_schemas()
    assert (match.group, match.kind) in schemas, f"no shipped CRD serves {match.group}/{match.kind}"
    schema = schemas[(match.group, match.kind)]
    for key, path in (("path", match.path), ("with", match.with_), ("unless", match.unless),
                      ("shared", match.shared)):
        if path is None:
            continue
        at = _schema_at(schema, parse_path(path))
        assert at is not None, f"{key} {path} is not in the shipped {match.kind} schema"
        if key == "path" and match.value is not None and "enum" in at:
            assert match.value in at["enum"], f"{match.value!r} is not a value of {path}: {at['enum']}"


def test_every_row_names_its_source_and_known_releases() -> None:
    sources = [r.source for r in TABLE.fields] + [r.source for r in TABLE.behaviour] + [r.source for r in TABLE.modes]
    for source in sources:
        assert re.match(r"https://(istio\.io|github\.com/istio/)", source), source
    for frow in TABLE.fields:
        assert frow.since in RELEASES and (frow.match.dataplane in (None, "sidecar", "ambient"))
        if frow.match.pattern is not None:
            assert frow.match.pattern in PATTERN_EXAMPLES, f"add an example value for {frow.match.pattern!r}"
    for brow in TABLE.behaviour:
        assert brow.release in RELEASES and brow.release != RELEASES[0]  # a change at the oldest never shows


def test_modes_agree_with_their_field_rows() -> None:
    """A mode's first release on a data plane is the release of the field rows that mark it there."""
    by_feature: dict[str, list[FieldRow]] = {}
    for row in TABLE.fields:
        by_feature.setdefault(row.feature, []).append(row)
    for mode in TABLE.modes:
        for dataplane, since in mode.since.items():
            for feature in mode.features:
                rows = [r for r in by_feature[feature] if r.match.dataplane in (None, dataplane)]
                assert rows and {r.since for r in rows} == {since}, (mode.mode, dataplane, feature)
    assert "waypoint egress" in TABLE.modes_available("1.24", "ambient")
    assert "waypoint egress" not in TABLE.modes_available("1.23", "ambient")
    assert "waypoint egress" not in TABLE.modes_available("1.31", "sidecar")
    assert "DYNAMIC_DNS" in TABLE.modes_available("1.28", "ambient")
    assert "DYNAMIC_DNS" not in TABLE.modes_available("1.29", "sidecar")


# --- R001 on every field row ------------------------------------------------------------------------

def _put(body: dict[str, Any], path: tuple[PathElem, ...], value: Any) -> tuple[Any, ...]:
    """Set `path` in `body` (one item for each `[]`); returns the concrete path."""
    node: Any = body
    concrete: list[Any] = []
    for i, elem in enumerate(path):
        last = i == len(path) - 1
        nxt: Any = value if last else ([] if path[i + 1] is EACH else {})
        if elem is EACH:
            if not node or last:
                node[:] = [nxt]
            concrete.append(0)
            node = node[0]
        else:
            if last or elem not in node:
                node[elem] = nxt
            concrete.append(elem)
            node = node[elem]
    return tuple(concrete)


def _object(match: Match) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """A minimal object the row matches, and the path it should be reported at."""
    body: dict[str, Any] = {"apiVersion": f"{match.group}/v1", "kind": match.kind,
                            "metadata": {"name": "x", "namespace": "egress"}}
    value: Any = match.value if match.value is not None else PATTERN_EXAMPLES.get(match.pattern or "", {"x": 1})
    where = _put(body, parse_path(match.path), value)
    if match.with_ is not None:
        _put(body, parse_path(match.with_), {"x": 1})
    return body, where


def _before(release: str) -> str:
    return RELEASES[RELEASES.index(release) - 1]


GATED = [r for r in TABLE.fields if r.since != RELEASES[0]]


@pytest.mark.parametrize("row", GATED, ids=[f"{r.since}-{r.match.kind}-{r.match.path}-{r.match.dataplane}"
                                             for r in GATED])
def test_each_field_row_fires_when_the_lowest_target_is_older(row: FieldRow) -> None:
    body, where = _object(row.match)
    dataplanes = [row.match.dataplane] if row.match.dataplane else ["sidecar", "ambient"]
    older = _before(row.since)
    for dataplane in dataplanes:
        found = [f for f in findings_for(body, [older, RELEASES[-1]], dataplane) if f.code == "R001"]
        mine = [f for f in found if f.path == where and row.feature in f.message]
        assert mine, (dataplane, found)
        assert mine[0].severity == Severity.ERROR
        assert mine[0].message.startswith(f"{row.feature} needs Istio {row.since}")
        assert f"this estate targets {older}" in mine[0].message
        assert "raise istio:" in mine[0].hint and row.source in mine[0].hint
        for newer in (row.since, RELEASES[-1]):
            assert not [f for f in findings_for(body, [newer], dataplane)
                        if f.code == "R001" and row.feature in f.message], (dataplane, newer)


def test_a_value_row_fires_only_for_its_value() -> None:
    se: dict[str, Any] = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                          "spec": {"hosts": ["*.example.com"], "resolution": "DNS"}}
    assert not [f for f in findings_for(se, ["1.27"]) if f.code == "R001"]
    se["spec"]["resolution"] = "DYNAMIC_DNS"
    assert [f.message for f in findings_for(se, ["1.29"], "sidecar") if f.code == "R001"] == [
        "resolution DYNAMIC_DNS needs Istio 1.30 on sidecar data planes; this estate targets 1.29"]
    assert not [f for f in findings_for(se, ["1.29"], "ambient") if f.code == "R001"]
    assert [f.path for f in findings_for(se, ["1.27"], "ambient") if f.code == "R001"] == [("spec", "resolution")]


def test_every_use_of_a_field_is_reported_where_it_is() -> None:
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "spec": {
        "host": "api.example.com",
        "trafficPolicy": {"portLevelSettings": [
            {"port": {"number": 80}},
            {"port": {"number": 443}, "loadBalancer": {"warmup": {"duration": "10s"}}}]},
        "subsets": [{"name": "a", "trafficPolicy": {"loadBalancer": {"warmup": {"duration": "5s"}}}}]}}
    paths = {f.path for f in findings_for(dr, ["1.23"]) if f.code == "R001"}
    assert paths == {("spec", "trafficPolicy", "portLevelSettings", 1, "loadBalancer", "warmup"),
                     ("spec", "subsets", 0, "trafficPolicy", "loadBalancer", "warmup")}


# --- through an estate: positions at the declaration -------------------------------------------------

SERVICE = """\
services:
  - name: api
    hosts: [api.example.com]
    resolution: dns
    ports:
      - {number: 443, protocol: HTTPS}
    trafficPolicy:
      loadBalancer:
        warmup: {duration: 30s}
      retryBudget:
        minRetryConcurrency: 5
        budgetInterval: 10s
"""


def _estate(root: Path, istio: str, service: str = SERVICE) -> list[Diagnostic]:
    _write(root, {"environments/dev/env.yaml": "name: dev\nnamespace: egress\n",
                  "environments/base/api.yaml": service, "meshc.yaml": f"istio: {istio}\n"})
    return [d for d in api.check(root, layers=("release",), use_cache=False).diagnostics if d.code[0] == "R"]


@pytest.mark.parametrize("istio, expected", [
    ('"1.23"', {("R001", "warmup needs Istio 1.24; this estate targets 1.23", "environments/base/api.yaml:9:17"),
                ("R001", "retryBudget needs Istio 1.27; this estate targets 1.23", "environments/base/api.yaml:11:9"),
                ("R001", "retryBudget.budgetInterval needs Istio 1.31; this estate targets 1.23",
                 "environments/base/api.yaml:12:25")}),
    ('"1.26"', {("R001", "retryBudget needs Istio 1.27; this estate targets 1.26", "environments/base/api.yaml:11:9"),
                ("R001", "retryBudget.budgetInterval needs Istio 1.31; this estate targets 1.26",
                 "environments/base/api.yaml:12:25")}),
    ("1.30", {("R001", "retryBudget.budgetInterval needs Istio 1.31; this estate targets 1.30",
               "environments/base/api.yaml:12:25")}),
    ("1.31", set()),
], ids=["1.23", "1.26", "1.30", "1.31"])
def test_fields_are_gated_at_their_declaration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, istio: str,
                                              expected: set[tuple[str, str, str]]) -> None:
    monkeypatch.chdir(tmp_path)
    found = _estate(tmp_path, istio)
    assert {(d.code, d.message, _where(d, tmp_path)) for d in found if d.code == "R001"} == expected
    assert all(d.severity == Severity.ERROR and d.env == "dev" for d in found if d.code == "R001")


def test_a_fleet_spanning_a_behaviour_change_is_warned_about(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    service = SERVICE.replace("        warmup: {duration: 30s}\n", "        simple: ROUND_ROBIN\n").replace(
        "        budgetInterval: 10s\n", "")
    found = _estate(tmp_path, '["1.29", "1.31"]', service)
    assert [(d.code, d.severity, _where(d, tmp_path)) for d in found] == [
        ("R002", Severity.WARNING, "environments/base/api.yaml:11:9")]
    message = found[0].message
    assert "Istio 1.29 and 1.31" in message and "1.30" in message and "20%" in message and "0.2%" in message
    assert "istio:" in found[0].hint
    assert _estate(tmp_path, '["1.30", "1.31"]', service) == []  # one side of the change
    assert _estate(tmp_path, '"1.29"', service) == []  # a single release runs it one way
    explicit = service.replace("        minRetryConcurrency: 5\n",
                               "        minRetryConcurrency: 5\n        percent: 25\n")
    assert _estate(tmp_path, '["1.29", "1.31"]', explicit) == []  # the changed default is not used


def test_the_layer_runs_with_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`release` is a layer of `meshc check` and `meshc build` (default: all layers)."""
    assert "release" in LAYERS and CheckOptions().releases == (DEFAULT_ISTIO,)
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, {"environments/dev/env.yaml": "name: dev\nnamespace: egress\n",
                      "environments/base/api.yaml": SERVICE, "meshc.yaml": 'istio: "1.30"\n'})
    project, _ = load_project(tmp_path)
    opts = api.check_options(project)
    assert "release" in opts.layers and opts.releases == ("1.30",)
    built = api.build(tmp_path, checks=True, use_cache=False)
    assert [d.code for d in built.diagnostics if d.code[0] == "R"] == ["R001"]
    assert not (tmp_path / "out" / "dev" / "index.json").exists()  # an error: nothing written


def test_a_change_about_several_objects_needs_several() -> None:
    """DestinationRules with different exportTo for one host are no longer merged from 1.24: only
    a DestinationRule that shares its host with another one is affected."""
    def dr(name: str, host: str, export_to: list[str]) -> dict[str, Any]:
        return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": name, "namespace": "istio-system"},
                "spec": {"host": host, "exportTo": export_to, "subsets": [{"name": name}]}}

    gateway = "istio-egressgateway.istio-system.svc.cluster.local"
    a, b, c = dr("a", gateway, ["."]), dr("b", gateway, ["checkout"]), dr("c", "api.example.com", ["."])
    found = findings_for(a, ["1.23", "1.24"], others=[b, c])
    assert [(f.code, f.path) for f in found] == [("R002", ("spec", "exportTo"))]
    assert "Istio 1.23 and 1.24" in found[0].message and "no longer merged" in found[0].message
    assert findings_for(c, ["1.23", "1.24"], others=[a, b]) == []
    assert findings_for(a, ["1.24", "1.31"], others=[b, c]) == []


def test_ambient_environments_use_the_ambient_rows() -> None:
    """Rows with `dataplane:` apply to environments running that data plane only."""
    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
          "spec": {"hosts": ["api.example.com"], "addresses": ["10.20.0.0/16"], "resolution": "STATIC"}}
    assert [f.code for f in findings_for(se, ["1.29"], "ambient")] == ["R001"]
    assert findings_for(se, ["1.29"], "sidecar") == []
    none = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "spec": {"hosts": ["api.example.com"], "resolution": "NONE"}}
    assert [f.code for f in findings_for(none, ["1.27", "1.28"], "ambient")] == ["R002"]
    assert findings_for(none, ["1.27", "1.28"], "sidecar") == []


def test_the_layer_is_one_cheap_pass() -> None:
    """Rows are compiled once per data plane into one trie per kind: with every row live (a fleet
    spanning 1.22..1.31) an object costs a walk of its fields, not one per row of the table
    (counted as Python function calls, deterministic: ~90 for this DestinationRule, where a pass
    per row would make thousands); a fleet on the newest release alone has nothing to check."""
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "spec": {
        "host": "api.example.com", "exportTo": ["."],
        "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"},
                          "portLevelSettings": [{"port": {"number": 443}, "tls": {"mode": "SIMPLE"}}]},
        "subsets": [{"name": "a", "labels": {"v": "1"}}]}}
    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
          "spec": {"hosts": ["api.example.com"], "ports": [{"number": 443, "protocol": "TLS"}], "resolution": "DNS"}}
    plan = _plan(TABLE, RELEASES, "sidecar")
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(100):
        release_findings(dr, plan)
        release_findings(se, plan)
    profile.disable()
    per_object = pstats.Stats(profile).total_calls / 200  # type: ignore[attr-defined]
    assert per_object < 150, per_object
    assert not _plan(TABLE, (RELEASES[-1],), "sidecar").kinds and not _plan(TABLE, (RELEASES[-1],), "ambient").kinds
