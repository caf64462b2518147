"""Inline HTTP route configurations for outbound HTTP ports (reference 5.13).

Input: the services on one HTTP listener and their default-cluster policies. Output: a
``RouteConfiguration`` dict named ``<port>`` (or ``<host>:<port>`` for an auto-detected port
bound to a VIP) with one virtual host ``<host>:<port>`` per service plus the ``allow_any`` /
``block_all`` catch-all, and the object each virtual host came from.

Invariants: virtual hosts are sorted by name, the catch-all comes last; a virtual-host name or a
domain already claimed by an earlier (older) service is not repeated, because Envoy rejects
duplicate domains within a route configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshc.model.ids import ObjectId
from meshc.proxy.envoy.values import typed

Json = dict[str, Any]
RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"
PREVIOUS_HOSTS_TYPE = "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
ROUTER_TYPE = "envoy.extensions.filters.http.router.v3.Router"


@dataclass(frozen=True)
class VirtualHostSpec:
    host: str
    port: int
    domains: tuple[str, ...]
    cluster: str
    hash_policy: tuple[Json, ...]
    origin: ObjectId
    routes: tuple[Json, ...] = ()  # a VirtualService's routes (`virtual_service_route`); () = the default route


@dataclass
class RouteTable:
    name: str
    hosts: list[VirtualHostSpec] = field(default_factory=list)


def retry_policy(hashing: bool) -> Json:
    """istiod's default retry policy; consistent hashing drops the previous-hosts predicate."""
    policy: Json = {"retry_on": RETRY_ON, "num_retries": 2, "host_selection_retry_max_attempts": 5}
    if not hashing:
        policy["retry_host_predicate"] = [
            {"name": PREVIOUS_HOSTS, "typed_config": typed(PREVIOUS_HOSTS_TYPE)}]
    return policy


def _default_route(spec: VirtualHostSpec) -> Json:
    action: Json = {"cluster": spec.cluster, "timeout": "0s",
                    "retry_policy": retry_policy(bool(spec.hash_policy))}
    if spec.hash_policy:
        action["hash_policy"] = [dict(h) for h in spec.hash_policy]
    return {"name": "default", "match": {"prefix": "/"}, "route": action,
            "decorator": {"operation": f"{spec.host}:{spec.port}/*"}}


VS_CONFIG_PATH = "/apis/networking.istio.io/v1/namespaces/{ns}/virtual-service/{name}"


def virtual_service_route(name: str, cluster: str, vs: ObjectId, hash_policy: tuple[Json, ...] = ()) -> Json:
    """One route of a VirtualService's `http` entry with a single destination and no match but
    gateways and port, as `TranslateRoute` builds it (pilot/pkg/networking/core/route/route.go:467-600):
    the route's name, prefix `/`, the VirtualService as `istio.config` metadata
    (`BuildConfigInfoMetadata`), no timeout (`setTimeout`: 0s and `max_grpc_timeout` 0s), the mesh
    default retry policy, and the decorator `<host>:<port>/*` parsed from the cluster name
    (`GetRouteOperation`, route.go:1267)."""
    _, port, _, host = cluster.split("|", 3)
    action: Json = {"cluster": cluster, "timeout": "0s", "retry_policy": retry_policy(bool(hash_policy)),
                    "max_grpc_timeout": "0s"}
    if hash_policy:
        action["hash_policy"] = [dict(h) for h in hash_policy]
    out: Json = {"match": {"prefix": "/"},
                 "metadata": {"filter_metadata": {"istio": {"config": VS_CONFIG_PATH.format(ns=vs.namespace,
                                                                                          name=vs.name)}}},
                 "route": action, "decorator": {"operation": f"{host}:{port}/*"}}
    if name:
        out = {"name": name, **out}
    return out


def catch_all(registry_only: bool) -> Json:
    if registry_only:
        return {"name": "block_all", "domains": ["*"], "routes": [
            {"name": "block_all", "match": {"prefix": "/"}, "direct_response": {"status": 502}}]}
    return {"name": "allow_any", "domains": ["*"], "routes": [
        {"name": "allow_any", "match": {"prefix": "/"},
         "route": {"cluster": "PassthroughCluster", "timeout": "0s"}}]}


def route_configuration(table: RouteTable, registry_only: bool) -> tuple[Json, list[ObjectId]]:
    """The RouteConfiguration and, per virtual host index, its origin."""
    seen_names: set[str] = set()
    seen_domains: set[str] = {"*"}
    chosen: list[tuple[Json, ObjectId]] = []
    for spec in table.hosts:  # oldest first: first claim wins
        name = f"{spec.host}:{spec.port}"
        domains = [d for d in dict.fromkeys(spec.domains) if d not in seen_domains]
        if name in seen_names or not domains:
            continue
        seen_names.add(name)
        seen_domains.update(domains)
        chosen.append(({"name": name, "domains": domains, "routes": [dict(r) for r in spec.routes]
                        or [_default_route(spec)]},
                       spec.origin))
    chosen.sort(key=lambda item: str(item[0]["name"]))
    config = {
        "name": table.name,
        "virtual_hosts": [vh for vh, _ in chosen] + [catch_all(registry_only)],
        "validate_clusters": False,
        "ignore_port_in_host_matching": True,
    }
    return config, [origin for _, origin in chosen]


def http_connection_manager(stat_prefix: str, route_config: Json) -> Json:
    body = {
        "stat_prefix": stat_prefix,
        "route_config": route_config,
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": typed(ROUTER_TYPE)}],
    }
    return {"name": "envoy.filters.network.http_connection_manager",
            "typed_config": typed(
                "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                body)}
