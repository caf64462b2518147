"""Envoy pass: an environment's Istio objects -> one static Envoy v3 Bootstrap, and its checks.

Input: the environment's manifests (plain dicts; ServiceEntry, WorkloadEntry, DestinationRule of
``networking.istio.io`` are used, other kinds ignored) and `ProxySettings` describing the client
proxy. Output of `build_bootstrap`: ``(bootstrap, sources)``: the Bootstrap as a JSON-ready dict
with proto field names (snake_case) holding ``static_resources.clusters`` and ``.listeners``
only (no xDS server is assumed), and a map from a path prefix inside the bootstrap, e.g.
``("static_resources", "clusters", 3)``, to the (kind, namespace, name) of the Istio object it
was mostly derived from (the DestinationRule when one shaped a cluster, else the ServiceEntry;
WorkloadEntries for load-assignment endpoints; ServiceEntries for filter chains and virtual
hosts). Look up the longest prefix of a finding's path to place it.

What is emitted mirrors what istiod sends a SIDECAR for outbound traffic (see
istio-facts.md (the team's Istio reference notes) sections 5.3-5.13); the differences a static bootstrap
forces, and what is not modelled, are listed in docs/envoy.md.

Invariants: deterministic (objects in namespace/name order, clusters and listeners sorted by
name, no timestamps); the input is not mutated; no I/O.

Checks (re-exported from `meshc.envoy_validate`): `validate_bootstrap` (E001 strict proto
parse, E002 protoc-gen-validate rules) and `envoy_validate_binary` (E003, ``envoy --mode
validate`` when an ``envoy`` binary is on PATH).
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshc.model.ids import ObjectId
from meshc.model.settings import ProxySettings
from meshc.proxy.envoy.cluster import ADS_CONFIG, BuiltCluster, service_clusters, special_clusters
from meshc.proxy.envoy.endpoints import client_labels
from meshc.proxy.envoy.istio import (
    DestRule,
    find_rule,
    find_selected,
    load_destination_rules,
    load_selector_rules,
    load_services,
    rules_selecting,
    with_mesh_routes,
)
from meshc.proxy.envoy.listener import BuiltListener, build_listeners

__all__ = ["ProxySettings", "build_bootstrap"]

Path = tuple[Any, ...]
HCM_ROUTES = ("filters", 0, "typed_config", "route_config", "virtual_hosts")


Memo = dict[str, bytes]  # pickled list[BuiltCluster]: compact to hold, quick to cache


def clusters_of(service: Any, rule: Any, settings: ProxySettings) -> list[BuiltCluster]:
    """service_clusters; of a Kubernetes Service known only as a route destination (the egress
    gateway), only its subset clusters: the routes name them, and meshc knows neither its other
    ports nor its pods (docs/envoy.md, "The egress gateway")."""
    built = service_clusters(service, rule, settings)
    if getattr(service, "kubernetes", False):
        return [b for b in built if b.name.split("|")[2]]
    return built


def memo_service_clusters(service: Any, rule: Any, settings: ProxySettings, memo: Mapping[str, Any] | None,
                      used: Memo | None) -> list[BuiltCluster]:
    """clusters_of, looked up by the content hash of its inputs when a memo is given."""
    if memo is None and used is None:
        return clusters_of(service, rule, settings)
    key = hashlib.sha256(pickle.dumps((service, rule, settings), protocol=5)).hexdigest()
    blob = (memo or {}).get(key)
    if blob is None:
        built = clusters_of(service, rule, settings)
        blob = pickle.dumps(built, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        built = pickle.loads(blob)
    if used is not None:
        used[key] = blob
    return built


RulePicker = Callable[[Any], Any]


def rule_picker(settings: ProxySettings, rules: Mapping[str, list[DestRule]],
                selector_rules: Sequence[DestRule]) -> RulePicker:
    """The DR a proxy uses for a service: a workloadSelector DR of its namespace that selects it
    (first in Istio's order), else the catch-all one (`SidecarScope.DestinationRule`)."""
    chosen = rules_selecting(selector_rules, settings.namespace,
                             client_labels(settings.locality, settings.labels)) if settings.namespace else []
    ns = settings.namespace  # exportTo: a DR hidden from the proxy's namespace does not apply to it
    if not chosen:
        return lambda service: find_rule(rules, service, proxy_namespace=ns)
    return lambda service: find_selected(chosen, service) or find_rule(rules, service, proxy_namespace=ns)


@dataclass
class BuiltProxy:
    """One proxy's clusters by name (first producer wins), which service produced each, the
    clusters a later service also produced (lost to an earlier one), listeners."""

    clusters: dict[str, BuiltCluster]
    winner: dict[str, int]
    listeners: list[BuiltListener]
    losers: dict[int, list[BuiltCluster]]


def build_proxy(services: Sequence[Any], pick: RulePicker, settings: ProxySettings,
                memo: Mapping[str, Any] | None, used: Memo | None) -> BuiltProxy:
    chosen: dict[str, BuiltCluster] = {}
    winner: dict[str, int] = {}
    losers: dict[int, list[BuiltCluster]] = {}
    for index, service in enumerate(services):  # oldest first: first cluster of a name wins
        for built in memo_service_clusters(service, pick(service), settings, memo, used):
            if built.name not in chosen:
                chosen[built.name] = built
                winner[built.name] = index
            else:
                losers.setdefault(index, []).append(built)
    return BuiltProxy(chosen, winner, build_listeners(list(services), pick, settings), losers)


def with_specials(clusters: Mapping[str, BuiltCluster], settings: ProxySettings) -> list[BuiltCluster]:
    chosen = dict(clusters)
    with_sds = any(c.uses_sds for c in chosen.values())
    with_ads = any(c.uses_ads for c in chosen.values())
    for built in special_clusters(settings, with_sds, with_ads):
        chosen.setdefault(built.name, built)
    return sorted(chosen.values(), key=lambda c: c.name)


def _clusters(manifests: Sequence[Mapping[str, Any]], settings: ProxySettings,
              memo: Mapping[str, Any] | None = None, used: Memo | None = None
              ) -> tuple[list[BuiltCluster], list[BuiltListener]]:
    services = with_mesh_routes(load_services(manifests, settings.trust_domain), manifests, settings.cluster_domain)
    rules = load_destination_rules(manifests, settings.cluster_domain)
    pick = rule_picker(settings, rules, load_selector_rules(manifests, settings.cluster_domain))
    built = build_proxy(services, pick, settings, memo, used)
    return with_specials(built.clusters, settings), built.listeners


def cluster_sources(clusters: list[BuiltCluster]) -> dict[Path, ObjectId]:
    out: dict[Path, ObjectId] = {}
    for index, built in enumerate(clusters):
        base: Path = ("static_resources", "clusters", index)
        if built.origin is not None:
            out[base] = built.origin
        for group, endpoint, origin in built.endpoint_origins:
            if origin != built.origin:
                out[base + ("load_assignment", "endpoints", group, "lb_endpoints", endpoint)] = origin
    return out


def listener_sources(listeners: list[BuiltListener]) -> dict[Path, ObjectId]:
    out: dict[Path, ObjectId] = {}
    for index, built in enumerate(listeners):
        base: Path = ("static_resources", "listeners", index, "filter_chains")
        for chain, origin in built.chain_origins.items():
            out[base + (chain,)] = origin
        for chain, vhost, origin in built.vhost_origins:
            out[base + (chain,) + HCM_ROUTES + (vhost,)] = origin
    return out


def build_bootstrap(manifests: Sequence[Mapping[str, Any]], settings: ProxySettings,
                    memo: Mapping[str, Any] | None = None, used: Memo | None = None
                    ) -> tuple[dict[str, Any], dict[Path, ObjectId]]:
    """The static Bootstrap for a sidecar-like proxy, and where each part came from.
    `memo` (content hash of a service's inputs -> its clusters) skips unchanged services; every
    entry this build used is put in `used`, the memo for the next build."""
    clusters, listeners = _clusters(manifests, settings, memo, used)
    bootstrap: dict[str, Any] = {"static_resources": {
        "listeners": [built.body for built in listeners],
        "clusters": [built.body for built in clusters],
    }}
    if any(c.uses_ads for c in clusters):
        bootstrap["dynamic_resources"] = {"ads_config": ADS_CONFIG}
    sources = {**cluster_sources(clusters), **listener_sources(listeners)}
    return bootstrap, sources
