"""Pass `expand` (expand/services.py, `pipeline.expand_pass`): a typed Service -> its Istio objects
(`Artifact`s) through the sandboxed templates, each with its origin table; a template error is an
X-code and no object. Run per unit by `units`. Fixtures: tests/fixtures/passes/expand/.

Provenance is built where values are made: expand gives each artifact an origin table (body
path prefix -> declaration path) beside the views it renders (expand/services.py). These tests
hold the table to what expand actually does, so it cannot drift from it: every value in every
emitted object of the example estate and the case estates, followed through the table, leads to
a declaration value it was made from."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from meshc.files.tree import DiskTree
from meshc.front.provenance import decl_path_of, locate_finding
from meshc.model.core import Artifact, ServiceDecl
from meshc.pipeline import compile_estate, expand_pass, validate_pass

from ..conftest import REPO
from .estates import FIXTURES, VM, upto
from .estates import estate as small_estate

ESTATES = [REPO] + sorted(p for p in (REPO / "tests" / "cases").glob("*") if (p / "environments").is_dir())
_MISSING = object()
# The body values a declaration may leave out, which meshc fills in with a default.
DEFAULTED = {
    ("ServiceEntry", ("spec", "location")),             # location: external
    ("ServiceEntry", ("spec", "resolution")),           # resolution: dns
    ("ServiceEntry", ("spec", "ports", "[]", "name")),  # <protocol>-<number>
    ("DestinationRule", ("spec", "exportTo", "[]")),    # "." with a clientSelector
}
# Body values made from a whole declared list or setting: placed at it, not equal to one of its values.
COMPOSED = {
    ("ServiceEntry", ("spec", "exportTo", "[]")): ("consumers",),     # ".", consumer and gateway namespaces
    ("DestinationRule", ("spec", "exportTo", "[]")): ("consumers",),
}


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from _leaves(item, path + (i,))
    else:
        yield path, value


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for elem in path:
        try:
            data = data[elem]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


def _made_from(body_value: Any, decl_value: Any) -> bool:
    """Equal, or the spellings expand translates (`external` -> MESH_EXTERNAL, `dns` -> DNS,
    `istio-mutual` -> ISTIO_MUTUAL), or a port number declared as `port: N`."""
    if body_value == decl_value:
        return True
    if isinstance(decl_value, str) and isinstance(body_value, str):
        return decl_value.upper().replace("-", "_") in body_value
    return False


def _artifacts() -> Iterator[tuple[str, Artifact, ServiceDecl, str]]:
    for root in ESTATES:
        result = compile_estate(DiskTree(root))
        assert result.ok, [str(d) for d in result.diagnostics]
        for env in result.envs.values():
            decls = {s.name: s.decl for s in env.services}
            for art in env.artifacts:
                if art.service:  # objects of the whole environment (Sidecars, the waypoint): tested below
                    yield root.name, art, decls[art.service], env.settings.name


ARTIFACTS = list(_artifacts())


def test_every_artifact_carries_its_origin() -> None:
    assert ARTIFACTS and all(art.origin for _, art, _, _ in ARTIFACTS)


@pytest.mark.parametrize("kind", ["ServiceEntry", "WorkloadEntry", "DestinationRule"])
def test_every_value_leads_back_to_the_declaration_value_it_was_made_from(kind: str) -> None:
    checked = 0
    wrong = []
    for estate, art, decl, _ in ARTIFACTS:
        if art.identity.kind != kind or _egress_path(art):
            continue
        for path, value in _leaves(dict(art.body)):
            if path[:1] != ("spec",) or path[:2] == ("spec", "workloadSelector") or \
                    (kind == "WorkloadEntry" and path[:2] == ("spec", "labels")):
                continue  # selectors and WorkloadEntry labels merge several declared values
            decl_path = decl_path_of(art, path)
            shape = (kind, tuple("[]" if isinstance(e, int) else e for e in path))
            if shape in COMPOSED and decl_path == COMPOSED[shape]:
                assert _at(decl.data, decl_path) is not _MISSING, (art.identity, path)
                continue
            declared = _at(decl.data, decl_path)
            if declared is _MISSING:  # a default meshc fills in: placed at the nearest declared parent
                shape = (kind, tuple("[]" if isinstance(e, int) else e for e in path))
                if shape not in DEFAULTED:
                    wrong.append(f"{estate} {art.identity} {path} -> {decl_path}: no such declaration value")
                continue
            checked += 1
            if isinstance(declared, Mapping):  # a value composed of the mapping's parts (locality)
                if not all(str(part) in str(value) for _, part in _leaves(declared)):
                    wrong.append(f"{estate} {art.identity} {path}={value!r} -> {decl_path}={declared!r}")
            elif isinstance(declared, list):
                wrong.append(f"{estate} {art.identity} {path} -> {decl_path}: a whole list")
            elif not _made_from(value, declared):
                wrong.append(f"{estate} {art.identity} {path}={value!r} -> {decl_path}={declared!r}")
    assert checked > 20, f"only {checked} {kind} values were checked"
    assert not wrong, "\n".join(wrong[:20])


EGRESS_KINDS = ("Gateway", "VirtualService", "AuthorizationPolicy", "BackendTLSPolicy")


def _egress_path(art: Artifact) -> bool:
    """An object of the egress path: made from the service's egress, ports, hosts and consumers
    together, not from one declared value each."""
    return art.identity.kind in EGRESS_KINDS


def test_egress_objects_are_placed_at_the_declaration_that_made_them() -> None:
    """The egress-path objects of the example estate (prod's maps-google through the gateway,
    edge's payments-stripe through the waypoint): a finding anywhere in them lands in a file of
    their service's declaration, at the egress, ports, hosts or consumers that made it."""
    seen = set()
    for _, art, decl, _ in ARTIFACTS:
        if not _egress_path(art):
            continue
        seen.add(art.identity.kind)
        files = {layer.file for layer in decl.layers}
        for path, _ in _leaves(dict(art.body)):
            pos = locate_finding(art, decl, path)
            assert pos is not None and pos.file in files and pos.line > 0, (art.identity, path, pos)
    assert seen == {"Gateway", "VirtualService", "AuthorizationPolicy"}, seen


def test_findings_in_a_destination_rule_are_placed_at_the_layer_that_wrote_the_value() -> None:
    """payments-stripe in the example estate: the base file declares port 80's TLS origination
    (`sni`, line 31), the prod overlay the connection pool (line 32) and port 80's own entry
    (`- port: 80`, line 40: the overlay wins a tie with the base's entry for the same port)."""
    for estate, art, decl, env in ARTIFACTS:
        if estate == REPO.name and art.identity.kind == "DestinationRule" and env == "prod" \
                and art.service == "payments-stripe":
            port = locate_finding(art, decl, ("spec", "trafficPolicy", "portLevelSettings", 0, "port", "number"))
            assert (port.file, port.line) == ("environments/prod/services.yaml", 40), port
            pool = locate_finding(art, decl, ("spec", "trafficPolicy", "connectionPool", "tcp", "maxConnections"))
            assert (pool.file, pool.line) == ("environments/prod/services.yaml", 32), pool
            sni = locate_finding(art, decl, ("spec", "trafficPolicy", "portLevelSettings", 0, "tls", "sni"))
            assert (sni.file, sni.line) == ("environments/base/saas.yaml", 31), sni
            return
    pytest.fail("payments-stripe has no DestinationRule in prod")


# --- the pass's contract (new) -------------------------------------------------------------------


def _expand(files: dict[str, str], templates: tuple[Path, ...] = ()):  # type: ignore[no-untyped-def]
    prepared = upto("templates", files, templates)
    service, diags = validate_pass(prepared.settings["dev"], prepared.merged.decls["dev"][0])
    assert service is not None, diags
    return expand_pass(prepared.expanders["dev"], service)


def test_a_service_expands_to_its_objects_each_with_its_origin() -> None:
    artifacts, diags = _expand(small_estate(a=VM.replace("SELECTOR", "db")))
    assert diags == []
    assert [str(a.identity) for a in artifacts] == [
        "ServiceEntry/egress/db", "WorkloadEntry/egress/db-10-9-1-1", "DestinationRule/egress/db"]
    assert all(a.service == "db" and a.origin for a in artifacts)
    se = artifacts[0].body
    assert se["spec"]["hosts"] == ["db.example.com"] and se["spec"]["resolution"] == "STATIC"


def test_a_template_printing_a_raw_value_gives_x001_and_no_object() -> None:
    artifacts, diags = _expand(small_estate(a=VM.replace("SELECTOR", "db")), (FIXTURES / "expand" / "raw-value",))
    assert artifacts == [] and [d.code for d in diags] == ["X001"]
    assert diags[0].position is not None and diags[0].position.line == 6


def test_a_value_no_layer_wrote_is_placed_where_the_service_is_declared() -> None:
    """A finding about a missing key (a policy wanting `owner`) belongs to the base entry that
    declares the service, not to an overlay that only changed something else."""
    from meshc.files.tree import MemoryTree
    from meshc.front.provenance import locate_decl

    files = {"environments/prod/env.yaml": "name: prod\nnamespace: egress\n",
             "environments/base/a.yaml": "services:\n  - name: api\n    hosts: [api.example.com]\n"
                                         "    ports:\n      - {number: 443, protocol: HTTPS}\n",
             "environments/prod/a.yaml": "overrides:\n  - name: api\n    description: prod api\n"}
    result = compile_estate(MemoryTree(files))
    assert result.ok, [str(d) for d in result.diagnostics]
    decl = result.envs["prod"].services[0].decl
    assert len(decl.layers) == 2
    assert locate_decl(decl, ("owner",)).file == "environments/base/a.yaml"
    assert locate_decl(decl, ("description",)).file == "environments/prod/a.yaml"
