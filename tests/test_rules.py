"""Tests for meshc.rules: one triggering and one near-miss case per code, the lint suite, and properties.

Table rows are (code, severity, input, expected path). Inputs are built from small valid manifests
with `se`, `we` and `dr`; `tp` puts a trafficPolicy into a DestinationRule. Analyzer rows give a list
of manifests (and optionally settings) plus the identity the finding belongs to.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from meshc.model.diagnostics import Severity
from meshc.check.istio import ALL_RULES, AnalyzerSettings, analyze, check_object
from meshc.files.source import parse

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "lint_cases"
E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO
DROP = object()


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _manifest(kind: str, spec: dict[str, Any], name: str, ns: str, labels: Any, annotations: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "networking.istio.io/v1", "kind": kind, "metadata": meta, "spec": spec}


SE_BASE = {"hosts": ["api.example.com"], "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}],
           "resolution": "DNS", "location": "MESH_EXTERNAL"}


def se(name: str = "se", ns: str = "default", labels: Any = None, annotations: Any = None,
       **spec: Any) -> dict[str, Any]:
    return _manifest("ServiceEntry", _merge(SE_BASE, spec), name, ns, labels, annotations)


def static(**spec: Any) -> dict[str, Any]:
    """A STATIC MESH_INTERNAL ServiceEntry with one HTTP port."""
    base = {"ports": [{"number": 80, "name": "http", "protocol": "HTTP"}], "resolution": "STATIC",
            "location": "MESH_INTERNAL", "hosts": ["vm.example.com"]}
    return se(**{**base, **spec})


def dynamic(**spec: Any) -> dict[str, Any]:
    base = {"hosts": ["*.example.com"], "resolution": "DYNAMIC_DNS",
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]}
    return se(**{**base, **spec})


def we(name: str = "we", ns: str = "default", **spec: Any) -> dict[str, Any]:
    return _manifest("WorkloadEntry", _merge({"address": "192.0.2.10", "labels": {"app": "vm"}}, spec),
                     name, ns, None, None)


def dr(name: str = "dr", ns: str = "default", **spec: Any) -> dict[str, Any]:
    return _manifest("DestinationRule", _merge({"host": "api.example.com"}, spec), name, ns, None, None)


def tp(**policy: Any) -> dict[str, Any]:
    return dr(trafficPolicy=policy)


def lb(**settings: Any) -> dict[str, Any]:
    return tp(loadBalancer=settings)


def locality(outlier: bool = True, **setting: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {"loadBalancer": {"localityLbSetting": setting}}
    if outlier:
        policy["outlierDetection"] = {"consecutive5xxErrors": 5}
    return dr(trafficPolicy=policy)


def tls(**settings: Any) -> dict[str, Any]:
    return tp(tls=settings)


TP = ("spec", "trafficPolicy")
LB = (*TP, "loadBalancer")
LOC = (*LB, "localityLbSetting")
POOL = (*TP, "connectionPool")
TLS = (*TP, "tls")
OUT = (*TP, "outlierDetection")
CH = (*LB, "consistentHash")
HTTP_PORT = [{"number": 80, "name": "http", "protocol": "HTTP"}]
TWO_PORTS = [{"number": 80, "name": "http", "protocol": "HTTP"}, {"number": 81, "name": "http-alt", "protocol": "HTTP"}]
SKIP = {"insecureSkipVerify": True}
MUTUAL_FILES = {"mode": "MUTUAL", "clientCertificate": "/c.pem", "privateKey": "/k.pem"}
COOKIE = {"name": "s", "ttl": "0s"}
DIST_OK = [{"from": "r1/z1/*", "to": {"r1/z1/*": 70, "r1/z2/*": 30}}]

# (code, severity, manifest that triggers it, path of the finding)
TRIGGERS: list[tuple[str, Severity, dict[str, Any], tuple[Any, ...]]] = [
    ("I001", E, se(annotations={"istio.io/dry-run": "true"}), ("metadata", "annotations", "istio.io/dry-run")),
    ("I002", E, se(annotations={"internal.istio.io/webhook-always-reject": "x"}),
     ("metadata", "annotations", "internal.istio.io/webhook-always-reject")),
    ("I003", E, se(annotations={"internal.istio.io/parents": "x"}),
     ("metadata", "annotations", "internal.istio.io/parents")),
    ("I010", E, se(exportTo=["Bad_NS"]), ("spec", "exportTo", 0)),
    ("I011", E, se(exportTo=[".", "default"]), ("spec", "exportTo", 1)),
    ("I012", E, se(exportTo=["*", "team-a"]), ("spec", "exportTo")),
    ("I013", E, se(exportTo=["~", "team-a"]), ("spec", "exportTo")),
    ("I014", E, dr(exportTo=["~"]), ("spec", "exportTo", 0)),
    ("I030", E, static(workloadSelector={"labels": {"": "x"}}), ("spec", "workloadSelector", "labels", "")),
    ("I031", E, static(workloadSelector={"labels": {"app": "*"}}), ("spec", "workloadSelector", "labels", "app")),
    ("I032", W, static(workloadSelector={}), ("spec", "workloadSelector")),
    ("I040", E, se(ports=[{"number": 70000, "name": "https", "protocol": "HTTPS"}]), ("spec", "ports", 0, "number")),
    ("I041", E, se(ports=[{"number": 443, "name": "https_api", "protocol": "HTTPS"}]), ("spec", "ports", 0, "name")),
    ("I042", E, se(ports=[{"number": 25, "name": "smtp", "protocol": "SMTP"}]), ("spec", "ports", 0, "protocol")),
    ("I020", E, we(labels={"-bad": "v"}), ("spec", "labels", "-bad")),
    ("I021", E, we(labels={"app": "bad value"}), ("spec", "labels", "app")),
    ("I050", E, tp(outlierDetection={"interval": "1.5ms"}), (*OUT, "interval")),
    ("I101", E, se(hosts=[]), ("spec", "hosts")),
    ("I102", E, se(hosts=["*"], resolution="NONE"), ("spec", "hosts", 0)),
    ("I103", E, se(hosts=["10.0.0.1"]), ("spec", "hosts", 0)),
    ("I104", W, se(hosts=["*foo.example.com"], resolution="NONE"), ("spec", "hosts", 0)),
    ("I105", E, static(workloadSelector={"labels": {"app": "vm"}}, endpoints=[{"address": "192.0.2.1"}]),
     ("spec", "endpoints")),
    ("I106", E, se(addresses=["not-an-ip"]), ("spec", "addresses", 0)),
    ("I107", E, se(addresses=["10.0.0.0/24"]), ("spec", "addresses")),
    ("I108", E, se(ports=[None]), ("spec", "ports", 0)),
    ("I109", E, se(ports=TWO_PORTS[:1] + [{"number": 81, "name": "http", "protocol": "HTTP"}]),
     ("spec", "ports", 1, "name")),
    ("I110", E, se(ports=TWO_PORTS[:1] + [{"number": 80, "name": "http-alt", "protocol": "HTTP"}]),
     ("spec", "ports", 1, "number")),
    ("I111", W, se(resolution="NONE", ports=[{"number": 5432, "name": "pg", "protocol": "TCP"}]), ("spec", "ports", 0)),
    ("I112", E, se(resolution="NONE", endpoints=[{"address": "192.0.2.1"}]), ("spec", "endpoints")),
    ("I113", W, se(resolution="NONE", workloadSelector={"labels": {"app": "vm"}}), ("spec", "workloadSelector")),
    ("I114", E, static(endpoints=[{"address": "vm1.example.com"}]), ("spec", "endpoints", 0, "address")),
    ("I115", E, static(endpoints=[{"address": "192.0.2.1", "ports": {"grpc": 9000}}]),
     ("spec", "endpoints", 0, "ports", "grpc")),
    ("I116", E, static(ports=TWO_PORTS, endpoints=[{"address": "unix:///var/run/app.sock"}]),
     ("spec", "endpoints", 0, "address")),
    ("I117", E, se(hosts=["*.example.com"]), ("spec", "hosts", 0)),
    ("I118", E, se(resolution="DNS_ROUND_ROBIN",
                   endpoints=[{"address": "a.example.com"}, {"address": "b.example.com"}]), ("spec", "endpoints")),
    ("I119", W, se(hosts=["a.example.com", "b.example.com"], addresses=["192.0.2.5"],
                   ports=[{"number": 443, "name": "tls", "protocol": "TLS"}]), ("spec", "ports", 0)),
    ("I120", E, dynamic(hosts=["api.example.com"]), ("spec", "hosts", 0)),
    ("I121", E, dynamic(addresses=["192.0.2.5"]), ("spec", "addresses")),
    ("I122", E, dynamic(endpoints=[{"address": "192.0.2.1"}]), ("spec", "endpoints")),
    ("I123", E, dynamic(ports=[{"number": 5432, "name": "pg", "protocol": "TCP"}]), ("spec", "ports", 0, "protocol")),
    ("I124", E, dynamic(location="MESH_INTERNAL", labels={"istio.io/use-waypoint": "waypoint"}),
     ("metadata", "labels", "istio.io/use-waypoint")),
    ("I125", E, se(resolution="ROUND_ROBIN"), ("spec", "resolution")),
    ("I126", E, se(hosts=["a.example.com", "b.example.com"], ports=[{"number": 8080, "name": "web"}]),
     ("spec", "ports", 0)),
    ("I127", E, se(location="EXTERNAL"), ("spec", "location")),
    ("I128", E, static(endpoints=[None]), ("spec", "endpoints", 0)),
    ("I201", E, we(address=DROP), ("spec", "address")),
    ("I202", W, we(address=DROP, network="net-2"), ("spec", "address")),
    ("I203", E, we(address="unix://relative/app.sock"), ("spec", "address")),
    ("I204", E, we(address="unix:///var/run/app.sock", ports={"http": 80}), ("spec", "ports")),
    ("I205", E, we(address="bad_host!"), ("spec", "address")),
    ("I301", E, dr(host="10.0.0.1"), ("spec", "host")),
    ("I302", E, tp(), TP),
    ("I303", E, tp(tunnel={"targetHost": "proxy.example.com", "targetPort": 3128},
                   proxyProtocol={"version": "V1"}), TP),
    ("I304", W, tp(outlierDetection={"consecutiveErrors": 5}), (*OUT, "consecutiveErrors")),
    ("I305", E, tp(outlierDetection={"consecutiveLocalOriginFailures": 3}), (*OUT, "consecutiveLocalOriginFailures")),
    ("I306", E, tp(outlierDetection={"maxEjectionPercent": 150}), (*OUT, "maxEjectionPercent")),
    ("I307", E, tp(connectionPool={}), POOL),
    ("I308", E, tp(connectionPool={"http": {"maxRetries": -1}}), (*POOL, "http", "maxRetries")),
    ("I309", E, tp(connectionPool={"http": {"h2UpgradePolicy": "UPGRADE", "useClientProtocol": True}}),
     (*POOL, "http", "useClientProtocol")),
    ("I310", E, tp(connectionPool={"http": {"http2KeepAlive": {"interval": "10s"}}}),
     (*POOL, "http", "http2KeepAlive", "timeout")),
    ("I311", E, lb(consistentHash={"httpCookie": {"ttl": "0s"}}), (*CH, "httpCookie", "name")),
    ("I312", E, lb(consistentHash={"httpCookie": {**COOKIE, "attributes": [{"value": "x"}]}}),
     (*CH, "httpCookie", "attributes", 0, "name")),
    ("I313", E, lb(consistentHash={"httpCookie": {**COOKIE, "attributes": [{"name": "a"}, {"name": "a"}]}}),
     (*CH, "httpCookie", "attributes", 1, "name")),
    ("I314", W, lb(consistentHash={"useSourceIp": True, "minimumRingSize": 1024}), (*CH, "minimumRingSize")),
    ("I315", E, lb(consistentHash={"useSourceIp": True, "minimumRingSize": 1024, "maglev": {"tableSize": 65537}}),
     (*CH, "minimumRingSize")),
    ("I316", E, lb(consistentHash={"useSourceIp": True, "maglev": {"tableSize": 65536}}),
     (*CH, "maglev", "tableSize")),
    ("I317", E, lb(localityLbSetting={"enabled": True}, zoneAwareLbSetting={"enabled": True}), LB),
    ("I318", E, locality(distribute=DIST_OK, failover=[{"from": "r1", "to": "r2"}]), LOC),
    ("I319", E, locality(failover=[{"from": "r1", "to": "r2"}], failoverPriority=["topology.kubernetes.io/region"]),
     (*LOC, "failoverPriority", 0)),
    ("I320", E, lb(zoneAwareLbSetting={"failoverPriority": ["topology.kubernetes.io/zone"]}),
     (*LB, "zoneAwareLbSetting", "failoverPriority", 0)),
    ("I321", E, locality(distribute=[{"from": "r1/*", "to": {"r1/*": 0, "r2/*": 100}}]),
     (*LOC, "distribute", 0, "to", "r1/*")),
    ("I322", E, locality(distribute=[{"from": "r1/*", "to": {"r1/*": 60, "r2/*": 30}}]), (*LOC, "distribute", 0, "to")),
    ("I323", E, locality(distribute=[{"from": "r1/*/z1", "to": {"r1/*": 100}}]), (*LOC, "distribute", 0, "from")),
    ("I324", E, locality(distribute=[{"from": "r1/*", "to": {"r1/*": 50, "r1/z1": 50}}]),
     (*LOC, "distribute", 0, "to", "r1/z1")),
    ("I325", W, locality(outlier=False, failover=[{"from": "r1", "to": "r2"}]), LOC),
    ("I326", E, locality(failover=[{"from": "r1", "to": "r1"}]), (*LOC, "failover", 0)),
    ("I327", E, locality(failover=[{"from": "r1/z1", "to": "r2"}]), (*LOC, "failover", 0)),
    ("I328", E, lb(simple="ROUND_ROBIN", warmup={"minimumPercent": 10}), (*LB, "warmup")),
    ("I329", E, lb(warmup={"duration": "60s", "aggression": 0}), (*LB, "warmup", "aggression")),
    ("I330", E, tls(mode="SIMPLE", credentialName="configmap://other-ns/ca"), (*TLS, "credentialName")),
    ("I331", E, tls(mode="SIMPLE", caCertificates="/ca.pem", **SKIP), (*TLS, "insecureSkipVerify")),
    ("I332", E, tls(**MUTUAL_FILES, subjectAltNames=["api.example.com"], **SKIP), (*TLS, "insecureSkipVerify")),
    ("I333", E, tls(mode="SIMPLE", credentialName="api-cred", caCertificates="/ca.pem"), (*TLS, "credentialName")),
    ("I334", E, tls(mode="MUTUAL", clientCertificate="/c.pem"), (*TLS, "privateKey")),
    ("I335", E, tp(portLevelSettings=[{"tls": {"mode": "ISTIO_MUTUAL"}}]), (*TP, "portLevelSettings", 0)),
    ("I336", E, tp(portLevelSettings=[{"port": {"number": 80}}]), (*TP, "portLevelSettings", 0)),
    ("I337", E, tp(tunnel={"protocol": "GET", "targetHost": "proxy.example.com", "targetPort": 3128}),
     (*TP, "tunnel", "protocol")),
    ("I338", E, tp(tunnel={"targetHost": "bad host", "targetPort": 3128}), (*TP, "tunnel", "targetHost")),
    ("I339", E, tp(proxyProtocol={"version": "V3"}), (*TP, "proxyProtocol", "version")),
    ("I340", E, dr(subsets=[None]), ("spec", "subsets", 0)),
    ("I341", E, dr(subsets=[{"name": "v1"}, {"name": "v1"}]), ("spec", "subsets", 1, "name")),
    ("I342", E, dr(subsets=[{"name": "v1.0"}]), ("spec", "subsets", 0, "name")),
    ("I343", E, dr(workloadSelector={"matchLabels": {"app": "client"}}, exportTo=["*"]), ("spec", "exportTo")),
    ("I344", E, lb(simple="ROUNDROBIN"), (*LB, "simple")),
    ("I350", W, tls(mode="SIMPLE"), TLS),
    ("I351", W, tp(portLevelSettings=[{"port": {"number": 443}, "tls": {"mode": "SIMPLE"}}]),
     (*TP, "portLevelSettings", 0, "tls")),
]

# (code, manifest close to the trigger that must not produce the code)
NEAR_MISSES: list[tuple[str, dict[str, Any]]] = [
    ("I001", se(annotations={"sidecar.istio.io/inject": "false"})),
    ("I002", se(annotations={"internal.istio.io/other": "x"})),
    ("I003", se(annotations={"internal.istio.io/parent": "x"})),
    ("I010", se(exportTo=["team-a"])),
    ("I011", se(exportTo=[".", "team-a"])),
    ("I012", se(exportTo=["*"])),
    ("I013", se(exportTo=["~"])),
    ("I014", se(exportTo=["~"])),
    ("I030", static(workloadSelector={"labels": {"app": "x"}})),
    ("I031", static(workloadSelector={"labels": {"app": "x"}})),
    ("I032", static(workloadSelector={"labels": {"app": "x"}})),
    ("I040", se(ports=[{"number": 65535, "name": "https", "protocol": "HTTPS"}])),
    ("I041", se(ports=[{"number": 443, "name": "HTTPS-api", "protocol": "HTTPS"}])),
    ("I042", se(ports=[{"number": 443, "name": "https", "protocol": "https"}])),
    ("I020", we(labels={"example.com/app": "v"})),
    ("I021", we(labels={"app": "good.value_1", "empty": ""})),
    ("I050", tp(outlierDetection={"interval": "2ms", "baseEjectionTime": "1m30s"})),
    ("I101", se(hosts=["a.example.com"])),
    ("I102", se(hosts=["*.example.com"], resolution="NONE")),
    ("I103", se(hosts=["10.0.0.1.nip.io", "istio.io.", "mydb"])),
    ("I104", dynamic(hosts=["*foo.example.com"])),
    ("I105", static(workloadSelector={"labels": {"app": "vm"}})),
    ("I106", se(addresses=["192.0.2.1", "2001:db8::1"])),
    ("I107", static(addresses=["10.0.0.0/24"], endpoints=[{"address": "10.0.0.1"}])),
    ("I108", se()),
    ("I109", se(ports=TWO_PORTS)),
    ("I110", se(ports=TWO_PORTS)),
    ("I111", se(resolution="NONE", addresses=["192.0.2.10"],
                ports=[{"number": 5432, "name": "pg", "protocol": "TCP"}])),
    ("I112", static(endpoints=[{"address": "192.0.2.1"}])),
    ("I113", static(workloadSelector={"labels": {"app": "vm"}})),
    ("I114", se(endpoints=[{"address": "vm1.example.com"}])),
    ("I115", se(endpoints=[{"address": "192.0.2.1", "ports": {"https": 8443}}])),
    ("I116", static(endpoints=[{"address": "unix:///var/run/app.sock"}])),
    ("I117", se(hosts=["*.example.com"], endpoints=[{"address": "egress.example.com"}])),
    ("I118", se(resolution="DNS_ROUND_ROBIN", endpoints=[{"address": "a.example.com"}])),
    ("I119", se(addresses=["192.0.2.5"], ports=[{"number": 443, "name": "tls", "protocol": "TLS"}])),
    ("I120", dynamic()),
    ("I121", dynamic()),
    ("I122", dynamic()),
    ("I123", dynamic(ports=[{"number": 80, "name": "http", "protocol": "HTTP"}])),
    ("I124", dynamic(location="MESH_INTERNAL", labels={"istio.io/use-waypoint": "none"})),
    ("I125", se(resolution="DNS_ROUND_ROBIN")),
    ("I126", se(hosts=["a.example.com", "b.example.com"], ports=[{"number": 8080, "name": "web", "protocol": "HTTP"}])),
    ("I127", se(location="MESH_INTERNAL")),
    ("I128", static(endpoints=[{"address": "192.0.2.1"}])),
    ("I201", we(address=DROP, network="net-2")),
    ("I202", we(network="net-2")),
    ("I203", we(address="unix:///var/run/app.sock")),
    ("I204", we(address="unix://@abstract")),
    ("I205", we(address="vm1.example.com")),
    ("I301", dr(host="*")),
    ("I302", tp(tls={"mode": "ISTIO_MUTUAL"})),
    ("I303", tp(tunnel={"targetHost": "proxy.example.com", "targetPort": 3128})),
    ("I304", tp(outlierDetection={"consecutive5xxErrors": 5})),
    ("I305", tp(outlierDetection={"consecutiveLocalOriginFailures": 3, "splitExternalLocalOriginErrors": True})),
    ("I306", tp(outlierDetection={"maxEjectionPercent": 100, "minHealthPercent": 0})),
    ("I307", tp(connectionPool={"tcp": {"maxConnections": 10}})),
    ("I308", tp(connectionPool={"http": {"maxRetries": 0}})),
    ("I309", tp(connectionPool={"http": {"h2UpgradePolicy": "UPGRADE"}})),
    ("I310", tp(connectionPool={"http": {"http2KeepAlive": {"interval": "10s", "timeout": "3s"}}})),
    ("I311", lb(consistentHash={"httpCookie": COOKIE})),
    ("I312", lb(consistentHash={"httpCookie": {**COOKIE, "attributes": [{"name": "SameSite", "value": "Strict"}]}})),
    ("I313", lb(consistentHash={"httpCookie": {**COOKIE, "attributes": [{"name": "a"}, {"name": "b"}]}})),
    ("I314", lb(consistentHash={"useSourceIp": True, "ringHash": {"minimumRingSize": 1024}})),
    ("I315", lb(consistentHash={"useSourceIp": True, "minimumRingSize": 1024})),
    ("I316", lb(consistentHash={"useSourceIp": True, "maglev": {"tableSize": 65537}})),
    ("I317", lb(localityLbSetting={"enabled": True})),
    ("I318", locality(distribute=DIST_OK)),
    ("I319", locality(failover=[{"from": "r1", "to": "r2"}], failoverPriority=["topology.istio.io/network"])),
    ("I320", lb(zoneAwareLbSetting={"failoverPriority": ["example.com/tier"]})),
    ("I321", locality(distribute=DIST_OK)),
    ("I322", locality(distribute=DIST_OK)),
    ("I323", locality(distribute=DIST_OK)),
    ("I324", locality(distribute=[{"from": "r1/*", "to": {"r1/z1": 50, "r1/z2": 50}}])),
    ("I325", locality(failover=[{"from": "r1", "to": "r2"}])),
    ("I326", locality(failover=[{"from": "r1", "to": "r2"}])),
    ("I327", locality(failover=[{"from": "r1", "to": "r2"}])),
    ("I328", lb(warmup={"duration": "60s"})),
    ("I329", lb(warmup={"duration": "60s", "aggression": 1.5})),
    ("I330", dr(workloadSelector={"matchLabels": {"app": "c"}}, trafficPolicy={
        "tls": {"mode": "SIMPLE", "credentialName": "configmap://ca"}})),
    ("I331", tls(mode="SIMPLE", **SKIP)),
    ("I332", tls(**MUTUAL_FILES, **SKIP)),
    ("I333", tls(mode="SIMPLE", credentialName="api-cred")),
    ("I334", tls(**MUTUAL_FILES, caCertificates="/ca.pem")),
    ("I335", tp(portLevelSettings=[{"port": {"number": 80}, "tls": {"mode": "ISTIO_MUTUAL"}}])),
    ("I336", tp(portLevelSettings=[{"port": {"number": 80}, "connectionPool": {"tcp": {"maxConnections": 1}}}])),
    ("I337", tp(tunnel={"protocol": "POST", "targetHost": "proxy.example.com", "targetPort": 3128})),
    ("I338", tp(tunnel={"targetHost": "192.0.2.8", "targetPort": 3128})),
    ("I339", tp(proxyProtocol={"version": "V2"})),
    ("I340", dr(subsets=[{"name": "v1"}])),
    ("I341", dr(subsets=[{"name": "v1"}, {"name": "v2"}])),
    ("I342", dr(subsets=[{"name": "v1-0"}])),
    ("I343", dr(workloadSelector={"matchLabels": {"app": "client"}}, exportTo=["."])),
    ("I344", lb(simple="ROUND_ROBIN")),
    ("I350", tls(mode="SIMPLE", caCertificates="/etc/ssl/ca.pem")),
    ("I351", tp(portLevelSettings=[{"port": {"number": 443}, "tls": {"mode": "SIMPLE", "caCertificates": "/ca.pem"}}])),
]

VMS = [we("vm1", labels={"app": "details", "version": "v1"}), we("vm2", address="192.0.2.11",
                                                                    labels={"app": "details", "version": "v2"})]
DETAILS = static(hosts=["details.example.com"], workloadSelector={"labels": {"app": "details"}})


def _details_dr(version: str) -> dict[str, Any]:
    return dr(host="details.example.com", subsets=[{"name": "s", "labels": {"version": version}}])


def _pair(protocol_b: str, scope_a: list[str], scope_b: list[str]) -> list[dict[str, Any]]:
    return [se("a", ns="team-a", exportTo=scope_a),
            se("b", ns="team-b", exportTo=scope_b, ports=[{"number": 443, "name": "p", "protocol": protocol_b}])]


def kube(kind: str, name: str, ns: str | None = "default", labels: Any = None, annotations: Any = None,
         **body: Any) -> dict[str, Any]:
    """A Kubernetes core/v1 object (Service, Pod, Node, Namespace); `ns=None` for cluster-scoped kinds."""
    meta: dict[str, Any] = {"name": name}
    if ns is not None:
        meta["namespace"] = ns
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": kind, "metadata": meta, **body}


def service(name: str = "details", ns: str = "default", selector: Any = None, ports: Any = None,
            annotations: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": ports or [{"name": "http", "port": 80}]}
    if selector is not None:
        spec["selector"] = selector
    return kube("Service", name, ns, annotations=annotations, spec=spec)


def pod(name: str, labels: dict[str, str], ns: str = "default", node: str | None = None) -> dict[str, Any]:
    return kube("Pod", name, ns, labels=labels, spec={"nodeName": node} if node else {"containers": []})


NO_ALLOC = AnalyzerSettings(auto_allocate=False)
TCP_SE = se(ports=[{"number": 5432, "name": "pg", "protocol": "tcp"}])
ORPHAN = we("orphan", labels={"app": "orphan"})
# (code, severity, manifests, settings, identity, path)
ANALYZER_TRIGGERS: list[tuple[str, Severity, list[dict[str, Any]], AnalyzerSettings | None, tuple[str, str, str],
                              tuple[Any, ...]]] = [
    ("A401", W, _pair("HTTPS", ["*"], ["*"]), None, ("ServiceEntry", "team-b", "b"), ("spec", "hosts", 0)),
    ("A402", W, _pair("TLS", ["*"], ["team-a"]), None, ("ServiceEntry", "team-a", "a"), ("spec", "ports", 0)),
    ("A403", W, [dr(host="api.example.org")], None, ("DestinationRule", "default", "dr"), ("spec", "host")),
    ("A404", I, [dr(host="reviews")], None, ("DestinationRule", "default", "dr"), ("spec", "host")),
    ("A405", W, [TCP_SE], NO_ALLOC, ("ServiceEntry", "default", "se"), ("spec", "ports", 0)),
    ("A406", E, [DETAILS, *VMS, _details_dr("v3")], None, ("DestinationRule", "default", "dr"),
     ("spec", "subsets", 0, "labels")),
    ("A407", W, [DETAILS, *VMS, ORPHAN], None, ("WorkloadEntry", "default", "orphan"), ("metadata", "name")),
    ("A408", E, [se(), se()], None, ("ServiceEntry", "default", "se"), ("metadata", "name")),
    ("A409", W, [se(), dr("one"), dr("two")], None, ("DestinationRule", "default", "two"), ("spec", "host")),
    ("A410", I, [service(ports=[{"name": "web", "port": 8080}])], None, ("Service", "default", "details"),
     ("spec", "ports", 0, "name")),
    # G: the egress path (more cases in tests/test_egress_rules.py)
    ("G001", E, [_manifest("VirtualService", {"hosts": ["api.example.com"], "gateways": ["mesh", "gw"]}, "vs",
                           "default", None, None)], None, ("VirtualService", "default", "vs"), ("spec", "gateways", 1)),
    ("G002", E, [_manifest("VirtualService", {"hosts": ["api.example.com"], "gateways": ["mesh", "gw"], "http": [
        {"match": [{"gateways": ["mesh"], "port": 443}], "route": [{"destination": {
            "host": "gw.istio-system.svc.cluster.local", "subset": "s"}}]}]}, "vs", "default", None, None)], None,
     ("VirtualService", "default", "vs"), ("spec", "http", 0, "route", 0, "destination", "subset")),
    ("G003", E, [se(labels={"istio.io/use-waypoint": "wp"}, hosts=["*.example.com"])], None,
     ("ServiceEntry", "default", "se"), ("spec", "hosts", 0)),
    ("G004", W, [se(exportTo=["reports"]), _manifest("VirtualService", {
        "hosts": ["api.example.com"], "gateways": ["mesh", "gw"], "exportTo": ["."]}, "vs", "default", None, None)],
     None, ("ServiceEntry", "default", "se"), ("spec", "exportTo", 0)),
    ("G005", E, [we()], AnalyzerSettings(dataplane="ambient"), ("WorkloadEntry", "default", "we"),
     ("metadata", "name")),
    ("G006", W, [se(labels={"istio.io/use-waypoint": "wp"}, resolution="NONE")], None,
     ("ServiceEntry", "default", "se"), ("spec", "resolution")),
]

ANALYZER_NEAR: list[tuple[str, list[dict[str, Any]], AnalyzerSettings | None]] = [
    ("A401", _pair("HTTPS", ["."], ["."]), None),
    ("A402", _pair("HTTPS", ["*"], ["team-a"]), None),
    ("A403", [se(hosts=["*.example.org"], endpoints=[{"address": "gw.example.org"}]),
              dr(host="api.example.org")], None),
    ("A404", [se(hosts=["reviews.default.svc.cluster.local"]), dr(host="reviews")], None),
    ("A405", [TCP_SE], None),
    ("A406", [DETAILS, *VMS, _details_dr("v2")], None),
    ("A407", [DETAILS, *VMS], None),
    ("A408", [se(), se(ns="other")], None),
    ("A409", [se(), dr("one"), dr("two", workloadSelector={"matchLabels": {"app": "x"}}, exportTo=["."])], None),
    ("A410", [service(ports=[{"name": "http-web", "port": 8080}, {"name": "web", "port": 8081, "appProtocol": "http"},
                             {"name": "db", "port": 3306}, {"name": "dns", "port": 5353, "protocol": "UDP"},
                             {"name": "grpc-web-ui", "port": 8082}]),
              service(ns="kube-system", ports=[{"name": "web", "port": 8080}])], None),
    ("G001", [se(), _manifest("Gateway", {"selector": {"istio": "egressgateway"}, "servers": [
        {"port": {"number": 443, "name": "tls", "protocol": "TLS"}, "hosts": ["api.example.com"],
         "tls": {"mode": "PASSTHROUGH"}}]}, "gw", "default", None, None),
              _manifest("VirtualService", {"hosts": ["api.example.com"], "gateways": ["mesh", "gw"]}, "vs", "default",
                        None, None)], None),
    ("G002", [dr(host="gw.istio-system.svc.cluster.local", subsets=[{"name": "s"}]),
              _manifest("VirtualService", {"hosts": ["api.example.com"], "gateways": ["mesh", "gw"], "http": [
                  {"match": [{"gateways": ["mesh"], "port": 443}], "route": [{"destination": {
                      "host": "gw.istio-system.svc.cluster.local", "subset": "s"}}]}]}, "vs", "default", None, None)],
     None),
    ("G003", [dynamic(labels={"istio.io/use-waypoint": "wp"})], None),
    ("G004", [se(exportTo=["reports"]), _manifest("VirtualService", {
        "hosts": ["api.example.com"], "gateways": ["mesh", "gw"], "exportTo": [".", "reports"]}, "vs", "default",
        None, None)], None),
    ("G005", [we()], AnalyzerSettings(dataplane="sidecar")),
    ("G006", [se(labels={"istio.io/use-waypoint": "wp"})], None),
]


def codes_of(findings: list[Any]) -> set[str]:
    return {f.code for f in findings}


@pytest.mark.parametrize("code,severity,manifest,path", TRIGGERS, ids=[t[0] for t in TRIGGERS])
def test_rule_triggers(code: str, severity: Severity, manifest: dict[str, Any], path: tuple[Any, ...]) -> None:
    hits = [f for f in check_object(manifest) if f.code == code]
    assert hits, f"{code} not reported; got {[(f.code, f.path) for f in check_object(manifest)]}"
    assert {f.severity for f in hits} == {severity}
    assert path in [f.path for f in hits]
    assert all(f.message and f.hint for f in hits)


@pytest.mark.parametrize("code,manifest", NEAR_MISSES, ids=[n[0] for n in NEAR_MISSES])
def test_rule_near_misses(code: str, manifest: dict[str, Any]) -> None:
    found = check_object(manifest)
    assert code not in codes_of(found), [(f.code, f.path, f.message) for f in found]


@pytest.mark.parametrize("code,severity,manifests,settings,identity,path", ANALYZER_TRIGGERS,
                         ids=[t[0] for t in ANALYZER_TRIGGERS])
def test_analyzer_triggers(code: str, severity: Severity, manifests: list[dict[str, Any]],
                           settings: AnalyzerSettings | None, identity: tuple[str, str, str],
                           path: tuple[Any, ...]) -> None:
    hits = [(ident, f) for ident, f in analyze(manifests, settings) if f.code == code]
    assert (identity, path) in [(ident, f.path) for ident, f in hits], hits
    assert {f.severity for _, f in hits} == {severity}


@pytest.mark.parametrize("code,manifests,settings", ANALYZER_NEAR, ids=[n[0] for n in ANALYZER_NEAR])
def test_analyzer_near_misses(code: str, manifests: list[dict[str, Any]], settings: AnalyzerSettings | None) -> None:
    assert code not in {f.code for _, f in analyze(manifests, settings)}


def test_every_code_is_tested_both_ways() -> None:
    codes = {rule.code for rule in ALL_RULES}
    assert len(codes) == len(ALL_RULES), "a code is declared twice"
    assert codes == {t[0] for t in TRIGGERS} | {t[0] for t in ANALYZER_TRIGGERS}
    assert codes == {n[0] for n in NEAR_MISSES} | {n[0] for n in ANALYZER_NEAR}


def test_rules_match_declared_severity_and_istio_code() -> None:
    severities = {t[0]: t[1] for t in TRIGGERS + [(a[0], a[1], {}, ()) for a in ANALYZER_TRIGGERS]}
    for rule in ALL_RULES:
        assert rule.severity == severities[rule.code]
        assert re.fullmatch(r"(IST\d{4})?", rule.istio_code)
        if rule.code.startswith("I") and rule.code not in ("I350", "I351"):
            assert rule.istio_code == ("IST0106" if rule.severity == E else "IST0133")


def test_docs_list_every_code() -> None:
    """docs/checks.md has one row per code, exactly as the registry describes it."""
    lines = set((ROOT / "docs" / "checks.md").read_text(encoding="utf-8").splitlines())
    for rule in ALL_RULES:
        cells = [f"`{rule.code}`", rule.severity.label, rule.istio_code or "-", rule.title, rule.source, rule.hint]
        row = "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
        assert row in lines, f"docs/checks.md row for {rule.code} is missing or stale; expected:\n{row}"


# --- behaviour beyond single rules -------------------------------------------------------------------

def test_selector_error_returns_only_selector_errors() -> None:
    found = check_object(static(hosts=[], workloadSelector={"labels": {"app": "*"}}))
    assert codes_of(found) == {"I031"}


def test_reserved_annotation_short_circuits() -> None:
    assert codes_of(check_object(se(hosts=[], annotations={"istio.io/dry-run": "true"}))) == {"I001"}


def test_other_kinds_and_groups_are_ignored() -> None:
    assert check_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {}}) == []
    foreign = se(hosts=[]) | {"apiVersion": "example.com/v1"}
    assert check_object(foreign) == []


def test_tcp_warning_respects_opt_out_label() -> None:
    tcp: Any = [{"number": 5432, "name": "pg", "protocol": "TCP"}]
    assert "I111" not in codes_of(check_object(se(ports=tcp)))
    opted_out = se(labels={"networking.istio.io/enable-autoallocate-ip": "false"}, ports=tcp)
    assert "I111" in codes_of(check_object(opted_out))
    assert "A405" in {f.code for _, f in analyze([opted_out])}


def test_dr_sees_se_only_where_exported() -> None:
    hidden = se(ns="team-a", exportTo=["."])
    assert "A403" in {f.code for _, f in analyze([hidden, dr(ns="team-b")])}
    assert "A403" not in {f.code for _, f in analyze([hidden, dr(ns="team-a")])}
    assert "A403" not in {f.code for _, f in analyze([hidden, dr(ns="istio-system")])}
    assert "A403" in {f.code for _, f in analyze([hidden, dr(ns="istio-system")], AnalyzerSettings(root_namespace="x"))}


def test_dr_wildcard_host_matches_concrete_se() -> None:
    assert not analyze([se(), dr(host="*.example.com")])


def test_subsets_match_inline_endpoints_and_topology() -> None:
    inline = static(hosts=["details.example.com"],
                    endpoints=[{"address": "192.0.2.1", "labels": {"version": "v1"}, "network": "net-1"}])
    good = dr(host="details.example.com", subsets=[{"name": "a", "labels": {"version": "v1"}},
                                                     {"name": "b", "labels": {"topology.istio.io/network": "net-1"}}])
    assert not analyze([inline, good])
    bad = _details_dr("v2")
    assert [f.code for _, f in analyze([inline, bad])] == ["A406"]


def test_subsets_ignored_for_passthrough_services() -> None:
    passthrough = se(hosts=["*.example.com"], resolution="NONE")
    assert not analyze([passthrough, dr(host="*.example.com", subsets=[{"name": "a", "labels": {"v": "1"}}])])


def test_metadata_labels_win_over_spec_labels_for_selection() -> None:
    vm = we("vm", labels={"app": "other"})
    vm["metadata"]["labels"] = {"app": "details"}
    assert "A407" not in {f.code for _, f in analyze([DETAILS, vm])}


def test_protocol_conflict_is_reported_once_per_entry() -> None:
    found = analyze(_pair("TLS", ["*"], ["*"]))
    assert sorted((ident[2], f.code) for ident, f in found) == [("a", "A402"), ("b", "A402")]


# --- Kubernetes objects (core/v1 Service, Pod, Node, Namespace) in the analyzers' inventory --------------

def _found(manifests: list[dict[str, Any]], settings: AnalyzerSettings | None = None) -> list[tuple[str, str]]:
    return sorted((ident[2], f.code) for ident, f in analyze(manifests, settings))


def test_kubernetes_service_selecting_workload_entry_is_not_unused() -> None:
    """Istio's Kubernetes registry selects WorkloadEntries with a Service's selector (istio-facts.md 2:
    a WorkloadEntry is paired with a MESH_INTERNAL ServiceEntry *or Kubernetes Service* whose selector
    matches its labels), so A407 must not report such a WorkloadEntry (it did: a false positive on
    Istio's own analyzer datasets, pkg/config/analysis/analyzers/testdata)."""
    vm = we("details-vm", labels={"app": "details"})
    assert ("details-vm", "A407") in _found([vm])
    assert ("details-vm", "A407") not in _found([vm, service(selector={"app": "details"})])
    assert ("details-vm", "A407") in _found([vm, service(selector={"app": "other"})])
    assert ("details-vm", "A407") in _found([vm, service(ns="other", selector={"app": "details"})])
    assert ("details-vm", "A407") in _found([vm, service(selector={})])  # no selector selects nothing


def test_destination_rule_host_may_be_a_kubernetes_service() -> None:
    """destinationrule/subset.go: the DR host is looked up among ServiceEntry hosts *and* Kubernetes
    Services (`<name>.<ns>.svc.<domain>`) visible to the DR's namespace, else IST0174 (A403). A Service
    is scoped by its `networking.istio.io/exportTo` annotation like a ServiceEntry's exportTo."""
    svc = service(selector={"app": "details"})
    assert _found([svc, pod("p", {"app": "details"}), dr(host="details")]) == []
    assert _found([svc, pod("p", {"app": "details"}), dr(host="details.default.svc.cluster.local")]) == []
    # with Services in the input, an unknown .svc. host is no longer "maybe a Service" (A404) but A403
    assert ("dr", "A403") in _found([svc, dr(host="reviews")])
    hidden = service(selector={"app": "details"}, annotations={"networking.istio.io/exportTo": "."})
    assert ("dr", "A403") in _found([hidden, dr(host="details.default.svc.cluster.local", ns="team-b")])
    assert ("dr", "A403") not in _found([hidden, dr(host="details.default.svc.cluster.local", ns="istio-system")])


def test_subsets_select_pods_through_services_and_nodes() -> None:
    """destinationrule/subset.go (SubsetSelectPodAnalyzer, IST0173 DestinationRuleSubsetNotSelectPods,
    Error): a subset's selector is the service's selector plus the subset labels, matched against the
    Pods of the service's namespace, whose labels are augmented with their Node's topology labels
    (topology.kubernetes.io/region, topology.kubernetes.io/zone, topology.istio.io/subzone). meshc's
    A406 also counts WorkloadEntries (istio-facts.md pitfall 28), so VM-only subsets are not errors."""
    svc = service(selector={"app": "details"})
    pods = [pod("p1", {"app": "details", "version": "v1"}, node="n1"), pod("p2", {"app": "other", "version": "v2"})]
    node = kube("Node", "n1", None, labels={"topology.kubernetes.io/zone": "z1"})

    def rule(**labels: str) -> dict[str, Any]:
        return dr(host="details", subsets=[{"name": "s", "labels": labels}])

    assert _found([svc, *pods, node, rule(version="v1")]) == []
    assert _found([svc, *pods, node, rule(version="v2")]) == [("dr", "A406")]  # p2 is not selected by the Service
    assert _found([svc, *pods, node, rule(**{"topology.kubernetes.io/zone": "z1"})]) == []
    assert _found([svc, *pods, rule(**{"topology.kubernetes.io/zone": "z1"})]) == [("dr", "A406")]  # no Node
    assert _found([svc, *pods, node, rule(**{"topology.kubernetes.io/zone": "z2"})]) == [("dr", "A406")]
    assert _found([svc, we("vm", labels={"app": "details", "version": "v3"}), rule(version="v3")]) == []
    assert _found([service(), *pods, rule(version="nothing")]) == []  # no selector: endpoints unknown
    # a ServiceEntry's workloadSelector selects Pods too
    assert _found([DETAILS, pod("p", {"app": "details", "version": "v9"}), _details_dr("v9")]) == []


def test_service_entry_addresses_required_as_istioctl_analyze() -> None:
    """serviceentry/protocoladdresses.go (IST0134 ServiceEntryAddressesRequired, Warning) decides from
    the mesh config's proxyMetadata alone (ISTIO_META_DNS_CAPTURE and ISTIO_META_DNS_AUTO_ALLOCATE /
    PILOT_ENABLE_IP_AUTOALLOCATE), not from the resolution (istio-facts.md 4.5 and pitfall 8): offline,
    a DNS or STATIC ServiceEntry with a TCP port and no addresses is reported too."""
    parity = AnalyzerSettings(mesh_dns_auto_allocate=False)
    dns_tcp = se(ports=[{"number": 5432, "name": "pg", "protocol": "TCP"}])
    static_unset = static(ports=[{"number": 9000, "name": "raw"}], endpoints=[{"address": "192.0.2.1"}])
    assert _found([dns_tcp], parity) == [("se", "A405")]
    assert _found([static_unset], parity) == [("se", "A405")]
    assert _found([dns_tcp]) == []  # istiod's view: a VIP is auto-allocated
    assert _found([dns_tcp], AnalyzerSettings(mesh_dns_auto_allocate=True)) == []
    assert _found([se(ports=[{"number": 5432, "name": "pg", "protocol": "TCP"}], addresses=["192.0.2.9"])],
                  parity) == []
    with_status = dns_tcp | {"status": {"addresses": [{"value": "240.240.0.1", "host": "api.example.com"}]}}
    assert _found([with_status], parity) == []


def test_kubernetes_objects_get_no_webhook_findings() -> None:
    for obj in (service(), pod("p", {"app": "x"}), kube("Node", "n", None), kube("Namespace", "ns", None)):
        assert check_object(obj) == []


# --- lint suite --------------------------------------------------------------------------------------

def _expected(path: Path, tag: str) -> set[str] | None:
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(rf"#\s*{tag}:\s*(.*)", line.strip())
        if match:
            return {c.strip() for c in match.group(1).split(",") if c.strip()}
    return None


def _lint(path: Path) -> list[Any]:
    """The case as `meshc lint` reads it (meshc.files.source: YAML 1.2 scalars, go-yaml's flow colons)."""
    docs, diags = parse(path.name, path.read_bytes(), carried=False)
    assert not diags, [(d.code, d.message) for d in diags]
    documents = [d.value for d in docs if d.value]
    found = [f for d in documents for f in check_object(d)]
    return found + [f for _, f in analyze(documents)]


VALID = sorted((CASES / "valid").glob("*.yaml"))
INVALID = sorted((CASES / "invalid").glob("*.yaml"))


def test_lint_suite_is_large_enough() -> None:
    assert len(VALID) + len(INVALID) >= 40 and len(VALID) >= 15 and len(INVALID) >= 25


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_lint_valid(path: Path) -> None:
    found = _lint(path)
    errors = [(f.code, f.path, f.message) for f in found if f.severity == E]
    assert not errors
    warnings = _expected(path, "warn")
    if warnings is not None:
        assert {f.code for f in found if f.severity == W} == warnings


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_lint_invalid(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect:"), "first line must list the expected error codes"
    expected = _expected(path, "expect")
    found = _lint(path)
    assert {f.code for f in found if f.severity == E} == expected, [(f.code, f.path, f.message) for f in found]


# --- properties --------------------------------------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.sampled_from(
    ["", "*", ".", "~", "a.example.com", "*.x.io", "10.0.0.0/8", "unix:///s", "TCP", "HTTP", "DNS", "STATIC",
     "NONE", "DYNAMIC_DNS", "SIMPLE", "MUTUAL", "1ms", "1.5s", "r1/*", "V2"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["hosts", "ports", "number", "name", "protocol", "address", "labels",
                                     "endpoints", "tls", "mode", "loadBalancer", "trafficPolicy", "subsets",
                                     "workloadSelector", "exportTo", "resolution", "app", "to", "from"]),
                    inner, max_size=4)), max_leaves=12)


@hsettings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["ServiceEntry", "WorkloadEntry", "DestinationRule"]), spec=_values)
def test_never_raises(kind: str, spec: Any) -> None:
    manifest = {"apiVersion": "networking.istio.io/v1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
    for finding in check_object(manifest):
        assert finding.code in {r.code for r in ALL_RULES}
    analyze([manifest, se(), dr(subsets=spec if isinstance(spec, list) else None)])


def test_valid_objects_yield_no_errors_and_output_is_stable() -> None:
    objects = [se(), DETAILS, *VMS, _details_dr("v1")]
    assert not [f for m in objects for f in check_object(m) if f.severity == E]
    assert analyze(objects) == analyze(copy.deepcopy(objects))


def test_lint_checks_the_items_of_a_kubectl_list(tmp_path: Path) -> None:
    """`kubectl get se,we,dr -A -o yaml` prints one `kind: List`: its items are linted at their own
    lines, and what lint does not check is said (Y009), never passed over in silence."""
    from meshc import api

    text = ("apiVersion: v1\nkind: List\nitems:\n"
            "  - apiVersion: networking.istio.io/v1\n    kind: DestinationRule\n"
            "    metadata: {name: db, namespace: egress}\n"
            "    spec:\n      host: db.example.com\n      subsets:\n        - name: v1\n"
            "          labels: {version: v1}\n"
            "  - apiVersion: telemetry.istio.io/v1\n    kind: Telemetry\n    metadata: {name: t}\n")
    (tmp_path / "live.yaml").write_text(text)
    outcome = api.lint(tmp_path, [str(tmp_path / "live.yaml")])
    codes = {d.code: d for d in outcome.diagnostics}
    assert "Y009" in codes and "Telemetry" in codes["Y009"].message and not outcome.input_error
    assert any(d.code.startswith(("A", "I")) and d.position is not None and d.position.line >= 4
               for d in outcome.diagnostics), [str(d) for d in outcome.diagnostics]
