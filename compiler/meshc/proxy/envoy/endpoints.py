"""Inline load assignment for an outbound cluster (reference 5.6).

Input: the endpoints of one cluster (already filtered for its subset), the service port, the
effective `Policy` and the client proxy locality. Output: a `LoadAssignment` holding the
ClusterLoadAssignment dict, whether ``locality_weighted_lb_config`` must be set, and, for each
LbEndpoint, the object it came from (for provenance).

Invariants: locality groups are sorted by their locality string (then priority); endpoints in a
group keep the service's endpoint order. Weights 0 count as 1; group weights saturate at 2^32-1.
Priorities are computed only when locality LB is enabled, outlierDetection is present and the
client is known (its locality or its labels); they are renumbered to be contiguous from 0.
`failoverPriority` compares each endpoint's labels with the client proxy's labels: env.yaml
``proxy.labels`` plus region/zone/subzone from ``proxy.locality`` (`client_labels`, as istiod's
`AugmentLabels` builds a proxy's labels).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshc.model.ids import ObjectId
from meshc.proxy.envoy.istio import Endpoint, SvcPort
from meshc.proxy.envoy.policy import Policy
from meshc.proxy.envoy.tls import endpoint_tls_metadata
from meshc.proxy.envoy.values import envoy_locality, locality_matches, locality_parts, saturating_sum, socket_address

Json = dict[str, Any]
_CLIENT_KEYS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone",
                "topology.istio.io/subzone")


@dataclass
class _Group:
    locality: str
    members: list[Endpoint]
    priority: int = 0
    weight: int = 0

    def __post_init__(self) -> None:
        self.weight = self.weight or saturating_sum([e.weight for e in self.members])


@dataclass(frozen=True)
class LoadAssignment:
    assignment: Json
    locality_weighted: bool = False
    origins: tuple[tuple[int, int, ObjectId], ...] = field(default=())


def _group(endpoints: Sequence[Endpoint]) -> list[_Group]:
    groups: dict[str, list[Endpoint]] = {}
    for endpoint in endpoints:
        groups.setdefault(endpoint.locality, []).append(endpoint)
    return [_Group(locality, members) for locality, members in sorted(groups.items())]


@functools.lru_cache(maxsize=4096)
def _lb_priority(client: str, locality: str) -> int:
    mine, theirs = locality_parts(client), locality_parts(locality)
    if mine == theirs:
        return 0
    if mine[:2] == theirs[:2]:
        return 1
    return 2 if mine[0] == theirs[0] else 3


def _region_priority(client: str, locality: str, failover: Sequence[Mapping[str, Any]]) -> int:
    priority = _lb_priority(client, locality)
    region = locality_parts(client)[0]
    for rule in failover:
        if rule.get("from") == region and priority == 3 and locality_parts(locality)[0] != rule.get("to"):
            return 4
    return priority


def client_labels(locality: str, labels: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """The client proxy's labels: its own, with region/zone/subzone of its locality on top
    (`AugmentLabels`, pilot/pkg/serviceregistry/util/label/label.go)."""
    topology = {k: v for k, v in zip(_CLIENT_KEYS, locality_parts(locality), strict=False) if v}
    return {**dict(labels), **topology}


NETWORK_LABEL = "topology.istio.io/network"


def _label_priority(endpoint: Endpoint, client: Mapping[str, str], labels: Sequence[str]) -> int:
    """`applyFailoverPriorityPerLocality` (pilot/pkg/networking/core/loadbalancer/loadbalancer.go,
    Istio 1.31): the priority is the number of labels from the first one that does not match
    (0: all match); ``key=value`` gives the value to match; a label neither side has matches (both
    are ""). When the first label is the network and it does not match, the other labels still
    rank the endpoint, after every endpoint of the client's network (+ the number of labels)."""
    adjust = 0
    for j, entry in enumerate(labels):
        key, sep, override = entry.partition("=")
        wanted = override if sep else client.get(key, "")
        if endpoint.labels.get(key, "") == wanted:
            continue
        if j == 0 and key == NETWORK_LABEL and not sep:
            adjust = len(labels)
            continue
        return len(labels) - j + adjust
    return adjust


def _split_by_priority(groups: list[_Group], client: str, setting: Mapping[str, Any],
                       proxy_labels: Mapping[str, str]) -> list[_Group]:
    failover = list(setting.get("failover") or [])
    labels = list(setting.get("failoverPriority") or [])
    out: list[_Group] = []
    for group in groups:
        region = _region_priority(client, group.locality, failover)
        if not labels:
            out.append(_Group(group.locality, group.members, region))
            continue
        split: dict[int, list[Endpoint]] = {}
        for endpoint in group.members:
            level = _label_priority(endpoint, proxy_labels, labels)
            split.setdefault(level * 5 + region if failover else level, []).append(endpoint)
        out.extend(_Group(group.locality, members, p) for p, members in sorted(split.items()))
    ranks = {p: rank for rank, p in enumerate(sorted({g.priority for g in out}))}
    for group in out:
        group.priority = ranks[group.priority]
    return sorted(out, key=lambda g: (g.locality, g.priority))


def _distribute(groups: list[_Group], client: str, rules: Sequence[Mapping[str, Any]]) -> list[_Group]:
    rule = next((r for r in rules if locality_matches(client, str(r.get("from") or ""))), None)
    if rule is None:
        return groups
    targets = list((rule.get("to") or {}).items())
    chosen: dict[str, list[_Group]] = {}
    for group in groups:
        key = next((k for k, _ in targets if locality_matches(group.locality, str(k))), None)
        if key is not None:
            chosen.setdefault(key, []).append(group)
    out: list[_Group] = []
    for key, weight in targets:
        members = chosen.get(key, [])
        total = sum(g.weight for g in members) or 1
        for group in members:
            share = math.ceil(int(weight) * group.weight / total)
            if share > 0:
                out.append(_Group(group.locality, group.members, 0, share))
    return sorted(out, key=lambda g: g.locality)


def _lb_endpoint(endpoint: Endpoint, port: SvcPort) -> Json:
    out: Json = {
        "endpoint": {"address": socket_address(endpoint.address, endpoint.port_for(port))},
        "health_status": "HEALTHY",
        "load_balancing_weight": endpoint.weight,
    }
    metadata = endpoint_tls_metadata(endpoint.tls_mode)
    if metadata:
        out["metadata"] = metadata
    return out


def _shape(groups: list[_Group], policy: Policy, client: str,
           proxy_labels: Mapping[str, str]) -> tuple[list[_Group], bool, bool]:
    """(groups, priorities_used, locality_weighted) after distribute / failover."""
    setting = (policy.load_balancer or {}).get("localityLbSetting") or {}
    if setting.get("enabled") is False or not (client or proxy_labels):
        return groups, False, False
    if setting.get("distribute"):
        return _distribute(groups, client, setting["distribute"]), False, True
    if not isinstance(policy.outlier, Mapping):
        return groups, False, False
    weighted = bool(setting.get("failover") or setting.get("failoverPriority"))
    return _split_by_priority(groups, client, setting, proxy_labels), True, weighted


def load_assignment(cluster_name: str, endpoints: Sequence[Endpoint], port: SvcPort,
                    policy: Policy, client_locality: str,
                    proxy_labels: Sequence[tuple[str, str]] = ()) -> LoadAssignment:
    client = client_labels(client_locality, proxy_labels)
    return _render(cluster_name, port, *_shape(_group(endpoints), policy, client_locality, client))


class Assigner:
    """The load assignments of one cluster for several clients (the views of an environment):
    its endpoints grouped once, and each distinct outcome of the client-dependent steps (which
    endpoints in which group, with which priority and weight) rendered once: clients in other
    localities often get the same one.

    An outcome is named by a key: equal keys, equal load assignments. A cluster whose
    endpoints form one locality group, with neither `distribute` nor `failoverPriority`, is
    *uniform*: every client with a locality or labels gets the same outcome (one group, renumbered
    to priority 0; `weighted` does not depend on the client), so its key says only that."""

    def __init__(self, cluster_name: str, endpoints: Sequence[Endpoint], port: SvcPort, policy: Policy,
                 home_locality: str, home_labels: Sequence[tuple[str, str]] = ()) -> None:
        """`home_*`: the client the cluster was built for (`for_client` answers None for its outcome)."""
        self.name, self.port, self.policy = cluster_name, port, policy
        self.groups = _group(endpoints)  # read only: _shape makes new groups when it changes them
        setting = (policy.load_balancer or {}).get("localityLbSetting") or {}
        self.uniform = len(self.groups) <= 1 and not setting.get("distribute") and not setting.get("failoverPriority")
        self.rendered: dict[Hashable, LoadAssignment] = {}
        self.home = self._outcome(home_locality, home_labels)[0]

    def _outcome(self, client_locality: str, proxy_labels: Sequence[tuple[str, str]]
                 ) -> tuple[Hashable, tuple[list[_Group], bool, bool] | None]:
        """The key of a client's outcome (equal keys, equal load assignments) and, unless the
        cluster is uniform, the shaped groups."""
        if self.uniform:
            return ("uniform", bool(client_locality or proxy_labels)), None
        shaped = _shape(self.groups, self.policy, client_locality, client_labels(client_locality, proxy_labels))
        groups, prioritised, weighted = shaped
        return (prioritised, weighted,
                tuple((g.locality, g.priority, g.weight, tuple(map(id, g.members))) for g in groups)), shaped

    def for_client(self, client_locality: str, proxy_labels: Sequence[tuple[str, str]] = ()) -> LoadAssignment | None:
        """The client's load assignment; None when it is the `home` client's outcome."""
        key, shaped = self._outcome(client_locality, proxy_labels)
        if key == self.home:
            return None
        found = self.rendered.get(key)
        if found is None:
            if shaped is None:
                shaped = _shape(self.groups, self.policy, client_locality, client_labels(client_locality, proxy_labels))
            found = self.rendered[key] = _render(self.name, self.port, *shaped)
        return found


def _render(cluster_name: str, port: SvcPort, groups: list[_Group], prioritised: bool,
            weighted: bool) -> LoadAssignment:
    rendered: list[Json] = []
    origins: list[tuple[int, int, ObjectId]] = []
    for g_index, group in enumerate(groups):
        item: Json = {
            "locality": envoy_locality(group.locality),
            "lb_endpoints": [_lb_endpoint(e, port) for e in group.members],
            "load_balancing_weight": group.weight,
        }
        if prioritised:
            item["priority"] = group.priority
        rendered.append(item)
        origins.extend((g_index, e_index, e.origin) for e_index, e in enumerate(group.members))
    assignment = {"cluster_name": cluster_name, "endpoints": rendered}
    return LoadAssignment(assignment, weighted, tuple(origins))
