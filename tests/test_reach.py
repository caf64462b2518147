"""Who can reach what (meshc.proxy.reach), `meshc who-can-reach` / `what-can-reach`, and the
diff's reach flags.

The model's cases are Istio's documented behaviour, each row citing the page it comes from; the
objects are hand-built in the shapes docs/egress.md gives (the expand side is tested elsewhere).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from meshc.cli.main import main
from meshc.diff.risk import find_risks
from meshc.diff.run import compare
from meshc.diff.sides import resolve_side
from meshc.emit.bundle import finish, write_bundle
from meshc.files.yamlout import dump
from meshc.proxy.reach import OTHER, Caller, Mesh, covers, reach, value_matches

SE_DOC = "https://istio.io/latest/docs/reference/config/networking/service-entry/#ServiceEntry"  # exportTo
VS_DOC = "https://istio.io/latest/docs/reference/config/networking/virtual-service/#VirtualService"  # exportTo
SIDECAR_DOC = "https://istio.io/latest/docs/reference/config/networking/sidecar/"  # IstioEgressListener.hosts
EGRESS_CONTROL = "https://istio.io/latest/docs/tasks/traffic-management/egress/egress-control/"
EGRESS_GATEWAY = "https://istio.io/latest/docs/tasks/traffic-management/egress/egress-gateway/"
AUTHZ_DOC = "https://istio.io/latest/docs/reference/config/security/authorization-policy/"
CONDITIONS_DOC = "https://istio.io/latest/docs/reference/config/security/conditions/"  # connection.sni
AMBIENT_EGRESS = "https://istio.io/latest/docs/ambient/usage/egress-gateway/"
WAYPOINT_DOC = "https://istio.io/latest/docs/ambient/usage/waypoint/"  # istio.io/use-waypoint
AMBIENT_DATAPLANE = "https://istio.io/latest/docs/ambient/architecture/data-plane/"
HOST_GO = "istio/istio pkg/config/host/name.go (Name.Matches)"

TD = "prod.mesh.example.com"
GSVC = "istio-egressgateway.istio-system.svc.cluster.local"


# --- objects, shaped as docs/egress.md says meshc emits them ----------------------------------

def se(name: str, ns: str, hosts: list[str], export: list[str] | None = None, ports: tuple[int, ...] = (443,),
       labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"hosts": hosts, "ports": [{"number": p, "name": f"tls-{p}", "protocol": "TLS"}
                                                       for p in ports],
                            "location": "MESH_EXTERNAL", "resolution": "DNS"}
    if export is not None:
        spec["exportTo"] = export
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": meta, "spec": spec}


def sidecar(ns: str, hosts: list[str], mode: str | None = None, selector: dict[str, str] | None = None,
            name: str = "default") -> dict[str, Any]:
    spec: dict[str, Any] = {"egress": [{"hosts": hosts}]}
    if mode:
        spec["outboundTrafficPolicy"] = {"mode": mode}
    if selector:
        spec["workloadSelector"] = {"labels": selector}
    return {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


def gateway_service(host: str = "api.stripe.com", consumers: list[dict[str, Any]] | None = None,
                    export: list[str] | None = None, sni: str | None = None) -> list[dict[str, Any]]:
    """docs/egress.md `egress: gateway` for a TLS port 443 (the egress-gateway task's shapes):
    Gateway, VirtualService [mesh, gw], the gateway DestinationRule and the ALLOW policy."""
    gw = "payments-stripe-egress"
    objs: list[dict[str, Any]] = [
        {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
         "metadata": {"name": gw, "namespace": "istio-system"},
         "spec": {"selector": {"istio": "egressgateway"}, "servers": [
             {"port": {"number": 443, "name": "tls-443", "protocol": "TLS"}, "hosts": [host],
              "tls": {"mode": "PASSTHROUGH"}}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": gw, "namespace": "istio-system"},
         "spec": {"hosts": [host], "gateways": ["mesh", gw], **({"exportTo": export} if export else {}), "tls": [
             {"match": [{"gateways": ["mesh"], "port": 443, "sniHosts": [host]}],
              "route": [{"destination": {"host": GSVC, "subset": "payments-stripe", "port": {"number": 443}}}]},
             {"match": [{"gateways": [gw], "port": 443, "sniHosts": [host]}],
              "route": [{"destination": {"host": host, "port": {"number": 443}}}]}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "payments-stripe-egress-gateway", "namespace": "istio-system"},
         "spec": {"host": GSVC, "subsets": [{"name": "payments-stripe"}]}},
    ]
    if consumers is not None:
        rule: dict[str, Any] = {"to": [{"operation": {"ports": ["443"]}}],
                                "when": [{"key": "connection.sni", "values": [sni or host]}]}
        if consumers:
            rule["from"] = consumers
        objs.append({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                     "metadata": {"name": gw, "namespace": "istio-system"},
                     "spec": {"selector": {"matchLabels": {"istio": "egressgateway"}}, "action": "ALLOW",
                              "rules": [rule]}})
    return objs


CONSUMERS = [{"source": {"namespaces": ["checkout"]}}, {"source": {"principals": [f"{TD}/ns/billing/sa/invoicer"]}}]
CONSUMER_SIDECARS = [sidecar(ns, ["./*", "istio-system/*", "egress/api.stripe.com", f"istio-system/{GSVC}"],
                             name="meshc-egress") for ns in ("checkout", "billing")]


def waypoint_service(consumers: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """docs/egress.md `egress: waypoint`: the ServiceEntry bound to the waypoint, the policy by targetRefs."""
    objs = [se("payments-stripe", "istio-egress", ["api.stripe.com"],
               labels={"istio.io/use-waypoint": "waypoint"})]
    if consumers is not None:
        objs.append({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                     "metadata": {"name": "payments-stripe-consumers", "namespace": "istio-egress"},
                     "spec": {"targetRefs": [{"group": "networking.istio.io", "kind": "ServiceEntry",
                                              "name": "payments-stripe"}],
                              "action": "ALLOW", "rules": [{"from": consumers}]}})
    return objs


# --- the model, case by case ------------------------------------------------------------------

STRIPE = "api.stripe.com"
CASES: list[tuple[str, str, list[dict[str, Any]], str, str, str, Caller, str, str, str]] = [
    # id, doc, objects, mesh policy, dataplane, host, caller, verdict, path, a deciding object
    ("export-dot-own-namespace", SE_DOC, [se("s", "egress", [STRIPE], ["."])], "REGISTRY_ONLY", "sidecar",
     STRIPE, Caller("egress"), "allowed", "direct", "ServiceEntry/egress/s"),
    ("export-dot-other-namespace-registry-only", f"{SE_DOC} {EGRESS_CONTROL}", [se("s", "egress", [STRIPE], ["."])],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("checkout"), "blocked", "none", "ServiceEntry/egress/s"),
    ("export-dot-other-namespace-allow-any", f"{SE_DOC} {EGRESS_CONTROL}", [se("s", "egress", [STRIPE], ["."])],
     "ALLOW_ANY", "sidecar", STRIPE, Caller("checkout"), "bypass", "passthrough", "ServiceEntry/egress/s"),
    ("export-star", SE_DOC, [se("s", "egress", [STRIPE], ["*"])], "REGISTRY_ONLY", "sidecar",
     STRIPE, Caller(OTHER), "allowed", "direct", "ServiceEntry/egress/s"),
    ("export-unset-is-star", SE_DOC, [se("s", "egress", [STRIPE])], "REGISTRY_ONLY", "sidecar",
     STRIPE, Caller(OTHER), "allowed", "direct", "ServiceEntry/egress/s"),
    ("export-named-namespace", SE_DOC, [se("s", "egress", [STRIPE], ["checkout"])], "REGISTRY_ONLY", "sidecar",
     STRIPE, Caller("checkout"), "allowed", "direct", "ServiceEntry/egress/s"),
    ("export-named-excludes-own-namespace", SE_DOC, [se("s", "egress", [STRIPE], ["checkout"])], "REGISTRY_ONLY",
     "sidecar", STRIPE, Caller("egress"), "blocked", "none", "ServiceEntry/egress/s"),
    ("export-tilde-hides", SE_DOC, [se("s", "egress", [STRIPE], ["~"])], "REGISTRY_ONLY", "sidecar",
     STRIPE, Caller("egress"), "blocked", "none", "ServiceEntry/egress/s"),
    ("sidecar-dot-star-only-own-namespace", SIDECAR_DOC,
     [se("s", "egress", [STRIPE]), sidecar("checkout", ["./*", "istio-system/*"])], "REGISTRY_ONLY", "sidecar",
     STRIPE, Caller("checkout"), "blocked", "none", "Sidecar/checkout/default"),
    ("sidecar-istio-system-star", SIDECAR_DOC,
     [se("s", "istio-system", [STRIPE]), sidecar("checkout", ["./*", "istio-system/*"])], "REGISTRY_ONLY",
     "sidecar", STRIPE, Caller("checkout"), "allowed", "direct", "Sidecar/checkout/default"),
    ("sidecar-ns-host", SIDECAR_DOC, [se("s", "egress", [STRIPE]), sidecar("checkout", ["./*", f"egress/{STRIPE}"])],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("checkout"), "allowed", "direct", "Sidecar/checkout/default"),
    ("sidecar-ns-host-wrong-namespace", SIDECAR_DOC,
     [se("s", "egress", [STRIPE]), sidecar("checkout", ["./*", f"other/{STRIPE}"])],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("checkout"), "blocked", "none", "Sidecar/checkout/default"),
    ("sidecar-any-namespace-wildcard-host", f"{SIDECAR_DOC} {HOST_GO}",
     [se("s", "egress", [STRIPE]), sidecar("checkout", ["*/*.stripe.com"])],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("checkout"), "allowed", "direct", "Sidecar/checkout/default"),
    ("sidecar-wildcard-service-entry-specific-host", f"{SIDECAR_DOC} {HOST_GO}",
     [se("g", "egress", ["*.googleapis.com"]), sidecar("checkout", ["egress/maps.googleapis.com"])],
     "REGISTRY_ONLY", "sidecar", "maps.googleapis.com", Caller("checkout"), "allowed", "direct",
     "Sidecar/checkout/default"),
    ("sidecar-wildcard-service-entry-other-host", f"{SIDECAR_DOC} {HOST_GO}",
     [se("g", "egress", ["*.googleapis.com"]), sidecar("checkout", ["egress/maps.googleapis.com"])],
     "REGISTRY_ONLY", "sidecar", "storage.googleapis.com", Caller("checkout"), "blocked", "none",
     "Sidecar/checkout/default"),
    ("sidecar-tilde-imports-nothing", SIDECAR_DOC, [se("s", "egress", [STRIPE]), sidecar("checkout", ["~/*"])],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("checkout"), "blocked", "none", "Sidecar/checkout/default"),
    ("sidecar-outbound-policy-overrides-mesh", f"{SIDECAR_DOC}#OutboundTrafficPolicy",
     [se("s", "egress", [STRIPE]), sidecar("checkout", ["./*"], mode="ALLOW_ANY")],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("checkout"), "bypass", "passthrough", "Sidecar/checkout/default"),
    ("sidecar-registry-only-overrides-allow-any", f"{SIDECAR_DOC}#OutboundTrafficPolicy",
     [se("s", "egress", [STRIPE]), sidecar("checkout", ["./*"], mode="REGISTRY_ONLY")],
     "ALLOW_ANY", "sidecar", STRIPE, Caller("checkout"), "blocked", "none", "Sidecar/checkout/default"),
    ("sidecar-root-namespace-default", SIDECAR_DOC,
     [se("s", "egress", [STRIPE]), sidecar("istio-system", ["./*", "istio-system/*"])],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("checkout"), "blocked", "none", "Sidecar/istio-system/default"),
    ("sidecar-own-namespace-wins-over-root", SIDECAR_DOC,
     [se("s", "egress", [STRIPE]), sidecar("istio-system", ["./*"]), sidecar("checkout", ["egress/*"])],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("checkout"), "allowed", "direct", "Sidecar/checkout/default"),
    ("sidecar-with-workload-selector-is-not-the-namespace-default", SIDECAR_DOC,
     [se("s", "egress", [STRIPE]), sidecar("checkout", ["./*"], selector={"app": "cart"})],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("checkout"), "allowed", "direct", "ServiceEntry/egress/s"),
    ("gateway-allowed-namespace", f"{EGRESS_GATEWAY} {AUTHZ_DOC}",
     [se("payments-stripe", "egress", [STRIPE]), *gateway_service(consumers=CONSUMERS), *CONSUMER_SIDECARS],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("checkout"), "allowed", "gateway",
     "AuthorizationPolicy/istio-system/payments-stripe-egress"),
    ("gateway-allowed-principal", f"{EGRESS_GATEWAY} {AUTHZ_DOC}",
     [se("payments-stripe", "egress", [STRIPE]), *gateway_service(consumers=CONSUMERS), *CONSUMER_SIDECARS],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("billing", "invoicer"), "allowed", "gateway",
     "AuthorizationPolicy/istio-system/payments-stripe-egress"),
    ("gateway-other-service-account-denied", f"{EGRESS_GATEWAY} {AUTHZ_DOC}",
     [se("payments-stripe", "egress", [STRIPE]), *gateway_service(consumers=CONSUMERS), *CONSUMER_SIDECARS],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("billing", "web"), "denied", "gateway",
     "AuthorizationPolicy/istio-system/payments-stripe-egress"),
    ("gateway-other-namespace-denied-when-visible", f"{EGRESS_GATEWAY} {AUTHZ_DOC}",
     [se("payments-stripe", "egress", [STRIPE]), *gateway_service(consumers=CONSUMERS)],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller(OTHER), "denied", "gateway",
     "AuthorizationPolicy/istio-system/payments-stripe-egress"),
    ("gateway-no-policy-allows", f"{EGRESS_GATEWAY} {AUTHZ_DOC}",
     [se("payments-stripe", "egress", [STRIPE]), *gateway_service(consumers=None)],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller(OTHER), "allowed", "gateway",
     "Gateway/istio-system/payments-stripe-egress"),
    ("gateway-empty-from-allows-anyone", f"{EGRESS_GATEWAY} {AUTHZ_DOC}",
     [se("payments-stripe", "egress", [STRIPE]), *gateway_service(consumers=[])],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller(OTHER), "allowed", "gateway",
     "AuthorizationPolicy/istio-system/payments-stripe-egress"),
    ("gateway-sni-condition-refuses-other-host", f"{CONDITIONS_DOC} {AUTHZ_DOC}",
     [se("payments-stripe", "egress", ["api.stripe.com", "files.stripe.com"]),
      *gateway_service(host="*.stripe.com", consumers=[], sni="api.stripe.com")],
     "REGISTRY_ONLY", "sidecar", "files.stripe.com", Caller("checkout"), "denied", "gateway",
     "AuthorizationPolicy/istio-system/payments-stripe-egress"),
    ("gateway-route-not-exported-goes-direct", f"{VS_DOC} {EGRESS_GATEWAY}",
     [se("payments-stripe", "egress", [STRIPE]), *gateway_service(consumers=CONSUMERS, export=[".", "checkout"])],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("egress"), "allowed", "direct",
     "VirtualService/istio-system/payments-stripe-egress"),
    ("gateway-bypassed-under-allow-any-when-not-visible", f"{EGRESS_CONTROL} {EGRESS_GATEWAY}",
     [se("payments-stripe", "egress", [STRIPE], [".", "checkout"]), *gateway_service(consumers=CONSUMERS)],
     "ALLOW_ANY", "sidecar", STRIPE, Caller("elsewhere"), "bypass", "passthrough",
     "ServiceEntry/egress/payments-stripe"),
    ("gateway-service-not-imported-by-sidecar", f"{SIDECAR_DOC} {EGRESS_GATEWAY}",
     [se("payments-stripe", "egress", [STRIPE]), *gateway_service(consumers=CONSUMERS),
      sidecar("checkout", ["./*", "egress/api.stripe.com", "istio-system/api.stripe.com"])],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("checkout"), "blocked", "none", "Sidecar/checkout/default"),
    ("deny-policy-wins", AUTHZ_DOC,
     [se("payments-stripe", "egress", [STRIPE]), *gateway_service(consumers=[]),
      {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
       "metadata": {"name": "no-billing", "namespace": "istio-system"},
       "spec": {"selector": {"matchLabels": {"istio": "egressgateway"}}, "action": "DENY",
                "rules": [{"from": [{"source": {"namespaces": ["billing"]}}]}]}}],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("billing"), "denied", "gateway",
     "AuthorizationPolicy/istio-system/no-billing"),
    ("allow-nothing-policy-denies", AUTHZ_DOC,
     [se("payments-stripe", "egress", [STRIPE]), *gateway_service(consumers=None),
      {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
       "metadata": {"name": "allow-nothing", "namespace": "istio-system"}, "spec": {}}],
     "REGISTRY_ONLY", "sidecar", STRIPE, Caller("checkout"), "denied", "gateway",
     "AuthorizationPolicy/istio-system/allow-nothing"),
    ("ambient-waypoint-consumer-allowed", f"{AMBIENT_EGRESS} {WAYPOINT_DOC} {AUTHZ_DOC}",
     waypoint_service([{"source": {"principals": [f"{TD}/ns/storefront/sa/checkout"]}}]), "REGISTRY_ONLY",
     "ambient", STRIPE, Caller("storefront", "checkout"), "allowed", "waypoint",
     "AuthorizationPolicy/istio-egress/payments-stripe-consumers"),
    ("ambient-waypoint-other-denied", f"{AMBIENT_EGRESS} {AUTHZ_DOC}",
     waypoint_service([{"source": {"principals": [f"{TD}/ns/storefront/sa/checkout"]}}]), "REGISTRY_ONLY",
     "ambient", STRIPE, Caller("storefront"), "denied", "waypoint",
     "AuthorizationPolicy/istio-egress/payments-stripe-consumers"),
    ("ambient-waypoint-without-policy-allows", AMBIENT_EGRESS, waypoint_service(None), "REGISTRY_ONLY", "ambient",
     STRIPE, Caller(OTHER), "allowed", "waypoint", "ServiceEntry/istio-egress/payments-stripe"),
    ("ambient-no-waypoint-label-direct", AMBIENT_DATAPLANE, [se("s", "egress", [STRIPE])], "REGISTRY_ONLY",
     "ambient", STRIPE, Caller("storefront"), "allowed", "direct", "ServiceEntry/egress/s"),
    ("ambient-ignores-sidecar-resources", f"{AMBIENT_DATAPLANE} {SIDECAR_DOC}",
     [se("s", "egress", [STRIPE]), sidecar("storefront", ["~/*"])], "REGISTRY_ONLY", "ambient",
     STRIPE, Caller("storefront"), "allowed", "direct", "ServiceEntry/egress/s"),
    ("ambient-unregistered-host-passes-through", AMBIENT_DATAPLANE, [se("s", "egress", [STRIPE], ["."])],
     "REGISTRY_ONLY", "ambient", STRIPE, Caller("storefront"), "bypass", "passthrough", "ServiceEntry/egress/s"),
]


@pytest.mark.parametrize(("doc", "objects", "policy", "dataplane", "host", "caller", "verdict", "path", "decider"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_istio_documented_cases(doc: str, objects: list[dict[str, Any]], policy: str, dataplane: str, host: str,
                                caller: Caller, verdict: str, path: str, decider: str) -> None:
    assert doc.startswith(("https://istio.io/", "istio/istio"))
    answer = reach(objects, host, caller, outbound_policy=policy, trust_domain=TD, dataplane=dataplane)
    shown = "\n".join(map(str, answer.reasons))
    assert (answer.verdict, answer.path) == (verdict, path), shown
    assert any(r.object == decider for r in answer.reasons), shown


def test_reasons_name_the_fields_that_decided() -> None:
    objects = [se("payments-stripe", "egress", [STRIPE]), *gateway_service(consumers=CONSUMERS), *CONSUMER_SIDECARS]
    mesh = Mesh(objects, "REGISTRY_ONLY", TD)
    denied = mesh.reach(STRIPE, Caller("billing"))
    text = "\n".join(map(str, denied.reasons))
    assert "ServiceEntry/egress/payments-stripe spec.exportTo: unset" in text
    assert "Sidecar/billing/meshc-egress spec.egress[].hosts: egress/api.stripe.com imports" in text
    assert "VirtualService/istio-system/payments-stripe-egress spec.tls[0].route[0].destination.host" in text
    assert "source.principals [prod.mesh.example.com/ns/billing/sa/invoicer] lacks" in text
    assert OTHER not in text  # "any other" callers are spelled out
    allowed = mesh.reach(STRIPE, Caller("billing", "invoicer"))
    assert "connection.sni [api.stripe.com]" in str(allowed.reasons[-1])
    data = allowed.to_json()
    assert data["verdict"] == "allowed" and data["caller"] == {"namespace": "billing", "anyOtherNamespace": False,
                                                               "serviceAccount": "invoicer"}
    assert all(set(r) == {"object", "field", "says"} for r in data["reasons"])


def test_who_and_what_list_every_known_caller_and_host() -> None:
    objects = [se("payments-stripe", "egress", [STRIPE]), se("maps", "egress", ["maps.googleapis.com"], ["."]),
               *gateway_service(consumers=CONSUMERS), *CONSUMER_SIDECARS]
    mesh = Mesh(objects, "REGISTRY_ONLY", TD, known=[Caller("payments", "refunds")])
    who = {str(a.caller): (a.verdict, a.path) for a in mesh.who_can_reach(STRIPE)}
    assert who == {"billing": ("denied", "gateway"), "billing sa invoicer": ("allowed", "gateway"),
                   "checkout": ("allowed", "gateway"), "egress": ("denied", "gateway"),
                   "istio-system": ("denied", "gateway"), "payments": ("denied", "gateway"),
                   "payments sa refunds": ("denied", "gateway"), "(any other namespace)": ("denied", "gateway")}
    what = {a.host: a.verdict for a in mesh.what_can_reach("checkout")}
    assert what == {STRIPE: "allowed", "maps.googleapis.com": "blocked"}
    assert mesh.knows("api.stripe.com") and not mesh.knows("api.stripe.co")


def test_normalised_diff_bodies_read_like_lists() -> None:
    """The diff hands keyed lists as mappings (meshc.diff.objects.normalise); the model reads both."""
    body = se("s", "egress", [STRIPE], ["."])
    body["spec"]["hosts"] = {STRIPE: STRIPE}
    body["spec"]["exportTo"] = {".": "."}
    assert reach([body], STRIPE, Caller("egress"), outbound_policy="REGISTRY_ONLY").verdict == "allowed"
    assert reach([body], STRIPE, Caller("checkout"), outbound_policy="REGISTRY_ONLY").verdict == "blocked"


@pytest.mark.parametrize(("pattern", "host", "expected"), [
    ("*.example.com", "a.example.com", True), ("*.example.com", "a.b.example.com", True),
    ("*.example.com", "example.com", False), ("*", "anything.io", True), ("a.example.com", "A.example.com", True),
    ("*.example.com", "*.b.example.com", True), ("*.b.example.com", "*.example.com", False),
])
def test_host_patterns_as_istio(pattern: str, host: str, expected: bool) -> None:
    """pkg/config/host/name.go: a wildcard covers every name below its suffix, not the suffix itself."""
    assert covers(pattern, host) is expected


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("*", "x", True), ("td/ns/a/sa/*", "td/ns/a/sa/b", True), ("*/sa/b", "td/ns/a/sa/b", True),
    ("td/ns/a/sa/b", "td/ns/a/sa/c", False), ("api.*", "api.stripe.com", True),
])
def test_policy_values_match_exact_prefix_suffix(pattern: str, value: str, expected: bool) -> None:
    """AuthorizationPolicy: exact, prefix ("abc*"), suffix ("*abc") or presence ("*") (istio.io reference)."""
    assert value_matches(pattern, value) is expected


# --- the commands -----------------------------------------------------------------------------

ENV = """name: dev
namespace: egress
trustDomain: dev.example.com
proxy:
  outboundTrafficPolicy: REGISTRY_ONLY
"""
SERVICES = """services:
  - name: payments-stripe
    owner: team-payments
    hosts: [api.stripe.com]
    resolution: dns
    ports: [{number: 443, protocol: TLS}]
    exportTo: [".", checkout]
  - name: maps-google
    owner: team-logistics
    hosts: [maps.googleapis.com]
    resolution: dns
    ports: [{number: 443, protocol: TLS}]
"""


@pytest.fixture
def estate(tmp_path: Path) -> Path:
    root = tmp_path / "estate"
    (root / "environments/dev").mkdir(parents=True)
    (root / "environments/base").mkdir(parents=True)
    (root / "environments/dev/env.yaml").write_text(ENV)
    (root / "environments/base/saas.yaml").write_text(SERVICES)
    (root / "meshc.yaml").write_text("")
    return root


def _run(root: Path, *args: str) -> Any:
    return CliRunner().invoke(main, [*args, "-C", str(root)])


def test_who_can_reach_text_and_json(estate: Path) -> None:
    text = _run(estate, "who-can-reach", "dev", "api.stripe.com")
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0] == "who can reach api.stripe.com in dev (dataplane sidecar, outbound policy REGISTRY_ONLY):"
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:] if line.startswith("  ") and
            not line.startswith("      ")}
    assert rows["checkout"] == ["allowed", "direct"] and rows["egress"] == ["allowed", "direct"]
    assert "ServiceEntry/egress/payments-stripe spec.exportTo: [., checkout]: exported to checkout" in text.stdout
    assert "(any other namespace)  blocked  none" in text.stdout and lines[-1] == "2 allowed, 1 blocked"
    data = json.loads(_run(estate, "who-can-reach", "dev", "api.stripe.com", "--format", "json").stdout)
    assert (data["environment"], data["host"], data["outboundPolicy"], data["trustDomain"]) == (
        "dev", "api.stripe.com", "REGISTRY_ONLY", "dev.example.com")
    verdicts = {(a["caller"]["namespace"], a["caller"]["anyOtherNamespace"]): a["verdict"] for a in data["answers"]}
    assert verdicts == {("checkout", False): "allowed", ("egress", False): "allowed", (None, True): "blocked"}


def test_what_can_reach_with_a_service_account(estate: Path) -> None:
    result = _run(estate, "what-can-reach", "dev", "checkout", "--service-account", "web", "--brief")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == ["  api.stripe.com       allowed  direct",
                                              "  maps.googleapis.com  allowed  direct", "2 allowed"]
    stranger = _run(estate, "what-can-reach", "dev", "billing", "--format", "json")
    assert "no object of dev mentions namespace 'billing'" in stranger.stderr
    answers = json.loads(stranger.stdout)["answers"]
    assert {a["host"]: a["verdict"] for a in answers} == {"api.stripe.com": "blocked",
                                                          "maps.googleapis.com": "allowed"}


def test_unknown_env_or_host_exits_2_with_a_suggestion(estate: Path) -> None:
    host = _run(estate, "who-can-reach", "dev", "api.stripe.co")
    assert host.exit_code == 2 and "unknown host 'api.stripe.co' in dev" in host.stderr
    assert "did you mean 'api.stripe.com'?" in host.stderr
    env = _run(estate, "who-can-reach", "dve", "api.stripe.com")
    assert env.exit_code == 2 and "unknown environment 'dve'" in env.stderr and "'dev'" in env.stderr
    assert _run(estate, "what-can-reach", "prod", "checkout").exit_code == 2


# --- the diff's reach flags -------------------------------------------------------------------

def _write(root: Path, objects: list[dict[str, Any]]) -> Path:
    files: dict[str, list[str]] = {}
    entries = []
    for body in objects:
        meta = body["metadata"]
        text = dump(body)
        file = f"{meta['namespace']}/{meta['name']}.yaml"
        files.setdefault(file, []).append(text)
        service = "" if body["kind"] == "Sidecar" else "payments-stripe"
        entries.append({"kind": body["kind"], "namespace": meta["namespace"], "name": meta["name"], "file": file,
                        "sha256": hashlib.sha256(text.encode()).hexdigest(), "service": service,
                        "source": "environments/base/saas.yaml:3:5"})
    data = {rel: ("---\n" + "---\n".join(docs)).encode() for rel, docs in files.items()}
    return write_bundle(root, finish("prod", data, entries, {"production": False}))


def _flags(tmp_path: Path, before: list[dict[str, Any]], after: list[dict[str, Any]],
           with_sides: bool = True) -> list[tuple[str, str, str]]:
    _write(tmp_path / "old", before)
    _write(tmp_path / "new", after)
    base = resolve_side(str(tmp_path / "old"), "base", tmp_path, ())
    head = resolve_side(str(tmp_path / "new"), "head", tmp_path, ())
    flags = find_risks(compare(base, head), (base, head) if with_sides else None)
    return [(f.code, f.object, f.message) for f in flags if f.code.startswith("reach-")]


def test_a_consumer_added_to_the_gateway_policy_opens_reach(tmp_path: Path) -> None:
    """Only the AuthorizationPolicy changes; the unchanged Gateway, VirtualService and Sidecars come
    from the sides, so the flag sees billing's callers go from denied to allowed at the gateway."""
    stripe = se("payments-stripe", "egress", [STRIPE])
    before = [stripe, *gateway_service(consumers=CONSUMERS), *CONSUMER_SIDECARS]
    after = [stripe, *gateway_service(consumers=[*CONSUMERS, {"source": {"namespaces": ["billing"]}}]),
             *CONSUMER_SIDECARS]
    ((code, obj, message),) = _flags(tmp_path, before, after)
    assert (code, obj) == ("reach-opened", "AuthorizationPolicy/istio-system/payments-stripe-egress")
    assert message.startswith("who can reach api.stripe.com changes: billing: denied (gateway) -> allowed (gateway)")
    assert "source.namespaces [billing]" in message
    assert "billing sa invoicer" not in message  # it could already


def test_exporting_to_everyone_opens_reach_under_registry_only(tmp_path: Path) -> None:
    ((code, obj, message),) = _flags(tmp_path, [se("payments-stripe", "egress", [STRIPE], [".", "checkout"])],
                                     [se("payments-stripe", "egress", [STRIPE], ["*"])])
    assert (code, obj) == ("reach-opened", "ServiceEntry/egress/payments-stripe")
    assert ("(any other namespace): blocked (none) -> allowed (direct) (mesh outbound policy REGISTRY_ONLY)"
            in message)
    assert "bypass (passthrough) -> allowed (direct) (mesh outbound policy ALLOW_ANY)" in message


def test_narrowing_is_a_change_and_an_unchanged_answer_raises_nothing(tmp_path: Path) -> None:
    stripe = se("payments-stripe", "egress", [STRIPE])
    before = [stripe, *gateway_service(consumers=CONSUMERS), *CONSUMER_SIDECARS]
    after = [stripe, *gateway_service(consumers=CONSUMERS[:1]), *CONSUMER_SIDECARS]
    ((code, _, message),) = _flags(tmp_path / "a", before, after)
    assert code == "reach-changed" and "billing sa invoicer: allowed (gateway) -> denied (gateway)" in message
    ported = [se("payments-stripe", "egress", [STRIPE], ports=(443, 8443)), *gateway_service(consumers=CONSUMERS),
              *CONSUMER_SIDECARS]
    assert _flags(tmp_path / "b", before, ported) == []


def test_without_the_sides_only_the_changed_objects_are_compared(tmp_path: Path) -> None:
    """find_risks(cs) alone sees the changed objects only: an exportTo change is still judged,
    a policy change whose gateway route is unchanged is not."""
    assert _flags(tmp_path / "a", [se("payments-stripe", "egress", [STRIPE], ["."])],
                  [se("payments-stripe", "egress", [STRIPE])], with_sides=False)[0][0] == "reach-opened"
    stripe = se("payments-stripe", "egress", [STRIPE])
    assert _flags(tmp_path / "b", [stripe, *gateway_service(consumers=CONSUMERS)],
                  [stripe, *gateway_service(consumers=CONSUMERS[:1])], with_sides=False) == []


def test_http_only_fields_on_a_tcp_host_as_istiod_builds_them() -> None:
    """Every port of the host is TLS (a TCP chain at the gateway): istiod's authz builder drops
    HTTP-only fields from a DENY rule, so a DENY naming another host by `operation.hosts` refuses
    this one's callers too; and it leaves out an ALLOW rule that has them, which then allows
    nothing (pilot/pkg/security/authz/model/model.go: "must not be used in TCP")."""
    objects = [se("s", "egress", [STRIPE]), *gateway_service()]
    deny = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "other-egress", "namespace": "istio-system"},
            "spec": {"selector": {"matchLabels": {"istio": "egressgateway"}}, "action": "DENY",
                     "rules": [{"from": [{"source": {"notNamespaces": ["billing"]}}],
                                "to": [{"operation": {"hosts": ["other.example.com"]}}]}]}}
    answer = reach([*objects, deny], STRIPE, Caller("checkout"), outbound_policy="ALLOW_ANY", trust_domain=TD)
    assert answer.verdict == "denied", "\n".join(map(str, answer.reasons))
    allow = {**deny, "spec": {**deny["spec"], "action": "ALLOW",
                              "rules": [{"to": [{"operation": {"hosts": [STRIPE]}}]}]}}
    answer = reach([*objects, allow], STRIPE, Caller("checkout"), outbound_policy="ALLOW_ANY", trust_domain=TD)
    assert answer.verdict == "denied" and "TCP" in "\n".join(map(str, answer.reasons))
