"""Outbound clusters for one service (reference 5.3-5.11), as static-bootstrap clusters.

Input: a `Service`, the `DestRule` that applies to it (or none) and the `ProxySettings`.
Output: `BuiltCluster` values: the default cluster per non-UDP port and one per DR subset per
port, named ``outbound|<port>|<subset>|<host>``, plus the fixed clusters every bootstrap needs
(`special_clusters`).

Discovery type: STATIC -> STATIC with an inline load_assignment (istiod uses EDS; a static
bootstrap has no EDS server), DNS -> STRICT_DNS (LOGICAL_DNS with the RACE_FIRST_TCP_CONNECT
annotation), DNS_ROUND_ROBIN -> LOGICAL_DNS, NONE or DR PASSTHROUGH -> ORIGINAL_DST with
CLUSTER_PROVIDED. DNS-type clusters without endpoints are not emitted (as istiod does).
DYNAMIC_DNS services produce no cluster (not modelled).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from meshc.model.ids import ObjectId
from meshc.model.settings import ProxySettings
from meshc.proxy.envoy.endpoints import Assigner, load_assignment
from meshc.proxy.envoy.istio import DNS_MODES, DestRule, Endpoint, Service, SvcPort
from meshc.proxy.envoy.policy import (
    Policy,
    circuit_breakers,
    common_lb_config,
    connect_timeout,
    effective_policy,
    http_protocol_pieces,
    is_passthrough,
    lb_fields,
    outlier_detection,
    tcp_keepalive,
    wants_downstream_protocol,
    wants_h2,
)
from meshc.proxy.envoy.tls import SDS_CLUSTER, SDS_SOCKET, TlsChoice, upstream_tls
from meshc.proxy.envoy.values import ISTIO_FILTER_KEY, envoy_duration, typed

Json = dict[str, Any]
HPO_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
CARES_TYPE = "envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig"
PASSTHROUGH_CLUSTER = "PassthroughCluster"
BLACKHOLE_CLUSTER = "BlackHoleCluster"
DR_CONFIG_PATH = "/apis/networking.istio.io/v1/namespaces/{ns}/destination-rule/{name}"


@dataclass(frozen=True)
class BuiltCluster:
    name: str
    body: Json
    origin: ObjectId | None = None
    endpoint_origins: tuple[tuple[int, int, ObjectId], ...] = field(default=())
    uses_sds: bool = False
    uses_ads: bool = False  # needs the proxy's ADS connection (credentialName secrets)


def cluster_name(port: int, subset: str, host: str) -> str:
    return f"outbound|{port}|{subset}|{host}"


def _subset_endpoints(service: Service, labels: Mapping[str, str]) -> list[Endpoint]:
    chosen = [e for e in service.endpoints if all(e.labels.get(k) == v for k, v in labels.items())]
    return chosen[:1] if service.resolution == "DNS_ROUND_ROBIN" else chosen


def _dns_fields(service: Service, settings: ProxySettings) -> Json:
    race = service.connect_strategy == "RACE_FIRST_TCP_CONNECT"
    return {
        "type": "LOGICAL_DNS" if race or service.resolution == "DNS_ROUND_ROBIN" else "STRICT_DNS",
        "dns_lookup_family": "ALL" if race else "V4_ONLY",
        "dns_refresh_rate": envoy_duration(settings.dns_refresh_rate),
        "dns_jitter": "0.100s",
        "respect_dns_ttl": True,
        "typed_dns_resolver_config": {
            "name": "envoy.network.dns_resolver.cares",
            "typed_config": typed(CARES_TYPE, {"udp_max_queries": 100}),
        },
    }


def _metadata(service: Service, rule: DestRule | None, subset: str, tls: TlsChoice) -> Json:
    istio: Json = {"services": [{"host": service.host, "name": service.host,
                                 "namespace": service.namespace}]}
    if rule is not None:
        istio["config"] = DR_CONFIG_PATH.format(ns=rule.ident[1], name=rule.ident[2])
    if subset:
        istio["subset"] = subset
    if service.mesh_external and not subset:  # applyDestinationRule sets it on the default cluster only
        istio["external"] = True
    if tls.alpn_override:
        istio["alpn_override"] = "false"
    return {"filter_metadata": {ISTIO_FILTER_KEY: istio}}


def _protocol_options(policy: Policy, port: SvcPort, tls: TlsChoice) -> Json:
    pieces = http_protocol_pieces(policy, wants_h2(policy, port.protocol),
                                  wants_downstream_protocol(policy, port.protocol))
    if tls.upstream_http_options:
        pieces["upstream_http_protocol_options"] = dict(tls.upstream_http_options)
    if not pieces:
        return {}
    if "explicit_http_config" not in pieces and "use_downstream_protocol_config" not in pieces:
        pieces["explicit_http_config"] = {"http_protocol_options": {}}  # required oneof
    return {HPO_KEY: typed(HPO_KEY, pieces)}


def _discovery(service: Service, port: SvcPort, policy: Policy, name: str,
               settings: ProxySettings, endpoints: list[Endpoint]) -> tuple[Json, Any] | None:
    """Type-specific fields and the LoadAssignment (None: cluster is not emitted)."""
    if service.resolution == "NONE" or is_passthrough(policy):
        fields: Json = {"type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED"}
        if service.resolution == "NONE" and port.target_port:
            fields["original_dst_lb_config"] = {"upstream_port_override": port.target_port}
        return fields, None
    if service.resolution in DNS_MODES and not endpoints:
        return None
    fields = _dns_fields(service, settings) if service.resolution in DNS_MODES else {"type": "STATIC"}
    fields.update(lb_fields(policy))
    return fields, load_assignment(name, endpoints, port, policy, settings.locality, settings.labels)


def build_cluster(service: Service, port: SvcPort, rule: DestRule | None,
                  subset: Mapping[str, Any] | None, settings: ProxySettings) -> BuiltCluster | None:
    subset_name = str((subset or {}).get("name") or "")
    name = cluster_name(port.number, subset_name, service.host)
    policy = effective_policy(rule, port.number, subset)
    endpoints = _subset_endpoints(service, (subset or {}).get("labels") or {})
    discovery = _discovery(service, port, policy, name, settings, endpoints)
    if discovery is None:
        return None
    fields, assignment = discovery
    original_dst = fields["type"] == "ORIGINAL_DST"
    tls = upstream_tls(service, port.number, subset_name, policy,
                       wants_h2(policy, port.protocol), original_dst, bool(rule is not None and rule.selector))
    body: Json = {"name": name, "alt_stat_name": name + ";",
                  "connect_timeout": connect_timeout(policy, settings.connect_timeout), **fields,
                  "circuit_breakers": circuit_breakers(policy),
                  "common_lb_config": common_lb_config(policy),
                  "metadata": _metadata(service, rule, subset_name, tls)}
    _add_optional(body, policy, port, tls)
    if assignment is not None:
        body["load_assignment"] = assignment.assignment
        if assignment.locality_weighted:
            body["common_lb_config"]["locality_weighted_lb_config"] = {}
    origin = rule.ident if rule is not None else service.origin
    origins = assignment.origins if assignment is not None else ()
    return BuiltCluster(name, body, origin, origins, tls.uses_sds, tls.uses_ads)


@dataclass
class Relocations:
    """What `relocated` keeps between calls for the views of one environment: `home`, the
    settings of the proxy the clusters were built for (the egress proxy), and each cluster's load
    assignments (`Assigner`: its endpoints, port and policy, each distinct outcome rendered once)."""

    home: ProxySettings
    assigners: dict[str, Assigner] = field(default_factory=dict)


def relocated(built: BuiltCluster, service: Service, rule: DestRule | None,
              settings: ProxySettings, seen: Relocations) -> BuiltCluster:
    """`built`, a cluster of `service` made for the client `seen.home`, as the client of
    `settings` gets it: of a cluster only the load assignment depends on the client (its locality
    and labels), so only that is rebuilt (the same steps as `build_cluster`), and `built` itself
    is returned when the client gets the home client's. `seen` keeps what was made between calls
    for several clients; it assumes one `built` (and service and rule) per cluster name, as the
    first producer of a name wins."""
    if "load_assignment" not in built.body:
        return built
    assigner = seen.assigners.get(built.name)
    if assigner is None:
        _, port_number, subset_name, _ = built.name.split("|", 3)
        port = next(p for p in service.ports if p.number == int(port_number))
        subset = next((s for s in rule.subsets if s.get("name") == subset_name), None) \
            if subset_name and rule is not None else None
        assigner = seen.assigners[built.name] = Assigner(
            built.name, _subset_endpoints(service, (subset or {}).get("labels") or {}), port,
            effective_policy(rule, port.number, subset), seen.home.locality, seen.home.labels)
    assignment = assigner.for_client(settings.locality, settings.labels)
    if assignment is None:  # what `build_cluster` made for the home client is what this client gets
        return built
    lb = {k: v for k, v in (built.body.get("common_lb_config") or {}).items() if k != "locality_weighted_lb_config"}
    if assignment.locality_weighted:
        lb["locality_weighted_lb_config"] = {}
    body = {**built.body, "load_assignment": assignment.assignment, "common_lb_config": lb}
    return replace(built, body=body, endpoint_origins=assignment.origins)


def _add_optional(body: Json, policy: Policy, port: SvcPort, tls: TlsChoice) -> None:
    outlier = outlier_detection(policy)
    if outlier is not None:
        body["outlier_detection"] = outlier
    keepalive = tcp_keepalive(policy)
    if keepalive is not None:
        body["upstream_connection_options"] = keepalive
    options = _protocol_options(policy, port, tls)
    if options:
        body["typed_extension_protocol_options"] = options
    if tls.transport_socket is not None:
        body["transport_socket"] = tls.transport_socket
    if tls.transport_socket_matches:
        body["transport_socket_matches"] = tls.transport_socket_matches


def service_clusters(service: Service, rule: DestRule | None,
                     settings: ProxySettings) -> list[BuiltCluster]:
    """Default cluster per non-UDP port, then one per DR subset per port."""
    if service.resolution == "DYNAMIC_DNS":
        return []
    subsets = [None, *(rule.subsets if rule is not None else ())]
    out = []
    for port in service.ports:
        if port.protocol == "UDP":
            continue
        for subset in subsets:
            built = build_cluster(service, port, rule, subset, settings)
            if built is not None:
                out.append(built)
    return out


# `passthroughHttpProtocolOptions` (cluster_builder.go): HTTP/1.1 or h2c as the downstream spoke it,
# so plaintext gRPC / h2c to an unregistered host is not downgraded; idle connections closed after 5m.
PASSTHROUGH_HTTP_OPTIONS: Json = {
    "common_http_protocol_options": {"idle_timeout": "300s"},
    "use_downstream_protocol_config": {"http_protocol_options": {}, "http2_protocol_options": {}},
}


def _default_thresholds() -> Json:
    return circuit_breakers(Policy())


def _pipe_cluster(name: str, path: str, timeout: str) -> BuiltCluster:
    """A static HTTP/2 (gRPC) cluster to one of the agent's unix sockets."""
    h2: Json = {"explicit_http_config": {"http2_protocol_options": {}}}
    return BuiltCluster(name, {
        "name": name, "type": "STATIC", "connect_timeout": timeout,
        "load_assignment": {"cluster_name": name, "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": path}}}}]}]},
        "typed_extension_protocol_options": {HPO_KEY: typed(HPO_KEY, h2)}})


# The agent's xDS proxy socket (Istio's bootstrap template: cluster xds-grpc, ./etc/istio/proxy/XDS);
# credentialName secrets come from istiod through it.
XDS_CLUSTER = "xds-grpc"
XDS_SOCKET = "./etc/istio/proxy/XDS"
ADS_CONFIG: Json = {"api_type": "GRPC", "transport_api_version": "V3", "set_node_on_first_message_only": True,
                    "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}]}


def special_clusters(settings: ProxySettings, with_sds: bool, with_ads: bool = False) -> list[BuiltCluster]:
    """PassthroughCluster, BlackHoleCluster, sds-grpc (when a cluster needs an SDS secret from the
    agent) and xds-grpc (when one needs a credentialName secret over ADS)."""
    timeout = envoy_duration(settings.connect_timeout)
    out = [
        BuiltCluster(PASSTHROUGH_CLUSTER, {
            "name": PASSTHROUGH_CLUSTER, "type": "ORIGINAL_DST", "connect_timeout": timeout,
            "lb_policy": "CLUSTER_PROVIDED", "circuit_breakers": _default_thresholds(),
            "typed_extension_protocol_options": {HPO_KEY: typed(HPO_KEY, PASSTHROUGH_HTTP_OPTIONS)}}),
        BuiltCluster(BLACKHOLE_CLUSTER, {
            "name": BLACKHOLE_CLUSTER, "type": "STATIC", "connect_timeout": timeout}),
    ]
    if with_sds:
        out.append(_pipe_cluster(SDS_CLUSTER, SDS_SOCKET, timeout))
    if with_ads:
        out.append(_pipe_cluster(XDS_CLUSTER, XDS_SOCKET, timeout))
    return out
