"""Outbound listeners of a sidecar, as static listeners (reference 5.12).

Input: the services (oldest first), a function giving each service's DR, and `ProxySettings`.
Output: `BuiltListener` values: ``virtualOutbound`` on 0.0.0.0:15001 (use_original_dst, loop
guard, passthrough or blackhole catch-all) and one ``<bind>_<port>`` listener per bind address
and port, all with ``bind_to_port: false``:
* HTTP family ports share ``0.0.0.0_<port>``: an HCM chain with an INLINE route configuration
  (no RDS in a static bootstrap), selected by http_inspector, and a PassthroughFilterChain.
* TCP / TLS / HTTPS / MONGO / REDIS / MYSQL: a tcp_proxy chain; on a wildcard or CIDR bind, TLS
  and HTTPS chains match the SNI (tls_inspector), CIDR binds match ``prefix_ranges``.
* Auto-detect ports (no protocol): both an HCM chain and a tcp_proxy chain.
* A host whose VirtualService, visible to the proxy's namespace, binds `mesh` and routes a port
  elsewhere (the egress gateway: docs/egress.md) gets that route instead of its own cluster: the
  virtual host holds the VirtualService's route, the tcp_proxy (TLS routes: on their SNI hosts,
  TCP routes: on the port) names the destination's cluster, `outbound|<port>|<subset>|<gateway>`
  (istiod's sidecar chains built from a VirtualService: pilot/pkg/networking/core/tls.go:103
  `buildSidecarOutboundTLSFilterChainOpts`, tls.go:239 `buildSidecarOutboundTCPFilterChainOpts`).

Invariants: listeners sorted by name; a filter-chain match already taken by an older service is
not added again (Envoy rejects duplicate matches; istiod keeps the oldest).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshc.model.ids import ObjectId
from meshc.model.netaddr import cidr_parts, is_ip
from meshc.model.settings import ProxySettings
from meshc.proxy.envoy.cluster import BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER, cluster_name
from meshc.proxy.envoy.istio import DestRule, MeshRoute, Service, SvcPort, visible
from meshc.proxy.envoy.policy import effective_policy, listener_tcp_settings, route_hash_policy, tcp_hash_policy
from meshc.proxy.envoy.route import (
    RouteTable,
    VirtualHostSpec,
    http_connection_manager,
    route_configuration,
    virtual_service_route,
)
from meshc.proxy.envoy.values import typed

Json = dict[str, Any]
HTTP_FAMILY = ("HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY")
SNI_PROTOCOLS = ("TLS", "HTTPS")
WILDCARD = "0.0.0.0"
TCP_PROXY_TYPE = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
TLS_INSPECTOR = ("envoy.filters.listener.tls_inspector",
                 "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector")
HTTP_INSPECTOR = ("envoy.filters.listener.http_inspector",
                  "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector")


@dataclass(frozen=True)
class BuiltListener:
    name: str
    body: Json
    chain_origins: Mapping[int, ObjectId] = field(default_factory=dict)
    vhost_origins: tuple[tuple[int, int, ObjectId], ...] = field(default=())


@dataclass
class _Acc:
    bind: str
    port: int
    route: RouteTable | None = None
    chains: dict[str, tuple[Json, ObjectId]] = field(default_factory=dict)


def tcp_proxy(cluster: str, extra: Mapping[str, Any] | None = None) -> Json:
    body = {"stat_prefix": cluster, "cluster": cluster, **(extra or {})}
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": typed(TCP_PROXY_TYPE, body)}


def _binds(service: Service) -> list[tuple[str, tuple[str, int] | None]]:
    """(bind address, CIDR or None) per usable SE address; no address -> the wildcard."""
    out: list[tuple[str, tuple[str, int] | None]] = []
    for address in service.addresses:
        cidr = cidr_parts(address)
        if cidr is not None:
            out.append((WILDCARD, cidr))
        elif is_ip(address):
            out.append((address, None))
    return out or [(WILDCARD, None)]


def _tcp_chain(service: Service, port: SvcPort, rule: DestRule | None, bind: str,
               cidr: tuple[str, int] | None, routed: _Routed | None = None) -> Json:
    match: Json = {}
    if cidr is not None:
        match["prefix_ranges"] = [{"address_prefix": cidr[0], "prefix_len": cidr[1]}]
    if bind == WILDCARD and port.protocol in SNI_PROTOCOLS:
        match["server_names"] = sorted(routed.route.sni_hosts) if routed and routed.route.sni_hosts \
            else [service.host]
    if routed is not None:  # the destination's DR sets the tcp_proxy (`buildOutboundNetworkFilters`,
        # pilot/pkg/networking/core/networkfilter.go:365)
        policy = effective_policy(routed.rule, routed.route.dest_port or port.number, None)
        routed_chain: Json = {"filters": [tcp_proxy(routed.route.cluster(port.number), listener_tcp_settings(policy))]}
        if match:
            routed_chain["filter_chain_match"] = match
        return routed_chain
    policy = effective_policy(rule, port.number, None)
    extra = listener_tcp_settings(policy)
    hashing = tcp_hash_policy(policy)
    if hashing:
        extra["hash_policy"] = hashing
    tunnel = (rule.traffic_policy.get("tunnel") if rule else None) or {}
    if tunnel:
        extra["tunneling_config"] = {"hostname": f"{tunnel.get('targetHost')}:{tunnel.get('targetPort')}"}
        if tunnel.get("protocol") == "POST":
            extra["tunneling_config"]["use_post"] = True
    chain: Json = {"filters": [tcp_proxy(cluster_name(port.number, "", service.host), extra)]}
    if match:
        chain["filter_chain_match"] = match
    return chain


def _vhost(service: Service, port: SvcPort, rule: DestRule | None, routed: _Routed | None = None) -> VirtualHostSpec:
    vips = tuple(a for a in service.addresses if is_ip(a) and a != WILDCARD)
    if routed is not None:
        cluster = routed.route.cluster(port.number)
        hashing = tuple(route_hash_policy(effective_policy(routed.rule, routed.route.dest_port or port.number,
                                                           None)))
        route = virtual_service_route(routed.route.name, cluster, routed.route.vs, hashing)
        return VirtualHostSpec(service.host, port.number, (service.host, *vips), cluster, hashing,
                               routed.route.vs, (route,))
    policy = effective_policy(rule, port.number, None)
    return VirtualHostSpec(service.host, port.number, (service.host, *vips),
                           cluster_name(port.number, "", service.host),
                           tuple(route_hash_policy(policy)), service.origin)


@dataclass(frozen=True)
class _Routed:
    route: MeshRoute
    rule: DestRule | None  # the destination's DR


_ROUTE_KIND = {"http": ("http",), "sni": ("tls", "tcp"), "tcp": ("tcp",)}


def _mesh_route(service: Service, port: SvcPort, namespace: str) -> MeshRoute | None:
    """The first `mesh` route of a VirtualService visible to the proxy's namespace for this port."""
    family = "http" if port.protocol in HTTP_FAMILY else "sni" if port.protocol in SNI_PROTOCOLS else "tcp"
    for kind in _ROUTE_KIND[family]:
        for route in service.mesh_routes:
            if route.kind == kind and route.port in (0, port.number) \
                    and visible(route.export_to, route.vs.namespace, namespace) \
                    and (kind != "tls" or not route.sni_hosts or service.host in route.sni_hosts):
                return route
    return None


def _acc(accs: dict[tuple[str, int], _Acc], bind: str, port: int) -> _Acc:
    return accs.setdefault((bind, port), _Acc(bind, port))


def _add_chain(acc: _Acc, chain: Json, origin: ObjectId) -> None:
    key = json.dumps(chain.get("filter_chain_match", {}), sort_keys=True)
    acc.chains.setdefault(key, (chain, origin))


def _add_http(acc: _Acc, spec: VirtualHostSpec, route_name: str) -> None:
    if acc.route is None:
        acc.route = RouteTable(route_name)
    acc.route.hosts.append(spec)


def _collect(services: list[Service], rule_of: Callable[[Service], DestRule | None], namespace: str = ""
             ) -> dict[tuple[str, int], _Acc]:
    accs: dict[tuple[str, int], _Acc] = {}
    by_host: dict[str, Service] = {}
    for service in services:
        by_host.setdefault(service.host, service)
    for service in services:
        if service.kubernetes:  # known only as a route destination: its listeners are not modelled
            continue
        rule = rule_of(service)
        for port in service.ports:
            if port.protocol == "UDP":
                continue
            route = _mesh_route(service, port, namespace) if service.mesh_routes and port.protocol else None
            target = by_host.get(route.host) if route is not None else None
            routed = _Routed(route, rule_of(target) if target is not None else None) if route is not None else None
            if port.protocol in HTTP_FAMILY:
                _add_http(_acc(accs, WILDCARD, port.number), _vhost(service, port, rule, routed),
                          str(port.number))
                continue
            for bind, cidr in _binds(service):
                acc = _acc(accs, bind, port.number)
                _add_chain(acc, _tcp_chain(service, port, rule, bind, cidr, routed),
                           routed.route.vs if routed is not None else service.origin)
                if port.protocol == "":
                    name = str(port.number) if bind == WILDCARD else f"{service.host}:{port.number}"
                    _add_http(acc, _vhost(service, port, rule), name)
    return accs


def _fallback(settings: ProxySettings) -> str:
    return BLACKHOLE_CLUSTER if settings.outbound_policy == "REGISTRY_ONLY" else PASSTHROUGH_CLUSTER


def _render(acc: _Acc, settings: ProxySettings) -> BuiltListener:
    chains: list[Json] = []
    origins: dict[int, ObjectId] = {}
    vhost_origins: list[tuple[int, int, ObjectId]] = []
    if acc.route is not None:
        config, hosts = route_configuration(acc.route, settings.outbound_policy == "REGISTRY_ONLY")
        hcm = http_connection_manager(f"outbound_{acc.bind}_{acc.port}", config)
        match = {"application_protocols": ["http/1.1", "h2c"], "transport_protocol": "raw_buffer"}
        chains.append({"filter_chain_match": match, "filters": [hcm]})
        vhost_origins = [(0, index, origin) for index, origin in enumerate(hosts)]
    for _, (chain, origin) in sorted(acc.chains.items()):
        if acc.route is not None and "server_names" not in chain.get("filter_chain_match", {}):
            chain = {**chain, "filter_chain_match": {**chain.get("filter_chain_match", {}),
                                                     "transport_protocol": "raw_buffer"}}
        origins[len(chains)] = origin
        chains.append(chain)
    body: Json = {
        "name": f"{acc.bind}_{acc.port}",
        "address": {"socket_address": {"address": acc.bind, "port_value": acc.port}},
        "bind_to_port": False,
        "traffic_direction": "OUTBOUND",
        "filter_chains": chains,
    }
    filters = _listener_filters(chains, acc.route is not None)
    if filters:
        body["listener_filters"] = filters
    if acc.bind == WILDCARD:
        body["default_filter_chain"] = {"name": "PassthroughFilterChain",
                                        "filters": [tcp_proxy(_fallback(settings))]}
    return BuiltListener(body["name"], body, origins, tuple(vhost_origins))


def _listener_filters(chains: list[Json], http: bool) -> list[Json]:
    out = []
    if any("server_names" in c.get("filter_chain_match", {}) for c in chains):
        out.append({"name": TLS_INSPECTOR[0], "typed_config": typed(TLS_INSPECTOR[1])})
    if http:
        out.append({"name": HTTP_INSPECTOR[0], "typed_config": typed(HTTP_INSPECTOR[1])})
    return out


def virtual_outbound(settings: ProxySettings) -> BuiltListener:
    body = {
        "name": "virtualOutbound",
        "address": {"socket_address": {"address": WILDCARD, "port_value": 15001}},
        "use_original_dst": True,
        "traffic_direction": "OUTBOUND",
        "filter_chains": [
            {"name": "virtualOutbound-blackhole", "filter_chain_match": {"destination_port": 15001},
             "filters": [tcp_proxy(BLACKHOLE_CLUSTER)]},
            {"name": "virtualOutbound-catchall-tcp", "filters": [tcp_proxy(_fallback(settings))]},
        ],
    }
    return BuiltListener("virtualOutbound", body)


def build_listeners(services: list[Service], rule_of: Callable[[Service], DestRule | None],
                    settings: ProxySettings) -> list[BuiltListener]:
    built = [_render(acc, settings) for acc in _collect(services, rule_of, settings.namespace).values()]
    return sorted([virtual_outbound(settings), *built], key=lambda listener: listener.name)
