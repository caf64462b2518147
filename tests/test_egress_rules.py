"""Tests for meshc.check.istio.egress: the egress path's analyzers (G001-G006).

Object sets are built by hand in the shape docs/egress.md gives them (the expand side producing them
is written separately): service `payments-stripe` in namespace `payments` with host api.stripe.com,
port 443 (TLS, passthrough through the gateway) and port 80 (HTTP, mutual TLS to the gateway),
gateway `istio-egressgateway` in `istio-system`, consumers `checkout` and `billing`. Each rule has a
passing and a failing case, with the exact identity and path of the finding, and names the Istio
page or source it follows.
"""

from __future__ import annotations

import copy
import cProfile
import pstats
from typing import Any

import pytest

from meshc.check.istio import ALL_RULES, AnalyzerSettings, analyze
from meshc.check.istio.egress import RULES, host_matches
from meshc.model.diagnostics import Finding, Severity

NS, GNS = "payments", "istio-system"
HOST = "api.stripe.com"
GSVC = "istio-egressgateway.istio-system.svc.cluster.local"
SELECTOR = {"istio": "egressgateway"}
CONSUMERS = ["checkout", "billing"]
SIDECAR_SETTINGS = AnalyzerSettings(dataplane="sidecar", outbound_policy="REGISTRY_ONLY")
AMBIENT = AnalyzerSettings(dataplane="ambient", outbound_policy="REGISTRY_ONLY")
ALLOW_ANY = AnalyzerSettings(dataplane="sidecar", outbound_policy="ALLOW_ANY")


def obj(kind: str, name: str, ns: str, spec: dict[str, Any], labels: dict[str, str] | None = None,
        api: str = "networking.istio.io/v1") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def service_entry(**spec: Any) -> dict[str, Any]:
    base = {"hosts": [HOST], "location": "MESH_EXTERNAL", "resolution": "DNS",
            "ports": [{"number": 443, "name": "tls-443", "protocol": "TLS"},
                      {"number": 80, "name": "http-80", "protocol": "HTTP"}],
            "exportTo": [".", GNS, *CONSUMERS]}
    return obj("ServiceEntry", "payments-stripe", NS, {**base, **spec})


def gateway(servers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return obj("Gateway", "payments-stripe-egress", GNS, {"selector": SELECTOR, "servers": servers or [
        {"port": {"number": 443, "name": "tls-443", "protocol": "TLS"}, "hosts": [HOST],
         "tls": {"mode": "PASSTHROUGH"}},
        {"port": {"number": 80, "name": "https-80", "protocol": "HTTPS"}, "hosts": [HOST],
         "tls": {"mode": "ISTIO_MUTUAL"}}]})


def to_gateway(port: int, subset: str = "payments-stripe") -> list[dict[str, Any]]:
    return [{"destination": {"host": GSVC, "subset": subset, "port": {"number": port}}}]


def to_host(port: int) -> list[dict[str, Any]]:
    return [{"destination": {"host": HOST, "port": {"number": port}}}]


def virtual_service(**spec: Any) -> dict[str, Any]:
    base = {"hosts": [HOST], "gateways": ["mesh", "payments-stripe-egress"], "exportTo": [".", *CONSUMERS],
            "http": [{"match": [{"gateways": ["mesh"], "port": 80}], "route": to_gateway(80)},
                     {"match": [{"gateways": ["payments-stripe-egress"], "port": 80}], "route": to_host(80)}],
            "tls": [{"match": [{"gateways": ["mesh"], "port": 443, "sniHosts": [HOST]}], "route": to_gateway(443)},
                    {"match": [{"gateways": ["payments-stripe-egress"], "port": 443, "sniHosts": [HOST]}],
                     "route": to_host(443)}]}
    return obj("VirtualService", "payments-stripe-egress", GNS, {**base, **spec})


def gateway_rule(port_level: list[dict[str, Any]] | None = None, name: str = "payments-stripe") -> dict[str, Any]:
    levels = [{"port": {"number": 80}, "tls": {"mode": "ISTIO_MUTUAL", "sni": HOST}}] if port_level is None \
        else port_level
    subset: dict[str, Any] = {"name": name}
    if levels:
        subset["trafficPolicy"] = {"portLevelSettings": levels}
    return obj("DestinationRule", "payments-stripe-egress-gateway", GNS,
               {"host": GSVC, "exportTo": [".", *CONSUMERS], "subsets": [subset]})


def policy(**spec: Any) -> dict[str, Any]:
    sources = [{"source": {"namespaces": ["checkout"]}}, {"source": {"principals": [
        "cluster.local/ns/billing/sa/invoicer"]}}]
    base = {"selector": {"matchLabels": SELECTOR}, "action": "ALLOW", "rules": [
        {"from": sources, "to": [{"operation": {"hosts": [HOST], "ports": ["80"]}}]},
        {"from": sources, "to": [{"operation": {"ports": ["443"]}}],
         "when": [{"key": "connection.sni", "values": [HOST]}]}]}
    return obj("AuthorizationPolicy", "payments-stripe-egress", GNS, {**base, **spec},
               api="security.istio.io/v1")


def sidecar(ns: str = "checkout", hosts: list[str] | None = None) -> dict[str, Any]:
    return obj("Sidecar", "meshc-egress", ns, {"egress": [{"hosts": hosts or [
        "./*", "istio-system/*", f"{NS}/{HOST}", f"{GNS}/{HOST}", f"{GNS}/{GSVC}"]}]})


def gateway_set(**changes: Any) -> list[dict[str, Any]]:
    """The objects of docs/egress.md for one gateway service, the VirtualService exported to the
    ServiceEntry's own namespace too (see test_spec_as_written_lets_the_service_namespace_bypass)."""
    objects = {"se": service_entry(), "gw": gateway(),
               "vs": virtual_service(exportTo=[".", NS, *CONSUMERS]), "dr": gateway_rule(), "ap": policy(),
               "sc-checkout": sidecar("checkout"), "sc-billing": sidecar("billing")}
    objects.update(changes)
    return [o for o in objects.values() if o is not None]


def waypoint_entry(labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    base = {"hosts": [HOST], "location": "MESH_EXTERNAL", "resolution": "DNS",
            "ports": [{"number": 443, "name": "tls-443", "protocol": "TLS"}]}
    return obj("ServiceEntry", "payments-stripe", NS, {**base, **spec},
               labels={"istio.io/use-waypoint": "egress-waypoint", "istio.io/use-waypoint-namespace": "istio-egress"}
               if labels is None else labels)


def findings(objects: list[dict[str, Any]], settings: AnalyzerSettings = SIDECAR_SETTINGS, code: str = "G"
             ) -> list[tuple[tuple[str, str, str], tuple[Any, ...], Finding]]:
    return [(tuple(ident), f.path, f) for ident, f in analyze(objects, settings) if f.code.startswith(code)]


def where(objects: list[dict[str, Any]], code: str, settings: AnalyzerSettings = SIDECAR_SETTINGS
          ) -> list[tuple[tuple[str, str, str], tuple[Any, ...]]]:
    return [(ident, path) for ident, path, _ in findings(objects, settings, code)]


def one(objects: list[dict[str, Any]], code: str, settings: AnalyzerSettings = SIDECAR_SETTINGS) -> Finding:
    found = findings(objects, settings, code)
    assert len(found) == 1, [(i, p, f.message) for i, p, f in findings(objects, settings)]
    return found[0][2]


VS_ID = ("VirtualService", GNS, "payments-stripe-egress")
DR_ID = ("DestinationRule", GNS, "payments-stripe-egress-gateway")
SE_ID = ("ServiceEntry", NS, "payments-stripe")


def test_the_registry_holds_the_g_rules() -> None:
    assert {r.code for r in RULES} == {f"G00{i}" for i in range(1, 7)}
    assert set(RULES) <= set(ALL_RULES)
    assert all(r.istio_code == "" and r.source and r.hint for r in RULES)
    severities = {r.code: r.severity for r in RULES}
    assert severities["G004"] == severities["G006"] == Severity.WARNING
    assert {c for c, s in severities.items() if s == Severity.ERROR} == {"G001", "G002", "G003", "G005"}


def test_the_documented_gateway_set_is_clean() -> None:
    """docs/egress.md's objects for a TLS and an HTTP port, consumers with their Sidecars."""
    assert findings(gateway_set()) == []
    assert findings(gateway_set(), ALLOW_ANY, "G001") == []


def test_host_matching_follows_istio() -> None:
    assert host_matches("*.stripe.com", HOST) and host_matches(HOST, "*.stripe.com")
    assert host_matches("*", HOST) and host_matches("*.com", "*.stripe.com")
    assert not host_matches("*.stripe.com", "stripe.com") and not host_matches("api.stripe.com", "api.stripe.co")


# --- G001: pilot/pkg/networking/core/gateway.go (buildGatewayTCPBasedFilterChains,
# createGatewayTCPFilterChainOpts, pickMatchingGatewayHosts, isPortMatch) and the egress-gateway task
# istio.io/latest/docs/tasks/traffic-management/egress/egress-gateway/

def test_g001_host_not_served_by_the_gateway() -> None:
    servers = [{"port": {"number": 443, "name": "tls", "protocol": "TLS"}, "hosts": ["api.paypal.com"],
                "tls": {"mode": "PASSTHROUGH"}},
               {"port": {"number": 80, "name": "https", "protocol": "HTTPS"}, "hosts": ["api.paypal.com"],
                "tls": {"mode": "ISTIO_MUTUAL"}}]
    found = one(gateway_set(gw=gateway(servers)), "G001")
    assert where(gateway_set(gw=gateway(servers)), "G001") == [(VS_ID, ("spec", "hosts", 0))]
    assert "api.stripe.com is served by no server of Gateway istio-system/payments-stripe-egress" in found.message
    assert found.severity == Severity.ERROR and found.hint


def test_g001_server_hosts_bind_by_namespace() -> None:
    """`ns/host` server hosts bind VirtualServices of `ns` only; `.` is the Gateway's namespace."""
    def served(host: str) -> list[dict[str, Any]]:
        return [{"port": {"number": 443, "name": "tls", "protocol": "TLS"}, "hosts": [host],
                 "tls": {"mode": "PASSTHROUGH"}},
                {"port": {"number": 80, "name": "https", "protocol": "HTTPS"}, "hosts": [host],
                 "tls": {"mode": "ISTIO_MUTUAL"}}]
    for ok in (f"./{HOST}", f"{GNS}/{HOST}", f"*/{HOST}", "*.stripe.com", "*"):
        assert where(gateway_set(gw=gateway(served(ok))), "G001") == [], ok
    assert (VS_ID, ("spec", "hosts", 0)) in where(gateway_set(gw=gateway(served(f"other/{HOST}"))), "G001")


def test_g001_port_not_served() -> None:
    vs = virtual_service(exportTo=[".", NS, *CONSUMERS])
    vs["spec"]["http"][1]["match"][0]["port"] = 8080
    found = one(gateway_set(vs=vs), "G001")
    assert where(gateway_set(vs=vs), "G001") == [(VS_ID, ("spec", "http", 1, "match", 0, "port"))]
    assert "port 8080 is not served by Gateway istio-system/payments-stripe-egress (it serves 443/TLS tls " \
           "PASSTHROUGH, 80/HTTPS tls ISTIO_MUTUAL)" in found.message


def test_g001_tls_route_needs_a_passthrough_server() -> None:
    servers = [{"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": [HOST],
                "tls": {"mode": "ISTIO_MUTUAL"}},
               {"port": {"number": 80, "name": "https-80", "protocol": "HTTPS"}, "hosts": [HOST],
                "tls": {"mode": "ISTIO_MUTUAL"}}]
    objects = gateway_set(gw=gateway(servers), dr=gateway_rule([
        {"port": {"number": 80}, "tls": {"mode": "ISTIO_MUTUAL", "sni": HOST}},
        {"port": {"number": 443}, "tls": {"mode": "ISTIO_MUTUAL", "sni": HOST}}]))
    found = one(objects, "G001")
    assert where(objects, "G001") == [(VS_ID, ("spec", "tls", 1, "match", 0))]
    assert "tls routes apply only on a PASSTHROUGH server; this server reads only http routes" in found.message


def test_g001_tcp_route_on_an_https_server() -> None:
    """A TCP port behind a server `protocol: HTTPS, tls.mode: ISTIO_MUTUAL` (what docs/egress.md says
    for every non-TLS port): istiod builds an HTTP connection manager for it, so `tcp` routes never
    apply. `protocol: TLS` with ISTIO_MUTUAL is what the gateway reads tcp routes from."""
    se = service_entry(ports=[{"number": 5432, "name": "tcp-5432", "protocol": "TCP"}])
    def server(protocol: str) -> dict[str, Any]:
        return gateway([{"port": {"number": 5432, "name": "pg", "protocol": protocol}, "hosts": [HOST],
                         "tls": {"mode": "ISTIO_MUTUAL"}}])
    vs = virtual_service(exportTo=[".", NS, *CONSUMERS], http=None, tls=None, tcp=[
        {"match": [{"gateways": ["mesh"], "port": 5432}], "route": to_gateway(5432)},
        {"match": [{"gateways": ["payments-stripe-egress"], "port": 5432}], "route": to_host(5432)}])
    rule = gateway_rule([{"port": {"number": 5432}, "tls": {"mode": "ISTIO_MUTUAL", "sni": HOST}}])
    wrong = gateway_set(se=se, gw=server("HTTPS"), vs=vs, dr=rule, ap=None)
    assert where(wrong, "G001") == [(VS_ID, ("spec", "tcp", 1, "match", 0))]
    assert "this server reads only http routes" in one(wrong, "G001").message
    assert findings(gateway_set(se=se, gw=server("TLS"), vs=vs, dr=rule, ap=None)) == []


def test_g001_sni_host_not_a_server_host() -> None:
    vs = virtual_service(exportTo=[".", NS, *CONSUMERS])
    vs["spec"]["tls"][1]["match"][0]["sniHosts"] = ["files.stripe.com"]
    assert where(gateway_set(vs=vs), "G001") == [(VS_ID, ("spec", "tls", 1, "match", 0, "sniHosts", 0))]
    assert "sniHost files.stripe.com is not a host of the server" in one(gateway_set(vs=vs), "G001").message


def test_g001_gateway_not_defined() -> None:
    vs = virtual_service(exportTo=[".", NS, *CONSUMERS], gateways=["mesh", "istio-system/missing"])
    assert where(gateway_set(vs=vs), "G001") == [(VS_ID, ("spec", "gateways", 1))]
    assert "gateway istio-system/missing is not defined" in one(gateway_set(vs=vs), "G001").message


def test_g001_host_without_a_service_entry_visible_to_the_gateway() -> None:
    """The gateway's namespace must see the ServiceEntry (docs/egress.md exports it to gns)."""
    objects = gateway_set(se=service_entry(exportTo=[".", *CONSUMERS]))
    assert (VS_ID, ("spec", "hosts", 0)) in where(objects, "G001")
    messages = [f.message for _, _, f in findings(objects, code="G001")]
    assert any("registered by no ServiceEntry visible in namespace istio-system" in m for m in messages)
    assert any(p[-2:] == ("destination", "host") for _, p in where(objects, "G001"))


def test_g001_ports_not_of_the_service_entry() -> None:
    vs = virtual_service(exportTo=[".", NS, *CONSUMERS])
    vs["spec"]["http"][0]["match"][0]["port"] = 8080
    vs["spec"]["http"][1]["route"][0]["destination"]["port"]["number"] = 8443
    objects = gateway_set(vs=vs)
    assert sorted(where(objects, "G001")) == sorted([
        (VS_ID, ("spec", "http", 0, "match", 0, "port")),
        (VS_ID, ("spec", "http", 1, "route", 0, "destination", "port", "number"))])
    messages = " ".join(f.message for _, _, f in findings(objects, code="G001"))
    assert "mesh match port 8080 is not a port of ServiceEntry payments/payments-stripe (ports 80, 443)" in messages
    assert "api.stripe.com port 8443, which is not a port of ServiceEntry payments/payments-stripe" in messages


def test_g001_only_for_virtual_services_bound_to_a_gateway_and_the_mesh() -> None:
    vs = virtual_service(gateways=["payments-stripe-egress"])
    vs["spec"]["http"][1]["match"][0]["port"] = 8080
    assert where(gateway_set(vs=vs), "G001") == []


# --- G002: the egress-gateway task's DestinationRule `egressgateway-for-cnn` (subset with
# portLevelSettings tls ISTIO_MUTUAL, sni the external host) and pilot/pkg/networking/core/gateway.go
# (an ISTIO_MUTUAL server's filter chain matches the server hosts as SNI; PASSTHROUGH reads the
# application's SNI)

def test_g002_subset_not_defined() -> None:
    objects = gateway_set(dr=gateway_rule(name="other"))
    assert where(objects, "G002") == [(VS_ID, ("spec", "http", 0, "route", 0, "destination", "subset")),
                                      (VS_ID, ("spec", "tls", 0, "route", 0, "destination", "subset"))]
    assert "which no DestinationRule for istio-egressgateway.istio-system.svc.cluster.local defines " \
           "(subsets: other)" in findings(objects, code="G002")[0][2].message
    assert "no DestinationRule for this host" in findings(gateway_set(dr=None), code="G002")[0][2].message


def test_g002_istio_mutual_to_a_passthrough_server() -> None:
    rule = gateway_rule([{"port": {"number": 80}, "tls": {"mode": "ISTIO_MUTUAL", "sni": HOST}},
                         {"port": {"number": 443}, "tls": {"mode": "ISTIO_MUTUAL", "sni": HOST}}])
    assert where(gateway_set(dr=rule), "G002") == [
        (DR_ID, ("spec", "subsets", 0, "trafficPolicy", "portLevelSettings", 1, "tls", "mode"))]
    assert "wraps the connection in TLS mode ISTIO_MUTUAL, but the Gateway server on port 443 is PASSTHROUGH" \
        in one(gateway_set(dr=rule), "G002").message


def test_g002_plaintext_to_an_istio_mutual_server() -> None:
    unset = gateway_set(dr=gateway_rule([]))
    assert where(unset, "G002") == [(DR_ID, ("spec", "subsets", 0))]
    assert "sends plaintext (or auto mutual TLS with the cluster name as SNI) (tls mode unset)" \
        in one(unset, "G002").message
    disabled = gateway_set(dr=gateway_rule([{"port": {"number": 80}, "tls": {"mode": "DISABLE"}}]))
    assert where(disabled, "G002") == [
        (DR_ID, ("spec", "subsets", 0, "trafficPolicy", "portLevelSettings", 0, "tls", "mode"))]


def test_g002_rule_level_tls_counts_for_the_subset() -> None:
    rule = gateway_rule([])
    rule["spec"]["trafficPolicy"] = {"portLevelSettings": [
        {"port": {"number": 80}, "tls": {"mode": "ISTIO_MUTUAL", "sni": HOST}}]}
    assert where(gateway_set(dr=rule), "G002") == []


def test_g002_sni_not_a_server_host() -> None:
    wrong = gateway_set(dr=gateway_rule([{"port": {"number": 80}, "tls": {"mode": "ISTIO_MUTUAL",
                                                                           "sni": "stripe.com"}}]))
    assert where(wrong, "G002") == [
        (DR_ID, ("spec", "subsets", 0, "trafficPolicy", "portLevelSettings", 0, "tls", "sni"))]
    assert "sends SNI stripe.com, which is not a host of the Gateway server on port 80" in one(wrong, "G002").message
    missing = gateway_set(dr=gateway_rule([{"port": {"number": 80}, "tls": {"mode": "ISTIO_MUTUAL"}}]))
    assert where(missing, "G002") == [
        (DR_ID, ("spec", "subsets", 0, "trafficPolicy", "portLevelSettings", 0, "tls"))]


# --- G003: istio/api#3517 (ambient caveats: ServiceEntry.exportTo is not used; wildcard hosts are not
# supported) and the Istio 1.28 change notes; istio.io/latest/docs/ambient/usage/egress-gateway/

def test_g003_waypoint_entry_with_a_wildcard_host() -> None:
    wildcard = waypoint_entry(hosts=["*.stripe.com"], resolution="NONE")
    assert where([wildcard], "G003", AMBIENT) == [(SE_ID, ("spec", "hosts", 0))]
    assert "wildcard host *.stripe.com on a ServiceEntry bound to waypoint egress-waypoint" \
        in one([wildcard], "G003", AMBIENT).message
    assert where([waypoint_entry(hosts=["*.stripe.com"], resolution="DYNAMIC_DNS")], "G003", AMBIENT) == []
    assert where([waypoint_entry()], "G003", AMBIENT) == []
    assert where([service_entry(hosts=["*.stripe.com"], resolution="NONE", exportTo=None)], "G003") == []


def test_g003_waypoint_entry_with_export_to() -> None:
    assert where([waypoint_entry(exportTo=[".", "checkout"])], "G003", AMBIENT) == [(SE_ID, ("spec", "exportTo"))]
    assert "ztunnel and waypoints ignore it" in one([waypoint_entry(exportTo=["."])], "G003", AMBIENT).message
    assert where([waypoint_entry(exportTo=["*"])], "G003", AMBIENT) == []  # the default: nothing to ignore


def test_g003_namespace_binding_and_the_none_label() -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": NS, "labels": {"istio.io/use-waypoint": "egress-waypoint"}}}
    plain = waypoint_entry(labels={}, exportTo=["."])
    assert where([namespace, plain], "G003", AMBIENT) == [(SE_ID, ("spec", "exportTo"))]
    opted_out = waypoint_entry(labels={"istio.io/use-waypoint": "none"}, exportTo=["."])
    assert where([namespace, opted_out], "G003", AMBIENT) == []


# --- G004: the egress-gateway task ("Additional security considerations"), the Sidecar reference
# (istio.io/latest/docs/reference/config/networking/sidecar/, egress hosts) and egress-control
# (istio.io/latest/docs/tasks/traffic-management/egress/egress-control/, ALLOW_ANY)

def test_spec_as_written_lets_the_service_namespace_bypass() -> None:
    """docs/egress.md exports the ServiceEntry to `.` and the VirtualService only to `.` (gns) and
    the consumers: the service's own namespace sees the host but not the route through the gateway."""
    objects = gateway_set(vs=virtual_service())
    assert where(objects, "G004") == [(SE_ID, ("spec", "exportTo", 0))]
    found = one(objects, "G004")
    assert found.severity == Severity.WARNING
    assert "namespace payments sees ServiceEntry payments/payments-stripe (api.stripe.com) but not " \
           "VirtualService istio-system/payments-stripe-egress (exported to billing, checkout, istio-system)" \
           in found.message


def test_g004_namespace_in_the_export_but_not_the_virtual_service() -> None:
    objects = gateway_set(se=service_entry(exportTo=[GNS, *CONSUMERS, "reports"]))
    assert where(objects, "G004") == [(SE_ID, ("spec", "exportTo", 3))]
    assert "namespace reports sees" in one(objects, "G004").message


def test_g004_service_entry_everywhere_virtual_service_narrowed() -> None:
    objects = gateway_set(se=service_entry(exportTo=None))
    assert where(objects, "G004") == [(VS_ID, ("spec", "exportTo"))]
    assert "exports api.stripe.com to every namespace" in one(objects, "G004").message
    assert where(gateway_set(se=service_entry(exportTo=None), vs=virtual_service(exportTo=None)), "G004") == []


def test_g004_sidecar_imports_the_host_but_not_the_virtual_service() -> None:
    narrow = sidecar("checkout", ["./*", f"{NS}/{HOST}"])
    objects = gateway_set(**{"sc-checkout": narrow})
    assert where(objects, "G004") == [(("Sidecar", "checkout", "meshc-egress"), ("spec", "egress", 0, "hosts", 1))]
    assert "egress host payments/api.stripe.com imports api.stripe.com of ServiceEntry payments/payments-stripe, " \
           "but VirtualService istio-system/payments-stripe-egress is not imported" in one(objects, "G004").message
    wildcard = sidecar("checkout", ["./*", "*/*.stripe.com", f"{GNS}/{HOST}"])
    assert where(gateway_set(**{"sc-checkout": wildcard}), "G004") == []


def test_g004_a_workload_sidecar_leaves_the_namespace_default() -> None:
    """A Sidecar with a workloadSelector applies to its workloads only; the namespace's other
    workloads see what exportTo gives them."""
    selected = sidecar("reports", ["./*", f"{GNS}/*"])
    selected["spec"]["workloadSelector"] = {"labels": {"app": "batch"}}
    objects = gateway_set(se=service_entry(exportTo=[GNS, *CONSUMERS, "reports"]), **{"sc-reports": selected})
    assert where(objects, "G004") == [(SE_ID, ("spec", "exportTo", 3))]
    del selected["spec"]["workloadSelector"]
    assert where(objects, "G004") == []


def test_g004_sidecar_outside_the_virtual_service_export() -> None:
    objects = gateway_set(se=service_entry(exportTo=[GNS, *CONSUMERS, "reports"]), **{"sc-reports": sidecar("reports")})
    assert where(objects, "G004") == [(("Sidecar", "reports", "meshc-egress"), ("spec", "egress", 0, "hosts", 2))]
    assert "is outside its exportTo" in one(objects, "G004").message


def test_g004_allow_any_with_restricted_consumers() -> None:
    objects = gateway_set()
    assert where(objects, "G004", ALLOW_ANY) == [
        (("AuthorizationPolicy", GNS, "payments-stripe-egress"), ("spec", "rules", 0, "from"))]
    assert "outboundTrafficPolicy is ALLOW_ANY: proxies outside the exportTo of api.stripe.com" \
        in one(objects, "G004", ALLOW_ANY).message
    assert where(objects, "G004", SIDECAR_SETTINGS) == []
    assert where(objects, "G004", AnalyzerSettings()) == []  # meshc lint: the policy is unknown
    open_to_all = policy(rules=[{"to": [{"operation": {"hosts": [HOST]}}]}])
    assert where(gateway_set(ap=open_to_all), "G004", ALLOW_ANY) == []
    everywhere = gateway_set(se=service_entry(exportTo=None), vs=virtual_service(exportTo=None))
    assert where(everywhere, "G004", ALLOW_ANY) == []


def test_g004_allow_any_with_a_waypoint_policy() -> None:
    target = obj("AuthorizationPolicy", "payments-stripe-consumers", NS, {
        "targetRefs": [{"group": "networking.istio.io", "kind": "ServiceEntry", "name": "payments-stripe"}],
        "action": "ALLOW", "rules": [{"from": [{"source": {"namespaces": ["checkout"]}}]}]}, api="security.istio.io/v1")
    allow_any = AnalyzerSettings(dataplane="ambient", outbound_policy="ALLOW_ANY")
    assert where([waypoint_entry(), target], "G004", allow_any) == []
    assert where([waypoint_entry(exportTo=["checkout"]), target], "G004", allow_any) == [
        (("AuthorizationPolicy", NS, "payments-stripe-consumers"), ("spec", "rules", 0, "from"))]


# --- G005: istio.io/latest/blog/2024/ambient-reaches-ga/ (virtual machines are not part of ambient)

VM_ENTRY = obj("ServiceEntry", "orders-db", NS, {
    "hosts": ["orders-db.internal.example"], "location": "MESH_INTERNAL", "resolution": "STATIC",
    "ports": [{"number": 5432, "name": "tcp-pg", "protocol": "TCP"}], "workloadSelector": {"labels": {"app": "pg"}}})
VM = obj("WorkloadEntry", "orders-db-1", NS, {"address": "10.0.0.5", "labels": {"app": "pg"},
                                              "serviceAccount": "orders-db"})


def test_g005_vm_workloads_in_ambient() -> None:
    assert sorted(where([VM_ENTRY, VM], "G005", AMBIENT)) == sorted([
        (("WorkloadEntry", NS, "orders-db-1"), ("metadata", "name")),
        (("ServiceEntry", NS, "orders-db"), ("spec", "workloadSelector"))])
    assert where([VM_ENTRY, VM], "G005", SIDECAR_SETTINGS) == []
    assert where([VM_ENTRY, VM], "G005", AnalyzerSettings()) == []
    found = [f for _, _, f in findings([VM], AMBIENT, "G005")][0]
    assert found.severity == Severity.ERROR and "VMs are not part of ambient mode" in found.message


def test_g005_endpoint_with_a_service_account() -> None:
    endpoints = service_entry(exportTo=None, location="MESH_INTERNAL", resolution="STATIC", endpoints=[
        {"address": "10.0.0.5"}, {"address": "10.0.0.6", "serviceAccount": "orders-db"}])
    assert where([endpoints], "G005", AMBIENT) == [(SE_ID, ("spec", "endpoints", 1, "serviceAccount"))]
    plain = service_entry(exportTo=None, resolution="STATIC", endpoints=[{"address": "10.0.0.5"}])
    assert where([plain], "G005", AMBIENT) == []


def test_g005_ambient_namespace_label_for_lint() -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": NS, "labels": {"istio.io/dataplane-mode": "ambient"}}}
    assert where([namespace, VM], "G005", AnalyzerSettings()) == [
        (("WorkloadEntry", NS, "orders-db-1"), ("metadata", "name"))]


# --- G006: the Istio 1.28 change notes (a waypoint-bound ServiceEntry with resolution NONE is passthrough)

def test_g006_waypoint_entry_with_resolution_none() -> None:
    assert where([waypoint_entry(resolution="NONE")], "G006", AMBIENT) == [(SE_ID, ("spec", "resolution"))]
    unset = waypoint_entry()
    del unset["spec"]["resolution"]  # NONE is the default
    found = one([unset], "G006", AMBIENT)
    assert found.severity == Severity.WARNING and "passthrough" in found.message
    assert where([waypoint_entry()], "G006", AMBIENT) == []
    assert where([service_entry(resolution="NONE")], "G006") == []


# --- behaviour ---------------------------------------------------------------------------------------

def test_output_is_stable_and_inputs_untouched() -> None:
    objects = gateway_set(vs=virtual_service(), dr=gateway_rule(name="other"))
    before = copy.deepcopy(objects)
    assert analyze(objects, ALLOW_ANY) == analyze(copy.deepcopy(objects), ALLOW_ANY)
    assert objects == before


@pytest.mark.parametrize("broken", [
    {"spec": None}, {"spec": {"gateways": "mesh"}}, {"spec": {"gateways": ["mesh", 3], "http": [None, {"match": 1}]}},
    {"spec": {"gateways": ["mesh", "g"], "tls": [{"match": [{"port": "x", "sniHosts": None}], "route": [None]}]}},
])
def test_malformed_objects_never_raise(broken: dict[str, Any]) -> None:
    for kind in ("VirtualService", "Gateway", "Sidecar", "DestinationRule"):
        manifest = {"apiVersion": "networking.istio.io/v1", "kind": kind, "metadata": {"name": "x"}, **broken}
        analyze([manifest, *gateway_set()], ALLOW_ANY)
    weird = obj("AuthorizationPolicy", "x", GNS, {"selector": {"matchLabels": SELECTOR}, "rules": [
        {"from": [{}], "to": "x", "when": [None]}], "targetRefs": [None, {"kind": "ServiceEntry"}]},
        api="security.istio.io/v1")
    analyze([weird, *gateway_set()], ALLOW_ANY)


def _estate(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        host = f"api{i}.example.com"
        names = {"se": f"svc{i}", "gw": f"svc{i}-egress"}
        for o in gateway_set(vs=virtual_service(exportTo=[".", NS, *CONSUMERS]), **{"sc-checkout": None,
                                                                                   "sc-billing": None}):
            o = copy.deepcopy(o)
            text = repr(o).replace(HOST, host).replace("payments-stripe-egress", names["gw"]) \
                .replace("'payments-stripe'", repr(names["se"]))
            out.append(eval(text))  # noqa: S307 (a repr of plain dicts)
    return [*out, sidecar("checkout", ["./*", "istio-system/*", f"{NS}/*"])]


def test_analyzers_grow_linearly() -> None:
    """Indexed lookups only: four times the services make well under sixteen times the work. Work
    is counted as Python function calls (cProfile's count: deterministic, unlike a clock)."""
    def calls(n: int) -> int:
        objects = _estate(n)
        profile = cProfile.Profile()
        profile.enable()
        found = [f for _, f in analyze(objects, ALLOW_ANY) if f.code in ("G001", "G002")]
        profile.disable()
        assert not found
        return int(pstats.Stats(profile).total_calls)  # type: ignore[attr-defined]
    small, large = calls(100), calls(400)
    assert large < small * 8, (small, large)
