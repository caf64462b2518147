"""The egress path of a service and its consumers, as views for the templates (docs/egress.md).

`egress: gateway` (sidecar mode, Istio's egress-gateway task): a Gateway, a VirtualService per
host (mesh -> gateway subset, gateway -> host), a DestinationRule for the gateway host with the
service's subset (ISTIO_MUTUAL to the gateway) and an AuthorizationPolicy on the gateway's pods.
`egress: waypoint` (ambient, Istio's ambient egress guide): the ServiceEntry carries
`istio.io/use-waypoint`; TLS origination by DestinationRule or BackendTLSPolicy; an
AuthorizationPolicy targeting the ServiceEntry when consumers are declared.
Per environment: a Sidecar per consumer namespace (sidecar data plane, REGISTRY_ONLY) and the
waypoint Gateway when meshc manages it.
All decisions are made here; templates only lay the views out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from meshc.model.core import EnvSettings, Origin, Service
from meshc.model.values import HTTP_FAMILY

# The application's own TLS: sidecars route it by SNI; the gateway ends only the mutual TLS around
# it and forwards the stream (a `tcp` route) to the host.
APP_TLS = {"HTTPS", "TLS"}
USE_WAYPOINT = "istio.io/use-waypoint"
USE_WAYPOINT_NS = "istio.io/use-waypoint-namespace"
SIDECAR_NAME = "meshc-egress"
_UNSAFE = re.compile(r"[^a-z0-9]+")


def host_slug(host: str) -> str:
    return _UNSAFE.sub("-", host.lower()).strip("-")


def export_list(svc: Service, env: EnvSettings, own: str) -> list[str]:
    """exportTo of an object of `svc` living in namespace `own`: as declared; else, with
    consumers, the consumer namespaces and, through the gateway, its namespace (`.` for `own`):
    no namespace sees the host unless it may call it, so none can route around the gateway;
    else none (visible to all). Waypoint-bound objects never carry exportTo (ztunnel ignores it)."""
    if svc.export_to:
        if own == svc.namespace or "*" in svc.export_to:
            return list(svc.export_to)
        # an object of the gateway's namespace: "." of the declaration is the service's namespace
        named = {svc.namespace if e == "." else e for e in svc.export_to} | {own}
        return ["."] + sorted(named - {own})
    if not svc.consumers or svc.egress == "waypoint":
        return []
    spaces = {c.namespace for c in svc.consumers}
    if svc.egress == "gateway" and env.egress.gateway is not None:
        spaces.add(env.egress.gateway.namespace)
    return (["."] if own in spaces else []) + sorted(ns for ns in spaces if ns != own)


def waypoint_labels(svc: Service, env: EnvSettings) -> dict[str, str]:
    wp = env.egress.waypoint
    if svc.egress != "waypoint" or wp is None:
        return {}
    out = {USE_WAYPOINT: wp.name}
    if wp.namespace != svc.namespace:
        out[USE_WAYPOINT_NS] = wp.namespace
    return out


def _principal(env: EnvSettings, namespace: str, account: str) -> str:
    return f"{env.trust_domain}/ns/{namespace}/sa/{account}"


def not_consumers(svc: Service, env: EnvSettings) -> list[dict[str, Any]]:
    """A DENY rule's `from` matching every caller that is no consumer (none without consumers):
    not in a consumer namespace and not a consumer service account (the fields of one `source`
    are ANDed; a caller without mutual TLS has no principal and is matched too)."""
    whole = sorted({c.namespace for c in svc.consumers if c.service_account is None})
    accounts = sorted({_principal(env, c.namespace, c.service_account) for c in svc.consumers
                       if c.service_account is not None and c.namespace not in whole})
    source: dict[str, Any] = {}
    if whole:
        source["notNamespaces"] = whole
    if accounts:
        source["notPrincipals"] = accounts
    return [{"source": source}] if source else []


def sources(svc: Service, env: EnvSettings) -> list[dict[str, Any]]:
    """AuthorizationPolicy `from` entries for the consumers (none: any caller)."""
    whole = sorted({c.namespace for c in svc.consumers if c.service_account is None})
    accounts = sorted({_principal(env, c.namespace, c.service_account) for c in svc.consumers
                       if c.service_account is not None and c.namespace not in whole})
    out: list[dict[str, Any]] = []
    if whole:
        out.append({"source": {"namespaces": whole}})
    if accounts:
        out.append({"source": {"principals": accounts}})
    return out


# ----------------------------------------------------------------------------- egress: gateway

def _gateway_name(svc: Service) -> str:
    return f"{svc.name}-egress"


def gateway_views(svc: Service, env: EnvSettings) -> dict[str, Any]:
    """The views of the gateway-path objects of `svc` (sidecar mode, env.yaml egress.gateway)."""
    gw = env.egress.gateway
    assert gw is not None  # validate refuses egress: gateway without it (V034)
    ns, name = gw.namespace, _gateway_name(svc)
    gsvc = gw.host(env.cluster_domain)
    labels = {"app.kubernetes.io/managed-by": "meshc", "meshc.dev/service": svc.name}
    export = export_list(svc, env, ns)
    servers = []
    for p in svc.ports:
        # HTTP ports: an HTTPS server (the gateway sees requests: HTTP routes, hosts in policies);
        # every other port: a TLS server that ends the mutual TLS and forwards the stream
        plain_http = p.protocol.upper() in HTTP_FAMILY
        servers.append({
            "port": {"number": p.number, "name": f"{'https' if plain_http else 'tls'}-{p.number}-{svc.name}"[:63],
                     "protocol": "HTTPS" if plain_http else "TLS"},
            "hosts": list(svc.hosts), "tls": {"mode": "ISTIO_MUTUAL"}})
    gateway = {"name": name, "namespace": ns, "labels": labels, "selector": dict(gw.selector), "servers": servers}
    vses = []
    for host in svc.hosts:
        http: list[dict[str, Any]] = []
        tls: list[dict[str, Any]] = []
        tcp: list[dict[str, Any]] = []
        for p in svc.ports:
            proto = p.protocol.upper()
            to_gateway = {"destination": {"host": gsvc, "subset": svc.name, "port": {"number": p.number}}}
            to_host = {"destination": {"host": host, "port": {"number": p.number}}}
            if proto in HTTP_FAMILY:
                http.append({"name": f"mesh-{p.number}", "match": [{"gateways": ["mesh"], "port": p.number}],
                             "route": [to_gateway]})
                http.append({"name": f"gateway-{p.number}", "match": [{"gateways": [name], "port": p.number}],
                             "route": [to_host]})
            elif proto in APP_TLS:
                tls.append({"match": [{"gateways": ["mesh"], "port": p.number, "sniHosts": [host]}],
                            "route": [to_gateway]})
                tcp.append({"match": [{"gateways": [name], "port": p.number}], "route": [to_host]})
            else:
                tcp.append({"match": [{"gateways": ["mesh"], "port": p.number}], "route": [to_gateway]})
                tcp.append({"match": [{"gateways": [name], "port": p.number}], "route": [to_host]})
        vname = name if len(svc.hosts) == 1 else f"{name}-{host_slug(host)}"[:253]
        vses.append({"name": vname, "namespace": ns, "labels": labels, "hosts": [host],
                     "gateways": ["mesh", name], "http": http, "tls": tls, "tcp": tcp, "export_to": export})
    # Only a service with consumers gets a policy, and it DENIES whoever is not one of them: an
    # ALLOW policy on the shared gateway pods would refuse every service without one, and the
    # gateway's Envoy carries every policy on every filter chain (istiod's authz builder), so a
    # policy per service would grow as the square of the services. The rule names the SNI, never
    # ports: on the gateway pod the listener is the Service's targetPort (8443 for 443 by default).
    policy = None
    outsiders = not_consumers(svc, env)
    if outsiders:
        # one rule on `connection.sni`, for every port: HTTP-only fields (`operation.hosts`) are
        # dropped from a DENY rule on TCP chains (pilot/pkg/security/authz/model), which would then
        # deny every non-consumer on every TLS/TCP chain of the shared gateway, other services'
        # included; the SNI the sidecars send (the subset's, the service's first host) picks the
        # gateway's filter chain, hence the destination, on HTTP and TCP chains alike
        rules = [{"from": outsiders, "when": [{"key": "connection.sni", "values": list(svc.hosts)}]}]
        policy = {"name": name, "namespace": ns, "labels": labels, "selector": dict(gw.selector), "action": "DENY",
                  "rules": rules, "target_refs": []}
    return {"gateway": gateway, "virtual_services": vses, "policy": policy}


def gateway_subset(svc: Service) -> dict[str, Any]:
    """The service's subset of the gateway host: mutual TLS to the gateway on each port, with the
    service's host as SNI (the gateway's servers match it)."""
    mutual = [{"port": {"number": p.number}, "tls": {"mode": "ISTIO_MUTUAL", "sni": svc.hosts[0]}}
              for p in svc.ports]
    return {"name": svc.name, "trafficPolicy": {"portLevelSettings": mutual}}


def gateway_rule_view(env: EnvSettings, services: Sequence[Service]) -> dict[str, Any] | None:
    """One DestinationRule for the gateway host per environment, with a subset per service that
    goes through the gateway: DestinationRules of one host are merged only when their exportTo
    agree (Istio 1.24 and later), so a rule per service would leave sidecars without subsets.
    Exported to every namespace that sees one of the services' VirtualServices."""
    gw = env.egress.gateway
    through = sorted((s for s in services if s.egress == "gateway"), key=lambda s: s.name)
    if gw is None or not through:
        return None
    exports = [export_list(s, env, gw.namespace) for s in through]
    export = [] if any(not e or "*" in e for e in exports) else (
        (["."] if any("." in e for e in exports) else []) + sorted({n for e in exports for n in e if n != "."}))
    return {"name": f"{gw.name}-subsets", "namespace": gw.namespace,
            "labels": {"app.kubernetes.io/managed-by": "meshc"}, "host": gw.host(env.cluster_domain),
            "traffic_policy": {}, "subsets": [gateway_subset(s) for s in through], "workload_selector": {},
            "export_to": export}


GATEWAY_ORIGIN: Origin = (
    (("metadata",), ("name",), False),
    (("spec", "selector"), ("egress",), False),
    (("spec", "servers"), ("ports",), False),
)


def gateway_origin(svc: Service) -> Origin:
    out = list(GATEWAY_ORIGIN)
    for i, _ in enumerate(svc.ports):
        out.append((("spec", "servers", i), ("ports", i), False))
        out.append((("spec", "servers", i, "hosts"), ("hosts",), True))
    return tuple(out)


def vs_origin(i: int) -> Origin:
    return ((("metadata",), ("name",), False), (("spec", "hosts"), ("hosts", i), False),
            (("spec",), ("ports",), False), (("spec", "gateways"), ("egress",), False),
            (("spec", "exportTo"), ("consumers",), False))


POLICY_ORIGIN: Origin = ((("metadata",), ("name",), False), (("spec",), ("egress",), False),
                         (("spec", "rules"), ("consumers",), False))


# ----------------------------------------------------------------------------- egress: waypoint

def waypoint_policy_view(svc: Service, env: EnvSettings) -> dict[str, Any] | None:
    """The AuthorizationPolicy a waypoint applies to callers of the ServiceEntry (consumers only)."""
    if svc.egress != "waypoint" or not svc.consumers:
        return None
    return {"name": f"{svc.name}-consumers", "namespace": svc.namespace,
            "labels": {"app.kubernetes.io/managed-by": "meshc", "meshc.dev/service": svc.name}, "selector": {},
            "action": "ALLOW", "rules": [{"from": sources(svc, env)}],
            "target_refs": [{"group": "networking.istio.io", "kind": "ServiceEntry", "name": svc.name}]}


def backend_tls_view(svc: Service, env: EnvSettings) -> dict[str, Any] | None:
    """A BackendTLSPolicy originating TLS at the waypoint (env.yaml egress.waypoint.tlsOrigination)."""
    wp = env.egress.waypoint
    if (svc.egress != "waypoint" or wp is None or wp.tls_origination != "BackendTLSPolicy" or svc.tls is None
            or svc.tls.mode != "simple"):
        return None
    validation: dict[str, Any] = {"hostname": svc.tls.sni or svc.hosts[0]}
    if svc.tls.subject_alt_names:
        validation["subjectAltNames"] = [{"type": "Hostname", "hostname": h} for h in svc.tls.subject_alt_names]
    validation["wellKnownCACertificates"] = "System"
    return {"name": svc.name, "namespace": svc.namespace,
            "labels": {"app.kubernetes.io/managed-by": "meshc", "meshc.dev/service": svc.name},
            "target_refs": [{"group": "networking.istio.io", "kind": "ServiceEntry", "name": svc.name}],
            "validation": validation}


WAYPOINT_POLICY_ORIGIN: Origin = ((("metadata",), ("name",), False), (("spec",), ("consumers",), False),
                                  (("spec", "targetRefs"), ("name",), False))
BACKEND_TLS_ORIGIN: Origin = ((("metadata",), ("name",), False), (("spec",), ("tls",), False),
                              (("spec", "validation", "hostname"), ("tls", "sni"), False),
                              (("spec", "targetRefs"), ("name",), False))


# ----------------------------------------------------------------------------- per environment

def sidecar_views(env: EnvSettings, services: Sequence[Service]) -> list[dict[str, Any]]:
    """One Sidecar per consumer namespace, in a sidecar environment with REGISTRY_ONLY: its egress
    hosts are its own namespace, the control plane's, env.yaml's sidecarHosts and every declared
    host it may call (services without consumers are open to all)."""
    if env.dataplane != "sidecar" or env.proxy.outbound_policy != "REGISTRY_ONLY":
        return []
    consumer_ns = sorted({c.namespace for s in services for c in s.consumers})
    gw = env.egress.gateway
    out = []
    for ns in consumer_ns:
        hosts = {"./*", f"{env.egress.control_plane_namespace}/*", *env.egress.sidecar_hosts}
        for svc in services:
            if svc.egress == "waypoint" or (svc.consumers and all(c.namespace != ns for c in svc.consumers)):
                continue
            hosts.update(_visible_hosts(svc, gw.namespace if gw and svc.egress == "gateway" else None,
                                        gw.host(env.cluster_domain) if gw else ""))
        whole = {h.split("/", 1)[0] for h in hosts if h.endswith("/*")} | {ns}  # "./*" is the own namespace
        out.append({"name": SIDECAR_NAME, "namespace": ns,
                    "labels": {"app.kubernetes.io/managed-by": "meshc"},
                    "hosts": sorted(h for h in hosts if h.endswith("/*") or h.split("/", 1)[0] not in whole)})
    return out


def _visible_hosts(svc: Service, gateway_ns: str | None, gateway_host: str) -> Iterable[str]:
    for host in svc.hosts:
        yield f"{svc.namespace}/{host}"
        if gateway_ns is not None:
            yield f"{gateway_ns}/{host}"
    if gateway_ns is not None:
        yield f"{gateway_ns}/{gateway_host}"


def waypoint_view(env: EnvSettings) -> dict[str, Any] | None:
    wp = env.egress.waypoint
    if wp is None or not wp.managed or env.dataplane != "ambient":
        return None
    return {"name": wp.name, "namespace": wp.namespace,
            "labels": {"app.kubernetes.io/managed-by": "meshc", "istio.io/waypoint-for": "service"}}
