"""CRD validation (meshc.crd): OpenAPI schema, CEL rules, list keys, loading errors."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshc.check.schema.crd import CrdError, CrdSet
from meshc.check.schema.cel import CelCompiler, Bindings, CelEvalError, CompileFailure
from meshc.check.schema.cel_ext import (
    cel_is_cidr,
    cel_is_ip,
    cel_substring,
    go_parse_duration,
    python_equivalent,
    rewrite_calls,
)
from meshc.model.release import shipped_crds
from meshc.model.diagnostics import Severity
from meshc.model.release import shipped_crds

CRD_FILE = shipped_crds()
NET = "networking.istio.io/v1"


@pytest.fixture(scope="module")
def crds() -> CrdSet:
    return CrdSet.load(CRD_FILE)


def obj(kind: str, spec: dict[str, Any], api_version: str = NET, **meta: Any) -> dict[str, Any]:
    metadata = {"name": "x", "namespace": "default", **meta}
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec}


# --------------------------------------------------------------------------- valid examples

MONGO_SE = obj("ServiceEntry", {
    "hosts": ["mymongodb.somedomain"], "addresses": ["192.192.192.192/24"],
    "ports": [{"number": 27018, "name": "mongodb", "protocol": "MONGO"}],
    "location": "MESH_INTERNAL", "resolution": "STATIC",
    "endpoints": [{"address": "2.2.2.2"}, {"address": "3.3.3.3"}],
})
DNS_SE = obj("ServiceEntry", {
    "hosts": ["foo.bar.com"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
    "resolution": "DNS", "location": "MESH_EXTERNAL",
    "endpoints": [
        {"address": "us.foo.bar.com", "ports": {"http": 8080}},
        {"address": "uk.foo.bar.com", "ports": {"http": 9080}},
        {"address": "in.foo.bar.com", "ports": {"http": 7080}},
    ],
})
UDS_SE = obj("ServiceEntry", {
    "hosts": ["example.unix.local"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
    "location": "MESH_EXTERNAL", "resolution": "STATIC",
    "endpoints": [{"address": "unix:///var/run/example/socket"}],
})
WILDCARD_SE = obj("ServiceEntry", {
    "hosts": ["*.wikipedia.org"], "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}],
})
SELECTOR_SE = obj("ServiceEntry", {
    "hosts": ["details.bookinfo.com"], "location": "MESH_INTERNAL", "resolution": "STATIC",
    "ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 8080}],
    "workloadSelector": {"labels": {"app": "details"}},
})
VM_WE = obj("WorkloadEntry", {
    "serviceAccount": "details", "address": "2.2.2.2",
    "labels": {"app": "details", "instance-id": "vm1"},
})
NETWORK_WE = obj("WorkloadEntry", {
    "serviceAccount": "foo", "network": "cluster-2-network", "labels": {"app": "foo"}, "weight": 3,
})
FULL_DR = obj("DestinationRule", {
    "host": "mymongodb.somedomain",
    "trafficPolicy": {
        "loadBalancer": {"simple": "ROUND_ROBIN"},
        "connectionPool": {
            "tcp": {"maxConnections": 1, "connectTimeout": "30ms",
                    "tcpKeepalive": {"time": "7200s", "interval": "75s"}},
            "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1, "idleTimeout": "1h"},
        },
        "outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s", "baseEjectionTime": "3m",
                             "maxEjectionPercent": 100},
        "tls": {"mode": "SIMPLE"},
        "portLevelSettings": [
            {"port": {"number": 443}, "tls": {"mode": "SIMPLE", "sni": "edition.cnn.com"}},
        ],
    },
    "subsets": [
        {"name": "v1", "labels": {"version": "v1"}},
        {"name": "v2", "labels": {"version": "v2"},
         "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}},
    ],
})
LOCALITY_DR = obj("DestinationRule", {
    "host": "helloworld.sample.svc.cluster.local",
    "trafficPolicy": {
        "connectionPool": {"http": {"maxRequestsPerConnection": 1}},
        "loadBalancer": {"simple": "ROUND_ROBIN", "localityLbSetting": {
            "enabled": True, "failover": [{"from": "region1", "to": "region2"}]}},
        "outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s", "baseEjectionTime": "1m"},
    },
})
HASH_DR = obj("DestinationRule", {
    "host": "api.example.com",
    "workloadSelector": {"matchLabels": {"app": "client"}},
    "trafficPolicy": {
        "loadBalancer": {"consistentHash": {"httpCookie": {"name": "user", "ttl": "0s"},
                                            "ringHash": {"minimumRingSize": 1024}}},
        "tunnel": {"targetHost": "proxy.corp.example", "targetPort": 3128},
        "outlierDetection": {"consecutive5xxErrors": None},
    },
})


@pytest.mark.parametrize("manifest", [
    MONGO_SE, DNS_SE, UDS_SE, WILDCARD_SE, SELECTOR_SE, VM_WE, NETWORK_WE, FULL_DR, LOCALITY_DR,
    HASH_DR, obj("ServiceEntry", MONGO_SE["spec"], api_version="networking.istio.io/v1beta1"),
    obj("DestinationRule", FULL_DR["spec"], api_version="networking.istio.io/v1alpha3"),
], ids=["se-mongo-static-cidr", "se-dns-endpoints", "se-uds", "se-wildcard-none",
        "se-selector", "we-vm", "we-network-only", "dr-full", "dr-locality", "dr-hash-tunnel",
        "se-v1beta1", "dr-v1alpha3"])
def test_valid_examples_pass(crds: CrdSet, manifest: dict[str, Any]) -> None:
    assert crds.validate(manifest) == []


def test_kinds(crds: CrdSet) -> None:
    kinds = crds.kinds()
    # every Istio CRD of the shipped istio/api commit (16 kinds) and the Gateway API standard ones
    assert {k for _, k in kinds} >= {"ServiceEntry", "WorkloadEntry", "DestinationRule", "Sidecar", "Gateway",
                                     "VirtualService", "AuthorizationPolicy", "HTTPRoute", "GatewayClass"}
    assert (NET, "ServiceEntry") in kinds
    assert ("networking.istio.io/v1alpha3", "DestinationRule") in kinds
    assert ("gateway.networking.k8s.io/v1", "Gateway") in kinds


# --------------------------------------------------------------------------- invalid examples


def patched(base: dict[str, Any], *edits: tuple[tuple[Any, ...], Any]) -> dict[str, Any]:
    """Deep copy of ``base`` with each (path, value) set (appended at a list's end); ``...`` deletes."""
    out = copy.deepcopy(base)
    for path, value in edits:
        target = out
        for step in path[:-1]:
            target = target[step]
        if value is ...:
            del target[path[-1]]
        elif isinstance(target, list) and path[-1] == len(target):
            target.append(value)
        else:
            target[path[-1]] = value
    return out


TP = ("spec", "trafficPolicy")
INVALID = [
    ("unknown-top-field", patched(MONGO_SE, (("spce",), 1)), "S001", ("spce",), 'did you mean "spec"'),
    ("unknown-nested-field", patched(MONGO_SE, (("spec", "ports", 0, "nmae"), "x")),
     "S001", ("spec", "ports", 0, "nmae"), 'unknown field "nmae" (did you mean "name"?)'),
    ("wrong-type", patched(MONGO_SE, (("spec", "ports", 0, "number"), "80")),
     "S001", ("spec", "ports", 0, "number"), "must be integer, got string"),
    ("float-is-not-integer", patched(MONGO_SE, (("spec", "ports", 0, "number"), 80.0)),
     "S001", ("spec", "ports", 0, "number"), "must be integer"),
    ("bad-enum", patched(MONGO_SE, (("spec", "resolution"), "DNZ")), "S001", ("spec", "resolution"),
     "must be one of NONE, STATIC, DNS, DNS_ROUND_ROBIN, DYNAMIC_DNS"),
    ("bad-location", patched(MONGO_SE, (("spec", "location"), "MESH_EXTERNALL")), "S001",
     ("spec", "location"), "must be one of MESH_EXTERNAL, MESH_INTERNAL"),
    ("missing-spec", patched(MONGO_SE, (("spec",), ...)), "S001", ("spec",), 'missing required field "spec"'),
    ("no-hosts", patched(MONGO_SE, (("spec", "hosts"), [])), "S001", ("spec", "hosts"), "at least 1"),
    ("long-address", patched(MONGO_SE, (("spec", "addresses"), ["1" * 65])), "S001",
     ("spec", "addresses", 0), "at most 64 characters"),
    ("label-not-string", patched(VM_WE, (("metadata", "labels"), {"a": 1})), "S001",
     ("metadata", "labels", "a"), "must be string"),
    ("null-field", patched(FULL_DR, (TP + ("tls", "mode"), None)), "S001", TP + ("tls", "mode"),
     "got null"),
    ("port-out-of-range", patched(MONGO_SE, (("spec", "ports", 0, "number"), 70000)), "S002",
     ("spec", "ports", 0, "number"), "port must be between 1-65535"),
    ("port-zero", patched(MONGO_SE, (("spec", "ports", 0, "targetPort"), 0)), "S002",
     ("spec", "ports", 0, "targetPort"), "port must be between 1-65535"),
    ("duplicate-port-number", patched(MONGO_SE, (("spec", "ports", 1),
                                                  {"number": 27018, "name": "mongo2"})),
     "S002", ("spec", "ports"), "port number cannot be duplicated"),
    ("duplicate-port-name", patched(MONGO_SE, (("spec", "ports", 1),
                                                {"number": 27019, "name": "mongodb"})),
     "S004", ("spec", "ports", 1), 'duplicate entry name="mongodb" (first at index 0)'),
    ("cidr-with-dns", patched(MONGO_SE, (("spec", "resolution"), "DNS")), "S002", ("spec",),
     "CIDR addresses are allowed only for NONE/STATIC resolution types"),
    ("none-with-endpoints", patched(MONGO_SE, (("spec", "resolution"), "NONE")), "S002", ("spec",),
     "NONE mode cannot set endpoints"),
    ("default-none-with-endpoints", patched(MONGO_SE, (("spec", "resolution"), ...)), "S002",
     ("spec",), "NONE mode cannot set endpoints"),
    ("dns-round-robin-two-endpoints", patched(DNS_SE, (("spec", "resolution"), "DNS_ROUND_ROBIN")),
     "S002", ("spec",), "DNS_ROUND_ROBIN mode cannot have multiple endpoints"),
    ("uds-relative", patched(UDS_SE, (("spec", "endpoints", 0, "address"), "unix://relative")),
     "S002", ("spec", "endpoints", 0, "address"), "UDS must be an absolute path or abstract socket"),
    ("uds-dir", patched(UDS_SE, (("spec", "endpoints", 0, "address"), "unix:///dir/")),
     "S002", ("spec", "endpoints", 0, "address"), "UDS may not be a dir"),
    ("uds-with-ports", patched(UDS_SE, (("spec", "endpoints", 0, "ports"), {"http": 80})),
     "S002", ("spec", "endpoints", 0), "UDS may not include ports"),
    ("host-wildcard", patched(WILDCARD_SE, (("spec", "hosts"), ["*"])), "S002", ("spec", "hosts", 0),
     "hostname cannot be wildcard"),
    ("selector-and-endpoints", patched(MONGO_SE, (("spec", "workloadSelector"), {"labels": {"a": "b"}})),
     "S002", ("spec",), "only one of WorkloadSelector or Endpoints can be set"),
    ("selector-wildcard-value", patched(SELECTOR_SE, (("spec", "workloadSelector", "labels", "app"), "d*")),
     "S002", ("spec", "workloadSelector", "labels", "app"), "wildcard is not supported in selector"),
    ("we-no-address", patched(VM_WE, (("spec", "address"), ...)), "S002", ("spec",), "Address is required"),
    ("we-bad-port-name", patched(VM_WE, (("spec", "ports"), {"-http": 80})), "S002", ("spec", "ports"),
     "port name must be valid"),
    ("we-port-name-newline", patched(VM_WE, (("spec", "ports"), {"http\n": 80})), "S002",
     ("spec", "ports"), "port name must be valid"),
    ("duration-too-small", patched(FULL_DR, (TP + ("outlierDetection", "interval"), "0.5ms")), "S002",
     TP + ("outlierDetection", "interval"), "must be a valid duration greater than 1ms"),
    ("duration-micro-sign", patched(FULL_DR, (TP + ("connectionPool", "tcp", "connectTimeout"), "5µs")),
     "S002", TP + ("connectionPool", "tcp", "connectTimeout"), "greater than 1ms"),
    ("duration-in-subset", patched(FULL_DR, (("spec", "subsets", 1, "trafficPolicy", "outlierDetection"),
                                             {"baseEjectionTime": "0s"})),
     "S002", ("spec", "subsets", 1, "trafficPolicy", "outlierDetection", "baseEjectionTime"), "1ms"),
    ("duration-no-unit", patched(FULL_DR, (TP + ("outlierDetection", "interval"), "10")), "S003",
     TP + ("outlierDetection", "interval"), 'missing unit in duration "10"'),
    ("duration-go-rejects-exponent", patched(FULL_DR, (TP + ("outlierDetection", "interval"), "1e3ms")),
     "S003", TP + ("outlierDetection", "interval"), 'unknown unit "e"'),
    ("tunnel-without-target-port", patched(HASH_DR, (TP + ("tunnel", "targetPort"), ...)), "S001",
     TP + ("tunnel", "targetPort"), 'missing required field "targetPort"'),
    ("maglev-and-ring-hash", patched(HASH_DR, (TP + ("loadBalancer", "consistentHash", "maglev"),
                                               {"tableSize": 65537})),
     "S001", TP + ("loadBalancer", "consistentHash"), "at most one of ringHash, maglev"),
    ("simple-and-consistent-hash", patched(HASH_DR, (TP + ("loadBalancer", "simple"), "RANDOM")),
     "S001", TP + ("loadBalancer",), "at most one of simple, consistentHash"),
    ("dr-selector-empty-key", patched(HASH_DR, (("spec", "workloadSelector", "matchLabels"), {"": "x"})),
     "S002", ("spec", "workloadSelector", "matchLabels"), "key must not be empty"),
    ("unknown-kind", {"apiVersion": NET, "kind": "ServiceEntri", "spec": {}}, "S005", ("kind",),
     'did you mean "ServiceEntry"'),
    ("unknown-version", patched(MONGO_SE, (("apiVersion",), "networking.istio.io/v2")), "S005",
     ("apiVersion",), "served versions: networking.istio.io/v1, "),
]


@pytest.mark.parametrize("manifest,code,path,text", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_examples(crds: CrdSet, manifest: dict[str, Any], code: str,
                          path: tuple[Any, ...], text: str) -> None:
    findings = crds.validate(manifest)
    matching = [f for f in findings if f.code == code and f.path == path]
    assert matching, f"no {code} at {path}; got {[(f.code, f.path, f.message) for f in findings]}"
    assert any(text in f.message for f in matching), [f.message for f in matching]
    assert all(f.severity is Severity.ERROR for f in findings)


def test_uds_without_path_errors_in_substring(crds: CrdSet, caplog: pytest.LogCaptureFixture) -> None:
    """`unix://` makes substring(7, 8) go out of range: an evaluation error, never a pass."""
    caplog.set_level(logging.DEBUG)
    findings = crds.validate(patched(UDS_SE, (("spec", "endpoints", 0, "address"), "unix://")))
    codes = {(f.code, f.path) for f in findings}
    assert ("S003", ("spec", "endpoints", 0, "address")) in codes
    broken = next(f for f in findings if f.code == "S003")
    assert "index out of range: 8" in broken.message and "substring" in broken.message
    assert not [r for r in caplog.records if "Python function" in r.getMessage()]


def test_all_findings_at_once_sorted_and_stable(crds: CrdSet) -> None:
    bad = patched(DNS_SE, (("spce",), 1), (("spec", "hosts"), ["*"]),
                  (("spec", "ports", 0, "number"), 0),
                  (("spec", "endpoints", 1, "address"), "unix://rel"))
    first = crds.validate(bad)
    assert crds.validate(bad) == first  # memoised outcomes give the same answer
    assert [(f.path, f.code) for f in first] == [
        (("spce",), "S001"),
        (("spec", "endpoints", 1), "S002"),  # UDS may not include ports
        (("spec", "endpoints", 1, "address"), "S002"),
        (("spec", "hosts", 0), "S002"),
        (("spec", "ports", 0, "number"), "S002"),
    ]


def test_schema_errors_block_rules_below_but_not_unknown_fields(crds: CrdSet) -> None:
    bad_enum = patched(MONGO_SE, (("spec", "resolution"), "DNZ"))
    assert [f.code for f in crds.validate(bad_enum)] == ["S001"]  # no spec-level CEL on bad data
    typo = patched(MONGO_SE, (("spec", "resolution"), "DNS"), (("spec", "extra"), 1))
    assert {f.code for f in crds.validate(typo)} == {"S001", "S002"}


def test_non_mapping_manifest(crds: CrdSet) -> None:
    findings = crds.validate(["not", "an", "object"])  # type: ignore[arg-type]
    assert [f.code for f in findings] == ["S005"]


# --------------------------------------------------------------------------- tiny CRDs


def tiny_crd(tmp_path: Path, spec_schema: dict[str, Any], name: str = "crd.yaml") -> Path:
    doc = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                "openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}}}],
        },
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def widget(spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}


def ruled(*rules: dict[str, Any], **props: Any) -> dict[str, Any]:
    properties = props or {"x": {"type": "string"}, "n": {"type": "integer"}}
    return {"type": "object", "properties": properties, "x-kubernetes-validations": list(rules)}


def test_undefined_function_is_s003(tmp_path: Path) -> None:
    crds = CrdSet.load(tiny_crd(tmp_path, ruled({"rule": "frobnicate(self.x)", "message": "m"})))
    findings = crds.validate(widget({"x": "a"}))
    assert [(f.code, f.path, f.severity) for f in findings] == [("S003", ("spec",), Severity.ERROR)]
    assert "frobnicate(self.x)" in findings[0].message and "frobnicate" in findings[0].message
    assert "cannot be compiled" in findings[0].message


def test_evaluation_error_is_s003(tmp_path: Path) -> None:
    crds = CrdSet.load(tiny_crd(tmp_path, ruled({"rule": "self.x.startsWith('a')"})))
    findings = crds.validate(widget({"n": 1}))
    assert [f.code for f in findings] == ["S003"]
    assert "no such key: x" in findings[0].message


def test_syntax_error_is_s003(tmp_path: Path) -> None:
    crds = CrdSet.load(tiny_crd(tmp_path, ruled({"rule": "self.x == "})))
    assert [f.code for f in crds.validate(widget({"x": "a"}))] == ["S003"]


def test_non_bool_result_is_s003(tmp_path: Path) -> None:
    crds = CrdSet.load(tiny_crd(tmp_path, ruled({"rule": "self.x"})))
    findings = crds.validate(widget({"x": "a"}))
    assert [f.code for f in findings] == ["S003"] and "not a bool" in findings[0].message


def test_messages_message_expression_and_field_path(tmp_path: Path) -> None:
    crds = CrdSet.load(tiny_crd(tmp_path, ruled(
        {"rule": "self.n < 10", "messageExpression": "'n is ' + string(self.n)", "fieldPath": ".n"},
        {"rule": "self.n < 20", "message": "static", "messageExpression": "self.nope"},
        {"rule": "self.n < 30"},
    )))
    findings = crds.validate(widget({"n": 50}))
    assert [(f.code, f.path, f.message) for f in findings] == [
        ("S002", ("spec",), "failed rule: self.n < 30"),
        ("S002", ("spec",), "static"),  # messageExpression errors: falls back to message
        ("S002", ("spec", "n"), "n is 50"),
    ]


def test_transition_rules_do_not_run_on_create(tmp_path: Path) -> None:
    crds = CrdSet.load(tiny_crd(tmp_path, ruled({"rule": "self.x == oldSelf.x"})))
    assert crds.validate(widget({"x": "a"})) == []


def test_celpy_fallback_for_functions_the_rust_engine_lacks(tmp_path: Path) -> None:
    compiled = CelCompiler().compile("bool(self.x)")
    assert not isinstance(compiled, CompileFailure) and compiled.engine == "celpy"
    crds = CrdSet.load(tiny_crd(tmp_path, ruled({"rule": "bool(self.x)", "message": "x must be true"})))
    assert crds.validate(widget({"x": "true"})) == []
    assert [f.message for f in crds.validate(widget({"x": "false"}))] == ["x must be true"]
    assert [f.code for f in crds.validate(widget({"x": "maybe"}))] == ["S003"]


def test_celpy_fallback_has_the_kubernetes_extensions() -> None:
    program = CelCompiler().compile(
        "bool(self.f) && self.x.substring(1) == 'b' && duration(self.d) > duration('1ms')"
        " && self.x.matches('^ab$')")
    assert not isinstance(program, CompileFailure) and program.engine == "celpy"
    assert program.run(Bindings({"f": "true", "x": "ab", "d": "2ms"})) is True
    assert program.run(Bindings({"f": "true", "x": "ab", "d": "5µs"})) is False
    with pytest.raises(CelEvalError, match='unknown unit "e"'):
        program.run(Bindings({"f": "true", "x": "ab", "d": "1e3ms"}))


def test_rules_on_items_and_map_values_and_nulls(tmp_path: Path) -> None:
    crds = CrdSet.load(tiny_crd(tmp_path, {"type": "object", "properties": {
        "list": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [
            {"rule": "self.size() > 1", "message": "short"}]}},
        "map": {"type": "object", "additionalProperties": {"type": "integer", "nullable": True,
                                                            "x-kubernetes-validations": [
                                                                {"rule": "self > 0", "message": "neg"}]}},
    }}))
    findings = crds.validate(widget({"list": ["ok", "a"], "map": {"k": -1, "z": None, "y": 2}}))
    assert [(f.path, f.message) for f in findings] == [
        (("spec", "list", 1), "short"), (("spec", "map", "k"), "neg"),
    ]


def test_list_type_set_and_map_keys(tmp_path: Path) -> None:
    crds = CrdSet.load(tiny_crd(tmp_path, {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "rows": {"type": "array", "x-kubernetes-list-type": "map",
                 "x-kubernetes-list-map-keys": ["a", "b"],
                 "items": {"type": "object", "properties": {"a": {"type": "string"},
                                                            "b": {"type": "integer"}}}},
    }}))
    findings = crds.validate(widget({"tags": ["x", "y", "x"],
                                     "rows": [{"a": "p", "b": 1}, {"a": "p", "b": 2}, {"a": "p", "b": 1}]}))
    assert [(f.code, f.path) for f in findings] == [("S004", ("spec", "rows", 2)), ("S004", ("spec", "tags", 2))]
    assert 'a="p", b=1' in findings[0].message


def test_int_or_string_and_preserve_unknown_fields(tmp_path: Path) -> None:
    crds = CrdSet.load(tiny_crd(tmp_path, {"type": "object", "properties": {
        "port": {"x-kubernetes-int-or-string": True,
                 "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "closed": {"type": "object"},
    }}))
    assert crds.validate(widget({"port": 80, "free": {"anything": [1]}})) == []
    assert crds.validate(widget({"port": "http"})) == []
    findings = crds.validate(widget({"port": 1.5, "closed": {"x": 1}}))
    assert [(f.code, f.path) for f in findings] == [
        ("S001", ("spec", "closed", "x")), ("S001", ("spec", "port"))]
    assert "must be integer or string" in findings[1].message


# --------------------------------------------------------------------------- CEL extensions


@pytest.mark.parametrize("args,expected", [
    (("tacocat", 4), "cat"), (("tacocat", 0, 4), "taco"), (("tacocat", 7), ""),
    (("tacocat", 7, 7), ""), (("©αT", 1, 2), "α"), (("unix:///x", 7, 8), "/"),
])
def test_substring(args: tuple[Any, ...], expected: str) -> None:
    assert cel_substring(*args) == expected


@pytest.mark.parametrize("args,error", [
    (("tacocat", -1), "index out of range: -1"), (("tacocat", 8), "index out of range: 8"),
    (("tacocat", 2, 1), "invalid substring range. start: 2, end: 1"),
    (("unix://", 7, 8), "index out of range: 8"), (("abc", 0, -1), "invalid substring range"),
])
def test_substring_errors(args: tuple[Any, ...], error: str) -> None:
    with pytest.raises(ValueError, match=error.replace(".", r"\.")):
        cel_substring(*args)


def test_substring_through_engine() -> None:
    program = CelCompiler().compile("self.substring(1, 3) == 'αT' && self.substring(3) == ''")
    assert not isinstance(program, CompileFailure)
    assert program.run(Bindings("©αT")) is True
    with pytest.raises(CelEvalError, match="index out of range: 3"):
        program.run(Bindings("©"))  # substring(1, 3) on a 1-code-point string
    wrong_type = CelCompiler().compile("self.substring(true) == ''")
    with pytest.raises(CelEvalError, match="no such overload"):
        wrong_type.run(Bindings("abc"))  # type: ignore[union-attr]


@pytest.mark.parametrize("text,nanos", [
    ("0", 0), ("-0", 0), ("1ms", 10**6), ("1h30m", 5400 * 10**9), ("1.5s", 1_500_000_000),
    (".5s", 500_000_000), ("1.s", 10**9), ("5µs", 5000), ("5μs", 5000), ("1us", 1000),
    ("-1.5h", -5400 * 10**9), ("9223372036854775807ns", 2**63 - 1),
])
def test_go_duration(text: str, nanos: int) -> None:
    assert go_parse_duration(text) == nanos


@pytest.mark.parametrize("text", ["", "10", "1e3ms", "1h1", "1s ", "1d", ".s", "+", "1h-1m",
                                  "2562048h", "9223372036854775808ns"])
def test_go_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="time: "):
        go_parse_duration(text)


def test_rewrites_keep_string_literals() -> None:
    source = "duration(self) > duration('1ms') && 'duration(x)'.matches(\"^a$\") && x.duration(1)"
    out = rewrite_calls(source)
    assert out == ("meshcGoDuration(self) > duration('1000us') && 'duration(x)'.meshcMatches(\"^a$\")"
                   " && x.duration(1)")


def test_matches_uses_re2_semantics() -> None:
    compiler = CelCompiler()
    dollar = compiler.compile("self.matches('^[a-z]+$')")
    digit = compiler.compile("self.matches('^\\\\d+$')")
    assert not isinstance(dollar, CompileFailure) and not isinstance(digit, CompileFailure)
    assert dollar.run(Bindings("abc")) is True
    assert dollar.run(Bindings("abc\n")) is False  # RE2 `$` is end of text
    assert digit.run(Bindings("123")) is True
    assert digit.run(Bindings("\u0663")) is False  # RE2 `\d` is ASCII only
    assert python_equivalent("(?i)abc") is None and python_equivalent("^a$").pattern == "^a\\Z"
    bad = compiler.compile("self.matches('(')")
    with pytest.raises(CelEvalError, match="invalid regular expression"):
        bad.run(Bindings("x"))  # type: ignore[union-attr]


# --------------------------------------------------------------------------- loading errors


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CrdError, match="nope.yaml") as info:
        CrdSet.load(tmp_path / "nope.yaml")
    assert "cannot read" in str(info.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("apiVersion: apiextensions.k8s.io/v1\nkind: [CustomResourceDefinition\nspec: {}\n")
    with pytest.raises(CrdError) as info:
        CrdSet.load(path)
    assert f"{path}:3:" in str(info.value) and "malformed YAML" in str(info.value)


def test_document_that_is_not_a_crd(tmp_path: Path) -> None:
    path = tmp_path / "cm.yaml"
    path.write_text("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(CrdError, match=r"cm\.yaml:2: document is ConfigMap, not a CustomResourceDefinition"):
        CrdSet.load(path)


def test_crd_missing_versions(tmp_path: Path) -> None:
    path = tmp_path / "partial.yaml"
    path.write_text("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
                    "metadata: {name: a.b}\nspec: {group: b, names: {kind: A}}\n")
    with pytest.raises(CrdError, match=r"partial\.yaml:1: CustomResourceDefinition a\.b lacks `versions`"):
        CrdSet.load(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("---\n")
    with pytest.raises(CrdError, match="empty.yaml: no served CustomResourceDefinition"):
        CrdSet.load(path)


def test_kubectl_list_output(tmp_path: Path) -> None:
    docs = yaml.safe_load(CRD_FILE.read_text())["items"]
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": docs}))
    crds = CrdSet.load(path)
    assert crds.kinds() == CrdSet.load(CRD_FILE).kinds()
    assert crds.validate(MONGO_SE) == []


def test_cel_rules_see_the_crd_defaults_as_the_api_server_does() -> None:
    """An HTTPRoute rule without `matches` gets the default match (`PathPrefix /`) before the API
    server validates it; the rule counting matches must see it (it failed to evaluate before)."""
    crds = CrdSet.load(shipped_crds(), eager=False)
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "r", "namespace": "default"},
             "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]}}
    assert crds.validate(route) == []


@pytest.mark.parametrize(("hostname", "refused"), [("1.2.3.4", True), ("10.1.2.3", True), ("api.example.com", False)])
def test_kubernetes_cel_isip(hostname: str, refused: bool) -> None:
    """TLSRoute's `self.all(h, !isIP(h))` (Gateway API v1.5.1) needs the Kubernetes CEL IP library."""
    crds = CrdSet.load(shipped_crds(), eager=False)
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "TLSRoute",
             "metadata": {"name": "r", "namespace": "default"},
             "spec": {"hostnames": [hostname], "rules": [{"backendRefs": [{"name": "svc", "port": 443}]}]}}
    found = crds.validate(route)
    assert [f.message for f in found] == (["Hostnames cannot contain an IP"] if refused else [])


@pytest.mark.parametrize(("text", "ip", "cidr"), [
    ("10.0.0.1", True, False), ("10.0.0.0/8", False, True), ("::ffff:1.2.3.4", False, False),
    ("fe80::1%eth0", False, False), ("2001:db8::/129", False, False), ("10.0.0.0/08", False, False),
    ("2001:db8::/32", False, True), ("a.b", False, False)])
def test_isip_iscidr(text: str, ip: bool, cidr: bool) -> None:
    assert (cel_is_ip(text), cel_is_cidr(text)) == (ip, cidr)
