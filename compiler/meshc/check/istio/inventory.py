"""Indexes over a set of manifests for the cross-object analyzers.

Input: a sequence of manifest dicts (any kinds; ServiceEntry, WorkloadEntry and DestinationRule
of networking.istio.io, and the Kubernetes core/v1 Service, Pod, Node and Namespace are indexed).
Output: `Inventory` with typed views of those objects, `HostIndex` (ServiceEntry hosts: exact,
wildcard and dotted-suffix lookups) and `WorkloadIndex` (WorkloadEntries, or Pods with their
Node's topology labels, by namespace and label).
Invariants: everything is built in one pass, O(objects x hosts); lookups are dictionary hits plus
a walk over the suffixes of one hostname, so analyzers never compare objects pairwise. Objects
missing a namespace are placed in `default` (what `kubectl apply` does).
Codes emitted: none.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from meshc.check.istio.fields import (
    as_list,
    as_map,
    as_str,
    effective_namespace,
    is_map,
    is_set,
    labels_of,
    metadata_of,
    namespace_of,
)
from meshc.check.istio.scoping import Scope, scope_of, visible_in
from meshc.check.istio.serviceentry import resolution_of
from meshc.model.ids import ObjectId

Identity = ObjectId  # (kind, namespace, name)
GROUP = "networking.istio.io"
NETWORK_LABEL = "topology.istio.io/network"
LOCALITY_LABELS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone")
#: Kubernetes core/v1 kinds the analyzers read (Istio's analyzers read them from the cluster).
CORE_KINDS = ("Service", "Pod", "Node", "Namespace")
#: Service annotation that scopes a Kubernetes Service like a ServiceEntry's exportTo (comma-separated).
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"


@dataclass(frozen=True, slots=True)
class Item:
    """One manifest with its identity (namespace as written) and effective namespace."""

    index: int
    ident: Identity
    namespace: str
    manifest: Mapping[str, Any] = field(repr=False)

    @property
    def spec(self) -> Mapping[str, Any]:
        return as_map(self.manifest.get("spec"))

    @property
    def ref(self) -> str:
        return f"{self.ident[0]} {self.namespace}/{self.ident[2]}"


@dataclass(frozen=True, slots=True)
class ServiceEntryView:
    item: Item
    scope: Scope
    resolution: int
    hosts: tuple[str, ...]
    selector: Mapping[str, str] | None
    endpoints: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class KubeServiceView:
    """A Kubernetes Service: its scope (exportTo annotation) and selector (None: no selector)."""

    item: Item
    scope: Scope
    selector: Mapping[str, str] | None

    def host(self, cluster_domain: str) -> str:
        return f"{self.item.ident[2]}.{self.item.namespace}.svc.{cluster_domain}"


def is_core(manifest: Mapping[str, Any]) -> bool:
    """A Kubernetes core/v1 object of a kind the analyzers read (apiVersion `v1`, or none)."""
    return as_str(manifest.get("apiVersion")) in ("v1", "") and as_str(manifest.get("kind")) in CORE_KINDS


def identity_of(manifest: Mapping[str, Any]) -> Identity:
    meta = metadata_of(manifest)
    return ObjectId(as_str(manifest.get("kind")), namespace_of(manifest), as_str(meta.get("name")))


def is_istio(manifest: Mapping[str, Any]) -> bool:
    """apiVersion group networking.istio.io (or no apiVersion at all, for terse hand-written YAML)."""
    api = as_str(manifest.get("apiVersion"))
    return not api or api.split("/", 1)[0] == GROUP


def qualify(host: str, namespace: str, cluster_domain: str) -> str:
    """`ResolveShortnameToFQDN`: a DR host without a dot is `<host>.<ns>.svc.<cluster domain>`."""
    if not host or host.startswith("*") or "." in host:
        return host
    return f"{host}.{namespace}.svc.{cluster_domain}"


def endpoint_labels(labels: Mapping[str, str], spec: Mapping[str, Any]) -> dict[str, str]:
    """Labels an endpoint is selected by: its own plus network/locality topology labels."""
    out = dict(labels)
    network = as_str(spec.get("network"))
    if network:
        out.setdefault(NETWORK_LABEL, network)
    for key, part in zip(LOCALITY_LABELS, as_str(spec.get("locality")).split("/"), strict=False):
        if part:
            out.setdefault(key, part)
    return out


def workload_labels(manifest: Mapping[str, Any]) -> dict[str, str]:
    """WorkloadEntry labels: spec.labels overlaid with metadata.labels (metadata wins)."""
    spec = as_map(manifest.get("spec"))
    merged = {**labels_of(spec), **labels_of(metadata_of(manifest))}
    return endpoint_labels(merged, spec)


class Inventory:
    """Typed views of all objects, in input order."""

    def __init__(self, manifests: Sequence[Mapping[str, Any]]) -> None:
        self.items: list[Item] = []
        self.service_entries: list[ServiceEntryView] = []
        self.workloads: list[Item] = []
        self.destination_rules: list[Item] = []
        self.services: list[KubeServiceView] = []
        self.pods: list[Item] = []
        self.nodes: dict[str, Mapping[str, str]] = {}  # node name -> its labels
        self.namespaces: dict[str, Item] = {}
        for index, manifest in enumerate(manifests):
            if is_map(manifest):
                self._add(Item(index, identity_of(manifest), effective_namespace(manifest), manifest))

    def _add(self, item: Item) -> None:
        self.items.append(item)
        kind = item.ident[0]
        if is_core(item.manifest):
            self._add_core(kind, item)
            return
        if not is_istio(item.manifest):
            return
        if kind == "ServiceEntry":
            self.service_entries.append(_service_entry_view(item))
        elif kind == "WorkloadEntry":
            self.workloads.append(item)
        elif kind == "DestinationRule":
            self.destination_rules.append(item)

    def _add_core(self, kind: str, item: Item) -> None:
        if kind == "Service":
            self.services.append(_kube_service_view(item))
        elif kind == "Pod":
            self.pods.append(item)
        elif kind == "Node":
            self.nodes[item.ident[2]] = labels_of(metadata_of(item.manifest))
        elif kind == "Namespace":
            self.namespaces[item.ident[2]] = item

    @cached_property
    def pod_index(self) -> WorkloadIndex:
        """Pods by label; a Pod also carries its Node's region/zone/subzone labels."""
        return WorkloadIndex(self.pods, lambda manifest: pod_labels(manifest, self.nodes))

    @cached_property
    def hosts(self) -> HostIndex:
        return HostIndex(self.service_entries)

    @cached_property
    def workload_index(self) -> WorkloadIndex:
        return WorkloadIndex(self.workloads)


def pod_labels(manifest: Mapping[str, Any], nodes: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """A Pod's labels plus the topology labels of the Node it runs on (`spec.nodeName`)."""
    out = dict(labels_of(metadata_of(manifest)))
    node = nodes.get(as_str(as_map(manifest.get("spec")).get("nodeName")), {})
    for key in LOCALITY_LABELS:
        if node.get(key):
            out.setdefault(key, node[key])
    return out


def _kube_service_view(item: Item) -> KubeServiceView:
    annotations = as_map(metadata_of(item.manifest).get("annotations"))
    export = [e.strip() for e in as_str(annotations.get(EXPORT_TO_ANNOTATION)).split(",") if e.strip()]
    selector = labels_of({"labels": item.spec.get("selector")})
    return KubeServiceView(item, scope_of(item.namespace, export), selector or None)


def _service_entry_view(item: Item) -> ServiceEntryView:
    spec = item.spec
    selector = labels_of(as_map(spec["workloadSelector"])) if is_set(spec, "workloadSelector") else None
    endpoints = tuple(e for e in as_list(spec.get("endpoints")) if is_map(e))
    hosts = tuple(dict.fromkeys(as_str(h) for h in as_list(spec.get("hosts"))))
    return ServiceEntryView(item, scope_of(item.namespace, spec.get("exportTo")), resolution_of(spec),
                            hosts, selector, endpoints)


class HostIndex:
    """ServiceEntries by host: exact names, wildcard suffixes, and dotted suffixes of every host."""

    def __init__(self, entries: Iterable[ServiceEntryView]) -> None:
        self.entries = list(entries)
        self.exact: dict[str, list[ServiceEntryView]] = defaultdict(list)
        self.wildcard: dict[str, list[ServiceEntryView]] = defaultdict(list)
        for se in self.entries:
            for host in se.hosts:
                (self.wildcard[host[1:]] if host.startswith("*") else self.exact[host]).append(se)

    @cached_property
    def _dotted(self) -> dict[str, list[ServiceEntryView]]:
        """Every `.suffix` of every host (wildcards stripped): hosts a DR wildcard `*.suffix` covers."""
        index: dict[str, list[ServiceEntryView]] = defaultdict(list)
        for se in self.entries:
            for host in se.hosts:
                name = host.lstrip("*")
                for i, char in enumerate(name):
                    if char == ".":
                        index[name[i:]].append(se)
        return index

    def candidates(self, host: str) -> list[ServiceEntryView]:
        """ServiceEntries with a host that `host` names or overlaps (either side may be a wildcard)."""
        if host == "*":
            return self.entries
        found = list(self.exact.get(host, ()))
        bare = host[1:] if host.startswith("*") else host
        for i in range(len(bare)):
            found += self.wildcard.get(bare[i:], ())
        if host.startswith("*"):
            if bare.startswith("."):
                found += self._dotted.get(bare, ())
            else:
                found += [se for se in self.entries if any(h.lstrip("*").endswith(bare) for h in se.hosts)]
        return list({id(se): se for se in found}.values())

    def visible(self, host: str, namespace: str, everywhere: bool = False) -> list[ServiceEntryView]:
        """Candidates visible from `namespace` (all of them when `everywhere`, e.g. root namespace)."""
        return [se for se in self.candidates(host) if everywhere or visible_in(se.scope, namespace)]


class WorkloadIndex:
    """Workloads (WorkloadEntries, or Pods) by namespace and by (namespace, label key, label value)."""

    def __init__(self, workloads: Sequence[Item],
                 labeller: Callable[[Mapping[str, Any]], Mapping[str, str]] | None = None) -> None:
        self.items = list(workloads)
        self.by_namespace: dict[str, set[int]] = defaultdict(set)
        self.by_label: dict[tuple[str, str, str], set[int]] = defaultdict(set)
        self._cache: dict[tuple[str, frozenset[tuple[str, str]]], frozenset[int]] = {}
        for i, item in enumerate(self.items):
            self.by_namespace[item.namespace].add(i)
            for key, value in (labeller or workload_labels)(item.manifest).items():
                self.by_label[(item.namespace, key, value)].add(i)

    def select(self, namespace: str, labels: Mapping[str, str]) -> frozenset[int]:
        """Positions (in `items`) of WorkloadEntries in `namespace` whose labels include `labels`."""
        key = (namespace, frozenset(labels.items()))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if not labels:
            result = frozenset(self.by_namespace.get(namespace, ()))
        else:
            groups = sorted((self.by_label.get((namespace, k, v), set()) for k, v in labels.items()), key=len)
            result = frozenset(groups[0].intersection(*groups[1:]))
        self._cache[key] = result
        return result
