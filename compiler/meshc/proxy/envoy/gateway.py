"""The egress gateway's Envoy configuration: what istiod gives the gateway's proxy for the hosts
routed through it, as one static Bootstrap (`envoy/gateway.json`, docs/envoy.md "The egress gateway").

Input: the environment's Istio objects (Gateway, VirtualService, ServiceEntry, WorkloadEntry,
DestinationRule of ``networking.istio.io``) and the gateway proxy's settings: its namespace and
labels (env.yaml `egress.gateway`: the pods the Gateways' `selector` picks). Output
(`build_gateway`): the Bootstrap and its sources table (path prefix -> `ObjectId`), or None when
no Gateway selects the proxy.

As istiod's gateway listener builder (istio/istio pilot/pkg/networking/core/gateway.go):
* one listener `0.0.0.0_<port>` per Gateway server port (`buildGatewayListeners`, gateway.go:118;
  `getListenerName`, gateway.go:338; `buildGatewayListener`, listener.go:1143), a TLS inspector when a
  chain matches on SNI or offers ALPN, `transport_socket_connect_timeout` 15s
  (PILOT_GATEWAY_TRANSPORT_SOCKET_CONNECT_TIMEOUT) and one connection accepted per socket event;
* per server a filter chain (`buildGatewayTCPBasedFilterChains`, gateway.go:253): an HTTPS server
  that terminates TLS gets an HTTP connection manager (`createGatewayHTTPFilterChainOpts`,
  gateway.go:672; `buildGatewayConnectionManager`, gateway.go:721) whose routes are the bound
  VirtualServices' `http` routes (`buildGatewayHTTPRouteConfig`, gateway.go:397: a virtual host
  per host, `<host>:<port>`); a TLS server that terminates TLS gets a tcp_proxy from the bound
  `tcp` route (`createGatewayTCPFilterChainOpts` / `buildGatewayNetworkFiltersFromTCPRoutes`,
  gateway.go:814-920); a PASSTHROUGH server a tcp_proxy per `tls` route match, on its SNI hosts
  (gateway.go:922); a plain HTTP server one connection manager; a plain TCP server a tcp_proxy;
* the chain of a terminating server matches its hosts as `server_names` (`GetSNIHostsForServer`,
  pilot/pkg/model/gateway.go:564) and terminates the mutual TLS with `default` / `ROOTCA` from the
  agent (`tls.downstream_istio_mutual_socket`);
* the clusters of the destinations, `outbound|<port>||<host>` (and the host's subsets), built by
  the sidecar's cluster builder with the DestinationRules the gateway's namespace sees: its own
  namespace's first, then as a sidecar's (`PushContext.destinationRule`,
  pilot/pkg/model/push_context.go:1259): the service's DR moved there originates TLS here;
* the ALLOW / DENY AuthorizationPolicies that select the gateway's pods as RBAC filters on every
  chain (pilot/pkg/security/authz/builder/builder.go, model/model.go, model/generator.go), for the
  fields meshc writes (`rbac_filters`).
What differs from istiod (no EDS, no RDS, the Service's targetPort, no metadata exchange, ...) is
listed in docs/envoy.md "The egress gateway".

Invariants: deterministic (objects in namespace/name order, listeners and clusters by name); no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshc.model.ids import ObjectId
from meshc.model.settings import ProxySettings
from meshc.proxy.envoy.bootstrap import Path, cluster_sources, memo_service_clusters
from meshc.proxy.envoy.cluster import ADS_CONFIG, PASSTHROUGH_CLUSTER, BuiltCluster, cluster_name, special_clusters
from meshc.proxy.envoy.istio import (
    DestRule,
    RouteRule,
    Service,
    VirtualSvc,
    find_rule,
    find_selected,
    ident,
    load_destination_rules,
    load_services,
    load_virtual_services,
    visible,
)
from meshc.proxy.envoy.listener import HTTP_FAMILY, TLS_INSPECTOR, tcp_proxy
from meshc.proxy.envoy.policy import effective_policy, listener_tcp_settings, route_hash_policy
from meshc.proxy.envoy.route import ROUTER_TYPE, virtual_service_route
from meshc.proxy.envoy.tls import GATEWAY_ALPN, downstream_istio_mutual_socket
from meshc.proxy.envoy.values import typed

Json = dict[str, Any]
WILDCARD = "0.0.0.0"
HCM_TYPE = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
HCM_NAME = "envoy.filters.network.http_connection_manager"
SOCKET_CONNECT_TIMEOUT = "15s"  # features.GatewayTransportSocketConnectTimeout (pilot/pkg/features/pilot.go:426)
GATEWAY_SERVER_NAME = "istio-envoy"  # util.GetProxyHeadersFromProxyConfig for the gateway class
TERMINATING = ("ISTIO_MUTUAL", "SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")
ROOT_NAMESPACE = "istio-system"  # as find_rule: the mesh's root (config) namespace


@dataclass(frozen=True)
class _Server:
    gateway: ObjectId
    index: int
    number: int
    name: str
    protocol: str
    hosts: tuple[str, ...]
    tls_mode: str  # "" = no tls block


@dataclass
class _Chain:
    body: Json
    origin: ObjectId
    filter_origins: dict[Path, ObjectId] = field(default_factory=dict)  # path in the chain -> object
    vhost_origins: list[ObjectId] = field(default_factory=list)


def _labels_select(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    return all(labels.get(str(k)) == str(v) for k, v in selector.items())


def selected_servers(manifests: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> list[_Server]:
    """The servers of every Gateway whose selector the proxy's labels satisfy (any namespace: istiod's
    default, PILOT_SCOPE_GATEWAY_TO_NAMESPACE off), oldest Gateway (by namespace/name) first."""
    found = [m for m in manifests if m.get("kind") == "Gateway"
             and str(m.get("apiVersion", "")).startswith("networking.istio.io/")]
    out: list[_Server] = []
    for gw in sorted(found, key=lambda m: (ident(m).namespace, ident(m).name)):
        spec = gw.get("spec") or {}
        if not _labels_select(spec.get("selector") or {}, labels):
            continue
        for index, server in enumerate(spec.get("servers") or []):
            port = server.get("port") or {}
            hosts = tuple(str(h) for h in server.get("hosts") or [])
            out.append(_Server(ident(gw), index, int(port.get("number") or 0), str(port.get("name") or ""),
                               str(port.get("protocol") or "").upper(), hosts,
                               str((server.get("tls") or {}).get("mode") or "")))
    return out


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == host or pattern == "*":
        return True
    if pattern.startswith("*.") and host.endswith(pattern[1:]):
        return True
    return host.startswith("*.") and pattern.endswith(host[1:])


def _server_hosts(server: _Server, vs: VirtualSvc) -> list[str]:
    """The VirtualService's hosts this server serves (`pickMatchingGatewayHosts`, gateway.go:1067):
    a `ns/host` server host binds VirtualServices of that namespace only (`.`: the Gateway's)."""
    out = []
    for host in vs.hosts:
        for entry in server.hosts:
            ns, _, name = entry.rpartition("/")
            if ns == ".":
                ns = server.gateway.namespace
            if ns not in ("", "*", vs.ident.namespace):
                continue
            if _host_matches(name, host) and host not in out:
                out.append(host)
    return out


def _sni_hosts(server: _Server) -> list[str]:
    """`GetSNIHostsForServer` (pilot/pkg/model/gateway.go:564): the hosts without their namespace,
    sorted, none for `*` (no SNI match)."""
    names = sorted({h.rpartition("/")[2] for h in server.hosts})
    return [] if "*" in names else names


def _gateway_name(server: _Server) -> str:
    return f"{server.gateway.namespace}/{server.gateway.name}"


def _bound(server: _Server, vs: VirtualSvc, rule: RouteRule) -> bool:
    """`l4SingleMatch` / `sourceMatchHTTP`: the rule names this Gateway and its port matches."""
    return _gateway_name(server) in rule.gateways and rule.port in (0, server.number) and len(rule.destinations) == 1


def _destination(rule: RouteRule, port: int) -> tuple[str, int, str]:
    host, number, subset = rule.destinations[0]
    return host, number or port, subset


class _Builder:
    def __init__(self, manifests: Sequence[Mapping[str, Any]], settings: ProxySettings) -> None:
        self.settings = settings
        self.policies = authorization_policies(manifests, settings.namespace, dict(settings.labels))
        # every chain gets the same filters (one set for HTTP chains, one for TCP): built once, shared
        self._rbac: dict[bool, list[RbacFilter]] = {}
        self.namespace = settings.namespace
        self.services = load_services(manifests, settings.trust_domain)
        self.rules = load_destination_rules(manifests, settings.cluster_domain)
        self.vses = [vs for vs in load_virtual_services(manifests, settings.cluster_domain)
                     if visible(vs.export_to, vs.ident.namespace, self.namespace)]
        self.by_host: dict[str, Service] = {}
        for service in self.services:  # oldest first
            self.by_host.setdefault(service.host, service)
        self.targets: list[str] = []  # destination hosts, in first-use order

    def rule_for(self, service: Service) -> DestRule | None:
        """The DR the gateway applies (`PushContext.destinationRule`, push_context.go:1259-1325):
        its own namespace's first (in the root namespace only those exported to `.`: the moved DR
        of an egress service), then the service's namespace's and the root namespace's exported to it."""
        local = self.rules.get(self.namespace, [])
        if self.namespace == ROOT_NAMESPACE:
            local = [r for r in local if r.export_to == (".",)]
        return find_selected(local, service) \
            or find_rule(self.rules, service, ROOT_NAMESPACE, proxy_namespace=self.namespace)

    def _target(self, host: str) -> None:
        if host not in self.targets:
            self.targets.append(host)

    # ------------------------------------------------------------------------- chains per server

    def http_chain(self, server: _Server, listener: str, tls: bool) -> _Chain:
        """An HTTP connection manager over the VirtualServices' routes bound to this server."""
        vhosts: list[tuple[Json, ObjectId]] = []
        seen: set[str] = set()
        for vs in self.vses:
            hosts = _server_hosts(server, vs)
            if not hosts:
                continue
            routes = []
            for rule in vs.rules:
                if rule.kind != "http" or not _bound(server, vs, rule):
                    continue
                host, port, subset = _destination(rule, server.number)
                self._target(host)
                target = self.by_host.get(host)
                policy = effective_policy(self.rule_for(target) if target else None, port, None)
                routes.append(virtual_service_route(rule.name, cluster_name(port, subset, host), vs.ident,
                                                    tuple(route_hash_policy(policy))))
                break  # a route with no match but port and gateway is a catch-all (`IsCatchAllRoute`)
            if not routes:
                continue
            for host in hosts:
                if host in seen:  # the first VirtualService for a host wins
                    continue
                seen.add(host)
                vhosts.append(({"name": f"{host}:{server.number}", "domains": [host], "routes": routes,
                                "include_request_attempt_count": True}, vs.ident))
        vhosts.sort(key=lambda item: str(item[0]["name"]))
        if not vhosts:  # gateway.go:560-569: a 404 virtual host
            virtual_hosts: list[Json] = [{"name": f"blackhole:{server.number}", "domains": ["*"]}]
        else:
            virtual_hosts = [vh for vh, _ in vhosts]
        route_name = (f"https.{server.number}.{server.name}.{server.gateway.name}.{server.gateway.namespace}"
                      if tls else f"http.{server.number}")  # gatewayRDSRouteName, pilot/pkg/model/gateway.go:627
        config = {"name": route_name, "virtual_hosts": virtual_hosts, "validate_clusters": False,
                  "ignore_port_in_host_matching": True}
        chain: Json = {}
        sni = _sni_hosts(server) if tls else []
        if sni:
            chain["filter_chain_match"] = {"server_names": sni}
        rbac = self.rbac(for_tcp=False)
        chain["filters"] = [_connection_manager(f"outbound_{listener};", config, [f for f, _, _ in rbac])]
        origins = _rbac_origins(rbac, ("filters", 0, "typed_config", "http_filters"))
        if tls:
            chain["transport_socket"] = downstream_istio_mutual_socket(GATEWAY_ALPN)
        chain["transport_socket_connect_timeout"] = SOCKET_CONNECT_TIMEOUT
        return _Chain(chain, server.gateway, origins, [origin for _, origin in vhosts])

    def tcp_chains(self, server: _Server) -> list[_Chain]:
        """A terminating TLS server or a plain TCP server: the first bound `tcp` route;
        a PASSTHROUGH server: one chain per bound `tls` route match, on its SNI hosts."""
        out: list[_Chain] = []
        passthrough = server.tls_mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH")
        for vs in self.vses:
            if not _server_hosts(server, vs):
                continue
            for rule in vs.rules:
                if rule.kind != ("tls" if passthrough else "tcp") or not _bound(server, vs, rule):
                    continue
                if passthrough and (not rule.sni_hosts or server.tls_mode == "AUTO_PASSTHROUGH"):
                    continue
                host, port, subset = _destination(rule, server.number)
                self._target(host)
                target = self.by_host.get(host)
                dr = self.rule_for(target) if target else None
                # buildOutboundNetworkFiltersWithSingleDestination (networkfilter.go:175): the
                # destination DR's idle timeout and maximum connection duration
                proxy = tcp_proxy(cluster_name(port, subset, host), listener_tcp_settings(effective_policy(dr, port)))
                chain: Json = {}
                if passthrough:
                    chain["filter_chain_match"] = {"server_names": sorted(rule.sni_hosts)}
                elif _sni_hosts(server) and server.tls_mode:
                    chain["filter_chain_match"] = {"server_names": _sni_hosts(server)}
                rbac = self.rbac(for_tcp=True)
                chain["filters"] = [*(f for f, _, _ in rbac), proxy]
                origins = _rbac_origins(rbac, ("filters",))
                origins[("filters", len(rbac))] = vs.ident
                if server.tls_mode and not passthrough:
                    chain["transport_socket"] = downstream_istio_mutual_socket(GATEWAY_ALPN)
                chain["transport_socket_connect_timeout"] = SOCKET_CONNECT_TIMEOUT
                out.append(_Chain(chain, server.gateway, origins))
                if not passthrough:
                    return out  # "there can be only one match that succeeds" (gateway.go:893)
        return out

    def rbac(self, for_tcp: bool) -> list[RbacFilter]:
        if for_tcp not in self._rbac:
            self._rbac[for_tcp] = rbac_filters(self.policies, for_tcp)
        return self._rbac[for_tcp]

    def chains(self, server: _Server) -> list[_Chain]:
        listener = f"{WILDCARD}_{server.number}"
        if server.protocol in HTTP_FAMILY and not server.tls_mode:
            return [self.http_chain(server, listener, tls=False)]
        if server.protocol == "HTTPS" and server.tls_mode in TERMINATING:
            if server.tls_mode != "ISTIO_MUTUAL":
                return []  # SIMPLE / MUTUAL servers (certificates of their own) are not modelled
            return [self.http_chain(server, listener, tls=True)]
        if server.tls_mode in TERMINATING and server.tls_mode != "ISTIO_MUTUAL":
            return []
        return self.tcp_chains(server)

    # ------------------------------------------------------------------------- clusters

    def clusters(self, listeners_use_sds: bool) -> list[BuiltCluster]:
        """The clusters of every destination host the routes name (all its ports and subsets, as
        the cluster builder makes them), the first producer of a name kept; BlackHoleCluster, and
        sds-grpc (the agent's socket) for the secrets of the listeners and clusters."""
        chosen: dict[str, BuiltCluster] = {}
        for host in sorted(self.targets):
            service = self.by_host.get(host)
            if service is None:
                continue  # not a ServiceEntry host: the route names a cluster istiod would not have either
            for built in memo_service_clusters(service, self.rule_for(service), self.settings, None, None):
                chosen.setdefault(built.name, built)
        with_sds = listeners_use_sds or any(c.uses_sds for c in chosen.values())
        with_ads = any(c.uses_ads for c in chosen.values())
        for built in special_clusters(self.settings, with_sds, with_ads):
            if built.name != PASSTHROUGH_CLUSTER:  # a gateway has no passthrough (no capture)
                chosen.setdefault(built.name, built)
        return sorted(chosen.values(), key=lambda c: c.name)


# ----------------------------------------------------------------------------- AuthorizationPolicy

RBAC_HTTP = ("envoy.filters.http.rbac", "envoy.extensions.filters.http.rbac.v3.RBAC")
RBAC_TCP = ("envoy.filters.network.rbac", "envoy.extensions.filters.network.rbac.v3.RBAC")
SPIFFE = "spiffe://"


@dataclass(frozen=True)
class _Policy:
    ident: ObjectId
    action: str  # ALLOW | DENY
    rules: tuple[Any, ...]


class _Unsupported(Exception):
    """A rule field meshc does not translate, or an HTTP-only field on a TCP chain."""


def authorization_policies(manifests: Sequence[Mapping[str, Any]], namespace: str, labels: Mapping[str, str],
                           root: str = ROOT_NAMESPACE) -> list[_Policy]:
    """The ALLOW and DENY AuthorizationPolicies that apply to the gateway's pods: the root
    namespace's without a selector, and its own namespace's without one or whose selector its
    labels satisfy (`ListAuthorizationPolicies`, pilot/pkg/model/authorization.go:84); targetRefs
    policies (Gateway API) and CUSTOM / AUDIT actions are not modelled."""
    found = [m for m in manifests if m.get("kind") == "AuthorizationPolicy"
             and str(m.get("apiVersion", "")).startswith("security.istio.io/")]
    out = []
    for ap in sorted(found, key=lambda m: (ident(m).namespace, ident(m).name)):
        spec = ap.get("spec") or {}
        own = ident(ap)
        if spec.get("targetRefs") or spec.get("targetRef") or str(spec.get("action") or "ALLOW") not in ("ALLOW",
                                                                                                         "DENY"):
            continue
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        if (own.namespace == root and not selector and namespace != root) \
                or (own.namespace == namespace and _labels_select(selector, labels)):
            out.append(_Policy(own, str(spec.get("action") or "ALLOW"), tuple(spec.get("rules") or [])))
    return out


def _string(value: str, prefix: str = "") -> Json:
    """`StringMatcherWithPrefix` (pilot/pkg/security/authz/matcher/string.go:100)."""
    if value == "*":
        return {"safe_regex": {"regex": ".+"}}
    if value.startswith("*"):
        if not prefix:
            return {"suffix": value[1:]}
        return {"safe_regex": {"regex": prefix + ".*" + re.escape(value[1:])}}
    if value.endswith("*"):
        return {"prefix": prefix + value[:-1]}
    return {"exact": prefix + value}


def _host(value: str) -> Json:
    """`HostMatcher` (matcher/header.go:59): `:authority`, case-insensitive."""
    if value == "*":
        return {"name": ":authority", "present_match": True}
    if value.startswith("*"):
        return {"name": ":authority", "string_match": {"suffix": value[1:], "ignore_case": True}}
    if value.endswith("*"):
        return {"name": ":authority", "string_match": {"prefix": value[:-1], "ignore_case": True}}
    return {"name": ":authority", "string_match": {"exact": value, "ignore_case": True}}


def _principal_name(matcher: Json) -> Json:
    return {"authenticated": {"principal_name": matcher}}  # useAuthenticated: not a waypoint


def _namespace_regex(value: str) -> str:
    return ".*/ns/" + ".*".join(re.escape(part) for part in value.split("*")) + "/.*"


# key -> (permission side?, HTTP only?, one value -> Envoy rule); `model.New` (model/model.go) and
# the generators of model/generator.go
_PERMISSION: dict[str, tuple[bool, Any]] = {
    "hosts": (True, lambda v: {"header": _host(v)}),
    "ports": (False, lambda v: {"destination_port": int(v)}),
    "destination.port": (False, lambda v: {"destination_port": int(v)}),
    "connection.sni": (False, lambda v: {"requested_server_name": _string(v)}),
}
_PRINCIPAL: dict[str, Any] = {
    "namespaces": lambda v: _principal_name({"safe_regex": {"regex": _namespace_regex(v)}}),
    "source.namespace": lambda v: _principal_name({"safe_regex": {"regex": _namespace_regex(v)}}),
    "principals": lambda v: _principal_name(_string(v, SPIFFE)),
    "source.principal": lambda v: _principal_name(_string(v, SPIFFE)),
}


def _terms(entries: list[tuple[str, list[str], list[str]]], table: Mapping[str, Any], for_tcp: bool,
           or_key: str, not_key: str, permission: bool) -> list[Json]:
    out: list[Json] = []
    for key, values, not_values in entries:
        if key not in table:
            raise _Unsupported(key)
        http_only, make = table[key] if permission else (False, table[key])
        if http_only and for_tcp:
            raise _Unsupported(key)
        try:
            if values:
                out.append({or_key: {"rules" if permission else "ids": [make(v) for v in values]}})
            if not_values:
                out.append({not_key: {or_key: {"rules" if permission else "ids": [make(v) for v in not_values]}}})
        except ValueError as error:  # a port that is not a number: istiod skips the rule too
            raise _Unsupported(key) from error
    return out


def _entries(block: Mapping[str, Any], keys: Sequence[str]) -> list[tuple[str, list[str], list[str]]]:
    """(key, values, notValues) of a `source` / `operation` block, in `insertFront` order (the
    last inserted first), refusing fields meshc does not translate."""
    out = []
    for key in keys:
        values = [str(v) for v in block.get(key) or []]
        not_values = [str(v) for v in block.get("not" + key[0].upper() + key[1:]) or []]
        if values or not_values:
            out.append((key, values, not_values))
    known = set(keys) | {"not" + k[0].upper() + k[1:] for k in keys}
    for key, value in block.items():
        if key not in known and value:
            raise _Unsupported(str(key))
    return out


def _rbac_policy(rule: Mapping[str, Any], for_tcp: bool) -> Json:
    """`Model.Generate` (model/model.go) for the fields meshc writes: `to.operation` hosts and ports,
    `from.source` namespaces and principals, `when` connection.sni, destination.port,
    source.namespace and source.principal; anything else is `_Unsupported` (the rule is left out)."""
    base_perm: list[tuple[str, list[str], list[str]]] = []
    base_princ: list[tuple[str, list[str], list[str]]] = []
    for when in rule.get("when") or []:
        key = str(when.get("key") or "")
        entry = (key, [str(v) for v in when.get("values") or []], [str(v) for v in when.get("notValues") or []])
        if key in _PERMISSION:
            base_perm.append(entry)
        elif key in _PRINCIPAL:
            base_princ.append(entry)
        else:
            raise _Unsupported(key)
    principals = []
    for source in rule.get("from") or [None]:
        entries = _entries((source or {}).get("source") or {}, ["principals", "namespaces"]) if source else []
        terms = _terms(entries + base_princ, _PRINCIPAL, for_tcp, "or_ids", "not_id", False)
        principals.append({"and_ids": {"ids": terms or [{"any": True}]}})
    permissions = []
    for to in rule.get("to") or [None]:
        entries = _entries((to or {}).get("operation") or {}, ["hosts", "ports"]) if to else []
        terms = _terms(entries + base_perm, _PERMISSION, for_tcp, "or_rules", "not_rule", True)
        permissions.append({"and_rules": {"rules": terms or [{"any": True}]}})
    return {"permissions": permissions, "principals": principals}


def _rbac_origins(rbac: Sequence[RbacFilter], base: Path) -> dict[Path, ObjectId]:
    out: dict[Path, ObjectId] = {}
    for k, (_, first, behind) in enumerate(rbac):
        out[base + (k,)] = first
        for name, origin in behind.items():
            out[base + (k, "typed_config", "rules", "policies", name)] = origin
    return out


MATCH_NEVER: Json = {"permissions": [{"not_rule": {"any": True}}], "principals": [{"not_id": {"any": True}}]}


RbacFilter = tuple[Json, ObjectId, dict[str, ObjectId]]


def rbac_filters(policies: Sequence[_Policy], for_tcp: bool) -> list[RbacFilter]:
    """The RBAC filters istiod's authz builder puts on every chain of the gateway (builder.go: DENY
    first, then ALLOW; every policy that selects the pods, whatever the chain; policies named
    `ns[<ns>]-policy[<name>]-rule[<i>]`; on a TCP chain an ALLOW rule with an HTTP-only field is
    left out, a DENY rule keeps its other fields); with each the first AuthorizationPolicy and the
    one behind each named policy."""
    out: list[RbacFilter] = []
    for action in ("DENY", "ALLOW"):
        chosen = [p for p in policies if p.action == action]
        if not chosen:
            continue
        named: dict[str, Json] = {}
        behind: dict[str, ObjectId] = {}
        for policy in chosen:
            for i, rule in enumerate(policy.rules):
                name = f"ns[{policy.ident.namespace}]-policy[{policy.ident.name}]-rule[{i}]"
                try:
                    named[name] = _rbac_policy(rule if isinstance(rule, Mapping) else {}, for_tcp)
                except _Unsupported:
                    continue
                behind[name] = policy.ident
            if not policy.rules:
                named[f"ns[{policy.ident.namespace}]-policy[{policy.ident.name}]-rule[0]"] = MATCH_NEVER
                behind[f"ns[{policy.ident.namespace}]-policy[{policy.ident.name}]-rule[0]"] = policy.ident
        rules: Json = {"policies": dict(sorted(named.items()))}
        if action == "DENY":
            rules = {"action": "DENY", **rules}
        body: Json = {"rules": rules}
        name, type_name = RBAC_TCP if for_tcp else RBAC_HTTP
        if for_tcp:
            body["stat_prefix"] = "tcp."  # RBACTCPFilterStatPrefix
        out.append(({"name": name, "typed_config": typed(type_name, body)}, chosen[0].ident, behind))
    return out


def _connection_manager(stat_prefix: str, route_config: Json, rbac: Sequence[Json] = ()) -> Json:
    """`buildGatewayConnectionManager` (gateway.go:721) with the common settings of
    `buildHTTPConnectionManager` (listener_builder.go:380-445): client certificate details
    sanitised and set, the remote address used, websocket upgrades, no stream idle timeout,
    normalised paths, the server header `istio-envoy`; the route configuration inline (no RDS)."""
    body = {
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "route_config": route_config,
        "http_filters": [*rbac, {"name": "envoy.filters.http.router", "typed_config": typed(ROUTER_TYPE)}],
        "use_remote_address": True,
        "forward_client_cert_details": "SANITIZE_SET",
        "set_current_client_cert_details": {"subject": True, "cert": True, "dns": True, "uri": True},
        "http_protocol_options": {},
        "server_name": GATEWAY_SERVER_NAME,
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "stream_idle_timeout": "0s",
        "normalize_path": True,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
    }
    return {"name": HCM_NAME, "typed_config": typed(HCM_TYPE, body)}


def _chain_key(chain: Json) -> tuple[str, ...]:
    return tuple((chain.get("filter_chain_match") or {}).get("server_names") or [])


def build_gateway(manifests: Sequence[Mapping[str, Any]], settings: ProxySettings,
                  node: Mapping[str, Any]) -> tuple[Json, dict[Path, ObjectId]] | None:
    """The egress gateway proxy's static Bootstrap and its sources table; None when no Gateway
    selects it. `settings.namespace` / `settings.labels`: the gateway's namespace and pod labels."""
    servers = selected_servers(manifests, dict(settings.labels))
    if not servers:
        return None
    builder = _Builder(manifests, settings)
    by_port: dict[int, list[_Chain]] = {}
    for server in servers:
        if not server.number:
            continue
        chains = by_port.setdefault(server.number, [])
        taken = {_chain_key(c.body) for c in chains}
        for chain in builder.chains(server):
            if _chain_key(chain.body) in taken:  # Envoy refuses two chains with one match: the oldest wins
                continue
            taken.add(_chain_key(chain.body))
            chains.append(chain)
    listeners: list[Json] = []
    sources: dict[Path, ObjectId] = {}
    for port in sorted(by_port, key=lambda p: f"{WILDCARD}_{p}"):
        chains = by_port[port]
        if not chains:  # `build`: a listener needs a chain (gateway.go:80-82)
            continue
        index = len(listeners)
        body: Json = {"name": f"{WILDCARD}_{port}",
                      "address": {"socket_address": {"address": WILDCARD, "port_value": port}}}
        inspect = any("server_names" in (c.body.get("filter_chain_match") or {}) or "transport_socket" in c.body
                      for c in chains)
        if inspect:
            body["listener_filters"] = [{"name": TLS_INSPECTOR[0], "typed_config": typed(TLS_INSPECTOR[1])}]
        body["filter_chains"] = [c.body for c in chains]
        body["traffic_direction"] = "OUTBOUND"
        body["max_connections_to_accept_per_socket_event"] = 1  # MAX_CONNECTIONS_PER_SOCKET_EVENT_LOOP
        listeners.append(body)
        base: Path = ("static_resources", "listeners", index, "filter_chains")
        for j, chain in enumerate(chains):
            sources[base + (j,)] = chain.origin
            for rel, origin in chain.filter_origins.items():
                sources[base + (j, *rel)] = origin
            for k, origin in enumerate(chain.vhost_origins):
                sources[base + (j, "filters", 0, "typed_config", "route_config", "virtual_hosts", k)] = origin
    clusters = builder.clusters(any("transport_socket" in c for lst in listeners for c in lst["filter_chains"]))
    sources.update(cluster_sources(clusters))
    bootstrap: Json = {}
    if node:
        bootstrap["node"] = dict(node)
    bootstrap["static_resources"] = {"listeners": listeners, "clusters": [c.body for c in clusters]}
    if any(c.uses_ads for c in clusters):
        bootstrap["dynamic_resources"] = {"ads_config": ADS_CONFIG}
    return bootstrap, sources
