"""Egress paths and consumers (docs/egress.md): the objects each mode emits, held by goldens
(tests/goldens/egress/<case>.yaml; update with MESHC_UPDATE_GOLDENS=egress), every one valid
against the shipped CRD schemas with their CEL rules and Istio's webhook rules, and the errors
for input a path cannot carry.

The shapes follow Istio's documentation: the egress-gateway task
(istio.io/latest/docs/tasks/traffic-management/egress/egress-gateway/: a Gateway, a
VirtualService with `gateways: [mesh, <gateway>]` routing the mesh to the gateway host's subset
and the gateway to the external host, a DestinationRule giving that subset ISTIO_MUTUAL with the
host as SNI), TLS origination at the gateway (…/egress/egress-gateway-tls-origination/: the
DestinationRule that originates is the gateway's), and ambient egress
(istio.io/latest/docs/ambient/usage/egress-gateway/: the ServiceEntry labelled
`istio.io/use-waypoint`, a Gateway of class `istio-waypoint`, TLS origination by DestinationRule)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshc import api
from meshc.model.diagnostics import Severity

from .conftest import REPO, check_golden

GOLDENS = REPO / "tests" / "goldens" / "egress"

SIDECAR_ENV = """\
name: dev
namespace: egress
trustDomain: dev.example.com
proxy: {outboundTrafficPolicy: REGISTRY_ONLY}
namespaces:
  shop: {serviceAccounts: [cart, web]}
  maps: {}
egress:
  gateway: {name: istio-egressgateway, namespace: istio-system, selector: {istio: egressgateway}}
  sidecarHosts: [monitoring/*]
"""
AMBIENT_ENV = """\
name: dev
namespace: egress
trustDomain: dev.example.com
dataplane: ambient
namespaces:
  shop: {serviceAccounts: [cart, web]}
egress:
  waypoint: {name: egress-waypoint, namespace: istio-egress, managed: true%s}
"""

CASES: dict[str, tuple[str, str]] = {
    # consumers, direct: exportTo and a Sidecar per consumer namespace (REGISTRY_ONLY)
    "direct-consumers": (SIDECAR_ENV, """\
services:
  - name: api
    hosts: [api.example.com]
    resolution: dns
    ports: [{number: 443, protocol: TLS}]
    consumers: [{namespace: shop}]
  - name: open
    hosts: [open.example.com]
    resolution: dns
    ports: [{number: 443, protocol: TLS}]
"""),
    # the gateway originates TLS for an HTTP port (the application speaks HTTP)
    "gateway-http-origination": (SIDECAR_ENV, """\
services:
  - name: stripe
    hosts: [api.stripe.com]
    resolution: dns
    ports: [{number: 80, protocol: HTTP, targetPort: 443}]
    tls: {mode: simple, sni: api.stripe.com}
    egress: gateway
    consumers: [{namespace: shop, serviceAccount: cart}, {namespace: maps}]
"""),
    # the application's own TLS, and raw TCP, through the gateway; anyone may call (no consumers)
    "gateway-tls-tcp": (SIDECAR_ENV, """\
services:
  - name: maps
    hosts: [maps.googleapis.com]
    resolution: dns
    ports: [{number: 443, protocol: HTTPS}]
    egress: gateway
  - name: sftp
    hosts: [sftp.partner.example.net]
    addresses: [203.0.113.10]
    resolution: static
    endpoints: [{address: 203.0.113.10}]
    ports: [{number: 22, protocol: TCP}]
    egress: gateway
"""),
    # several HTTP hosts: one VirtualService each
    "gateway-hosts": (SIDECAR_ENV, """\
services:
  - name: apis
    hosts: [a.example.com, b.example.com]
    resolution: dns
    ports: [{number: 80, protocol: HTTP}]
    egress: gateway
"""),
    "waypoint-destinationrule": (AMBIENT_ENV % "", """\
services:
  - name: stripe
    hosts: [api.stripe.com]
    resolution: dns
    ports: [{number: 80, protocol: HTTP, targetPort: 443}]
    tls: {mode: simple, sni: api.stripe.com}
    egress: waypoint
    consumers: [{namespace: shop, serviceAccount: cart}]
"""),
    "waypoint-backendtlspolicy": (AMBIENT_ENV % ", tlsOrigination: BackendTLSPolicy", """\
services:
  - name: stripe
    namespace: istio-egress
    hosts: [api.stripe.com]
    resolution: dns
    ports: [{number: 80, protocol: HTTP, targetPort: 443}]
    tls: {mode: simple, sni: api.stripe.com, subjectAltNames: [api.stripe.com]}
    trafficPolicy: {connectionPool: {tcp: {maxConnections: 50}}}
    egress: waypoint
"""),
}


def _estate(root: Path, env: str, services: str) -> Path:
    (root / "environments" / "dev").mkdir(parents=True)
    (root / "environments" / "base").mkdir()
    (root / "environments" / "dev" / "env.yaml").write_text(env)
    (root / "environments" / "base" / "api.yaml").write_text(services)
    return root


def _manifests(root: Path) -> bytes:
    project, result = api.compile_repo(root, use_cache=False)
    assert result.ok, [str(d) for d in result.diagnostics]
    bundle = result.envs["dev"].bundle
    assert bundle is not None
    return b"".join(f"# {rel}\n".encode() + data for rel, data in sorted(bundle.files.items())
                    if rel.endswith(".yaml") and rel != "kustomization.yaml")


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_mode_emits_its_objects(case: str, tmp_path: Path) -> None:
    root = _estate(tmp_path, *CASES[case])
    check_golden(GOLDENS / f"{case}.yaml", _manifests(root))


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_passes_the_crd_schemas_cel_and_istio_rules(case: str, tmp_path: Path) -> None:
    root = _estate(tmp_path, *CASES[case])
    outcome = api.check(root, layers=("schema", "istio"), use_cache=False)
    errors = [str(d) for d in outcome.diagnostics if d.severity is Severity.ERROR]
    assert not errors, errors


def _objects(root: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(_manifests(root)) if d]
    return {(d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs}


def test_gateway_pieces_agree_on_hosts_ports_sni_and_subset(tmp_path: Path) -> None:
    """What the egress-gateway task asks to keep in agreement, for every port kind."""
    root = _estate(tmp_path, *CASES["gateway-tls-tcp"])
    objs = _objects(root)
    assert not [k for k in objs if k[0] == "AuthorizationPolicy"]  # no consumers: no policy
    gsvc = "istio-egressgateway.istio-system.svc.cluster.local"
    for svc, host, port, route_kind in (("maps", "maps.googleapis.com", 443, "tls"),
                                        ("sftp", "sftp.partner.example.net", 22, "tcp")):
        gw = objs[("Gateway", "istio-system", f"{svc}-egress")]["spec"]
        (server,) = gw["servers"]
        assert gw["selector"] == {"istio": "egressgateway"}
        assert server["hosts"] == [host] and server["port"]["number"] == port
        assert server["tls"] == {"mode": "ISTIO_MUTUAL"}
        vs = objs[("VirtualService", "istio-system", f"{svc}-egress")]["spec"]
        assert vs["hosts"] == [host] and vs["gateways"] == ["mesh", f"{svc}-egress"]
        mesh_route = vs[route_kind][0]
        assert mesh_route["match"][0]["gateways"] == ["mesh"]
        assert mesh_route["route"][0]["destination"] == {"host": gsvc, "subset": svc, "port": {"number": port}}
        gateway_route = vs["tcp"][-1]  # the gateway ends the mutual TLS and forwards the stream
        assert gateway_route["match"][0]["gateways"] == [f"{svc}-egress"]
        assert gateway_route["route"][0]["destination"] == {"host": host, "port": {"number": port}}
        # one rule for the gateway host, a subset per service: rules of one host with different
        # exportTo are not merged (Istio 1.24 change notes), so a rule per service could hide subsets
        dr = objs[("DestinationRule", "istio-system", "istio-egressgateway-subsets")]["spec"]
        assert dr["host"] == gsvc and "exportTo" not in dr
        (subset,) = [s for s in dr["subsets"] if s["name"] == svc]
        assert subset["trafficPolicy"]["portLevelSettings"] == [
            {"port": {"number": port}, "tls": {"mode": "ISTIO_MUTUAL", "sni": host}}]


def test_the_gateway_originates_tls_with_the_services_destination_rule(tmp_path: Path) -> None:
    root = _estate(tmp_path, *CASES["gateway-http-origination"])
    objs = _objects(root)
    dr = objs[("DestinationRule", "istio-system", "stripe")]["spec"]
    assert dr["exportTo"] == ["."] and dr["trafficPolicy"]["tls"]["mode"] == "SIMPLE"
    assert ("DestinationRule", "egress", "stripe") not in objs  # sidecars send plain HTTP to the gateway
    # DENY for whoever is no consumer (an ALLOW on the shared gateway would refuse the services
    # without consumers), by SNI on every chain (a DENY rule's HTTP-only `hosts` is dropped on TCP
    # chains, which would deny other services' callers there), never by port (the gateway pod
    # listens on the targetPort)
    policy = objs[("AuthorizationPolicy", "istio-system", "stripe-egress")]["spec"]
    assert policy["action"] == "DENY"
    assert policy["rules"] == [{
        "from": [{"source": {"notNamespaces": ["maps"], "notPrincipals": ["dev.example.com/ns/shop/sa/cart"]}}],
        "when": [{"key": "connection.sni", "values": ["api.stripe.com"]}]}]
    se = objs[("ServiceEntry", "egress", "stripe")]["spec"]
    assert se["exportTo"] == ["istio-system", "maps", "shop"]  # the gateway and the consumers: nobody else
    vs = objs[("VirtualService", "istio-system", "stripe-egress")]["spec"]
    assert vs["exportTo"] == [".", "maps", "shop"]
    rule = objs[("DestinationRule", "istio-system", "istio-egressgateway-subsets")]["spec"]
    assert rule["exportTo"] == [".", "maps", "shop"]


def test_sidecars_list_exactly_what_each_consumer_namespace_may_call(tmp_path: Path) -> None:
    root = _estate(tmp_path, *CASES["direct-consumers"])
    objs = _objects(root)
    shop = objs[("Sidecar", "shop", "meshc-egress")]["spec"]
    assert shop["egress"] == [{"hosts": ["./*", "egress/api.example.com", "egress/open.example.com",
                                         "istio-system/*", "monitoring/*"]}]
    assert shop["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    assert ("Sidecar", "maps", "meshc-egress") not in objs  # maps is no consumer here


def test_waypoint_binding_and_policy(tmp_path: Path) -> None:
    root = _estate(tmp_path, *CASES["waypoint-destinationrule"])
    objs = _objects(root)
    se = objs[("ServiceEntry", "egress", "stripe")]
    assert se["metadata"]["labels"]["istio.io/use-waypoint"] == "egress-waypoint"
    assert se["metadata"]["labels"]["istio.io/use-waypoint-namespace"] == "istio-egress"
    assert "exportTo" not in se["spec"]
    policy = objs[("AuthorizationPolicy", "egress", "stripe-consumers")]["spec"]
    assert policy["targetRefs"] == [{"group": "networking.istio.io", "kind": "ServiceEntry", "name": "stripe"}]
    waypoint = objs[("Gateway", "istio-egress", "egress-waypoint")]
    assert waypoint["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert waypoint["spec"]["gatewayClassName"] == "istio-waypoint"


def test_backend_tls_policy_takes_tls_from_the_destination_rule(tmp_path: Path) -> None:
    root = _estate(tmp_path, *CASES["waypoint-backendtlspolicy"])
    objs = _objects(root)
    btp = objs[("BackendTLSPolicy", "istio-egress", "stripe")]["spec"]
    assert btp["validation"]["hostname"] == "api.stripe.com"
    assert btp["targetRefs"][0]["kind"] == "ServiceEntry"
    dr = objs[("DestinationRule", "istio-egress", "stripe")]["spec"]
    assert "tls" not in dr["trafficPolicy"] and dr["trafficPolicy"]["connectionPool"]
    se = objs[("ServiceEntry", "istio-egress", "stripe")]
    assert "istio.io/use-waypoint-namespace" not in se["metadata"]["labels"]  # same namespace


BAD: dict[str, tuple[str, str, str, str]] = {
    # (env.yaml, services, code, message part)
    "gateway in ambient": (AMBIENT_ENV % "", "egress: gateway", "V034", "runs the ambient data plane"),
    "waypoint with sidecars": (SIDECAR_ENV, "egress: waypoint", "V034", "needs the ambient data plane"),
    "udp through the gateway": (SIDECAR_ENV, "egress: gateway\n    ports: [{number: 53, protocol: UDP}]", "V035",
                                "UDP"),
    "tls hosts through the gateway": (
        SIDECAR_ENV, "egress: gateway\n    hosts: [a.example.com, b.example.com]", "V035", "only HTTP ports"),
    "exportTo hiding the gateway": (SIDECAR_ENV, "egress: gateway\n    exportTo: [\".\"]", "V035",
                                    "hides the service from the egress gateway"),
    "port the gateway does not expose": (
        SIDECAR_ENV.replace("selector: {istio: egressgateway}}", "selector: {istio: egressgateway}, ports: [80, 443]}"),
        "egress: gateway\n    ports: [{number: 5432, protocol: TCP}]", "V034", "not a port of the egress gateway"),
    "internal service through the gateway": (SIDECAR_ENV, "egress: gateway\n    location: internal\n"
                                             "    resolution: static\n    endpoints: [{address: 10.0.0.1}]", "V035",
                                             "part of the mesh"),
    "wildcard on a waypoint": (AMBIENT_ENV % "", "egress: waypoint\n    hosts: ['*.example.com']\n"
                               "    resolution: none", "V035", "wildcard host"),
    "mutual with BackendTLSPolicy": (
        AMBIENT_ENV % ", tlsOrigination: BackendTLSPolicy",
        "egress: waypoint\n    tls: {mode: mutual, clientCertificate: /c, privateKey: /k}", "V035",
        "BackendTLSPolicy"),
    "vm in ambient": (AMBIENT_ENV % "", "location: internal\n    resolution: static\n"
                      "    endpoints: [{address: 10.0.0.1}]", "V036", "VM workloads"),
    "unknown service account": (SIDECAR_ENV, "consumers: [{namespace: shop, serviceAccount: kart}]", "V037",
                                "did you mean 'cart'"),
    "consumers without waypoint in ambient": (AMBIENT_ENV % "", "consumers: [{namespace: shop}]", "V038",
                                              "waypoint"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_what_a_path_cannot_carry_is_an_error_at_the_declaration_and_nothing_is_written(
        name: str, tmp_path: Path) -> None:
    env, extra, code, part = BAD[name]
    services = ("services:\n  - name: api\n    hosts: [api.example.com]\n    resolution: dns\n"
                "    ports: [{number: 443, protocol: TLS}]\n")
    # later keys of the same mapping would be duplicates: the extra keys replace the defaults
    lines = {line.split(":")[0].strip(): line for line in services.splitlines()[2:]}
    for line in extra.splitlines():
        lines[line.split(":")[0].strip()] = "    " + line.strip()
    text = "services:\n  - name: api\n" + "\n".join(lines.values()) + "\n"
    root = _estate(tmp_path, env, text)
    outcome = api.build(root, checks=False, use_cache=False)
    found = [d for d in outcome.diagnostics if d.code == code]
    assert found and part in found[0].message, [str(d) for d in outcome.diagnostics]
    assert found[0].position is not None and found[0].position.file == "environments/base/api.yaml"
    assert found[0].hint
    assert not (root / "out" / "dev").exists()


def test_analyzers_catch_a_template_override_that_breaks_the_gateway_path(tmp_path: Path) -> None:
    """A repository's own gateway template that serves another port than the VirtualService
    routes: G001 at the declaration (the analyzers read what is emitted, not the declaration)."""
    root = _estate(tmp_path, *CASES["gateway-tls-tcp"])
    (root / "templates").mkdir()
    (root / "templates" / "gateway.json.j2").write_text(
        '{"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": {{ gw.name | json }}, '
        '"namespace": {{ gw.namespace | json }}, "labels": {{ gw.labels | json }}}, "spec": {"selector": '
        '{{ gw.selector | json }}, "servers": [{"port": {"number": 8443, "name": "tls-8443", "protocol": "TLS"}, '
        '"hosts": {{ gw.servers[0].hosts | json }}, "tls": {"mode": "ISTIO_MUTUAL"}}]}}\n')
    outcome = api.check(root, layers=("istio",), use_cache=False)
    found = [d for d in outcome.diagnostics if d.code == "G001"]
    assert found, [str(d) for d in outcome.diagnostics]
    assert all(d.position is not None and d.position.file == "environments/base/api.yaml" for d in found)


def test_the_gateway_host_is_a_kubernetes_service_not_an_unknown_host(tmp_path: Path) -> None:
    root = _estate(tmp_path, *CASES["gateway-http-origination"])
    outcome = api.check(root, layers=("istio",), use_cache=False)
    assert not [d for d in outcome.diagnostics if d.code in ("A403", "A404")], outcome.diagnostics


def _answers(env: str, host: str) -> dict[str, tuple[str, str]]:
    run = subprocess.run([sys.executable, "-m", "meshc", "who-can-reach", env, host, "--format", "json"],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    out = {}
    for a in json.loads(run.stdout)["answers"]:
        c = a["caller"]
        account = f"/{c['serviceAccount']}" if c["serviceAccount"] else ""
        who = "*" if c["anyOtherNamespace"] else c["namespace"] + account
        out[who] = (a["verdict"], a["path"])
    return out


def test_who_can_reach_answers_from_the_example_estates_objects() -> None:
    """prod: maps-google through the gateway for logistics and checkout's cart only (REGISTRY_ONLY:
    everyone else is blocked, or denied by the gateway's policy when they see the host); edge
    (ambient): Stripe through the waypoint for storefront's checkout account only."""
    prod = _answers("prod", "maps.googleapis.com")
    assert prod["logistics"] == ("allowed", "gateway")
    assert prod["checkout/cart"] == ("allowed", "gateway")
    assert prod["checkout/web"] == ("denied", "gateway")
    assert prod["payments"] == ("blocked", "none") and prod["*"] == ("blocked", "none")
    edge = _answers("edge", "api.stripe.com")
    assert edge["storefront/checkout"] == ("allowed", "waypoint")
    assert edge["storefront/web"] == ("denied", "waypoint") and edge["*"] == ("denied", "waypoint")


def test_declared_export_to_reaches_the_gateway_objects(tmp_path: Path) -> None:
    """A declared exportTo that includes the gateway's namespace: the gateway objects are exported
    to the same namespaces, `.` of the declaration being the service's own namespace."""
    root = _estate(tmp_path, SIDECAR_ENV, """\
services:
  - name: api
    hosts: [api.example.com]
    resolution: dns
    ports: [{number: 443, protocol: TLS}]
    egress: gateway
    exportTo: [".", istio-system, shop]
""")
    objs = _objects(root)
    assert objs[("ServiceEntry", "egress", "api")]["spec"]["exportTo"] == [".", "istio-system", "shop"]
    assert objs[("VirtualService", "istio-system", "api-egress")]["spec"]["exportTo"] == [".", "egress", "shop"]


def test_env_default_gateway_leaves_internal_services_direct(tmp_path: Path) -> None:
    """env.yaml egress.mode: gateway sends external services through the gateway; a VM service
    (location: internal) is part of the mesh and stays direct."""
    env = SIDECAR_ENV.replace("egress:\n", "egress:\n  mode: gateway\n")
    root = _estate(tmp_path, env, """\
services:
  - name: api
    hosts: [api.example.com]
    resolution: dns
    ports: [{number: 443, protocol: TLS}]
  - name: vm
    hosts: [vm.internal.example.com]
    location: internal
    resolution: static
    endpoints: [{address: 10.0.0.1}]
    ports: [{number: 8080, protocol: HTTP}]
""")
    kinds = {(k[0], k[2]) for k in _objects(root)}
    assert ("Gateway", "api-egress") in kinds and ("Gateway", "vm-egress") not in kinds


def test_lint_runs_the_egress_analyzers_on_hand_written_yaml(tmp_path: Path) -> None:
    """The gateway path of a golden, with the Gateway's port changed by hand: G001 at that YAML."""
    text = (GOLDENS / "gateway-tls-tcp.yaml").read_text().replace("number: 443\n      protocol: TLS",
                                                                    "number: 8443\n      protocol: TLS")
    assert "number: 8443" in text
    (tmp_path / "live.yaml").write_text(text)
    outcome = api.lint(tmp_path, [str(tmp_path / "live.yaml")])
    found = [d for d in outcome.diagnostics if d.code == "G001"]
    assert found and all(d.position is not None and d.position.file.endswith("live.yaml") for d in found), \
        [str(d) for d in outcome.diagnostics]
